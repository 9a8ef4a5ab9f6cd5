"""The multi-task network against the four single-task networks it replaces: compute, parameters
and ONNX Runtime latency (CPU, 2 threads, network only), side by side in one run.

    python benchmarks/bench_multitask.py [--model M] [--size 384 512] [--runs 30] [--data SEQ ...]

Compute is counted from each ONNX graph (multiply-accumulates of Conv, ConvTranspose, MatMul and
Gemm at the graph's static shapes; ``graph_macs``); parameters are the graph's initializers. The
single-task graphs are the shipped ones (models/detection.onnx, segmentation.onnx, depth.onnx,
matching.onnx: what the four task nodes run per frame), each at its own input size; the multi-task
graph is the shipped models/multitask.onnx (or ``--model``), and exported here with random weights
at ``--size`` for what is missing (attention off; weights do not change compute or latency).

Then per 640x480 frame through the nodes' pipelines (pre + inference + post) with each process's
peak RSS: the four pipelines in four processes (as the four nodes run) and in one, against the
multi-task pipeline (as multitask_node runs). With ``--data`` (held-out synthetic sequences) each
task's metric for the single-task models, the multi-task model and ``--ablation`` (trained
without attention), through the same pipelines.

    python benchmarks/bench_multitask.py --data data/synth_val/* --ablation runs/mt_noatt/multitask.onnx
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


def export_untrained(out: Path, size: tuple[int, int], attention: bool, head_rank: int = 0) -> Path:
    """A multi-task graph with random weights (compute and latency do not depend on the weights),
    with a card, for a checkout without a trained multi-task model."""
    import torch
    import yaml

    from perception_models.export import _export_onnx, file_facts
    from perception_models.models.multitask import MultiTaskConfig, MultiTaskExport, MultiTaskNet

    torch.manual_seed(0)
    net = MultiTaskNet(MultiTaskConfig(input_size=size, attention=attention, head_rank=head_rank))
    wrap = MultiTaskExport(net).eval()
    _export_onnx(wrap, (torch.zeros(1, 3, *size),), out, ["image"], wrap.output_names())
    shipped = yaml.safe_load((ROOT / "models" / "multitask.card.yaml").read_text()) if SHIPPED.is_file() else None
    card = dict(shipped) if shipped else _card_like(wrap, size)
    card["input"] = {**card["input"], "height": size[0], "width": size[1]}
    card.update(file_facts(out))
    out.with_name(out.stem + ".card.yaml").write_text(yaml.safe_dump(card, sort_keys=False))
    return out


def _card_like(wrap, size: tuple[int, int]) -> dict:
    from perception_models.data.synth.scene import PALETTE
    from perception_models.export import card_input

    cfg = wrap.net.cfg
    return {
        "task": "multitask",
        "classes": [],
        "input": card_input(*size, "letterbox", pad_value=114),
        "tasks": {
            "detection": {"classes": cfg.detection_classes, "outputs": {k: k for k in ("boxes", "scores", "labels")}},
            "segmentation": {
                "classes": cfg.segmentation_classes,
                "colors": PALETTE[: len(cfg.segmentation_classes)].tolist(),
                "outputs": {"labels": "seg_labels", "confidence": "seg_confidence"},
            },
            "depth": {"outputs": {"depth": "depth"}, "min": 0.1, "max": 100.0, "scale_source": "supervised"},
            "matching": {
                "outputs": {"keypoints": "keypoints", "scores": "keypoint_scores", "descriptors": "descriptors"}
            },
        },
    }


SHIPPED = ROOT / "models" / "multitask.onnx"
SINGLE = {  # the four networks the four task nodes run per frame (odometry's default estimator, hybrid,
    # needs no pose network: it is listed apart)
    "detection": ROOT / "models" / "detection.onnx",
    "segmentation": ROOT / "models" / "segmentation.onnx",
    "depth": ROOT / "models" / "depth.onnx",
    "matching": ROOT / "models" / "matching.onnx",
}

_PIPELINES = """
import json, resource, sys, time
import numpy as np
from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import load_card, model_files
from perception_nodes.pipelines.multitask import task_pipeline, MultiTaskPipeline

models, runs = json.loads(sys.argv[1]), int(sys.argv[2])
pipes = []
for task, path in models:
    card = load_card(path)
    backend = OnnxRuntimeBackend(model_files(path)[0], threads=2)
    pipes.append(MultiTaskPipeline(backend, card) if task == "multitask" else task_pipeline(backend, card, task))
rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
def frame():
    for p in pipes:
        p.run(rgb, None, K) if getattr(p, "task", "") in ("depth", "multitask") else p.run(rgb)
for _ in range(3):
    frame()
times = []
for _ in range(runs):
    t = time.perf_counter(); frame(); times.append((time.perf_counter() - t) * 1e3)
print(json.dumps({"ms": float(np.median(times)), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def per_frame(models: list[tuple[str, Path]], runs: int) -> dict[str, float]:
    """Median ms per 640x480 frame through the nodes' pipelines (pre + inference + post) of all
    ``models`` in one process, and that process's peak RSS (MB): what the node(s) hold and pay."""
    import json
    import subprocess
    import sys

    arg = json.dumps([(t, str(p)) for t, p in models])
    r = subprocess.run([sys.executable, "-c", _PIPELINES, arg, str(runs)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(SHIPPED), help="trained multi-task model (default: the shipped one)")
    ap.add_argument("--ablation", help="the same network trained without attention (its metrics are compared)")
    ap.add_argument("--light", help="the network with light heads (train --head-rank; compared like the ablation)")
    ap.add_argument("--head-rank", type=int, default=2, help="rank of the untrained light-head graph without --light")
    ap.add_argument("--data", nargs="+", help="held-out synthetic sequences: each task's metric, single vs multi")
    ap.add_argument("--limit", type=int, default=0, help="frames per metric (0: all)")
    ap.add_argument("--size", type=int, nargs=2, default=[384, 512], metavar=("H", "W"))
    ap.add_argument("--runs", type=int, default=30, help="timed runs per graph (median)")
    args = ap.parse_args()
    rows = []
    for name, path in SINGLE.items():
        m = onnx.load(str(path))
        rows.append((f"{name} ({_size(m)})", graph_macs(m), parameters(m), latency_ms(path, args.runs), path))
    total = ("four single-task networks", *(sum(r[i] for r in rows) for i in (1, 2, 3)))
    pose = ROOT / "models" / "pose.onnx"
    pm = onnx.load(str(pose))
    pose_row = (f"(pose network: estimator posenet only, {_size(pm)})", graph_macs(pm), parameters(pm),
                latency_ms(pose, args.runs))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model and Path(args.model).is_file() else None
        graphs = {}  # row label -> graph
        for attention in (True, False):
            path = export_untrained(Path(tmp) / f"mt_{attention}.onnx", tuple(args.size), attention)
            graphs[f"attention {'on' if attention else 'off'}"] = path
        light = Path(args.light) if args.light else None
        if light is None:
            light = export_untrained(Path(tmp) / "mt_light.onnx", tuple(args.size), True, args.head_rank)
        graphs[f"light heads (rank {_rank(light)})"] = light
        if model is not None:
            graphs["attention on"] = model
        if args.ablation:
            graphs["attention off"] = Path(args.ablation)
        multi = []
        for label, path in graphs.items():
            m = onnx.load(str(path))
            multi.append((f"multi-task {_size(m)}, {label}", graph_macs(m), parameters(m), latency_ms(path, args.runs),
                          path.stat().st_size))  # fmt: skip
        frames = {
            "four task pipelines, one process each (sum)": _sum(
                [per_frame([(t, p)], args.runs) for t, p in SINGLE.items()]
            ),
            "four task pipelines in one process": per_frame(list(SINGLE.items()), args.runs),
            "multi-task pipeline": per_frame([("multitask", graphs["attention on"])], args.runs),
            "multi-task pipeline, light heads": per_frame([("multitask", light)], args.runs),
        }
    print(f"\nnetworks only, ONNX Runtime CPU 2 threads ({args.runs} runs, median)")
    print(f"{'network':<48} {'GMACs':>7} {'params M':>9} {'latency ms':>11}")
    for name, macs, params, lat, *_ in [*rows, total]:
        print(f"{name:<48} {macs / 1e9:>7.2f} {params / 1e6:>9.2f} {lat:>11.1f}")
    print(f"{pose_row[0]:<48} {pose_row[1] / 1e9:>7.2f} {pose_row[2] / 1e6:>9.2f} {pose_row[3]:>11.1f}")
    for name, macs, params, lat, size in multi:
        print(
            f"{name:<48} {macs / 1e9:>7.2f} {params / 1e6:>9.2f} {lat:>11.1f}   "
            f"(x{total[1] / macs:.2f} less compute, x{total[3] / lat:.2f} faster; {size / 1e6:.1f} MB)"
        )
    print("\nper 640x480 frame through the nodes' pipelines (preprocess + inference + postprocess)")
    print(f"{'':<48} {'ms':>7} {'RSS MB':>9}")
    for name, r in frames.items():
        print(f"{name:<48} {r['ms']:>7.1f} {r['rss_mb']:>9.0f}")
    if args.data and model is not None:
        _metrics(model, Path(args.ablation) if args.ablation else None, args.data, args.limit,
                 Path(args.light) if args.light else None)  # fmt: skip


def _rank(path: Path) -> str:
    """'2', or '2, detection 3' when the detection tower has its own rank."""
    from perception_models.onnx_weights import head_ranks

    rank, detection = head_ranks(path)
    return f"{rank}" if detection == rank else f"{rank}, detection {detection}"


def _size(m: onnx.ModelProto) -> str:
    dims = [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
    return f"{dims[2]}x{dims[3]}"


def _sum(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in results) for k in results[0]}


def _metrics(model: Path, ablation: Path | None, data: list[str], limit: int, light: Path | None = None) -> None:
    """Each task's held-out metric: the single-task model, the multi-task model (and its ablation),
    through the same node pipelines (perception_models.evaluate)."""
    from perception_models.evaluate import evaluate_depth, evaluate_detection, evaluate_matching, evaluate_segmentation

    def scores(det: Path, seg: Path, depth: Path, match: Path) -> list[float]:
        d = evaluate_detection(det, data, limit)
        s = evaluate_segmentation(seg, data, limit)
        z = evaluate_depth(depth, data, estimators=("pnp",), limit=limit)
        mt = evaluate_matching(match, [str(Path(x) / "rgb") for x in data], data, pairs=40)
        return [d["mAP"], d["mAP50"], s["mIoU"], z["depth"]["absolute"]["abs_rel"],
                z["depth"]["median_scaled"]["abs_rel"], z["odometry"]["pnp"]["ate_se3_percent"],
                mt["homography_mma"][3], mt["pose_auc"][10]]  # fmt: skip

    names = ["det mAP", "det mAP50", "seg mIoU", "depth AbsRel", "AbsRel (med.)", "PnP ATE %", "MMA@3", "AUC@10"]
    table = {"single-task models": scores(*SINGLE.values())}
    table["multi-task, attention"] = scores(model, model, model, model)
    if ablation is not None:
        table["multi-task, no attention"] = scores(ablation, ablation, ablation, ablation)
    if light is not None:
        table[f"multi-task, light (rank {_rank(light)})"] = scores(light, light, light, light)
    print(f"\nheld-out metrics ({len(data)} sequences{f', {limit} frames each' if limit else ''}; lower is better for "
          "AbsRel and ATE)")  # fmt: skip
    print(f"{'':<28}" + "".join(f"{n:>14}" for n in names))
    for name, vals in table.items():
        print(f"{name:<28}" + "".join(f"{v:>14.3f}" for v in vals))
    base = table["single-task models"]
    for name, vals in list(table.items())[1:]:
        rel = [(v - b) / b * 100 if b else float("nan") for v, b in zip(vals, base)]
        print(f"{'  change vs single, %':<28}" + "".join(f"{r:>+14.1f}" for r in rel) + f"   ({name})")


if __name__ == "__main__":
    main()
