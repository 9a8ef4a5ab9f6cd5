"""Synthetic data generation speed. Target (issue 3): a 300-frame 640x480 sequence with all ground
truth in <= 60 s on the 2-core dev machine.

Measures, for a driving and an indoor sequence:
  generate  render + camera effects + boxes for every frame, and flow/occlusion to the next frame
            (everything the writers store), in memory, 2 render workers
  write     the same through `write_sequence` to a training set on disk (PNG, COCO, TUM, ...)
  write+bag the training set and the rosbag2 MCAP together
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.writers import write_sequence


def generate(cfg: SynthConfig, workers: int) -> tuple[float, int]:
    seq = SyntheticSequence(cfg)
    t0 = time.perf_counter()
    prev, boxes = None, 0
    for f in seq.frames(workers=workers):
        boxes += len(f.boxes)
        if prev is not None:
            seq.correspondence(prev, f)
        prev = f
    return time.perf_counter() - t0, boxes


def write(cfg: SynthConfig, workers: int, bag: bool) -> tuple[float, int]:
    out = Path(tempfile.mkdtemp(prefix="bench-synth-"))
    try:
        t0 = time.perf_counter()
        write_sequence(SyntheticSequence(cfg), out / "seq", bag=bag, workers=workers, progress=False)
        dt = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        return dt, size
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--skip-write", action="store_true")
    args = ap.parse_args()
    print(
        f"benchmark: synthetic sequences, {args.frames} frames 640x480, {args.workers} workers, {os.cpu_count()} cores"
    )
    for preset in ("driving", "indoor"):
        cfg = SynthConfig(preset=preset, seed=0, frames=args.frames)
        dt, boxes = generate(cfg, args.workers)
        ok = "OK" if dt <= 60 * args.frames / 300 else "MISS"
        print(
            f"  {preset:8s} generate (all ground truth, in memory): {dt:6.1f} s  "
            f"({1000 * dt / args.frames:.0f} ms/frame, {boxes} boxes)  target <= 60 s / 300 frames  {ok}"
        )
        if args.skip_write:
            continue
        dt, size = write(cfg, args.workers, bag=False)
        print(f"  {preset:8s} write training set:                  {dt:6.1f} s  ({size / 1e6:.0f} MB)")
        dt, size = write(cfg, args.workers, bag=True)
        print(f"  {preset:8s} write training set + MCAP bag:       {dt:6.1f} s  ({size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
