"""Network latency on a GPU: the shipped ONNX models through ONNX Runtime with each GPU execution
provider it has (TensorRT, CUDA), and a training checkpoint (e.g. a distilled student) through
torch in fp32 and fp16; batch 1 at each model's input size, median of 100 runs after 20 warm-ups.
Prints what it could not measure and why (no GPU provider in this ONNX Runtime, no CUDA in torch).

    python benchmarks/gpu_latency.py [--models models] [--checkpoint runs/x/best.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(fn, warm: int = 20, n: int = 100, sync=None) -> float:
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def onnxruntime_rows(models: Path) -> dict:
    import onnxruntime as ort

    have = ort.get_available_providers()
    out: dict = {"providers": have}
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]
    if not gpu:
        out["skipped"] = f"this ONNX Runtime has no GPU provider ({have})"
        return out
    for onnx in sorted(models.glob("*.onnx")):
        card = yaml.safe_load(onnx.with_name(onnx.stem + ".card.yaml").read_text())
        inp = card["input"]
        x = np.random.default_rng(0).random((1, 3, inp["height"], inp["width"]), np.float32)
        for p in gpu:
            try:
                sess = ort.InferenceSession(str(onnx), providers=[p, "CPUExecutionProvider"])
                feeds = {sess.get_inputs()[0].name: x}
                feeds.update(
                    {i.name: x for i in sess.get_inputs()[1:]}  # the pose network takes two frames
                )
                out[f"{onnx.stem} {p}"] = _median_ms(lambda: sess.run(None, feeds))
            except Exception as exc:  # a provider that cannot build this graph: say so, go on
                out[f"{onnx.stem} {p}"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    return out


def torch_rows(checkpoint: Path) -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"skipped": "torch has no CUDA here"}
    from perception_models.train.image_task import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint)
    model = model.cuda().eval()
    x = torch.rand(1, 3, *cfg.input_size, device="cuda")
    out = {"device": torch.cuda.get_device_name(0), "input_size": list(cfg.input_size)}
    with torch.inference_mode():
        out["fp32_ms"] = _median_ms(lambda: model(x), sync=torch.cuda.synchronize)
        with torch.autocast("cuda", dtype=torch.float16):
            out["fp16_autocast_ms"] = _median_ms(lambda: model(x), sync=torch.cuda.synchronize)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--checkpoint")
    ap.add_argument("--json")
    args = ap.parse_args()
    result = {"onnxruntime": onnxruntime_rows(Path(args.models))}
    if args.checkpoint:
        result["torch"] = torch_rows(Path(args.checkpoint))
    for section, rows in result.items():
        print(f"{section}:")
        for k, v in rows.items():
            print(f"  {k:48s} {v:.2f} ms" if isinstance(v, float) else f"  {k:48s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
