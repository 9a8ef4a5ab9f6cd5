"""Detector and segmenter speed on ONNX Runtime CPU, 2 threads, one 640x480 frame through the
node pipeline (letterbox + normalise, inference, postprocess incl. mapping back / upsampling).
Targets (issue 28's speed budgets): detector <= 20 ms, segmenter <= 40 ms median.

Several models per task are measured side by side in one run (students next to the shipped model
and a pretrained one, by ONNX or card path):

    python benchmarks/bench_task_models.py --detector models/detection.onnx runs/af/detection.onnx \
        cache/pretrained/yolox_nano.card.yaml --segmenter models/segmentation.onnx"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import load_card, model_files
from perception_nodes.pipelines.detection import DetectionPipeline
from perception_nodes.pipelines.segmentation import SegmentationPipeline

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"detection": 20.0, "segmentation": 40.0}


def frame() -> np.ndarray:
    from perception_models.data.synth import SynthConfig, SyntheticSequence

    return SyntheticSequence(SynthConfig(preset="driving", seed=900, frames=1)).frame(0).rgb


def bench(model: Path, task: str, rgb: np.ndarray, runs: int, threads: int) -> dict[str, float]:
    card = load_card(model, task)  # an ONNX next to its card, or a card naming its ONNX (pretrained families)
    backend = OnnxRuntimeBackend(model_files(model)[0], threads=threads)
    pipe = DetectionPipeline(backend, card, 0.3) if task == "detection" else SegmentationPipeline(backend, card)
    for _ in range(5):
        pipe.run(rgb)
    total, infer = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        feeds, lb = pipe.preprocess(rgb)
        t1 = time.perf_counter()
        out = backend.infer(feeds)
        t2 = time.perf_counter()
        pipe.postprocess(out, lb, rgb.shape[:2])
        total.append(time.perf_counter() - t0)
        infer.append(t2 - t1)
    return {
        "median_ms": 1e3 * float(np.median(total)),
        "p95_ms": 1e3 * float(np.percentile(total, 95)),
        "infer_median_ms": 1e3 * float(np.median(infer)),
        "input": f"{card.input_height}x{card.input_width}",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--detector", nargs="+", default=[str(ROOT / "models" / "detection.onnx")])
    ap.add_argument("--segmenter", nargs="+", default=[str(ROOT / "models" / "segmentation.onnx")])
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    rgb = frame()
    print(f"benchmark: task models, ONNX Runtime CPU {args.threads} threads, 640x480 frame incl. pre/post")
    for task, paths in (("detection", args.detector), ("segmentation", args.segmenter)):
        for path in paths:
            r = bench(Path(path), task, rgb, args.runs, args.threads)
            ok = "OK" if r["median_ms"] <= TARGETS[task] else "MISS"
            print(
                f"  {task:12s} {Path(path).name} ({r['input']} net): median {r['median_ms']:6.1f} ms, "
                f"p95 {r['p95_ms']:6.1f} ms, inference alone {r['infer_median_ms']:6.1f} ms   "
                f"target <= {TARGETS[task]:.0f} ms  {ok}"
            )


if __name__ == "__main__":
    main()
