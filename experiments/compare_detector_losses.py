"""Focal loss vs online hard negative mining for the detector, same data, same budget.

    python experiments/compare_detector_losses.py --data data/synth/driving_0000 ... \\
        --val data/synth/driving_0900 data/synth/indoor_0950 --epochs 3

Trains the same network twice (same seed, data order, augmentation, schedule, steps), once with
each classification loss, and prints the validation mAP of each after every epoch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from perception_models.train.image_task import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--input-size", type=int, nargs=2, default=[288, 384])
    ap.add_argument("--out", default="runs/loss_comparison")
    args = ap.parse_args()
    rows = {}
    for loss in ("focal", "ohem"):
        out = Path(args.out) / loss
        cfg = TrainConfig(
            task="detection",
            data=args.data,
            val=args.val,
            out=str(out),
            epochs=args.epochs,
            batch_size=args.batch_size,
            input_size=tuple(args.input_size),
            loss=loss,
            seed=0,
        )
        t0 = time.monotonic()
        train(cfg, progress=False)
        vals = [json.loads(ln) for ln in (out / "log.jsonl").read_text().splitlines() if '"val"' in ln]
        rows[loss] = (vals, time.monotonic() - t0)
    print(
        f"benchmark: detector classification loss, {args.epochs} epochs, input {args.input_size}, same "
        "seed/data/schedule"
    )
    print(f"  {'loss':6s} " + " ".join(f"ep{v['epoch'] + 1:<2d} mAP/mAP50   " for v in rows["focal"][0]) + "  train s")
    for loss, (vals, secs) in rows.items():
        print(f"  {loss:6s} " + " ".join(f"{v['mAP']:.3f}/{v['mAP50']:.3f}     " for v in vals) + f"  {secs:.0f}")


if __name__ == "__main__":
    main()
