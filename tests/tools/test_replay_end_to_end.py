"""The first end-to-end slice: a bag replayed in lockstep through the generic ONNX node."""

from __future__ import annotations

import json

from mcap.reader import make_reader

from perception_nodes.bag_io import bag_info, header_stamp_ns, read_messages
from perception_nodes.tools.cli import eval_report
from perception_nodes.tools.replay import replay


def test_lockstep_replay_gives_exactly_one_result_per_frame(tmp_path, demo_bag, demo_model):
    out = tmp_path / "replay"
    summary = replay(
        demo_bag,
        "generic_replay",
        out,
        "lockstep",
        overrides={"generic": {"model_path": str(demo_model), "onnxruntime_threads": 1}},
        timeout=300,
        quiet=True,
    )
    assert summary["player_exit_code"] == 0, summary
    assert summary["player"]["frames"] == 20 and summary["player"]["frames_lost"] == 0
    assert summary["nodes_died"] == []
    res = summary["results"]["/generic/result"]
    assert res == {"results": 20, "frames_with_one_result": 20, "missing": 0, "duplicated": 0, "unknown_stamps": 0}
    # Stamps in the recording equal the bag's input stamps, in order.
    inputs = [header_stamp_ns(c) for _t, _m, _ts, c in read_messages(demo_bag, ["/camera/image_raw"])]
    outputs = [header_stamp_ns(c) for _t, _m, _ts, c in read_messages(out / "recording", ["/generic/result"])]
    assert outputs == inputs
    assert json.loads((out / "replay_summary.json").read_text())["results"]["frames"] == 20
    # what the terminal's progress bar read: every frame of the bag played, none lost
    assert json.loads((out / "logs" / "player_progress.json").read_text()) == {
        "frames": 20,
        "frames_total": 20,
        "lost": 0,
    }
    # a bag without ground truth still gets latency: one entry per result topic, every frame timed
    report = eval_report(summary, demo_bag)
    lat = report["latency"]["/generic/result"]
    # every output is timed: from the player's publish time of its frame
    assert report["metrics"] == {} and lat["results"] == 20 and lat["untimed"] == 0
    assert 0 < lat["median_ms"] < 10_000


def test_recorded_mcap_embeds_schemas_foxglove_can_read(tmp_path, demo_bag, demo_model):
    out = tmp_path / "replay"
    replay(
        demo_bag,
        "generic_replay",
        out,
        "lockstep",
        overrides={"generic": {"model_path": str(demo_model), "onnxruntime_threads": 1}},
        timeout=300,
        quiet=True,
    )
    mcap_files = list((out / "recording").glob("*.mcap"))
    assert len(mcap_files) == 1
    with open(mcap_files[0], "rb") as f:
        summary = make_reader(f).get_summary()
    schemas = {s.name: s for s in summary.schemas.values()}
    assert {"perception_msgs/msg/InferenceResult", "perception_msgs/msg/FrameStatus", "sensor_msgs/msg/Image"} <= set(
        schemas
    )
    inf = schemas["perception_msgs/msg/InferenceResult"]
    assert inf.encoding == "ros2msg" and b"Tensor[] outputs" in inf.data
    assert b"MSG: perception_msgs/Tensor" in inf.data  # nested definitions included
    topics = {c.topic: c.message_encoding for c in summary.channels.values()}
    assert topics["/generic/result"] == "cdr"
    assert bag_info(out / "recording").topics["/generic/result"][1] == 20
