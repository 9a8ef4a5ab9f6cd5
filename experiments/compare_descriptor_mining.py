"""Hard vs spatial negative mining for the descriptors, same data, same budget.

    python experiments/compare_descriptor_mining.py --photos ../shared/data/camvid/train \\
        --data synth/driving_1000 ... \\
        --val-photos ../shared/data/camvid/val --val synth/driving_9000 --epochs 2 [--loss triplet]

Trains the keypoint network twice (same seed, pairs, schedule, steps), once per miner, and prints
the validation MMA@3, homography accuracy@3 and pose AUC@10 after every epoch.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from perception_models.train.matching_task import MatchTrainConfig, train_matching


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", nargs="*", default=[])
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--val-photos", nargs="*", default=[])
    ap.add_argument("--val", nargs="*", default=[])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-steps-per-epoch", type=int, default=0)
    ap.add_argument("--loss", choices=["triplet", "contrastive"], default="triplet")
    ap.add_argument("--out", default="runs/mining_comparison")
    args = ap.parse_args()
    rows = {}
    for mining in ("hard", "spatial"):
        out = Path(args.out) / mining
        cfg = MatchTrainConfig(
            photos=args.photos,
            data=args.data,
            val_photos=args.val_photos,
            val=args.val,
            out=str(out),
            epochs=args.epochs,
            descriptor_loss=args.loss,
            mining=mining,
            seed=0,
            max_steps_per_epoch=args.max_steps_per_epoch,
        )
        t0 = time.monotonic()
        train_matching(cfg, progress=False)
        vals = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines() if '"val"' in line]
        rows[mining] = (vals, time.monotonic() - t0)
    print(f"benchmark: descriptor negative mining ({args.loss} loss), {args.epochs} epochs, same seed/pairs/schedule")
    print(f"  {'mining':8s} {'epoch':>5s} {'MMA@3':>7s} {'H acc@3':>8s} {'pose AUC@10':>12s}")
    for mining, (vals, secs) in rows.items():
        for v in vals:
            print(
                f"  {mining:8s} {v['epoch'] + 1:5d} {v.get('homography_mma', {}).get('3', float('nan')):7.3f} "
                f"{v.get('homography_accuracy', {}).get('3', float('nan')):8.3f} "
                f"{v.get('pose_auc', {}).get('10', float('nan')):12.3f}"
            )
        print(f"  {mining:8s} training time {secs:.0f} s")


if __name__ == "__main__":
    main()
