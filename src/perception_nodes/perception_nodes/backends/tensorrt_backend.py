"""Native TensorRT backend: engine built from ONNX at configure time and cached on disk.

- The engine cache key is ONNX sha256 + GPU name + TensorRT version + precision + input shapes
  (+ INT8 calibration hash); any change rebuilds and says which field changed
  (:mod:`.engine_cache`).
- FP16 and INT8 (implicit quantization with a calibration cache built from images or a bag;
  entropy or min-max calibrator: entropy is known to hurt YOLO-style heads).
- Builds show progress (TensorRT's IProgressMonitor -> tqdm) because Jetson builds take 10-20 min;
  ``perception build-engine`` does only this step.

Every TensorRT call here is type-checked against the TensorRT 10.13 stubs by mypy in
``make test``; the no-GPU path (cuda-python answering cudaErrorInsufficientDriver) runs in CI.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

import numpy as np

from . import cuda_runtime as cuda
from .base import Backend, BackendError, TensorSpec
from .engine_cache import PRECISIONS, EngineCache, EngineKey, sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


def require_tensorrt() -> str:
    """Return TensorRT's version, or raise BackendError saying how to get it."""
    try:
        import tensorrt as trt

        if not hasattr(trt, "Builder"):  # e.g. a folder of type stubs imported as a namespace
            raise ImportError(
                f"the 'tensorrt' found at {list(getattr(trt, '__path__', []))} is not TensorRT's Python package"
            )
        return str(trt.__version__)
    except ImportError as exc:
        raise BackendError(
            f"TensorRT is not installed ({exc}); on a Jetson it comes with JetPack, on a desktop "
            "from NVIDIA's TensorRT packages. Use backend:=onnxruntime meanwhile"
        ) from None


def tensorrt_available() -> tuple[bool, str]:
    """(True, 'TensorRT x on <gpu>') when an engine can be built and run here, else (False, why)."""
    try:
        version = require_tensorrt()
        gpu = cuda.probe_gpu()
    except BackendError as exc:
        return False, str(exc)
    return True, f"TensorRT {version} on {gpu}"


def onnx_input_specs(onnx_path: str | os.PathLike[str]) -> list[TensorSpec]:
    """Input names/shapes/dtypes of an ONNX file (via onnx; onnxruntime as a fallback)."""
    path = Path(onnx_path)
    if not path.is_file():
        raise BackendError(f"ONNX file '{path}' does not exist; check the model_path parameter")
    try:
        import onnx
        from onnx import helper

        model = onnx.load(str(path), load_external_data=False)
        init = {i.name for i in model.graph.initializer}
        specs = []
        for inp in model.graph.input:
            if inp.name in init:
                continue
            tt = inp.type.tensor_type
            dims = tuple(d.dim_value if d.dim_value > 0 else -1 for d in tt.shape.dim)
            specs.append(TensorSpec(inp.name, dims, np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type))))
        return specs
    except ImportError:
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path).inputs
    except Exception as exc:
        raise BackendError(f"'{path}' is not a readable ONNX model: {exc}") from None


def resolve_input_shapes(
    specs: list[TensorSpec], overrides: dict[str, tuple[int, ...]] | None
) -> dict[str, tuple[int, ...]]:
    """Static shape per input: the ONNX shape, with ``overrides`` for dynamic dims."""
    overrides = dict(overrides or {})
    unknown = set(overrides) - {s.name for s in specs}
    if unknown:
        raise BackendError(f"input_shapes names {sorted(unknown)}; the model's inputs are {[s.name for s in specs]}")
    shapes = {}
    for s in specs:
        shape = tuple(overrides.get(s.name, s.shape))
        if (
            len(shape) != len(s.shape)
            or any(d <= 0 for d in shape)
            or any(m > 0 and m != d for m, d in zip(s.shape, shape))
        ):
            raise BackendError(
                f"Input '{s.name}' has ONNX shape {s.shape}; give a static shape of the same rank "
                f"that keeps the fixed dims (input_shapes), got {shape}"
            )
        shapes[s.name] = shape
    return shapes


def compute_engine_key(
    onnx_path: Path,
    gpu_name: str,
    tensorrt_version: str,
    precision: str,
    input_shapes: dict[str, tuple[int, ...]],
    calibration_cache: Path | None = None,
) -> EngineKey:
    """The cache key of the engine for this model on this GPU (shared by the backend and the
    container entrypoint, which checks the cache before starting nodes)."""
    calib = calibration_cache
    return EngineKey(
        onnx_sha256=sha256_file(onnx_path),
        gpu_name=gpu_name,
        tensorrt_version=tensorrt_version,
        precision=precision,
        input_shapes=input_shapes,
        calibration_sha256=sha256_file(calib) if precision == "int8" and calib and calib.is_file() else "",
    )


def _make_logger() -> "trt.ILogger":
    """Routes TensorRT's log into Python logging."""
    import tensorrt as trt

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: "trt.ILogger.Severity", msg: str) -> None:
            level = {
                trt.ILogger.INTERNAL_ERROR: logging.CRITICAL,
                trt.ILogger.ERROR: logging.ERROR,
                trt.ILogger.WARNING: logging.WARNING,
                trt.ILogger.INFO: logging.DEBUG,
            }.get(severity, logging.DEBUG)
            log.log(level, "TensorRT: %s", msg)

    return Logger()


def _make_progress_monitor() -> "trt.IProgressMonitor":
    """TensorRT build phases as tqdm bars (stderr), one per phase."""
    import tensorrt as trt
    from tqdm import tqdm

    class TqdmProgressMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._bars: dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: str, num_steps: int) -> None:
            depth = 0
            p: str | None = parent_phase
            while p and p in self._bars:
                depth += 1
                p = getattr(self._bars[p], "parent", None)
            bar = tqdm(
                total=num_steps, desc=("  " * depth) + phase_name, leave=depth == 0, position=depth, dynamic_ncols=True
            )
            bar.parent = parent_phase
            self._bars[phase_name] = bar

        def step_complete(self, phase_name: str, step: int) -> bool:
            bar = self._bars.get(phase_name)
            if bar is not None:
                bar.n = step + 1
                bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            bar = self._bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return TqdmProgressMonitor()


def _make_calibrator(
    algorithm: str, batches: Iterable[dict[str, np.ndarray]], cache_file: Path, input_shapes: dict[str, tuple[int, ...]]
) -> "trt.IInt8Calibrator":
    """An INT8 calibrator fed by preprocessed batches (dicts of NCHW float32 arrays)."""
    import tensorrt as trt

    if algorithm not in ("entropy", "minmax"):
        raise BackendError(f"calibration algorithm '{algorithm}' must be entropy or minmax")

    class _Feeder:
        """The calibration data path shared by both calibrator kinds."""

        def __init__(self) -> None:
            self._iter: Iterator[dict[str, np.ndarray]] = iter(batches)
            self._buffers = {n: cuda.DeviceBuffer(int(np.prod(s)) * 4) for n, s in input_shapes.items()}
            self._stream = cuda.Stream()
            self.batches_used = 0

        def get_batch_size(self) -> int:
            return int(next(iter(input_shapes.values()))[0])

        def get_batch(self, names: list[str]) -> list[int]:
            try:
                batch = next(self._iter)
            except StopIteration:
                return []
            for n in names:
                self._buffers[n].upload(np.ascontiguousarray(batch[n], dtype=np.float32), self._stream.ptr)
            self._stream.synchronize()
            self.batches_used += 1
            return [self._buffers[n].ptr for n in names]

        # The stubs type the return as Buffer; TensorRT documents None for "no cache".
        def read_calibration_cache(self) -> bytes | None:
            if cache_file.is_file():
                log.info("INT8: reusing calibration cache %s", cache_file)
                return cache_file.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))
            log.info("INT8: wrote calibration cache %s (%d batches)", cache_file, self.batches_used)

    class EntropyCalibrator(_Feeder, trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            _Feeder.__init__(self)

    class MinMaxCalibrator(_Feeder, trt.IInt8MinMaxCalibrator):
        def __init__(self) -> None:
            trt.IInt8MinMaxCalibrator.__init__(self)
            _Feeder.__init__(self)

    if algorithm == "entropy":
        return EntropyCalibrator()
    return MinMaxCalibrator()


def build_serialized_engine(
    onnx_path: Path,
    input_shapes: dict[str, tuple[int, ...]],
    precision: str,
    *,
    workspace_mb: int = 1024,
    progress: bool = True,
    calibration_batches: Iterable[dict[str, np.ndarray]] | None = None,
    calibration_cache: Path | None = None,
    calibration_algorithm: str = "entropy",
) -> bytes:
    """Parse ONNX and build a serialized engine (minutes on a Jetson)."""
    require_tensorrt()
    import tensorrt as trt

    logger = _make_logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path.parent)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT could not parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if progress:
        config.progress_monitor = _make_progress_monitor()

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = trt.Dims(list(input_shapes[tensor.name]))
        profile.set_shape(tensor.name, dims, dims, dims)
    config.add_optimization_profile(profile)

    if precision == "fp16":
        if not builder.platform_has_fast_fp16:
            log.warning("this GPU has no fast FP16; building FP16 anyway (it may be slower than FP32)")
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calibration_cache is None:
            raise BackendError("precision int8 needs a calibration cache path (int8_calibration_cache)")
        if calibration_batches is None and not calibration_cache.is_file():
            raise BackendError(
                f"precision int8: no calibration cache at {calibration_cache} and no calibration "
                "images; run 'perception build-engine --precision int8 --calib-images DIR' "
                "(or --calib-bag BAG --calib-topic TOPIC) first"
            )
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot take fall back to FP16
        config.int8_calibrator = _make_calibrator(
            calibration_algorithm, calibration_batches or [], calibration_cache, input_shapes
        )
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from '{onnx_path}' (see the log above)")
    return bytes(memoryview(serialized))


class TensorRTBackend(Backend):
    """Runs a TensorRT engine built from ``onnx_path`` (and cached) for this GPU.

    ``log`` receives the one-line reason for each build/cache decision (the node logs it).
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | os.PathLike[str],
        *,
        cache_dir: str | os.PathLike[str],
        precision: str = "fp16",
        input_shapes: dict[str, tuple[int, ...]] | None = None,
        workspace_mb: int = 1024,
        progress: bool = True,
        calibration_batches: Iterable[dict[str, np.ndarray]] | None = None,
        calibration_cache: str | os.PathLike[str] | None = None,
        calibration_algorithm: str = "entropy",
        log_fn: Callable[[str], None] | None = None,
    ) -> None:
        self._log = log_fn or log.info
        if precision not in PRECISIONS:
            raise BackendError(f"precision '{precision}' must be one of {PRECISIONS}")
        onnx_path = Path(onnx_path)
        specs = onnx_input_specs(onnx_path)
        shapes = resolve_input_shapes(specs, input_shapes)
        trt_version = require_tensorrt()
        import tensorrt as trt

        gpu = cuda.probe_gpu()  # raises a clear BackendError without GPU/driver
        calib = Path(calibration_cache) if calibration_cache else None
        key = compute_engine_key(onnx_path, gpu, trt_version, precision, shapes, calib)
        cache = EngineCache(cache_dir)
        found = cache.lookup(onnx_path.stem, key)
        self._log(found.message)
        self.engine_path = found.engine_path
        runtime = trt.Runtime(_make_logger())
        engine = None
        if found.hit:
            engine = runtime.deserialize_cuda_engine(found.engine_path.read_bytes())
            if engine is None:
                self._log(f"cached engine {found.engine_path} failed to deserialize: rebuilding")
        if engine is None:
            t0 = time.monotonic()
            blob = build_serialized_engine(
                onnx_path,
                shapes,
                precision,
                workspace_mb=workspace_mb,
                progress=progress,
                calibration_batches=calibration_batches,
                calibration_cache=calib,
                calibration_algorithm=calibration_algorithm,
            )
            seconds = time.monotonic() - t0
            if precision == "int8" and calib and calib.is_file() and not key.calibration_sha256:
                # First calibration: key the engine by the cache it just wrote.
                key = EngineKey(**{**key.__dict__, "calibration_sha256": sha256_file(calib)})
            self.engine_path = cache.store(onnx_path.stem, key, blob, seconds)
            self._log(f"built engine {self.engine_path} in {seconds:.1f} s")
            engine = runtime.deserialize_cuda_engine(blob)
            if engine is None:
                raise BackendError(f"TensorRT could not deserialize the engine it just built ({self.engine_path})")
        self.key = key
        self._runtime = runtime
        self._engine: trt.ICudaEngine = engine
        context = engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        self._context: trt.IExecutionContext = context
        self._stream = cuda.Stream()
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        self._device: dict[str, cuda.DeviceBuffer] = {}
        self._host_out: dict[str, np.ndarray] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                shape = shapes[name]
                self._context.set_input_shape(name, list(shape))
                self._inputs.append(TensorSpec(name, tuple(shape), dtype))
            else:
                dims = self._context.get_tensor_shape(name)
                shape = tuple(int(dims[k]) for k in range(len(dims)))
                self._outputs.append(TensorSpec(name, shape, dtype))
                self._host_out[name] = np.empty(shape, dtype=dtype)
            buf = cuda.DeviceBuffer(int(np.prod(shape)) * dtype.itemsize)
            self._device[name] = buf
            if not self._context.set_tensor_address(name, buf.ptr):
                raise BackendError(f"TensorRT rejected the device address of tensor '{name}'")

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.check_feeds(feeds)
        stream = self._stream.ptr
        for spec in self._inputs:
            self._device[spec.name].upload(np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype), stream)
        if not self._context.execute_async_v3(stream):
            raise BackendError("TensorRT execute_async_v3 failed (see the log)")
        for name, host in self._host_out.items():
            self._device[name].download(host, stream)
        self._stream.synchronize()
        return {name: host.copy() for name, host in self._host_out.items()}

    def describe(self) -> str:
        return (
            f"tensorrt {self.key.tensorrt_version} {self.key.precision} on {self.key.gpu_name} "
            f"engine={self.engine_path.name}"
        )

    def close(self) -> None:
        for buf in self._device.values():
            buf.free()
        self._device.clear()
        self._stream.destroy()
