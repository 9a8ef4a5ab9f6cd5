"""GPU latency of every shipped model and the multi-task network, next to the CPU, in one run
(a few minutes): for a lent GPU machine, as one prepared command.

    python benchmarks/bench_gpu.py [--models models] [--wheels DIR] [--runs 50] [--json out.json]

Per model (batch 1 at its card's input size, network only, median of ``--runs`` after warm-ups):

- ONNX Runtime CPU, 2 threads (the number the CPU benchmarks print);
- ONNX Runtime CUDA provider: plain ``run`` (host in, host out), with I/O binding (input and outputs
  stay on the GPU), and with CUDA graphs (``enable_cuda_graph``: one graph replay per frame); an
  fp16 copy of the graph (onnxconverter-common) the same way, when that package is there;
- ONNX Runtime TensorRT provider, fp32 and fp16, when this ONNX Runtime has it (engines cached in a
  temporary folder; the build is not timed);
- the same network in torch on CUDA (rebuilt from the ONNX weights, ``onnx_weights``): fp32, fp16
  and a captured CUDA graph: what the GPU gives where no GPU ONNX Runtime is installed.

A GPU machine here cannot download: ``--wheels DIR`` installs wheels carried with the checkout
(onnxruntime-gpu, onnxconverter-common) first. Whatever cannot be measured is printed with why.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _median_ms(fn: Callable[[], Any], runs: int, warm: int = 10, sync: Callable[[], Any] | None = None) -> float:
    for _ in range(warm):
        fn()
    if sync:
        sync()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        ts.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(ts))


def _feeds(sess: Any, card: dict) -> dict[str, np.ndarray]:
    inp = card["input"]
    x = np.random.default_rng(0).random((1, 3, inp["height"], inp["width"]), np.float32)
    return {i.name: (x.astype(np.float16) if "float16" in i.type else x) for i in sess.get_inputs()}


def onnxruntime_cpu(onnx: Path, card: dict, runs: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 2, 1
    sess = ort.InferenceSession(str(onnx), opts, providers=["CPUExecutionProvider"])
    feeds = _feeds(sess, card)
    return _median_ms(lambda: sess.run(None, feeds), runs)


def onnxruntime_cuda(onnx: Path, card: dict, runs: int, label: str) -> dict[str, Any]:
    """Plain run, I/O binding, CUDA graph (each a fresh session)."""
    import onnxruntime as ort

    out: dict[str, Any] = {}
    sess = ort.InferenceSession(str(onnx), providers=["CUDAExecutionProvider"])
    feeds = _feeds(sess, card)
    out[f"ORT CUDA {label}"] = _median_ms(lambda: sess.run(None, feeds), runs)

    def bound(s: Any) -> Callable[[], Any]:
        io = s.io_binding()
        for name, x in feeds.items():
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        for o in s.get_outputs():
            io.bind_output(o.name, "cuda")
        return lambda: s.run_with_iobinding(io)

    out[f"ORT CUDA {label} I/O binding"] = _median_ms(bound(sess), runs)
    try:
        g = ort.InferenceSession(str(onnx), providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
        io = g.io_binding()
        for name, x in feeds.items():
            io.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        for o in g.get_outputs():  # CUDA graphs need outputs at fixed addresses
            shape = [d if isinstance(d, int) else 1 for d in o.shape]
            dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
                     "tensor(int64)": np.int64}[o.type]  # fmt: skip
            io.bind_ortvalue_output(o.name, ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, "cuda", 0))
        out[f"ORT CUDA {label} CUDA graph"] = _median_ms(lambda: g.run_with_iobinding(io), runs)
    except Exception as exc:  # a graph with CPU-only nodes cannot be captured
        out[f"ORT CUDA {label} CUDA graph"] = f"not supported: {type(exc).__name__}: {str(exc)[:160]}"
    return out


def onnxruntime_tensorrt(onnx: Path, card: dict, runs: int, cache: Path) -> dict[str, Any]:
    import onnxruntime as ort

    out: dict[str, Any] = {}
    for fp16 in (False, True):
        label = f"ORT TensorRT {'fp16' if fp16 else 'fp32'}"
        try:
            opts = {
                "trt_fp16_enable": str(fp16),
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": str(cache),
            }
            sess = ort.InferenceSession(
                str(onnx), providers=[("TensorrtExecutionProvider", opts), "CUDAExecutionProvider"]
            )
            feeds = _feeds(sess, card)
            sess.run(None, feeds)  # the engine build, not timed
            out[label] = _median_ms(lambda: sess.run(None, feeds), runs)
        except Exception as exc:
            out[label] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
    return out


def fp16_graph(onnx: Path, tmp: Path) -> Path | str:
    """An fp16 copy of the graph (inputs and outputs kept fp32), or why there is none."""
    try:
        import onnx as onnx_lib
        from onnxconverter_common import float16
    except ImportError:
        return "onnxconverter-common is not installed (carry its wheel: --wheels)"
    model = float16.convert_float_to_float16(onnx_lib.load(str(onnx)), keep_io_types=True)
    out = tmp / (onnx.stem + ".fp16.onnx")
    onnx_lib.save(model, str(out))
    return out


def torch_module(onnx: Path, card: dict) -> Any:
    """The network of a shipped model as a torch module with the ONNX file's weights (network
    outputs before the graph's decoding)."""
    from perception_models.onnx_weights import load_onnx_weights

    task, inp = card["task"], card["input"]
    size = (inp["height"], inp["width"])
    if task == "detection":
        from perception_models.models.detection import Detector, DetectorConfig

        net = Detector(DetectorConfig(num_classes=len(card["classes"]), input_size=size))
    elif task == "segmentation":
        from perception_models.models.segmentation import Segmenter, SegmenterConfig

        net = Segmenter(SegmenterConfig(num_classes=len(card["classes"]), input_size=size))
    elif task == "depth":
        from perception_models.models.depth import DepthConfig, DepthNet

        net = DepthNet(DepthConfig(input_size=size))
    elif task == "matching":
        from perception_models.models.matching import KeypointNet, MatcherConfig

        net = KeypointNet(MatcherConfig(input_size=size))
    elif task == "multitask":
        from perception_models.models.multitask import MultiTaskConfig, MultiTaskNet

        t = card["tasks"]
        net = MultiTaskNet(
            MultiTaskConfig(
                input_size=size,
                detection_classes=t["detection"]["classes"],
                segmentation_classes=t["segmentation"]["classes"],
                attention=bool(card.get("training", {}).get("attention", True)),
            )
        )
    else:
        raise ValueError(f"no torch module for a {task} model")
    load_onnx_weights(net, onnx, strict=False)
    return net.eval()


def torch_rows(onnx: Path, card: dict, runs: int, device: str) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {}
    net = torch_module(onnx, card).to(device)
    inp = card["input"]
    x = torch.rand(1, 3, inp["height"], inp["width"], device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with torch.inference_mode():
        out["torch fp32"] = _median_ms(lambda: net(x), runs, sync=sync)
        if not device.startswith("cuda"):
            return out
        half, xh = net.half(), x.half()
        out["torch fp16"] = _median_ms(lambda: half(xh), runs, sync=sync)
        net.float()
        static = x.clone()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                net(static)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            net(static)
        out["torch fp32 CUDA graph"] = _median_ms(graph.replay, runs, sync=sync)
    return out


def install_wheels(folder: Path) -> None:
    wheels = sorted(str(p) for p in folder.glob("*.whl"))
    if wheels:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", *wheels], check=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--wheels", help="a folder of wheels to install first (onnxruntime-gpu, onnxconverter-common)")
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--torch-device", default="cuda", help="cuda, or cpu (a check of this script without a GPU)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.wheels:
        install_wheels(Path(args.wheels))
    import onnxruntime as ort

    have = ort.get_available_providers()
    print(f"onnxruntime {ort.__version__}, providers {have}")
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for onnx in sorted(Path(args.models).glob("*.onnx")):
            card = yaml.safe_load(onnx.with_name(onnx.stem + ".card.yaml").read_text())
            row: dict[str, Any] = {"ORT CPU 2 threads": onnxruntime_cpu(onnx, card, args.runs)}
            if "CUDAExecutionProvider" in have:
                row.update(onnxruntime_cuda(onnx, card, args.runs, "fp32"))
                half = fp16_graph(onnx, Path(tmp))
                row.update(onnxruntime_cuda(half, card, args.runs, "fp16") if isinstance(half, Path) else
                           {"ORT CUDA fp16": half})  # fmt: skip
            else:
                row["ORT CUDA"] = f"this ONNX Runtime has no CUDA provider ({have}): carry onnxruntime-gpu (--wheels)"
            if "TensorrtExecutionProvider" in have:
                row.update(onnxruntime_tensorrt(onnx, card, args.runs, Path(tmp)))
            else:
                row["ORT TensorRT"] = "no TensorRT provider in this ONNX Runtime"
            try:
                import torch

                if args.torch_device.startswith("cuda") and not torch.cuda.is_available():
                    row["torch"] = "torch has no CUDA here"
                elif card["task"] == "pose":
                    row["torch"] = "two-frame network: not rebuilt here"
                else:
                    row.update(torch_rows(onnx, card, args.runs, args.torch_device))
            except Exception as exc:
                row["torch"] = f"failed: {type(exc).__name__}: {str(exc)[:160]}"
            results[onnx.stem] = row
    for name, row in results.items():
        print(f"\n{name}")
        for k, v in row.items():
            print(f"  {k:34s} {v:8.2f} ms" if isinstance(v, float) else f"  {k:34s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
