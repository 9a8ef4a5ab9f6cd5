"""Backends: ONNX Runtime on a model built here; TensorRT's cache keys, invalidation and no-GPU path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from perception_nodes.backends import BackendError, OnnxRuntimeBackend, create_backend
from perception_nodes.backends.engine_cache import EngineCache, EngineKey
from perception_nodes.backends.tensorrt_backend import (
    onnx_input_specs,
    resolve_input_shapes,
    tensorrt_available,
)
from perception_nodes.tools.demo_assets import DEMO_INPUT

ROOT = Path(__file__).resolve().parents[2]


def test_onnxruntime_runs_the_demo_model_and_matches_numpy(demo_model):
    be = OnnxRuntimeBackend(demo_model, threads=1)
    assert [(s.name, s.shape) for s in be.inputs] == [("image", DEMO_INPUT)]
    assert {s.name for s in be.outputs} == {"channel_means", "coarse"}
    x = np.random.default_rng(0).random(DEMO_INPUT, dtype=np.float32)
    out = be.infer({"image": x})
    # R, G, B filters are identity (|x| = x for x >= 0): channel means are the image's.
    np.testing.assert_allclose(out["channel_means"][0, :3], x[0].mean(axis=(1, 2)), rtol=1e-4)
    assert out["coarse"].shape == (1, 4, 30, 40)
    assert be.warmup(1) >= 0


def test_onnxruntime_errors_are_precise(tmp_path, demo_model):
    with pytest.raises(BackendError, match="does not exist"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(BackendError, match="cannot load"):
        OnnxRuntimeBackend(bad)
    be = OnnxRuntimeBackend(demo_model)
    with pytest.raises(BackendError, match=r"Input 'image' has shape \(1, 3, 10, 10\)"):
        be.infer({"image": np.zeros((1, 3, 10, 10), np.float32)})
    with pytest.raises(BackendError, match="missing"):
        be.check_feeds({})


def test_unavailable_providers_are_skipped_and_reported(demo_model):
    be = OnnxRuntimeBackend(demo_model, providers=["tensorrt", "cuda", "cpu"])
    assert be.session.get_providers()[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in be.session.get_providers():
        assert "CUDAExecutionProvider" in be.describe()


def key(**kw):
    base = dict(
        onnx_sha256="a" * 64,
        gpu_name="NVIDIA Orin",
        tensorrt_version="10.3.0",
        precision="fp16",
        input_shapes={"image": (1, 3, 240, 320)},
    )
    base.update(kw)
    return EngineKey(**base)


def test_engine_key_changes_with_every_field_and_is_stable():
    k = key()
    assert k.digest == key().digest
    variants = [
        key(onnx_sha256="b" * 64),
        key(gpu_name="RTX 4090"),
        key(tensorrt_version="10.7.0"),
        key(precision="int8"),
        key(input_shapes={"image": (1, 3, 480, 640)}),
        key(calibration_sha256="c" * 64),
    ]
    assert len({v.digest for v in variants} | {k.digest}) == len(variants) + 1
    assert EngineKey.from_json(json.loads(json.dumps(k.to_json()))) == k
    with pytest.raises(ValueError, match="precision"):
        key(precision="fp8")


def test_cache_hit_miss_and_reasons(tmp_path):
    cache = EngineCache(tmp_path)
    k = key()
    miss = cache.lookup("model", k)
    assert not miss.hit and "no cached engine" in miss.message
    path = cache.store("model", k, b"serialized-engine", 12.5)
    hit = cache.lookup("model", k)
    assert hit.hit and hit.engine_path == path and path.read_bytes() == b"serialized-engine"
    # Another TensorRT version: a miss that says why (the most common Jetson pain).
    upgraded = cache.lookup("model", key(tensorrt_version="10.7.0"))
    assert not upgraded.hit
    assert "engine was built with TensorRT 10.3.0; this is 10.7.0" in upgraded.message
    changed = cache.lookup("model", key(onnx_sha256="f" * 64, precision="int8"))
    assert "ONNX model changed" in changed.message and "precision is fp16; int8 requested" in changed.message


def test_corrupt_cached_engine_is_rebuilt(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.store("model", key(), b"good engine")
    path.write_bytes(b"truncated")
    res = cache.lookup("model", key())
    assert not res.hit and "corrupt" in res.message
    meta = path.with_suffix(".json")
    meta.write_text("{not json")
    assert "unreadable" in cache.lookup("model", key()).message


def test_input_shapes_from_onnx_and_overrides(demo_model, tmp_path):
    specs = onnx_input_specs(demo_model)
    assert resolve_input_shapes(specs, None) == {"image": DEMO_INPUT}
    with pytest.raises(BackendError, match="keeps the fixed dims"):
        resolve_input_shapes(specs, {"image": (1, 3, 480, 640)})
    with pytest.raises(BackendError, match="the model's inputs are"):
        resolve_input_shapes(specs, {"images": (1, 3, 240, 320)})
    with pytest.raises(BackendError, match="does not exist"):
        onnx_input_specs(tmp_path / "nope.onnx")


def test_no_gpu_path_is_a_clear_error_and_auto_falls_back(demo_model, tmp_path):
    """cuda-python is installed; without a driver it answers cudaErrorInsufficientDriver."""
    ok, why = tensorrt_available()
    if ok:  # on a GPU machine with TensorRT the real path runs instead (see benchmarks)
        pytest.skip(f"TensorRT and a GPU are present here: {why}")
    print(f"no-GPU path: {why}")
    assert "TensorRT is not installed" in why or "use backend:=onnxruntime" in why
    from perception_nodes.backends import cuda_runtime

    with pytest.raises(BackendError, match="CUDA cudaGetDeviceCount failed: cudaError"):
        cuda_runtime.probe_gpu()
    with pytest.raises(BackendError):
        create_backend("tensorrt", demo_model, engine_cache_dir=str(tmp_path))
    logs = []
    be = create_backend("auto", demo_model, log_fn=logs.append)
    assert isinstance(be, OnnxRuntimeBackend)
    assert logs and logs[0].startswith("backend auto -> onnxruntime (")


def test_mypy_checks_tensorrt_calls_against_the_stubs(tmp_path):
    """The stubs are really in use: a wrong TensorRT call is an error, the backend is clean."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n"
        "def f(network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> None:\n"
        "    builder = trt.Builder(trt.Logger())\n"
        "    builder.build_serialized_network(network)\n"
        "    config.set_flag('FP16')\n"
    )
    env = dict(os.environ, MYPYPATH=str(ROOT / ".venv" / "typings"))
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "mypy.ini"), "--no-incremental", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'Missing positional argument "config"' in r.stdout
    assert 'incompatible type "str"; expected "BuilderFlag"' in r.stdout
