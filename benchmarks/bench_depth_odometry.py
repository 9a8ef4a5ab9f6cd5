"""Depth + odometry speed per frame on ONNX Runtime CPU (2 threads), 640x480, through the node's
own pipelines: depth inference (resize, normalise, upsample to 640x480), metric scale, then each
odometry estimator's update (pnp: ORB + PnP RANSAC; pnp_learned: the matching model's keypoints +
PnP RANSAC, its inference included; posenet: the pose network; essential: the OpenCV baseline;
hybrid: essential + PnP where it fails, the default; hybrid+ground: scale_source camera_height, the
depth's ground-plane scale and the hybrid's GroundScale, with the scene's camera mount). Frames are
a real synthetic driving sequence so feature matching does real work.
Target (issue 5): depth + pose + odometry update <= 70 ms median per frame."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import load_card
from perception_nodes.pipelines.depth import DepthPipeline, depth_to_points
from perception_nodes.pipelines.metric_scale import ScaleEstimator
from perception_nodes.pipelines.odometry import OdometryTracker, make_estimator
from perception_nodes.transforms import ground_normal_in_optical

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 70.0


def frames(n: int):
    from perception_models.data.synth import SynthConfig, SyntheticSequence

    seq = SyntheticSequence(SynthConfig(preset="driving", seed=901, frames=n))
    fr = list(seq.frames())
    T0 = fr[0].T_world_cam  # the camera's mounting: height above the ground and the ground's normal
    return [f.rgb for f in fr], seq.K, float(T0[2, 3]), ground_normal_in_optical(T0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--depth", default=str(ROOT / "models" / "depth.onnx"))
    ap.add_argument("--pose", default=str(ROOT / "models" / "pose.onnx"))
    ap.add_argument("--matcher", default=str(ROOT / "models" / "matching.onnx"), help="keypoint model (pnp_learned)")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    imgs, K, height, normal = frames(args.frames)
    depth_pipe = DepthPipeline(
        OnnxRuntimeBackend(Path(args.depth), threads=args.threads), load_card(args.depth, "depth")
    )
    pose_backend = OnnxRuntimeBackend(Path(args.pose), threads=args.threads)
    pose_card = load_card(args.pose, "pose")
    print(
        f"benchmark: depth + odometry, ONNX Runtime CPU {args.threads} threads, "
        f"{imgs[0].shape[1]}x{imgs[0].shape[0]} frames, "
        f"depth net {depth_pipe.card.input_height}x{depth_pipe.card.input_width}, {len(imgs)} frames (first 5 warm-up)"
    )
    names = ["pnp", "posenet", "essential", "hybrid", "hybrid+ground"]
    matcher = None
    if Path(args.matcher).is_file():
        from perception_nodes.pipelines.matching import MatchingPipeline

        matcher = MatchingPipeline(
            OnnxRuntimeBackend(Path(args.matcher), threads=args.threads), load_card(args.matcher, "matching")
        )
        names.insert(1, "pnp_learned")
    for name in names:
        ground = name == "hybrid+ground"
        est = make_estimator(
            "hybrid" if ground else name,
            pose=(pose_backend, pose_card),
            matcher=matcher,
            camera_height=height if ground else 0.0,
            ground_normal=normal if ground else None,
        )
        scale = ScaleEstimator("camera_height", height) if name == "hybrid+ground" else None
        tracker = OdometryTracker(T_odom_camera0=np.eye(4))
        t_depth, t_odom, t_cloud, t_total = [], [], [], []
        for i, rgb in enumerate(imgs):
            t0 = time.perf_counter()
            depth = depth_pipe.run(rgb, K=K).depth
            plane = None
            if scale is not None:
                s = scale.update_from_ground(depth, K)
                depth = depth * np.float32(s) if s is not None else depth
                plane = scale.ground_plane(s)
            t1 = time.perf_counter()
            m = est.estimate(rgb) if name == "posenet" else est.estimate(rgb, depth, K, ground_plane=plane)
            tracker.update(int(i * 1e8), m)
            t2 = time.perf_counter()
            depth_to_points(depth, K, 4, rgb)
            t3 = time.perf_counter()
            if i >= 5:
                t_depth.append(t1 - t0)
                t_odom.append(t2 - t1)
                t_cloud.append(t3 - t2)
                t_total.append(t2 - t0)
        med = 1e3 * float(np.median(t_total))
        print(
            f"  {name:13s}: depth {1e3 * np.median(t_depth):6.1f} ms + odometry update "
            f"{1e3 * np.median(t_odom):6.1f} ms "
            f"= median {med:6.1f} ms (p95 {1e3 * np.percentile(t_total, 95):6.1f} ms)   target <= {TARGET_MS:.0f} ms  "
            f"{'OK' if med <= TARGET_MS else 'MISS'}   [point cloud, decimation 4: {1e3 * np.median(t_cloud):.1f} ms]"
        )


if __name__ == "__main__":
    main()
