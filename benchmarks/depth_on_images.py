"""Depth + odometry on a folder of real images without ground truth (a smoke test on real motion),
through the node's own pipelines. Prints per frame the depth range, the odometry estimator's
inliers / status and the position; writes a PNG with sample depth maps and the trajectory.

    python benchmarks/depth_on_images.py --images ../shared/data/tum_fr3_office/rgb \\
        --K 535.4 539.2 320.1 247.6 --max-gap 2.0 --out tum_depth_vo.png

Timestamps come from numeric file names (TUM style, seconds) or ``--fps``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from perception_nodes.image_conversion import list_images
from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import load_card
from perception_nodes.pipelines.depth import DepthPipeline, colorize_depth
from perception_nodes.pipelines.metric_scale import ScaleEstimator
from perception_nodes.pipelines.odometry import OdometryTracker, make_estimator

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", required=True)
    ap.add_argument("--K", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"), required=True)
    ap.add_argument("--depth", default=str(ROOT / "models" / "depth.onnx"))
    ap.add_argument("--pose", default=str(ROOT / "models" / "pose.onnx"))
    ap.add_argument("--estimator", choices=["pnp", "posenet", "essential"], default="pnp")
    ap.add_argument("--scale-source", choices=["model", "camera_height"], default="model")
    ap.add_argument("--camera-height", type=float, default=0.0)
    ap.add_argument("--max-gap", type=float, default=1.0)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--out", default="depth_vo.png")
    args = ap.parse_args()
    files = list_images(args.images)
    if len(files) < 2:
        print(f"{args.images}: need at least 2 images")
        return 2
    try:
        stamps = [int(round(float(p.stem) * 1e9)) for p in files]
    except ValueError:
        stamps = [int(round(i / args.fps * 1e9)) for i in range(len(files))]
    K = np.array([[args.K[0], 0, args.K[2]], [0, args.K[1], args.K[3]], [0, 0, 1]])
    pipe = DepthPipeline(OnnxRuntimeBackend(Path(args.depth), threads=2), load_card(args.depth, "depth"))
    scale = ScaleEstimator(args.scale_source, args.camera_height)
    pose = (
        (OnnxRuntimeBackend(Path(args.pose), threads=2), load_card(args.pose, "pose"))
        if args.estimator == "posenet"
        else None
    )
    est = make_estimator(args.estimator, pose=pose)
    tracker = OdometryTracker(max_gap_s=args.max_gap)
    shown = []
    print(
        f"{len(files)} frames from {args.images}; depth model {args.depth} (card scale_source {pipe.scale_source}), "
        f"estimator {args.estimator}, scale source {args.scale_source}"
    )
    print(f"{'frame':>5} {'dt s':>6} {'depth p5..p95 m':>17} {'inliers':>7}  {'position odom x y z (m)':>26}  status")
    prev = None
    for i, (path, stamp) in enumerate(zip(files, stamps)):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        depth = pipe.run(rgb, K=K).depth
        if args.scale_source == "camera_height":
            scale.update_from_ground(depth, K)
        depth = depth * np.float32(scale.scale or 1.0)
        if tracker.needs_reset(stamp):
            est.reset()
        m = est.estimate(rgb, scale.scale or 1.0) if args.estimator == "posenet" else est.estimate(rgb, depth, K)
        st = tracker.update(stamp, m)
        p = st.T_odom_camera[:3, 3]
        lo, hi = np.nanpercentile(depth, [5, 95])
        dt = (stamp - prev) * 1e-9 if prev is not None else 0.0
        prev = stamp
        print(
            f"{i:5d} {dt:6.2f} {lo:7.2f} .. {hi:6.2f} {m.inliers:7d}  {p[0]:8.3f} {p[1]:8.3f} {p[2]:8.3f}  "
            f"{'ok' if st.ok else st.status}"
        )
        if i % max(1, len(files) // 4) == 0 and len(shown) < 4:
            shown.append((rgb, depth))
    print(
        f"frames {st.frames}, skipped {st.skipped}, resets {st.resets}; path length "
        f"{sum(np.linalg.norm(np.diff(np.stack([T[:3, 3] for _s, T in st.path]), axis=0), axis=1)):.2f} m"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(shown) + 1, figsize=(4 * (len(shown) + 1), 6))
    for j, (rgb, depth) in enumerate(shown):
        axes[0, j].imshow(rgb)
        axes[1, j].imshow(colorize_depth(depth, 0.3, 10.0))
        axes[0, j].axis("off")
        axes[1, j].axis("off")
    xyz = np.stack([T[:3, 3] for _s, T in st.path])
    ax = axes[0, -1]
    ax.plot(xyz[:, 0], xyz[:, 1], marker="o")
    ax.set_title("trajectory, top view (odom x, y)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True)
    axes[1, -1].plot(xyz[:, 2], marker="o")
    axes[1, -1].set_title("height (odom z) per frame")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
