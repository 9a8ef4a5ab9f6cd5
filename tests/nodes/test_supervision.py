"""Supervised launches and honest replays, as an operator meets them: `perception run` reports a
node that dies and restarts it or stops the stack; signals stop every child; a killed launcher
leaves no orphan; a lockstep replay with a node killed ends within seconds, naming it; a replay
exits non-zero with its own code for rejected frames, empty input, shared stamps, an unreadable
bag; a node answers a re-published frame once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import yaml
from perception_msgs.msg import FrameStatus, InferenceResult
from sensor_msgs.msg import Image

from perception_nodes.bag_io import BagWriter, bag_info
from perception_nodes.tools.cli import perception_argv, replay_argv
from perception_nodes.tools.demo_assets import make_demo_bag
from perception_nodes.exit_codes import (
    EXIT_BAD_INPUT,
    EXIT_DUPLICATE_STAMPS,
    EXIT_EMPTY_INPUT,
    EXIT_FRAMES_REJECTED,
    EXIT_NODE_DIED,
    EXIT_OK,
)
from perception_nodes.launcher import StackProcesses
from rosgraph import Probe, node_profile
from test_nodes_integration import generic_node, image

ROOT = Path(__file__).resolve().parents[2]


def _popen(argv: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _perception(*args: str, **kw) -> subprocess.Popen:
    return _popen(perception_argv(*args), **kw)


def _generic_profile(tmp_path: Path, model: Path, nodes=("gen",)) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "description": "test",
                "nodes": {
                    n: {
                        "executable": "generic_onnx_node",
                        "parameters": {"model_path": str(model), "backend": "onnxruntime", "onnxruntime_threads": 1},
                        "remappings": {"image": f"/{n}/in"},
                    }
                    for n in nodes
                },
            }
        )
    )
    return path


def _node_procs(parent: int, exe: str = "generic_onnx_node") -> list[psutil.Process]:
    try:
        kids = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if k.status() != psutil.STATUS_ZOMBIE and any(exe in part for part in k.cmdline()):
                out.append(k)
        except psutil.Error:  # exited meanwhile
            pass
    return out


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_run_restarts_a_dead_node_then_stops_the_stack_with_a_summary(tmp_path, demo_model):
    summary = tmp_path / "summary.json"
    run = _perception(
        "run",
        "--profile",
        str(_generic_profile(tmp_path, demo_model)),
        "--log-dir",
        str(tmp_path / "logs"),
        "--restart",
        "1",
        "--summary",
        str(summary),
    )
    try:
        log = tmp_path / "logs" / "gen.log"
        assert _wait(lambda: log.exists() and "active:" in log.read_text(), 30)
        first = _node_procs(run.pid)[0]
        first.kill()
        assert _wait(lambda: [p for p in _node_procs(run.pid) if p.pid != first.pid], 15), "not restarted"
        second = [p for p in _node_procs(run.pid) if p.pid != first.pid][0]
        t0 = time.monotonic()
        second.kill()  # restarts used up: the stack stops
        out, err = run.communicate(timeout=30)
        assert time.monotonic() - t0 < 10
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == EXIT_NODE_DIED, err
    assert "node 'gen' died (killed by SIGKILL)" in err and "restarted 'gen' (1/1)" in err
    s = json.loads(summary.read_text())
    assert s["exit_code"] == EXIT_NODE_DIED and s["nodes"]["gen"]["restarts"] == 1
    assert s["nodes"]["gen"]["exit_codes"] == [-9, -9] and len(s["deaths"]) == 2
    assert "active: policy=" in s["deaths"][0]["log_tail"]  # the last log lines come with the report


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_run_stops_its_children_on_sigterm_and_sighup(tmp_path, demo_model, sig):
    run = _perception(
        "run", "--profile", str(_generic_profile(tmp_path, demo_model)), "--log-dir", str(tmp_path / "logs")
    )
    try:
        assert _wait(lambda: _node_procs(run.pid), 30)
        child = _node_procs(run.pid)[0]
        time.sleep(1.0)
        run.send_signal(sig)
        run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == EXIT_OK
    assert _wait(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 10)
    s = json.loads((tmp_path / "logs" / "run_summary.json").read_text())
    assert s["stopped_by"] == signal.Signals(sig).name and s["deaths"] == []


def test_a_killed_launcher_leaves_no_orphan(tmp_path, demo_model):
    run = _perception(
        "run", "--profile", str(_generic_profile(tmp_path, demo_model)), "--log-dir", str(tmp_path / "logs")
    )
    assert _wait(lambda: _node_procs(run.pid), 30)
    child = _node_procs(run.pid)[0]
    run.kill()  # SIGKILL: no handler runs; the kernel's parent-death signal stops the child
    run.communicate(timeout=10)
    assert _wait(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 15), (
        "node orphaned after SIGKILL of perception run"
    )


@pytest.mark.parametrize("victim,name", [("generic_onnx_node", "generic"), ("bag_recorder", "perception_recorder")])
def test_lockstep_replay_with_a_node_killed_ends_within_seconds_naming_it(tmp_path, demo_model, victim, name):
    """A dead node ended each remaining frame only after 4 x 10 s; a killed recorder ended in a
    traceback with no summary and a recording without metadata."""
    # 1200 frames (~8 s of lockstep replay here): with 300 the whole replay took ~2 s after
    # "playing", so under a loaded CI run the kill at 1 s could land after the last frame
    frames = 1200
    bag = make_demo_bag(tmp_path / "bag", frames=frames, width=320, height=240)
    out = tmp_path / "replay"
    rep = _popen(replay_argv(bag, out, "generic_replay", f"generic.model_path={demo_model}") + ["--timeout", "300"])
    player_log = out / "logs" / "perception_player.log"
    try:
        assert _wait(lambda: player_log.exists() and "playing" in player_log.read_text(), 60)
        time.sleep(1.0 if victim == "bag_recorder" else 0.3)  # a few frames in (the recorder: a flush too)
        killed_at = time.monotonic()
        for p in _node_procs(rep.pid, victim):
            p.kill()
        _out, err = rep.communicate(timeout=60)
        to_error = time.monotonic() - killed_at
    finally:
        if rep.poll() is None:
            rep.kill()
    assert rep.returncode == EXIT_NODE_DIED, err
    assert to_error < 10, f"{to_error:.1f} s from the kill to the error"
    assert f"node '{name}' died (killed by SIGKILL)" in err and "Traceback" not in err
    s = json.loads((out / "replay_summary.json").read_text())
    assert s["nodes_died"] == [name] and s["exit_code"] == EXIT_NODE_DIED
    res = s["results"]["/generic/result"]
    assert res["duplicated"] == 0 and 0 < res["results"] < frames  # what was answered, once each
    info = bag_info(out / "recording")  # readable: closed cleanly, or up to the killed recorder's last flush
    assert (info.recovered is not None) == (victim == "bag_recorder")


def test_a_killed_replay_leaves_no_orphan(tmp_path, demo_model):
    """SIGKILL of `perception replay` left the nodes and the recorder (holding its MCAP open)
    orphaned to PID 1."""
    bag = make_demo_bag(tmp_path / "bag", frames=300, width=320, height=240)
    rep = _perception(
        "replay",
        "--bag",
        str(bag),
        "--profile",
        "generic_replay",
        "--out",
        str(tmp_path / "o"),
        "--set",
        f"generic.model_path={demo_model}",
    )
    log = tmp_path / "o" / "logs" / "perception_player.log"
    assert _wait(lambda: log.exists() and "playing" in log.read_text(), 60)
    kids = [k for k in psutil.Process(rep.pid).children(recursive=True)]
    assert len(kids) >= 3  # node, recorder, player
    rep.kill()
    rep.communicate(timeout=10)
    assert _wait(lambda: all(not k.is_running() or k.status() == psutil.STATUS_ZOMBIE for k in kids), 15), [
        k.pid for k in kids if k.is_running()
    ]


def _bag(path: Path, frames: list[tuple[int, np.ndarray, str]]) -> Path:
    with BagWriter(path) as w:
        for stamp, arr, enc in frames:
            w.write("/camera/image_raw", w.image(w.header(stamp, "camera_optical_frame"), arr, enc), stamp)
    return path


def _replay(bag: Path, out: Path, model: Path, *extra: str) -> tuple[int, str, str]:
    rep = _popen(replay_argv(bag, out, "generic_replay", f"generic.model_path={model}") + ["--timeout", "120", *extra])
    o, e = rep.communicate(timeout=180)
    return rep.returncode, o, e


def test_replay_exit_codes_tell_the_failures_apart(tmp_path, demo_model):
    rgb = np.zeros((48, 64, 3), np.uint8)
    # every frame rejected: 'rgb8' frames whose data is one byte per pixel
    bad = _bag(tmp_path / "bad", [(10**9 * (i + 1), np.zeros((48, 64), np.uint8), "rgb8") for i in range(4)])
    code, out, err = _replay(bad, tmp_path / "o1", demo_model)
    assert code == EXIT_FRAMES_REJECTED, (out, err)
    assert "nodes rejected 4 frame answers" in out
    # frames sharing a stamp: refused before any node starts
    dup = _bag(tmp_path / "dup", [(10**9, rgb, "rgb8")] * 10)
    t0 = time.monotonic()
    code, out, err = _replay(dup, tmp_path / "o2", demo_model)
    assert code == EXIT_DUPLICATE_STAMPS and "10 of the 10 messages on /camera/image_raw share 1" in err
    assert time.monotonic() - t0 < 15 and not (tmp_path / "o2" / "logs").exists()
    # no frames on the topic
    code, _o, err = _replay(dup, tmp_path / "o3", demo_model, "--frame-topic", "/camera/other")
    assert code == EXIT_EMPTY_INPUT and "no messages on the frame topic /camera/other" in err
    # unreadable bag: one line, no traceback
    junk = tmp_path / "junk.mcap"
    junk.write_bytes(b"not a bag at all")
    for cmd in ("replay", "eval"):
        p = _perception(cmd, "--bag", str(junk), "--profile", "generic_replay", "--out", str(tmp_path / "o4"))
        o, e = p.communicate(timeout=60)
        assert p.returncode == EXIT_BAD_INPUT, (o, e)
        assert "Traceback" not in e and e.strip().count("\n") == 0 and "junk.mcap" in e


def test_a_truncated_bag_replays_up_to_the_cut(tmp_path, demo_bag, demo_model):
    src = next(demo_bag.glob("*.mcap"))
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(src.read_bytes()[: int(src.stat().st_size * 0.6)])
    n = bag_info(cut).topics["/camera/image_raw"][1]
    code, out, err = _replay(cut, tmp_path / "o", demo_model)
    assert code == EXIT_OK, (out, err)
    assert f"recovered {bag_info(cut).recovered} messages" in err
    s = json.loads((tmp_path / "o" / "replay_summary.json").read_text())
    assert 5 <= n < 20 and s["results"]["/generic/result"]["frames_with_one_result"] == n


def test_a_lockstep_node_answers_a_republished_frame_without_processing_it_again(tmp_path, demo_model, rclpy_context):
    with StackProcesses(generic_node("dup", demo_model), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        results = probe.collect(InferenceResult, "/dup/result")
        statuses = probe.collect(FrameStatus, "/perception/frame_status")
        pub = probe.publisher(Image, "/dup/in")
        assert pub is not None, stack.log_text("dup")
        for _ in range(3):  # what a lockstep retry does
            pub.publish(image(1))
        pub.publish(image(2))
        assert probe.spin_until(lambda: len(statuses) >= 4, 30), stack.log_text("dup")
        probe.spin_until(lambda: False, 0.5)
        assert [s.header.stamp.sec for s in statuses] == [101, 101, 101, 102] and all(s.ok for s in statuses)
        assert sorted(r.header.stamp.sec for r in results) == [101, 102]
        probe.close()


def test_replay_verdict_orders_the_failures():
    from perception_nodes.tools.replay import replay_verdict
    from perception_nodes.exit_codes import EXIT_FAILED, EXIT_FRAMES_LOST, EXIT_INTERRUPTED

    ok = {"player_exit_code": 0, "player": {"frames": 5, "frames_lost": 0, "frames_rejected_by_nodes": 0}}
    assert replay_verdict(ok)[0] == EXIT_OK
    assert replay_verdict({**ok, "player": {**ok["player"], "frames_rejected_by_nodes": 2}})[0] == EXIT_FRAMES_REJECTED
    assert replay_verdict({**ok, "player": {**ok["player"], "frames_lost": 1}})[0] == EXIT_FRAMES_LOST
    assert replay_verdict({**ok, "player": {"frames": 0}})[0] == EXIT_EMPTY_INPUT
    assert replay_verdict({**ok, "nodes_died": ["det"], "player_exit_code": None})[0] == EXIT_NODE_DIED
    assert (
        replay_verdict(
            {
                **ok,
                "timed_out": True,
                "player_exit_code": None,
                "player": {"error": "stopped", "error_kind": "interrupted"},
            }
        )[0]
        == EXIT_FAILED
    )
    assert replay_verdict({**ok, "interrupted": "SIGTERM", "nodes_died": ["det"]})[0] == EXIT_INTERRUPTED
    assert (
        replay_verdict({"player_exit_code": 1, "player": {"error": "x", "error_kind": "duplicate_stamps"}})[0]
        == EXIT_DUPLICATE_STAMPS
    )
    assert replay_verdict({"player_exit_code": 1})[0] == EXIT_FAILED  # no player summary at all


def test_a_node_stops_on_repeated_sigterm(tmp_path, demo_model):
    """A node stops cleanly however many SIGTERMs it gets. Its handler used to call
    rclpy.try_shutdown() inside the signal handler; a second SIGTERM that arrived during that
    shutdown deadlocked on rclpy's context lock, and the node lived on as an orphan (seen once in a
    clean-clone CI run; the race is too narrow to provoke on demand, so this burst is a guard, not
    a reproduction)."""
    with StackProcesses(generic_node("term", demo_model), tmp_path / "logs") as stack:
        log = tmp_path / "logs" / "term.log"
        assert _wait(lambda: log.exists() and "active:" in log.read_text(), 30), stack.log_text("term")
        proc = stack.procs["term"]
        for _ in range(200):  # a burst: some arrive while the node is already shutting down
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, stack.log_text("term")


def _lockstep_player(bag: Path, summary: Path, nodes: list[str], **params) -> Any:
    """A bag_player spec replaying ``bag``'s /camera/image_raw in lockstep with ``nodes``."""
    from perception_nodes.profile import NodeSpec

    p = {
        "bag_path": str(bag),
        "mode": "lockstep",
        "lockstep_topic": "/camera/image_raw",
        "lockstep_nodes": nodes,
        "summary_path": str(summary),
        "start_delay": 0.0,
        "publish_clock": False,
        **params,
    }
    return NodeSpec("player", "bag_player", parameters=p)


def test_lockstep_player_waits_until_the_recorder_has_every_node_output(tmp_path, demo_model):
    """A recorder finds topics by polling. A node that comes up just after a poll has outputs the
    recorder has not subscribed to yet; a short bag would then be over before the next poll and
    the recording would hold none of that node's answers (seen in `perception eval` on a loaded
    machine). The player waits until the recorder has every lockstep node's recorded outputs."""
    from perception_nodes.profile import NodeSpec, Profile

    n = 4
    bag = _bag(tmp_path / "bag", [(10**9 * (i + 1), np.full((48, 64, 3), i, np.uint8), "rgb8") for i in range(n)])
    recording = tmp_path / "recording"
    outputs = "^/late/(?!transition_event$)"
    player = _lockstep_player(
        bag, tmp_path / "summary.json", ["/late"], wait_for_subscribers=["/rec"], wait_for_outputs_regex=outputs
    )
    recorder = NodeSpec(
        "rec",
        "bag_recorder",
        parameters={
            "output": str(recording),
            "topics": ["/camera/image_raw"],
            "topic_regex": outputs,
            "discovery_period": 6.0,
        },
    )
    late = node_profile("late", "generic_onnx_node", demo_model, remappings={"image": "/camera/image_raw"}).nodes[0]
    with StackProcesses(Profile("test", "", []), tmp_path / "logs") as stack:
        stack.start_node(player)
        stack.start_node(recorder)
        deadline = time.monotonic() + 60
        while "recording /camera/image_raw" not in stack.log_text("rec") and time.monotonic() < deadline:
            time.sleep(0.1)  # the recorder's first poll found the frames: the node is not up yet
        assert "recording /camera/image_raw" in stack.log_text("rec"), stack.log_text("rec")
        stack.start_node(late)
        assert stack.wait("player", 90) == 0, stack.log_text("player")
        stack.stop(["rec", "late"])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == n and not summary.get("lost"), summary
    topics = bag_info(recording).topics
    assert topics.get("/late/result", ("", 0))[1] == n, (topics, stack.log_text("rec"))


def test_lockstep_player_names_a_node_that_runs_but_does_not_take_the_frames(tmp_path, demo_model):
    from perception_nodes.profile import Profile

    bag = _bag(tmp_path / "bag", [(10**9 * (i + 1), np.zeros((48, 64, 3), np.uint8), "rgb8") for i in range(2)])
    player = _lockstep_player(bag, tmp_path / "summary.json", ["/deaf"], wait_for_nodes_timeout=8.0)
    deaf = node_profile("deaf", "generic_onnx_node", demo_model, remappings={"image": "/camera/other"}).nodes[0]
    with StackProcesses(Profile("test", "", [deaf, player]), tmp_path / "logs") as stack:
        stack.wait("player", 60)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "['/deaf'] are running but did not subscribe to /camera/image_raw" in summary["error"], summary
