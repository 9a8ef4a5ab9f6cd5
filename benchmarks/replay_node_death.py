"""Lockstep replay with a node killed mid-way: wall time from the kill to the replay's error.

    python benchmarks/replay_node_death.py [--frames 300] [--kill-at 10] [--out out/replay_death]

A --frames VGA bag goes through the generic_replay profile (the generic ONNX node) in lockstep;
when the node has answered --kill-at frames (counted from its FrameStatus), it is SIGKILLed.
Prints the replay's exit code, the seconds from the kill to the replay's end, the whole replay's
wall time and whether any frame got two results. Before supervision this replay waited out
4 x 10 s per remaining frame (a 6 s replay took 326 s) and surviving nodes answered retries twice.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import psutil
import rclpy
from perception_msgs.msg import FrameStatus
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from perception_nodes.tools.cli import replay_argv
from perception_nodes.tools.demo_assets import make_demo_bag, make_demo_model
from perception_nodes.workspace import workspace_root


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--kill-at", type=int, default=10)
    ap.add_argument("--out", default="out/replay_death")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    cache = workspace_root() / "cache" / "replay_death"
    cache.mkdir(parents=True, exist_ok=True)
    bag = cache / f"bag_{args.frames}"
    if not bag.exists():
        make_demo_bag(bag, frames=args.frames)
    model = (
        make_demo_model(cache / "demo_model.onnx")
        if not (cache / "demo_model.onnx").exists()
        else cache / "demo_model.onnx"
    )
    # the replay's nodes talk on loopback (a 127.0.0.1 whitelist, SUBNET discovery): listen the
    # same way, so this probe discovers the node at once and counts its answers as they come
    import tempfile

    from perception_nodes.dds_profile import apply_profile

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
    os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
    env = apply_profile(
        dict(os.environ), workspace_root() / "config" / "fastdds_shm.xml", tempfile.mkdtemp(), None, ["127.0.0.1"]
    )
    os.environ.update(env)
    rclpy.init()
    node = Node("death_probe")
    answered: list[int] = []
    node.create_subscription(
        FrameStatus,
        "/perception/frame_status",
        lambda m: answered.append(m.header.stamp.sec) if m.node == "/generic" else None,
        QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000),
    )
    t0 = time.monotonic()
    rep = subprocess.Popen(
        replay_argv(bag, out, "generic_replay", f"generic.model_path={model}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed_at = None
    while rep.poll() is None:
        rclpy.spin_once(node, timeout_sec=0.01)
        if killed_at is None and len(answered) >= args.kill_at:
            for p in psutil.Process(rep.pid).children(recursive=True):
                try:
                    if any("generic_onnx_node" in c for c in p.cmdline()):
                        p.kill()
                        killed_at = time.monotonic()
                except psutil.Error:
                    pass
    end = time.monotonic()
    _o, err = rep.communicate()
    node.destroy_node()
    rclpy.shutdown()
    summary = json.loads((out / "replay_summary.json").read_text())
    res = summary.get("results", {}).get("/generic/result", {})
    line = next((ln for ln in err.splitlines() if "died" in ln), err.strip().splitlines()[-1] if err.strip() else "")
    print(f"replay of {args.frames} frames, node killed after {len(answered)} answers (--kill-at {args.kill_at})")
    print(f"  exit code {rep.returncode}; {line}")
    if killed_at is not None:
        print(f"  kill -> replay ended: {end - killed_at:.2f} s; whole replay {end - t0:.2f} s")
    print(
        f"  results recorded {res.get('results')}, duplicated {res.get('duplicated')}, verdict: "
        f"{summary.get('verdict')}"
    )
    return 0 if rep.returncode == 10 and killed_at is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
