"""Approximate-time synchronizer (message_filters is not on PyPI).

Same contract as ``message_filters.ApproximateTimeSynchronizer`` in ROS 2 Python: one queue per
input; when a message arrives, the newest combination whose stamps all lie within ``slop``
seconds of each other is emitted, and everything at or before the emitted messages is dropped
from the queues. No ROS imports: stamps are floats (seconds), so it is tested on its own;
:func:`stamp_to_sec` reads a ``builtin_interfaces/Time``.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Sequence


def stamp_to_sec(stamp: Any) -> float:
    return float(stamp.sec) + float(stamp.nanosec) * 1e-9


def stamp_to_ns(stamp: Any) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class ApproximateTimeSynchronizer:
    """Calls ``callback(*msgs)`` with one message per input whose stamps are within ``slop``.

    ``get_stamp(msg) -> float seconds`` defaults to ``msg.header.stamp``. ``queue_size`` bounds
    each queue (oldest dropped first). Thread-safe: ``add`` may be called from any callback.
    """

    def __init__(
        self,
        n_inputs: int,
        callback: Callable[..., None],
        *,
        queue_size: int = 10,
        slop: float = 0.05,
        get_stamp: Callable[[Any], float] | None = None,
    ) -> None:
        if n_inputs < 2:
            raise ValueError("ApproximateTimeSynchronizer needs at least 2 inputs")
        if slop < 0:
            raise ValueError(f"slop must be >= 0 seconds, got {slop}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.callback = callback
        self.slop = float(slop)
        self.queue_size = int(queue_size)
        self.get_stamp = get_stamp or (lambda m: stamp_to_sec(m.header.stamp))
        self._queues: list[list[tuple[float, Any]]] = [[] for _ in range(n_inputs)]
        self._lock = threading.Lock()
        self.emitted = 0

    def add(self, index: int, msg: Any) -> None:
        stamp = self.get_stamp(msg)
        emit: Sequence[Any] | None = None
        with self._lock:
            q = self._queues[index]
            q.append((stamp, msg))
            q.sort(key=lambda e: e[0])
            del q[: max(0, len(q) - self.queue_size)]
            emit = self._match(index, stamp, msg)
        if emit is not None:
            self.emitted += 1
            self.callback(*emit)

    def _match(self, index: int, stamp: float, msg: Any) -> list[Any] | None:
        # Candidates from every other queue within slop of the new message; choose the
        # combination with the smallest spread (ties: the newest).
        others = []
        for i, q in enumerate(self._queues):
            if i == index:
                others.append([(stamp, msg)])
                continue
            near = [(t, m) for t, m in q if abs(t - stamp) <= self.slop]
            if not near:
                return None
            others.append(near)
        best: tuple[float, float, tuple[tuple[float, Any], ...]] | None = None
        for combo in itertools.product(*others):
            ts = [t for t, _ in combo]
            spread = max(ts) - min(ts)
            if spread > self.slop:
                continue
            key = (spread, -max(ts))
            if best is None or key < best[:2]:
                best = (key[0], key[1], combo)
        if best is None:
            return None
        chosen = []
        for i, (t, m) in enumerate(best[2]):
            chosen.append(m)
            # Drop this and everything older from the queue.
            self._queues[i] = [e for e in self._queues[i] if e[0] > t]
        return chosen
