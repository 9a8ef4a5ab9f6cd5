"""Throughput of a stack on a bag, as ros2_benchmark measures it: realtime replays at chosen input
rates (the bag's frames re-timed), the highest rate at which every node drops fewer than
``max_drop_percent`` of the frames, and the latency at a fixed input rate (30 Hz by default).

A probe is a full realtime replay (``cli.replay``) at ``rate = probe_hz / bag_hz``: the search
first runs the fixed rate, then doubles (or halves) until it brackets the limit, then bisects.
Probes record only the per-frame outputs (detections, labels, depth, odometry, keypoints, matches),
so the nodes draw no pictures, as on a robot nobody watches; ``visuals=True`` records (and so
makes the nodes draw) everything, as when RViz shows it all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MIN_RATE_HZ = 0.25
MAX_RATE_HZ = 480.0


def frame_rate(bag: Path, frame_topic: str) -> float:
    """The bag's mean frame rate on ``frame_topic`` (from the frames' receive times)."""
    from ..bag_io import BagError, read_messages

    times = [t for _topic, _m, t, _raw in read_messages(bag, [frame_topic])]
    if len(times) < 2 or times[-1] <= times[0]:
        raise BagError(f"{bag}: need at least two '{frame_topic}' messages at different times to time a replay")
    return (len(times) - 1) / ((times[-1] - times[0]) * 1e-9)


def probe(
    bag: Path,
    profile: str,
    out: Path,
    rate_hz: float,
    bag_hz: float,
    frame_topic: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    visuals: bool = False,
) -> dict[str, Any]:
    from .replay import frame_publish_times, replay
    from .evaluation import latency

    summary = replay(
        bag,
        profile,
        out,
        "realtime",
        rate_hz / bag_hz,
        overrides,
        frame_topic,
        quiet=True,
        skip_missing_models=True,
        per_frame_only=not visuals,
    )
    drops = summary.get("drops", {})
    lat = latency(
        Path(summary["recording"]),
        frame_topic,
        [d["topic"] for d in drops.values() if d["topic"]],
        frame_published=frame_publish_times(summary),
    )
    return {
        "rate_hz": round(rate_hz, 2),
        "frames": summary.get("player", {}).get("frames"),
        "drops": drops,
        "latency_ms": {n: lat[d["topic"]]["median_ms"] for n, d in drops.items() if d["topic"] in lat},
        "latency_p95_ms": {n: lat[d["topic"]]["p95_ms"] for n, d in drops.items() if d["topic"] in lat},
        "output_fps": {n: lat[d["topic"]]["fps"] for n, d in drops.items() if d["topic"] in lat},
        "cpu_percent_mean": {n: r["cpu_percent_mean"] for n, r in summary.get("resources", {}).items()},
        "player_exit_code": summary["player_exit_code"],
    }


def worst_drop(p: dict[str, Any]) -> float:
    return max((d["percent"] for d in p["drops"].values()), default=100.0)


def throughput(
    bag: Path,
    profile: str,
    out: Path,
    fixed_hz: float = 30.0,
    max_drop_percent: float = 5.0,
    frame_topic: str = "/camera/image_raw",
    bisections: int = 3,
    overrides: dict[str, dict[str, Any]] | None = None,
    visuals: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    bag_hz = frame_rate(bag, frame_topic)
    probes: list[dict[str, Any]] = []

    def run(rate: float) -> bool:
        p = probe(bag, profile, out / f"{rate:.2f}hz", rate, bag_hz, frame_topic, overrides, visuals)
        probes.append(p)
        ok = worst_drop(p) < max_drop_percent
        log(
            f"  throughput probe {rate:6.2f} Hz: worst drop {worst_drop(p):5.1f} %, median latency "
            + ", ".join(f"{n} {v:.0f} ms" for n, v in p["latency_ms"].items())
            + (" ok" if ok else " too fast")
        )
        return ok

    at_fixed = run(fixed_hz)
    fixed = probes[-1]
    lo, hi = (fixed_hz, None) if at_fixed else (None, fixed_hz)
    while lo is None and hi > MIN_RATE_HZ:  # halve until the stack keeps up
        hi_next = hi / 2
        if run(hi_next):
            lo = hi_next
        else:
            hi = hi_next
    while hi is None and lo < MAX_RATE_HZ:  # double until it does not
        if run(lo * 2):
            lo *= 2
        else:
            hi = lo * 2
    for _ in range(bisections if lo is not None and hi is not None else 0):
        mid = (lo + hi) / 2
        if run(mid):
            lo = mid
        else:
            hi = mid
    over = [p for p in probes if hi is not None and abs(p["rate_hz"] - round(hi, 2)) < 1e-6]
    bottleneck = max(over[-1]["drops"], key=lambda n: over[-1]["drops"][n]["percent"]) if over else None
    return {
        "bag_rate_hz": bag_hz,
        "max_drop_percent": max_drop_percent,
        "visual_outputs": visuals,
        "max_rate_hz": lo if lo is not None else 0.0,
        "first_failing_rate_hz": hi,
        "bottleneck": bottleneck,
        "fixed_rate_hz": fixed_hz,
        "at_fixed_rate": fixed,
        "probes": probes,
    }
