"""Soak: the realtime task stack fed a moving camera for many minutes; RSS per node over time.

    python benchmarks/soak_realtime.py [--minutes 10] [--rate 5] [--profile synthetic_replay] [--out out/soak]

A synthetic driving sequence (perception_models' renderer, seed 901, 60 frames) is played forward
and backward at ``--rate`` Hz with stamps 1/rate apart, so the odometry keeps moving and every
node runs for the whole soak (input_policy realtime, as on a robot). Every 10 s it samples each
node's resident memory; it prints RSS at the start (after a 30 s warm-up), at 3, 6 and 9 minutes
and the least-squares slope after the warm-up, and writes them to OUT/soak.json. A node that
leaks shows as a slope well above 0; one that holds bounded state stays flat. Needs the shipped
models (models/) and perception_models (for the renderer); ~minutes + 1 of wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from perception_nodes.bag_io import read_messages, typestore
from perception_nodes.launcher import StackProcesses
from perception_nodes.profile import load_profile
from perception_nodes.qos import output_qos
from perception_nodes.workspace import workspace_root


def frames(cache: Path) -> list[tuple[bytes, bytes]]:
    """(image CDR, camera_info CDR) pairs of a 60-frame synthetic driving scene (made once)."""
    from perception_nodes.tools.cli import _synthetic_demo_bag

    bag = cache / "soak_bag"
    if not bag.exists():
        cache.mkdir(parents=True, exist_ok=True)
        _synthetic_demo_bag(bag, 60)
    images = [c for _t, _m, _ts, c in read_messages(bag, ["/camera/image_raw"])]
    infos = [c for _t, _m, _ts, c in read_messages(bag, ["/camera/camera_info"])]
    return list(zip(images, infos))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--profile", default="synthetic_replay")
    ap.add_argument("--out", default="out/soak")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds before the first (start) sample")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = typestore()
    pairs = frames(workspace_root() / "cache" / "soak")
    pairs = pairs + pairs[-2:0:-1]  # forward then back: the camera keeps moving, no jump
    profile = load_profile(args.profile)
    for n in profile.nodes:
        n.parameters["input_policy"] = "realtime"
    rclpy.init()
    node = Node("soak_camera")
    from nav_msgs.msg import Odometry

    odom: list[tuple[float, float, float]] = []
    node.create_subscription(
        Odometry,
        "/odometry/odometry",
        lambda m: odom.append((m.pose.pose.position.x, m.pose.pose.position.y, m.pose.pose.position.z)),
        output_qos(10),
    )
    img_pub = node.create_publisher(Image, "/camera/image_raw", output_qos(5))
    info_pub = node.create_publisher(CameraInfo, "/camera/camera_info", output_qos(5))
    samples: dict[str, list[tuple[float, float]]] = {n.name: [] for n in profile.nodes}
    period = 1.0 / args.rate
    stamp_ns = 1_700_000_000_000_000_000
    with StackProcesses(profile, out / "logs") as stack:
        procs = {name: psutil.Process(p.pid) for name, p in stack.procs.items()}
        t0 = time.monotonic()
        next_sample, k, sent = t0 + args.warmup, 0, 0
        end = t0 + args.warmup + args.minutes * 60.0
        while time.monotonic() < end:
            img_cdr, info_cdr = pairs[k % len(pairs)]
            img = store.deserialize_cdr(img_cdr, "sensor_msgs/msg/Image")
            info = store.deserialize_cdr(info_cdr, "sensor_msgs/msg/CameraInfo")
            msg, cam = Image(), CameraInfo()
            msg.height, msg.width, msg.encoding, msg.step = img.height, img.width, img.encoding, img.step
            msg.data = np.asarray(img.data).tobytes()
            cam.height, cam.width, cam.k, cam.d, cam.p, cam.r = (
                info.height,
                info.width,
                info.k.tolist(),
                info.d.tolist(),
                info.p.tolist(),
                info.r.tolist(),
            )
            cam.distortion_model = info.distortion_model
            for m in (msg, cam):
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                m.header.frame_id = "camera_optical_frame"
            info_pub.publish(cam)
            img_pub.publish(msg)
            sent += 1
            k += 1
            stamp_ns += int(period * 1e9)
            now = time.monotonic()
            if now >= next_sample:
                for name, p in procs.items():
                    try:
                        samples[name].append(((now - t0 - args.warmup) / 60.0, p.memory_info().rss / 2**20))
                    except psutil.Error:
                        samples[name].append(((now - t0 - args.warmup) / 60.0, float("nan")))
                next_sample += 10.0
            rclpy.spin_once(node, timeout_sec=0.0)
            died = [n for n, alive in stack.alive().items() if not alive]
            if died:
                print(f"nodes died: {died}")
                break
            time.sleep(max(0.0, period - (time.monotonic() - now)))
        alive = stack.alive()
    node.destroy_node()
    rclpy.shutdown()

    def at(series: list[tuple[float, float]], minute: float) -> float:
        return min(series, key=lambda s: abs(s[0] - minute))[1] if series else float("nan")

    xyz = np.array(odom) if odom else np.zeros((0, 3))
    travelled = float(np.linalg.norm(np.diff(xyz, axis=0), axis=1).sum()) if len(xyz) > 1 else 0.0
    report = {
        "minutes": args.minutes,
        "rate_hz": args.rate,
        "frames_sent": sent,
        "profile": args.profile,
        "alive_at_end": alive,
        "odometry_messages": len(odom),
        "odometry_path_m": travelled,
        "nodes": {},
    }
    print(
        f"soak: {sent} frames at {args.rate:g} Hz over {args.minutes:g} min (+{args.warmup:g} s warm-up); "
        f"{len(odom)} odometry messages, {travelled:.1f} m travelled"
    )
    print(f"  {'node':12s} {'start':>8s} {'3 min':>8s} {'6 min':>8s} {'9 min':>8s} {'slope MiB/h':>12s}")
    for name, series in samples.items():
        t = np.array([s[0] for s in series])
        r = np.array([s[1] for s in series])
        ok = np.isfinite(r)
        slope = float(np.polyfit(t[ok], r[ok], 1)[0] * 60.0) if ok.sum() > 2 else float("nan")
        row = {
            "start": at(series, 0.0),
            "3min": at(series, 3.0),
            "6min": at(series, 6.0),
            "9min": at(series, 9.0),
            "slope_mib_per_hour": slope,
            "samples": series,
        }
        report["nodes"][name] = row
        print(
            f"  {name:12s} {row['start']:8.1f} {row['3min']:8.1f} {row['6min']:8.1f} {row['9min']:8.1f} {slope:12.2f}"
        )
    (out / "soak.json").write_text(json.dumps(report, indent=2))
    print(f"written {out / 'soak.json'}")
    return 0 if all(alive.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
