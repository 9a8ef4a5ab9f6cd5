"""Third-party pretrained models (../shared/models) next to this project's own, through the node
pipelines: real-image accuracy and ONNX Runtime CPU speed.

    python benchmarks/pretrained_models.py [--shared ../shared] [--json out/pretrained_models.json]
        [--skip-accuracy] [--skip-speed] [--threads 2]

Accuracy (evaluation-only sets, nothing is trained or chosen here):
- detection: VOC-100 (100 PASCAL VOC2012 photos), COCO AP@0.5 and AP@[.5:.95] for person, car, chair
  (classes matched by name: perception-models evaluate --coco), YOLOv8n INT8 and fp32, YOLO11n, YOLOX-Nano
  and the shipped detector;
- segmentation: CamVid val IoU of the classes each model shares with CamVid (config/class_maps/);
Speed: median ms per 640x480 frame, preprocess + inference + postprocess (the pipeline's run), ONNX
Runtime CPU with ``--threads`` threads, after 3 warm-up runs; a LightGlue pair on top of its extractor.
The cards are made on the fly (perception-models card) in a temporary folder: nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = {
    "YOLOv8n INT8 640": ("yolov8_det/yolov8n_int8dyn_640.onnx", {}),
    "YOLOv8n fp32 640": ("yolov8_det/derived/yolov8n_fp32_dequantized_640.onnx", {}),
    "YOLO11n INT8 320": ("yolov8_det/yolo11n_int8dyn_320.onnx", {}),
    "YOLOX-Nano 416": ("yolox/yolox_nano_416.onnx", {}),
    "YOLOv8n-seg boxes 320": ("yolov8_seg/yolov8n-seg_int8dyn_320.onnx", {}),
}
CLASSES = ("person", "car", "chair")


def cards(shared: Path, tmp: Path) -> dict[str, Path]:
    from perception_nodes.model_import import build_card, write_card

    out = {}
    for name, (rel, kw) in DETECTORS.items():
        out[name] = write_card(
            build_card(shared / "models" / rel, **kw), shared / "models" / rel, tmp / f"{len(out)}.card.yaml"
        )
    xfeat = shared / "models" / "xfeat"
    out["XFeat 480x640"] = write_card(
        build_card(xfeat / "xfeat_backbone_dyn.onnx", input_size=(480, 640)),
        xfeat / "xfeat_backbone_dyn.onnx",
        tmp / "xfeat.card.yaml",
    )
    out["LighterGlue"] = write_card(
        build_card(xfeat / "lighterglue_L3.onnx"), xfeat / "lighterglue_L3.onnx", tmp / "lg.card.yaml"
    )
    return out


def accuracy(shared: Path, c: dict[str, Path]) -> dict:
    from perception_models.evaluate import evaluate_detection_coco, evaluate_segmentation_mapped, read_class_map

    voc = shared / "data" / "voc_det100"
    ann, images = voc / "gts" / "coco_format_v2" / "instances_v2.json", voc / "images"
    det = {}
    for name, model in [("ours (detection.onnx)", ROOT / "models" / "detection.onnx")] + [(n, c[n]) for n in DETECTORS]:
        r = evaluate_detection_coco(model, ann, images)
        pc = r["per_class"]
        det[name] = {k: {"AP50": pc[k]["AP50"], "AP": pc[k]["AP"]} for k in CLASSES if pc.get(k)}
    seg = {}
    camvid = shared / "data" / "camvid"
    for name, model, cmap in (
        ("ours (segmentation.onnx)", ROOT / "models" / "segmentation.onnx", "camvid_to_ours.yaml"),
        ("YOLOv8n-seg 320", c["YOLOv8n-seg boxes 320"], "camvid_to_coco.yaml"),
    ):
        r = evaluate_segmentation_mapped(model, camvid, read_class_map(ROOT / "config" / "class_maps" / cmap))
        seg[name] = {"per_class": r["per_class"], "mIoU": r["mIoU"], "protocol": r["protocol"]}
    return {"detection_voc100": det, "segmentation_camvid_val": seg}


def _ms(fn, n: int = 20) -> float:
    for _ in range(3):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def speed(c: dict[str, Path], threads: int) -> dict:
    from perception_models.data.readers.common import read_rgb
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.families.lightglue import LightGlueMatcher
    from perception_nodes.model_card import load_card, model_files
    from perception_nodes.pipelines.depth import DepthPipeline
    from perception_nodes.pipelines.detection import DetectionPipeline
    from perception_nodes.pipelines.matching import MatchingPipeline
    from perception_nodes.pipelines.segmentation import SegmentationPipeline

    import cv2

    photo = sorted((ROOT.parent / "shared" / "data" / "camvid" / "val").glob("*.png"))
    rgb = (
        cv2.resize(read_rgb(photo[0]), (640, 480))
        if photo
        else np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    )

    def backend(path: Path):
        return OnnxRuntimeBackend(model_files(path)[0], threads=threads)

    rows = {}
    m = ROOT / "models"
    rows["detection: ours 384x512"] = _ms(
        lambda p=DetectionPipeline(backend(m / "detection.onnx"), load_card(m / "detection.onnx")): p.run(rgb)
    )
    for n in DETECTORS:
        if "seg" in n:
            continue
        p = DetectionPipeline(backend(c[n]), load_card(c[n], "detection"), score_threshold=0.25)
        rows[f"detection: {n}"] = _ms(lambda p=p: p.run(rgb))
    rows["segmentation: ours"] = _ms(
        lambda p=SegmentationPipeline(backend(m / "segmentation.onnx"), load_card(m / "segmentation.onnx")): p.run(rgb)
    )
    n = "YOLOv8n-seg boxes 320"
    p = SegmentationPipeline(backend(c[n]), load_card(c[n], "segmentation"))
    rows["segmentation: YOLOv8n-seg 320 (masks + boxes)"] = _ms(lambda p=p: p.run(rgb))
    rows["depth: ours"] = _ms(
        lambda p=DepthPipeline(backend(m / "depth.onnx"), load_card(m / "depth.onnx")): p.run(rgb)
    )
    ours_kp = MatchingPipeline(backend(m / "matching.onnx"), load_card(m / "matching.onnx"))
    rows["keypoints: ours 240x320"] = _ms(lambda: ours_kp.run(rgb))
    xf = MatchingPipeline(backend(c["XFeat 480x640"]), load_card(c["XFeat 480x640"], "matching"))
    rows["keypoints: XFeat 480x640"] = _ms(lambda: xf.run(rgb))
    glue = LightGlueMatcher(backend(c["LighterGlue"]), load_card(c["LighterGlue"], "matcher"))
    fa = xf.run(rgb)
    rows[f"matching: LighterGlue pair ({len(fa.keypoints)} keypoints each)"] = _ms(lambda: glue(fa, fa), 10)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    ap.add_argument("--json")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-accuracy", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    args = ap.parse_args()
    shared = Path(args.shared)
    if not (shared / "models").is_dir():
        print(f"benchmark: pretrained models: {shared}/models is not here; nothing to measure")
        return 0
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        c = cards(shared, Path(tmp))
        if not args.skip_accuracy:
            out["accuracy"] = a = accuracy(shared, c)
            print("VOC-100, through DetectionPipeline (conf 0.05): AP@0.5 / AP@[.5:.95]")
            print(f"{'model':24s} " + " ".join(f"{k:>13s}" for k in CLASSES))
            for name, r in a["detection_voc100"].items():
                cells = [f"{r[k]['AP50']:.3f} / {r[k]['AP']:.3f}" if k in r else "-" for k in CLASSES]
                print(f"{name:24s} " + " ".join(f"{x:>13s}" for x in cells))
            print("\nCamVid val, through SegmentationPipeline: IoU of the shared classes")
            for name, r in a["segmentation_camvid_val"].items():
                per = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in r["per_class"].items())
                print(f"  {name:24s} mean {r['mIoU']:.3f}: {per}")
        if not args.skip_speed:
            out["speed_ms"] = s = speed(c, args.threads)
            print(f"\nONNX Runtime CPU, {args.threads} threads, 640x480 frame incl. pre/post (median ms)")
            for name, ms in s.items():
                print(f"  {name:52s} {ms:7.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
