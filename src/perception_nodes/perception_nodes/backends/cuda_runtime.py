"""Thin, checked wrappers over the CUDA runtime API from cuda-python.

cuda-python installs everywhere; without a GPU and driver every call answers
``cudaErrorInsufficientDriver`` (or ``cudaErrorNoDevice``), which :func:`probe_gpu` turns into
a clear :class:`~.base.BackendError`. That path is exercised in CI.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import BackendError


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6

        return runtime
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python (JetPack 6 images)

            return cudart
        except ImportError:
            raise BackendError(
                "cuda-python is not installed; the TensorRT backend needs it "
                "(pip install cuda-python), or use backend:=onnxruntime"
            ) from None


def check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(err, *values)`` tuple, raising BackendError on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(err)
    if code != 0:
        name = getattr(err, "name", str(err))
        hint = ""
        if name in ("cudaErrorInsufficientDriver", "cudaErrorNoDevice"):
            hint = " (no NVIDIA GPU or driver on this machine: use backend:=onnxruntime)"
        raise BackendError(f"CUDA {what} failed: {name}{hint}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def probe_gpu(device: int = 0) -> str:
    """Return the GPU's name, or raise BackendError saying why there is none."""
    rt = _cudart()
    count = check(rt.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= device:
        raise BackendError(f"CUDA device {device} requested; {count} present")
    check(rt.cudaSetDevice(device), "cudaSetDevice")
    props = check(rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    return (name.decode() if isinstance(name, bytes) else str(name)).split("\x00")[0].strip()


class DeviceBuffer:
    """A cudaMalloc'ed block of ``nbytes``; ``ptr`` is what TensorRT's set_tensor_address takes."""

    def __init__(self, nbytes: int) -> None:
        self._rt = _cudart()
        self.nbytes = int(max(nbytes, 1))
        self.ptr = int(check(self._rt.cudaMalloc(self.nbytes), "cudaMalloc"))

    def upload(self, host: np.ndarray, stream: int) -> None:
        host = np.ascontiguousarray(host)
        if host.nbytes > self.nbytes:
            raise BackendError(f"upload of {host.nbytes} B into a {self.nbytes} B device buffer")
        check(
            self._rt.cudaMemcpyAsync(
                self.ptr, host.ctypes.data, host.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
            ),
            "cudaMemcpyAsync(H2D)",
        )

    def download(self, host: np.ndarray, stream: int) -> None:
        check(
            self._rt.cudaMemcpyAsync(
                host.ctypes.data, self.ptr, host.nbytes, self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
            ),
            "cudaMemcpyAsync(D2H)",
        )

    def free(self) -> None:
        if self.ptr:
            self._rt.cudaFree(self.ptr)
            self.ptr = 0


class Stream:
    def __init__(self) -> None:
        self._rt = _cudart()
        self.handle = check(self._rt.cudaStreamCreate(), "cudaStreamCreate")

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def synchronize(self) -> None:
        check(self._rt.cudaStreamSynchronize(self.handle), "cudaStreamSynchronize")

    def destroy(self) -> None:
        if self.handle is not None:
            self._rt.cudaStreamDestroy(self.handle)
            self.handle = None
