"""The multi-task network against the four single-task networks it replaces: compute, parameters
and ONNX Runtime latency (CPU, 2 threads, network only), side by side in one run.

    python benchmarks/bench_multitask.py [--size 384 512] [--runs 30]

Compute is counted from each ONNX graph (multiply-accumulates of Conv, ConvTranspose, MatMul and
Gemm at the graph's static shapes; ``graph_macs``); parameters are the graph's initializers. The
single-task graphs are the shipped ones (models/detection.onnx, segmentation.onnx, depth.onnx +
pose.onnx, matching.onnx), each at its own input size; the multi-task graph is exported here at
``--size`` with and without per-task attention (weights do not change compute or latency).
Accuracy is not measured here: that needs a trained multi-task checkpoint.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

ROOT = Path(__file__).resolve().parents[1]


def graph_macs(model: onnx.ModelProto) -> int:
    """Multiply-accumulates of a static-shape graph: Conv/ConvTranspose (output elements x input
    channels per group x kernel area), MatMul and Gemm (M x N x K)."""
    inferred = shape_inference.infer_shapes(model)
    shapes: dict[str, list[int]] = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    total = 0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0])
        if not out or 0 in out:
            continue
        if node.op_type == "Conv":  # weights (Cout, Cin / group, kh, kw): per output element
            total += int(np.prod(out)) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type == "ConvTranspose":  # weights (Cin, Cout / group, kh, kw): per input element
            total += int(np.prod(shapes[node.input[0]])) * int(np.prod(shapes[node.input[1]][1:]))
        elif node.op_type in ("MatMul", "Gemm"):  # (M, K) x (K, N): per output element, K
            a = shapes.get(node.input[0])
            trans_a = any(x.name == "transA" and x.i for x in node.attribute)
            if a:
                total += int(np.prod(out)) * (a[-2] if trans_a else a[-1])
    return total


def parameters(model: onnx.ModelProto) -> int:
    return int(sum(numpy_helper.to_array(t).size for t in model.graph.initializer))


def latency_ms(path: Path, runs: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        i.name: rng.normal(0, 1, [d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
        for i in sess.get_inputs()
    }
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def export_multitask(out: Path, size: tuple[int, int], attention: bool) -> Path:
    import torch

    from perception_models.export import _export_onnx
    from perception_models.models.multitask import MultiTaskConfig, MultiTaskExport, MultiTaskNet

    torch.manual_seed(0)
    wrap = MultiTaskExport(MultiTaskNet(MultiTaskConfig(input_size=size, attention=attention))).eval()
    _export_onnx(wrap, (torch.zeros(1, 3, *size),), out, ["image"], wrap.output_names())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=[384, 512], metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=30, help="timed runs per graph (median)")
    args = ap.parse_args()
    models = ROOT / "models"
    single = {
        "detection (384x512)": [models / "detection.onnx"],
        "segmentation (384x512)": [models / "segmentation.onnx"],
        "depth + pose (192x256)": [models / "depth.onnx", models / "pose.onnx"],
        "matching (240x320)": [models / "matching.onnx"],
    }
    rows = []
    for name, paths in single.items():
        protos = [onnx.load(str(p)) for p in paths]
        rows.append(
            (
                name,
                sum(graph_macs(m) for m in protos),
                sum(parameters(m) for m in protos),
                sum(latency_ms(p, args.runs) for p in paths),
            )
        )
    total = ("four single-task networks", *(sum(r[i] for r in rows) for i in (1, 2, 3)))
    with tempfile.TemporaryDirectory() as tmp:
        multi = []
        for attention in (True, False):
            path = export_multitask(Path(tmp) / f"mt_{attention}.onnx", tuple(args.size), attention)
            m = onnx.load(str(path))
            label = f"multi-task {args.size[0]}x{args.size[1]}, attention {'on' if attention else 'off'}"
            multi.append((label, graph_macs(m), parameters(m), latency_ms(path, args.runs), path.stat().st_size))
    print(f"\n{'network':<44} {'GMACs':>7} {'params M':>9} {'latency ms':>11}")
    for name, macs, params, lat in [*rows, total]:
        print(f"{name:<44} {macs / 1e9:>7.2f} {params / 1e6:>9.2f} {lat:>11.1f}")
    for name, macs, params, lat, size in multi:
        print(
            f"{name:<44} {macs / 1e9:>7.2f} {params / 1e6:>9.2f} {lat:>11.1f}   "
            f"(x{total[1] / macs:.2f} less compute, x{total[3] / lat:.2f} faster; {size / 1e6:.1f} MB)"
        )


if __name__ == "__main__":
    main()
