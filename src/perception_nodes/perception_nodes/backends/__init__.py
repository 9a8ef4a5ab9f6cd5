"""Inference backends behind one small interface (:class:`Backend`).

``create_backend`` picks one from a node's parameters:

- ``onnxruntime``: ONNX Runtime; ``providers`` in order (cpu, cuda, tensorrt EPs when present).
- ``tensorrt``: native TensorRT with an on-disk engine cache (build at configure time).
- ``auto``: TensorRT when it and a GPU are present, else ONNX Runtime; the choice and the
  reason are logged and shown on diagnostics.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Sequence

import numpy as np

from .base import Backend, BackendError, TensorSpec
from .onnxruntime_backend import OnnxRuntimeBackend

__all__ = ["Backend", "BackendError", "TensorSpec", "OnnxRuntimeBackend", "create_backend"]

BACKENDS = ("auto", "onnxruntime", "tensorrt")


def create_backend(
    kind: str,
    model_path: str | os.PathLike[str],
    *,
    providers: Sequence[str] = ("cpu",),
    threads: int = 0,
    engine_cache_dir: str = "~/.cache/perception/engines",
    precision: str = "fp16",
    input_shapes: dict[str, tuple[int, ...]] | None = None,
    calibration_batches: Iterable[dict[str, np.ndarray]] | None = None,
    calibration_cache: str | None = None,
    calibration_algorithm: str = "entropy",
    progress: bool = False,
    log_fn: Callable[[str], None] | None = None,
) -> Backend:
    """Build the backend a node's parameters ask for; raises BackendError with the fix."""
    if kind not in BACKENDS:
        raise BackendError(f"backend '{kind}' must be one of {BACKENDS}")
    log_fn = log_fn or (lambda _m: None)
    if kind == "auto":
        from .tensorrt_backend import tensorrt_available

        ok, why = tensorrt_available()
        kind = "tensorrt" if ok else "onnxruntime"
        log_fn(f"backend auto -> {kind} ({why})")
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(
            model_path,
            cache_dir=os.path.expanduser(engine_cache_dir),
            precision=precision,
            input_shapes=input_shapes,
            calibration_batches=calibration_batches,
            calibration_cache=calibration_cache,
            calibration_algorithm=calibration_algorithm,
            progress=progress,
            log_fn=log_fn,
        )
    return OnnxRuntimeBackend(model_path, providers=providers, threads=threads)
