"""`perception eval` end to end: the four task nodes with the shipped models on a small held-out
synthetic bag, the report (JSON + HTML that renders), the recording's schemas as Foxglove reads
them, CPU/memory sampling and the throughput search."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from perception_nodes.tools import throughput as tp
from perception_nodes.tools.cli import main
from chromium import find_chromium, rendered_content, screenshot
from perception_nodes.tools.report import write_report
from perception_nodes.tools.resources import ResourceMonitor

FRAMES = 8


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from perception_models.data.synth import SynthConfig, SyntheticSequence
    from perception_models.data.writers import write_sequence

    root = tmp_path_factory.mktemp("eval")
    write_sequence(
        SyntheticSequence(SynthConfig(preset="driving", seed=907, frames=FRAMES)),
        root / "seq",
        dataset=False,
        bag=True,
        progress=False,
    )
    out = root / "out"
    rc = main(["eval", "--bag", str(root / "seq" / "bag"), "--profile", "synthetic_replay", "--out", str(out)])
    return rc, out


def test_eval_scores_every_task_and_measures_every_node(evaluated):
    rc, out = evaluated
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    assert set(m) == {"detection", "segmentation", "depth", "odometry", "matching"}
    assert m["depth"]["images"] == FRAMES and m["segmentation"]["images"] == FRAMES
    assert 0 < m["depth"]["absolute"]["abs_rel"] < 1 and 0 < m["segmentation"]["mIoU"] <= 1
    assert m["odometry"]["frames"] == FRAMES and m["odometry"]["path_length_m"] > 1
    assert m["matching"]["frames"] == FRAMES
    g = m["matching"]["geometry"]  # the matches' essential-matrix pose against the ground-truth motion
    assert g["pairs"] == FRAMES - 1 and g["rotation_error_deg_median"] < 5
    assert report["player"]["frames_lost"] == 0
    assert {n: m["task"] for n, m in report["models"].items()} == {
        "detector": "detection",
        "segmenter": "segmentation",
        "odometry": "depth",
        "matcher": "matching",
    }
    assert all(m["card_metrics"] for m in report["models"].values())  # the cards' held-out numbers, for context
    assert set(report["drops"]) == {"detector", "segmenter", "odometry", "matcher"}
    assert all(d["dropped"] == 0 and d["frames"] == FRAMES for d in report["drops"].values())  # lockstep
    for name, r in report["resources"].items():  # every node process sampled: python + onnxruntime + a model
        assert r["samples"] >= 2 and r["rss_mib_peak"] > 50 and r["cpu_percent_peak"] > 0, name
    for topic in (
        "/detector/detections",
        "/segmenter/labels",
        "/odometry/depth",
        "/odometry/odometry",
        "/matcher/matches",
    ):
        lat = report["latency"][topic]
        assert lat["results"] + lat["untimed"] == FRAMES and lat["median_ms"] > 0


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.headings: list[str] = []
        self._h = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.srcs.append(dict(attrs)["src"])
        self._h = tag == "h2"

    def handle_data(self, data):
        if self._h:
            self.headings.append(data.strip())
            self._h = False


def test_report_html_is_self_contained_with_every_section(evaluated):
    _rc, out = evaluated
    page = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    assert parser.headings == [
        "Accuracy",
        "Nodes: latency, drops, CPU, memory",
        "Sample frames",
        "Detection",
        "Segmentation",
        "Depth",
        "Odometry",
        "Matching",
        "Latency",
        "CPU and memory",
    ]
    magic = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8\xff"}
    for src in parser.srcs:  # every picture is inline and decodes: nothing to fetch, nothing broken
        kind, data = re.match(r"data:(image/\w+);base64,(.*)", src, re.S).groups()
        assert base64.b64decode(data).startswith(magic[kind])
    # 4 sample frames x (input + 4 drawn views; the first frame has nothing to match against, so no
    # match picture), PR, confusion, depth, trajectory, matches, latency, resources
    assert len(parser.srcs) == 4 * 5 - 1 + 7
    assert not re.search(r'(src|href)="(http|//)', page)


def test_report_renders_in_headless_chromium(evaluated, tmp_path):
    if find_chromium() is None:
        pytest.skip("Chromium not installed (Debian: apt-get install chromium): the report's render check needs it")
    _rc, out = evaluated
    shown = rendered_content(screenshot(out / "report.html", tmp_path / "report.png"))
    # control: the same page with its pictures broken renders almost nothing but grey text
    broken = tmp_path / "broken.html"
    broken.write_text(re.sub(r'src="data:[^"]+"', 'src="missing.png"', (out / "report.html").read_text()))
    control = rendered_content(screenshot(broken, tmp_path / "broken.png"))
    assert shown["colourful"] > 0.03 and control["colourful"] < 0.005, (shown, control)
    assert shown["non_white"] > 3 * control["non_white"]


def test_recording_embeds_schemas_foxglove_decodes(evaluated):
    _rc, out = evaluated
    path = next((out / "recording").glob("*.mcap"))
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        schemas = {s.name for s in reader.get_summary().schemas.values()}
        assert {
            "vision_msgs/msg/Detection2DArray",
            "perception_msgs/msg/Keypoints",
            "perception_msgs/msg/Matches",
            "nav_msgs/msg/Odometry",
            "nav_msgs/msg/Path",
            "sensor_msgs/msg/PointCloud2",
            "sensor_msgs/msg/Image",
            "tf2_msgs/msg/TFMessage",
            "diagnostic_msgs/msg/DiagnosticArray",
        } <= schemas
        decoded: dict[str, object] = {}
        for _schema, channel, _message, msg in reader.iter_decoded_messages():  # from the embedded text only
            decoded.setdefault(channel.topic, msg)
    assert len(decoded["/matcher/keypoints"].x) == len(decoded["/matcher/keypoints"].scores) > 0
    assert decoded["/detector/detections"].header.frame_id == decoded["/camera/image_raw"].header.frame_id
    assert decoded["/odometry/odometry"].header.frame_id == "odom"
    assert decoded["/tf"].transforms[0].header.frame_id == "odom"
    # the recording stands on its own in Foxglove: the camera's calibration and mounting are in it,
    # its chunks are zstd-compressed, and it lines up with the input bag (log time = header stamp)
    assert decoded["/camera/camera_info"].k[0] > 0
    assert decoded["/tf_static"].transforms[0].child_frame_id == "camera_optical_frame"
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert {c.compression for c in reader.get_summary().chunk_indexes} == {"zstd"}
        lined_up = [
            (m.log_time, m.data)
            for _s, ch, m in reader.iter_messages(topics=["/detector/detections", "/camera/image_raw"])
        ]
    from perception_nodes.bag_io import RECEIVE_TIMES, header_stamp_ns

    assert lined_up and all(t == header_stamp_ns(d) for t, d in lined_up)
    # the wall-clock receive times (latency) are kept beside it
    assert (out / "recording" / RECEIVE_TIMES).read_text().count("/detector/detections\t") == FRAMES


def test_resource_monitor_tells_a_busy_process_from_an_idle_one():
    idle = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time, numpy\nx=numpy.ones(50_000_000)\nprint('ready', flush=True)\ntime.sleep(10)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert idle.stdout.readline().strip() == "ready"  # its 400 MB are filled: from now on it only sleeps
    busy = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<3: pass"])
    try:
        with ResourceMonitor({"busy": busy.pid, "idle": idle.pid}, period=0.2) as mon:
            busy.wait()
    finally:
        idle.kill()
        idle.wait()
    s = mon.summary()
    # relative, not absolute: a loaded machine gives the busy loop less than a whole core
    assert s["busy"]["cpu_percent_mean"] > max(20.0, 5 * s["idle"]["cpu_percent_mean"]) and s["busy"]["samples"] >= 5
    assert s["idle"]["rss_mib_peak"] > 350 > s["busy"]["rss_mib_peak"]  # 400 MB of ones


def test_throughput_search_brackets_then_bisects(monkeypatch, tmp_path):
    """A stack that keeps up to 22 Hz: the search starts at the fixed rate, halves, bisects."""
    tried = []

    def fake_probe(bag, profile, out, rate_hz, bag_hz, frame_topic, overrides=None, visuals=False):
        tried.append(rate_hz)
        pct = 0.0 if rate_hz <= 22 else 40.0
        return {
            "rate_hz": round(rate_hz, 2),
            "drops": {"a": {"percent": 0.0}, "b": {"percent": pct}},
            "latency_ms": {"a": 10.0, "b": 50.0},
        }

    monkeypatch.setattr(tp, "probe", fake_probe)
    monkeypatch.setattr(tp, "frame_rate", lambda bag, topic: 10.0)
    r = tp.throughput(Path("bag"), "p", tmp_path, fixed_hz=30, bisections=3, log=lambda *_: None)
    assert tried == [30, 15, 22.5, 18.75, 20.625]
    assert r["max_rate_hz"] == 20.625 and r["first_failing_rate_hz"] == 22.5 and r["bottleneck"] == "b"
    assert r["at_fixed_rate"]["rate_hz"] == 30


def test_report_without_ground_truth_or_matplotlib_still_has_latency(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    report = {
        "profile": "p",
        "bag": "b",
        "mode": "realtime",
        "player": {"frames": 3},
        "metrics": {},
        "latency": {"/n/out": {"median_ms": 5.0, "p95_ms": 6.0, "p99_ms": 7.0, "fps": 10.0}},
        "drops": {"n": {"topic": "/n/out", "frames": 3, "dropped": 1, "percent": 33.3}},
    }
    page = write_report(
        report, {"latency": {"/n/out": {"t_s": [0, 1], "latency_ms": [5, 6]}}}, tmp_path / "r.html"
    ).read_text()
    assert "No ground truth" in page and "matplotlib is not installed" in page and "1 (33.3 %)" in page
    assert "<img" not in page
