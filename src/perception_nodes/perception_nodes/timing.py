"""Per-stage timings and rates, kept in bounded windows (no ROS imports)."""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import numpy as np

STAGES = ("convert", "preprocess", "infer", "postprocess", "publish")


class RollingStats:
    """Median / p95 / p99 / mean over the last ``window`` samples (milliseconds)."""

    def __init__(self, window: int = 300) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def add(self, value_ms: float) -> None:
        self._values.append(float(value_ms))

    def __len__(self) -> int:
        return len(self._values)

    def summary(self) -> dict[str, float]:
        if not self._values:
            return {}
        v = np.fromiter(self._values, dtype=np.float64)
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return {
            "median": float(p50),
            "p95": float(p95),
            "p99": float(p99),
            "mean": float(v.mean()),
            "max": float(v.max()),
        }


class StageTimer:
    """Times the stages of one frame; ``with timer.stage('infer'): ...``.

    A node keeps one StageTimer; :meth:`start_frame` begins a frame and :meth:`end_frame`
    folds its stage times into the rolling statistics that diagnostics publish.
    """

    def __init__(self, window: int = 300) -> None:
        self.stats: dict[str, RollingStats] = {s: RollingStats(window) for s in STAGES}
        self.total = RollingStats(window)
        self._frame: dict[str, float] = {}
        self._t0 = 0.0
        self._lock = threading.Lock()  # stages of one frame may run in several threads (multitask_node)

    def start_frame(self) -> None:
        self._frame = {}
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            ms = (time.perf_counter() - t) * 1e3
            with self._lock:
                self._frame[name] = self._frame.get(name, 0.0) + ms

    def end_frame(self) -> float:
        """Record the frame; returns its total time in milliseconds."""
        total = (time.perf_counter() - self._t0) * 1e3
        for name, ms in self._frame.items():
            self.stats.setdefault(name, RollingStats()).add(ms)
        self.total.add(total)
        return total

    @property
    def last_frame(self) -> dict[str, float]:
        return dict(self._frame)


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
