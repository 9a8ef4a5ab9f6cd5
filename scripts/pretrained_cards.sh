#!/usr/bin/env bash
# Model cards for the third-party pretrained models in ../shared/models (perception-models card), written to
# cache/pretrained/ (each card names its ONNX file; nothing is copied: the YOLO weights are AGPL-3.0).
# config/profiles/pretrained.yaml runs them. Usage: scripts/pretrained_cards.sh [SHARED_MODELS] [OUT]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SRC="${1:-$ROOT/../shared/models}"
OUT="${2:-$ROOT/cache/pretrained}"
if [ ! -d "$SRC" ]; then
  echo "pretrained-cards: $SRC is not here: nothing to import (bring your own ONNX: perception-models card --onnx ...)"
  exit 0
fi
source "$ROOT/scripts/env.sh" >/dev/null
mkdir -p "$OUT"
card() { perception-models card --onnx "$SRC/$1" --out "$OUT/$2.card.yaml" "${@:3}"; }
card yolov8_det/yolov8n_int8dyn_640.onnx yolov8n_int8
card yolov8_det/derived/yolov8n_fp32_dequantized_640.onnx yolov8n_fp32
card yolov8_det/yolo11n_int8dyn_320.onnx yolo11n_int8
card yolov8_seg/yolov8n-seg_int8dyn_320.onnx yolov8n_seg
card yolox/yolox_nano_416.onnx yolox_nano
card xfeat/xfeat_backbone_dyn.onnx xfeat --input-size 480 640
card xfeat/lighterglue_L3.onnx lighterglue
