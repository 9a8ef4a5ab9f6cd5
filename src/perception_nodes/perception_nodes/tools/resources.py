"""CPU and memory of each node process while a replay runs (``perception eval``'s resource part).

A thread samples every process (and its children) with psutil at a fixed period: CPU as percent
of one core over each period (100 = one core busy, as ``top`` shows it), resident memory (RSS).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np


class ResourceMonitor:
    """``with ResourceMonitor({"detector": pid, ...}) as mon: ...``; then ``mon.summary()``."""

    def __init__(self, pids: dict[str, int], period: float = 0.25) -> None:
        import psutil

        self.period = period
        self._procs: dict[str, Any] = {}
        for name, pid in pids.items():
            try:
                self._procs[name] = psutil.Process(pid)
            except psutil.NoSuchProcess:  # exited before sampling began: no row, rather than zeros
                continue
        self.samples: dict[str, list[tuple[float, float, float]]] = {n: [] for n in self._procs}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="resource-monitor")
        self._t0 = 0.0

    def _cpu_rss(self, proc: Any) -> tuple[float, float]:
        """Total CPU seconds and RSS bytes of a process and its children."""
        import psutil

        cpu, rss = 0.0, 0.0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                t = p.cpu_times()
                cpu += t.user + t.system
                rss += p.memory_info().rss
            except psutil.NoSuchProcess:
                continue
        return cpu, rss

    def _run(self) -> None:
        import psutil

        last: dict[str, tuple[float, float]] = {}
        while True:
            now = time.monotonic()
            for name, proc in self._procs.items():
                try:
                    cpu, rss = self._cpu_rss(proc)
                except psutil.NoSuchProcess:
                    continue
                if name in last:
                    t_prev, cpu_prev = last[name]
                    self.samples[name].append(
                        (now - self._t0, 100.0 * (cpu - cpu_prev) / max(now - t_prev, 1e-6), rss / 2**20)
                    )
                last[name] = (now, cpu)
            if self._stop.wait(self.period):
                return

    def __enter__(self) -> "ResourceMonitor":
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, dict[str, Any]]:
        """Per process: mean / p95 / peak CPU % of one core, mean / peak RSS MiB, and the timeline."""
        out = {}
        for name, rows in self.samples.items():
            if not rows:
                continue
            a = np.array(rows)
            out[name] = {
                "cpu_percent_mean": float(a[:, 1].mean()),
                "cpu_percent_p95": float(np.percentile(a[:, 1], 95)),
                "cpu_percent_peak": float(a[:, 1].max()),
                "rss_mib_mean": float(a[:, 2].mean()),
                "rss_mib_peak": float(a[:, 2].max()),
                "samples": len(rows),
                "period_s": self.period,
                "timeline": {
                    "t_s": a[:, 0].round(3).tolist(),
                    "cpu_percent": a[:, 1].round(1).tolist(),
                    "rss_mib": a[:, 2].round(1).tolist(),
                },
            }
        return out
