"""The operator's probes of the reliability issue, each run through the CLI or over DDS as a user
would, printed as a table (outcome per probe). Runs against whatever perception_nodes is on the
path, so the same script measures an older checkout (PYTHONPATH=<old>/src/perception_nodes).

    python benchmarks/reliability_probes.py [--out out/probes] [--json out/probes/probes.json]

Probes: invalid lifecycle requests to a running node; SIGTERM/SIGKILL of the launchers (orphans);
a node killed during a lockstep replay (time to the error, duplicated results); replay exit codes
for rejected frames, an empty frame topic, shared stamps and an unreadable bag; truncated MCAPs;
a singular CameraInfo at the detector; runtime parameters (score_threshold, class_filter, a
lockstep switch); 16UC1, odd-width YUV and 1x1 frames at an RGB node. ~2 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import rclpy
import yaml
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from perception_msgs.msg import FrameStatus
from vision_msgs.msg import Detection2DArray
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from perception_nodes.bag_io import BagWriter
from perception_nodes.tools.cli import perception_argv, replay_argv
from perception_nodes.tools.demo_assets import make_demo_bag, make_demo_model
from perception_nodes.image_conversion import numpy_to_image

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)


def cli(*args: str, timeout: float = 120) -> tuple[int | None, str, float]:
    t0 = time.monotonic()
    try:
        r = subprocess.run(
            perception_argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
        )
        return r.returncode, r.stdout + r.stderr, time.monotonic() - t0
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, time.monotonic() - t0


def node_profile(tmp: Path, nodes: dict[str, dict[str, Any]]) -> Path:
    p = tmp / f"profile_{len(list(tmp.glob('profile_*')))}.yaml"
    p.write_text(yaml.safe_dump({"description": "probe", "nodes": nodes}))
    return p


def children(pid: int, exe: str) -> list[psutil.Process]:
    out = []
    try:
        for k in psutil.Process(pid).children(recursive=True):
            try:
                if k.status() != psutil.STATUS_ZOMBIE and any(exe in c for c in k.cmdline()):
                    out.append(k)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return out


def wait(cond: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


class Probe:
    def __init__(self) -> None:
        self.node = Node("reliability_probe")

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            rclpy.spin_once(self.node, timeout_sec=0.05)
            if cond():
                return True
        return False

    def call(self, srv: Any, name: str, req: Any, timeout: float = 10.0) -> Any:
        c = self.node.create_client(srv, name)
        if not self.spin_until(c.service_is_ready, timeout):
            return None
        f = c.call_async(req)
        self.spin_until(f.done, timeout)
        return f.result() if f.done() else None


def start_nodes(profile: Path, tmp: Path) -> subprocess.Popen:
    return subprocess.Popen(
        perception_argv("run", "--profile", str(profile), "--log-dir", str(tmp / f"logs_{time.monotonic_ns()}")),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out + err


def generic(model: Path, name: str, **params: Any) -> dict[str, Any]:
    return {
        "executable": "generic_onnx_node",
        "parameters": {"model_path": str(model), "backend": "onnxruntime", "onnxruntime_threads": 1, **params},
        "remappings": {"image": f"/{name}/in"},
    }


def probe_lifecycle(tmp: Path, model: Path, probe: Probe) -> str:
    names = [f"lc{i}" for i in range(4)]
    run = start_nodes(node_profile(tmp, {n: generic(model, n) for n in names}), tmp)
    try:
        assert wait(lambda: len(children(run.pid, "generic_onnx_node")) == 4, 30)
        time.sleep(3)
        for n, tid in zip(
            names, (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_CLEANUP, Transition.TRANSITION_ACTIVATE, 99)
        ):
            req = ChangeState.Request()
            req.transition = Transition(id=tid)
            probe.call(ChangeState, f"/{n}/change_state", req, timeout=5)
        time.sleep(2)
        alive = len(children(run.pid, "generic_onnx_node"))
        return f"{4 - alive} of 4 nodes killed by one invalid request each; run still up: {run.poll() is None}"
    finally:
        stop(run)


def probe_run_signals(tmp: Path, model: Path) -> str:
    outcomes = []
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGKILL):
        run = start_nodes(node_profile(tmp, {"sg": generic(model, "sg")}), tmp)
        wait(lambda: bool(children(run.pid, "generic_onnx_node")), 30)
        kids = children(run.pid, "generic_onnx_node")
        time.sleep(1.5)
        run.send_signal(sig)
        run.communicate(timeout=30)
        gone = wait(lambda: all((not k.is_running()) or k.status() == psutil.STATUS_ZOMBIE for k in kids), 10)
        if not gone:
            for k in kids:
                k.kill()
        outcomes.append(f"{sig.name}: {'children stopped' if gone else 'node orphaned'}")
    return "; ".join(outcomes)


def probe_dead_node_reported(tmp: Path, model: Path) -> str:
    run = start_nodes(node_profile(tmp, {"dn": generic(model, "dn")}), tmp)
    wait(lambda: bool(children(run.pid, "generic_onnx_node")), 30)
    time.sleep(2)
    for k in children(run.pid, "generic_onnx_node"):
        k.kill()
    t0 = time.monotonic()
    ended = wait(lambda: run.poll() is not None, 15)
    out = stop(run)
    said = "reported" if "died" in out else "not reported"
    return f"node SIGKILLed: {said}; run " + (
        f"exited {run.returncode} after {time.monotonic() - t0:.1f} s" if ended else "kept running with the node dead"
    )


def probe_replay_kill(tmp: Path, model: Path) -> str:
    bag = tmp / "bag300"
    if not bag.exists():
        make_demo_bag(bag, frames=300, width=320, height=240)
    out = tmp / "replay_kill"
    rep = subprocess.Popen(
        replay_argv(bag, out, "generic_replay", f"generic.model_path={model}"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "logs" / "perception_player.log"
    wait(lambda: log.exists() and "playing" in log.read_text(), 60)
    time.sleep(0.3)
    for k in children(rep.pid, "generic_onnx_node"):
        k.kill()
    t0 = time.monotonic()
    try:
        rep.communicate(timeout=120)
        took = f"{time.monotonic() - t0:.1f} s"
    except subprocess.TimeoutExpired:
        rep.kill()
        rep.communicate()
        took = "> 120 s (stopped by the probe)"
    try:
        s = json.loads((out / "replay_summary.json").read_text())
        dup = s.get("results", {}).get("/generic/result", {}).get("duplicated")
    except (OSError, ValueError):
        dup = "no summary"
    return f"node killed mid-replay: exit {rep.returncode}, kill -> end {took}, duplicated results {dup}"


def _bag(path: Path, frames: list[tuple[int, np.ndarray, str]]) -> Path:
    with BagWriter(path) as w:
        for stamp, arr, enc in frames:
            w.write("/camera/image_raw", w.image(w.header(stamp, "camera_optical_frame"), arr, enc), stamp)
    return path


def probe_exit_codes(tmp: Path, model: Path) -> list[tuple[str, str]]:
    rows = []
    bad = _bag(tmp / "rejected", [(10**9 * (i + 1), np.zeros((48, 64), np.uint8), "rgb8") for i in range(4)])
    dup = _bag(tmp / "dup", [(10**9, np.zeros((48, 64, 3), np.uint8), "rgb8")] * 10)
    junk = tmp / "junk.mcap"
    junk.write_bytes(b"not a bag")
    for label, args in (
        ("every frame rejected", ["--bag", str(bad)]),
        ("10 frames sharing one stamp", ["--bag", str(dup)]),
        ("frame topic with 0 messages", ["--bag", str(dup), "--frame-topic", "/camera/other"]),
        ("unreadable bag", ["--bag", str(junk)]),
    ):
        rc, out, took = cli(
            "replay",
            *args,
            "--profile",
            "generic_replay",
            "--out",
            str(tmp / f"o_{len(rows)}"),
            "--set",
            f"generic.model_path={model}",
            timeout=120,
        )
        tb = "traceback" if "Traceback" in out else "one line" if out.strip().count("\n") == 0 else "message"
        rows.append((f"replay: {label}", f"exit {rc} ({tb}, {took:.0f} s)"))
    return rows


def probe_truncated(tmp: Path, model: Path) -> list[tuple[str, str]]:
    bag = tmp / "bag60"
    if not bag.exists():
        make_demo_bag(bag, frames=60)
    src = next(bag.glob("*.mcap"))
    rows = []
    for frac in (0.5, 0.99):
        cut = tmp / f"cut{int(frac * 100)}.mcap"
        cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * frac)])
        rc, out, _t = cli(
            "replay",
            "--bag",
            str(cut),
            "--profile",
            "generic_replay",
            "--out",
            str(tmp / f"t{frac}"),
            "--set",
            f"generic.model_path={model}",
        )
        try:
            s = json.loads((tmp / f"t{frac}" / "replay_summary.json").read_text())
            got = f"{s['player']['frames']} of 60 frames replayed"
        except (OSError, ValueError, KeyError):
            got = "refused"
        rows.append((f"MCAP truncated at {int(frac * 100)} %", f"exit {rc}: {got}"))
    return rows


def probe_node_inputs(tmp: Path, model: Path, probe: Probe) -> list[tuple[str, str]]:
    det_model = ROOT / "models" / "detection.onnx"
    rows = []
    prof = node_profile(
        tmp,
        {
            "pdet": {
                "executable": "detection_node",
                "param_files": ["detection_node.param.yaml"],
                "parameters": {
                    "model_path": str(det_model),
                    "backend": "onnxruntime",
                    "onnxruntime_threads": 1,
                    "input_policy": "lockstep",
                    "use_camera_info": True,
                    "camera_height": 1.5,
                    "score_threshold": 0.0,
                },
                "remappings": {"image": "/pdet/in", "camera_info": "/pdet/camera_info"},
            },
            "pgen": generic(model, "pgen", input_policy="lockstep"),
        },
    )
    run = start_nodes(prof, tmp)
    statuses: list[FrameStatus] = []
    dets: list[Detection2DArray] = []
    probe.node.create_subscription(FrameStatus, "/perception/frame_status", statuses.append, RELIABLE)
    probe.node.create_subscription(Detection2DArray, "/pdet/detections", dets.append, RELIABLE)
    det_in = probe.node.create_publisher(Image, "/pdet/in", RELIABLE)
    info_pub = probe.node.create_publisher(CameraInfo, "/pdet/camera_info", RELIABLE)
    gen_in = probe.node.create_publisher(Image, "/pgen/in", RELIABLE)
    try:
        probe.spin_until(lambda: det_in.get_subscription_count() > 0 and gen_in.get_subscription_count() > 0, 60)
        frame = make_demo_frame()

        def send(pub: Any, arr: np.ndarray, enc: str, sec: int, node: str) -> FrameStatus | None:
            msg = numpy_to_image(arr, enc)
            msg.header.stamp.sec, msg.header.frame_id = sec, "camera_optical_frame"
            pub.publish(msg)
            probe.spin_until(
                lambda: (
                    any(s.header.stamp.sec == sec and s.node == node for s in statuses)
                    and (node != "/pdet" or any(d.header.stamp.sec == sec for d in dets))
                ),
                20,
            )
            return next((s for s in statuses if s.header.stamp.sec == sec and s.node == node), None)

        info = CameraInfo()
        info.width, info.height = 640, 480
        info.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0]  # singular K, positive focal lengths
        info_pub.publish(info)
        probe.spin_until(lambda: False, 0.5)
        st = send(det_in, frame, "rgb8", 1, "/pdet")
        rows.append(
            (
                "detector with a singular CameraInfo",
                "frame ok" if st and st.ok else f"frame rejected: {st.detail[:70] if st else 'no answer'}",
            )
        )
        n_before = len(next((d.detections for d in dets if d.header.stamp.sec == 1), []))
        pv = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.99)
        r = probe.call(
            SetParameters,
            "/pdet/set_parameters",
            SetParameters.Request(parameters=[Parameter(name="score_threshold", value=pv)]),
        )
        send(det_in, frame, "rgb8", 2, "/pdet")
        n_after = len(next((d.detections for d in dets if d.header.stamp.sec == 2), []))
        rows.append(
            (
                "score_threshold 0.0 -> 0.99 at runtime",
                f"successful={r.results[0].successful if r else None}; detections {n_before} -> {n_after}",
            )
        )
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=["unicorn"])
        r = probe.call(
            SetParameters,
            "/pdet/set_parameters",
            SetParameters.Request(parameters=[Parameter(name="class_filter", value=pv)]),
        )
        rows.append(("class_filter=['unicorn']", f"successful={r.results[0].successful if r else None}"))
        pv = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value="realtime")
        r = probe.call(
            SetParameters,
            "/pgen/set_parameters",
            SetParameters.Request(parameters=[Parameter(name="input_policy", value=pv)]),
        )
        rows.append(("input_policy switched while active", f"successful={r.results[0].successful if r else None}"))
        for sec, arr, enc, label in (
            (10, np.full((48, 64), 1500, np.uint16), "16UC1", "16UC1 depth image at an RGB node"),
            (11, np.zeros((4, 7, 2), np.uint8), "yuv422", "odd-width yuv422"),
            (12, np.zeros((1, 1, 3), np.uint8), "rgb8", "1x1 rgb8 frame"),
        ):
            st = send(gen_in, arr, enc, sec, "/pgen")
            rows.append((label, "no answer" if st is None else "accepted" if st.ok else f"rejected: {st.detail[:60]}"))
        alive = len(children(run.pid, "_node"))
        rows.append(("nodes alive after the input probes", f"{alive} of 2"))
    finally:
        stop(run)
    return rows


def make_demo_frame() -> np.ndarray:
    from perception_nodes.tools.demo_assets import synthetic_frame

    return synthetic_frame(3, 640, 480)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/probes")
    ap.add_argument("--json")
    ap.add_argument(
        "--only",
        nargs="*",
        default=None,
        metavar="GROUP",
        help="run these groups only: lifecycle signals death replay exits truncated inputs",
    )
    args = ap.parse_args()
    groups = set(args.only or ["lifecycle", "signals", "death", "replay", "exits", "truncated", "inputs"])
    tmp = Path(args.out).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    model = make_demo_model(tmp / "demo_model.onnx")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    rclpy.init()
    probe = Probe()
    rows: list[tuple[str, str]] = []
    for group, label, fn in (
        (
            "lifecycle",
            "lifecycle: configure/cleanup/activate while active, id 99",
            lambda: probe_lifecycle(tmp, model, probe),
        ),
        ("signals", "perception run: SIGTERM / SIGHUP / SIGKILL", lambda: probe_run_signals(tmp, model)),
        ("death", "perception run: a node dies", lambda: probe_dead_node_reported(tmp, model)),
        ("replay", "lockstep replay (300 frames), node killed", lambda: probe_replay_kill(tmp, model)),
    ):
        if group not in groups:
            continue
        try:
            rows.append((label, fn()))
        except Exception as exc:  # a probe that breaks is an outcome too
            rows.append((label, f"probe failed: {type(exc).__name__}: {exc}"))
        print(f"{rows[-1][0]:60s} {rows[-1][1]}", flush=True)
    for group, fn in (
        ("exits", lambda: probe_exit_codes(tmp, model)),
        ("truncated", lambda: probe_truncated(tmp, model)),
        ("inputs", lambda: probe_node_inputs(tmp, model, probe)),
    ):
        if group not in groups:
            continue
        try:
            new = fn()
        except Exception as exc:
            new = [("(probe group)", f"probe failed: {type(exc).__name__}: {exc}")]
        for r in new:
            print(f"{r[0]:60s} {r[1]}", flush=True)
        rows += new
    probe.node.destroy_node()
    rclpy.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
