"""The one small interface every inference backend implements (no ROS, no torch)."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any

import numpy as np


class BackendError(RuntimeError):
    """A model or engine that cannot be loaded, built or run; the text says what to do."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of a model input or output. Dynamic dims are -1."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def is_static(self) -> bool:
        return all(d > 0 for d in self.shape)


class Backend(abc.ABC):
    """Named inputs -> named outputs. ``infer`` takes and returns host numpy arrays."""

    name: str = "backend"

    @property
    @abc.abstractmethod
    def inputs(self) -> list[TensorSpec]: ...

    @property
    @abc.abstractmethod
    def outputs(self) -> list[TensorSpec]: ...

    @abc.abstractmethod
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def describe(self) -> str:
        """One line for logs and diagnostics."""
        return self.name

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        """Raise BackendError naming the input whose name, rank or static dims do not fit."""
        expected = {s.name: s for s in self.inputs}
        missing = set(expected) - set(feeds)
        extra = set(feeds) - set(expected)
        if missing or extra:
            raise BackendError(
                f"Model inputs are {sorted(expected)}; got {sorted(feeds)} "
                f"(missing {sorted(missing)}, unexpected {sorted(extra)})"
            )
        for name, arr in feeds.items():
            spec = expected[name]
            if arr.ndim != len(spec.shape) or any(d > 0 and d != a for d, a in zip(spec.shape, arr.shape)):
                raise BackendError(f"Input '{name}' has shape {tuple(arr.shape)}; the model expects {spec.shape}")

    def warmup(self, iterations: int = 3, shapes: dict[str, tuple[int, ...]] | None = None) -> float:
        """Run ``iterations`` inferences on zeros; returns the last in ms. Dynamic dims take their
        value from ``shapes`` (per input: the model card's input size), else 1."""
        shapes = shapes or {}

        def shape(s: Any) -> tuple[int, ...]:
            given = shapes.get(s.name)
            return tuple(d if d > 0 else (given[i] if given else 1) for i, d in enumerate(s.shape))

        feeds = {s.name: np.zeros(shape(s), dtype=s.dtype) for s in self.inputs}
        ms = 0.0
        for _ in range(max(1, iterations)):
            t = time.perf_counter()
            self.infer(feeds)
            ms = (time.perf_counter() - t) * 1e3
        return ms

    def close(self) -> None:
        """Release device memory and sessions."""
