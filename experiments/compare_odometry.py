"""Monocular odometry side by side on held-out synthetic driving sequences (ground truth from the
renderer): our estimators — PnP on the predicted depth with ORB or with the learned keypoints, the
hybrid (essential matrix, PnP where it fails), the pose network — and the classical OpenCV baseline
(ORB + essential matrix + recoverPose, translation length from the same predicted depth), all
through the node's own classes, plus the depth errors of the model on the same frames.

    perception-models data synth --preset driving --sequences 2 --frames 300 --seed 9100 --out data/vo300 --no-flow
    python experiments/compare_odometry.py --data data/vo300/*

Targets (issue 5): ATE RMSE <= 2 % of the path length (SE(3) alignment: metric, no scale fitted)
and lower than the baseline's; depth AbsRel <= 0.12, delta < 1.25 >= 0.85.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    from perception_models.evaluate import evaluate_depth

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--depth", default=str(ROOT / "models" / "depth.onnx"))
    ap.add_argument("--pose", default=str(ROOT / "models" / "pose.onnx"))
    ap.add_argument("--matcher", default=str(ROOT / "models" / "matching.onnx"), help="keypoint model for pnp_learned")
    ap.add_argument("--limit", type=int, default=0, help="frames per sequence (0 = all)")
    ap.add_argument(
        "--scale-source",
        choices=["model", "camera_height"],
        default="model",
        help="camera_height: the node's ground-plane scale with the camera's known mounting height",
    )
    args = ap.parse_args()
    t0 = time.monotonic()
    matcher = args.matcher if Path(args.matcher).is_file() else None
    r = evaluate_depth(
        args.depth,
        args.data,
        args.pose,
        ("pnp", "pnp_learned", "hybrid", "posenet", "essential"),
        args.limit,
        matcher_model=matcher,
        scale_source=args.scale_source,
    )
    d = r["depth"]
    print(
        f"benchmark: odometry on {len(args.data)} sequences ({d['images']} frames), depth model {args.depth}, "
        f"scale source {args.scale_source}, {time.monotonic() - t0:.0f} s"
    )
    a, m = d["absolute"], d["median_scaled"]
    print(
        f"  depth (cap {d['depth_range'][1]:.0f} m)  absolute: AbsRel {a['abs_rel']:.3f} SqRel "
        f"{a['sq_rel']:.3f} RMSE {a['rmse']:.2f} "
        f"RMSElog {a['rmse_log']:.3f} d1 {a['a1']:.3f} d2 {a['a2']:.3f} d3 {a['a3']:.3f}"
    )
    print(
        f"  depth median-scaled: AbsRel {m['abs_rel']:.3f} d1 {m['a1']:.3f} (median scale {d['median_scale']:.3f}, "
        f"spread {d['median_scale_std']:.3f})"
    )
    print(
        f"  {'estimator':10s} {'ATE SE3 m':>9s} {'% path':>7s} {'ATE Sim3 m':>10s} {'% path':>7s} {'scale':>6s} "
        f"{'RPE m/frame':>11s} {'RPE deg':>8s} {'skipped':>7s}"
    )
    for name, o in r["odometry"].items():
        print(
            f"  {name:10s} {o['ate_se3_m']:9.3f} {o['ate_se3_percent']:7.2f} {o['ate_sim3_m']:10.3f} "
            f"{o['ate_sim3_percent']:7.2f} "
            f"{o['sim3_scale']:6.3f} {o['rpe_se3_trans_m']:11.3f} {o['rpe_rot_deg']:8.3f} {o['skipped_frames']:7d}"
        )
    print("  per sequence (ATE SE3 % / Sim3 % / Sim3 scale): a mean scale near 1 can hide opposite errors")
    for name, o in r["odometry"].items():
        rows = ", ".join(
            f"{q['sequence']} {q['ate_se3_percent']:.2f} / {q['ate_sim3_percent']:.2f} / {q['sim3_scale']:.2f}"
            for q in o["sequences"]
            if "failed" not in q
        )
        print(f"    {name:11s} {rows}")
    odo = r["odometry"]
    best = min((n for n in odo if n != "essential"), key=lambda n: odo[n]["ate_se3_percent"])
    checks = [
        (f"ATE <= 2 % of path ({best}: {odo[best]['ate_se3_percent']:.2f} %)", odo[best]["ate_se3_percent"] <= 2.0),
        (
            f"ATE lower than the OpenCV baseline ({odo['essential']['ate_se3_percent']:.2f} %)",
            odo[best]["ate_se3_percent"] < odo["essential"]["ate_se3_percent"],
        ),
        (f"depth AbsRel <= 0.12 ({a['abs_rel']:.3f})", a["abs_rel"] <= 0.12),
        (f"depth d1 >= 0.85 ({a['a1']:.3f})", a["a1"] >= 0.85),
    ]
    for text, ok in checks:
        print(f"  {'OK  ' if ok else 'MISS'} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
