"""Bag reading/writing: stamps from CDR, corrupt and missing bags give precise errors."""

from __future__ import annotations

import numpy as np
import pytest

from perception_nodes.bag_io import BagError, BagWriter, bag_info, header_stamp_ns, read_messages, typestore


def test_demo_bag_topics_and_raw_stamps(demo_bag):
    info = bag_info(demo_bag)
    assert info.topics["/camera/image_raw"] == ("sensor_msgs/msg/Image", 20)
    assert info.topics["/camera/camera_info"] == ("sensor_msgs/msg/CameraInfo", 20)
    store = typestore()
    for _t, msgtype, ts, cdr in read_messages(demo_bag, ["/camera/image_raw"]):
        msg = store.deserialize_cdr(cdr, msgtype)
        assert header_stamp_ns(cdr) == msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == ts
        assert (msg.width, msg.height, msg.encoding) == (640, 480, "rgb8")


def test_vision_msgs_detections_round_trip_through_a_bag(tmp_path):
    """vision_msgs (built from the project's definitions where no package exists) is registered in
    the bags' typestore: detections and their unknown ground positions (NaN) survive a bag."""
    from types import SimpleNamespace

    from perception_nodes.detection_conversion import detections_message, read_detections

    store = typestore()
    T = store.types
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=4), frame_id="cam")
    det = SimpleNamespace(boxes=np.array([[5.0, 17.0, 15.0, 23.0], [0, 0, 4, 4]]), class_ids=[2, 0], scores=[0.9, 0.4])
    ros = detections_message(hdr, det, (np.array([[1.0, 1.5, 12.0], [0, 0, 0]]), np.array([True, False])))
    # the rclpy message -> the bag's (rosbags) type, field for field through CDR
    from rclpy.serialization import serialize_message

    raw = serialize_message(ros)
    arr = store.deserialize_cdr(raw, "vision_msgs/msg/Detection2DArray")
    with BagWriter(tmp_path / "b", store) as w:
        w.write("/det", arr, 3_000_000_004)
    ((_t, msgtype, _ts, cdr),) = read_messages(tmp_path / "b")
    assert msgtype == "vision_msgs/msg/Detection2DArray" and header_stamp_ns(cdr) == 3_000_000_004
    cone, other = read_detections(store.deserialize_cdr(cdr, msgtype), ["person", "car", "cone"])
    assert (cone.class_name, cone.score, cone.ground) == ("cone", pytest.approx(0.9), (1.0, 1.5, 12.0))
    assert (cone.x0, cone.y0, cone.x1, cone.y1) == (5.0, 17.0, 15.0, 23.0)
    assert other.class_name == "person" and other.ground is None


def test_missing_truncated_and_wrong_topic(tmp_path, demo_bag):
    with pytest.raises(BagError, match="does not exist"):
        bag_info(tmp_path / "nothing")
    with pytest.raises(BagError, match=r"has no topic\(s\) \['/nope'\]"):
        list(read_messages(demo_bag, ["/nope"]))
    # An MCAP cut before its first complete message: a clear error, not a traceback from deep
    # inside the reader.
    src = next(demo_bag.glob("*.mcap"))
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(src.read_bytes()[:200])
    with pytest.raises(BagError, match="broken.mcap"):
        list(read_messages(broken))
    with pytest.raises(BagError, match="already exists"):
        BagWriter(demo_bag)


def test_header_stamp_from_short_buffer():
    with pytest.raises(BagError, match="too short"):
        header_stamp_ns(b"\x00\x01\x00\x00")


def test_a_bag_reads_with_the_message_definitions_it_was_written_with(tmp_path):
    """perception_msgs evolved (Detection2D gained ground_* fields, then detections moved to
    vision_msgs): a bag recorded before still reads, with the definition its MCAP stores."""
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg

    old = get_typestore(Stores.ROS2_JAZZY)
    old.register(
        get_types_from_msg(
            "int32 class_id\nstring class_name\nfloat32 score\nfloat64 center_x\n"
            "float64 center_y\nfloat64 size_x\nfloat64 size_y\nint64 id -1\n",
            "perception_msgs/msg/Detection2D",
        )
    )
    old.register(
        get_types_from_msg(
            "std_msgs/Header header\nperception_msgs/Detection2D[] detections\n", "perception_msgs/msg/Detection2DArray"
        )
    )
    T = old.types
    det = T["perception_msgs/msg/Detection2D"](
        class_id=1, class_name="car", score=0.5, center_x=1.0, center_y=2.0, size_x=3.0, size_y=4.0, id=7
    )
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="cam")
    with BagWriter(tmp_path / "old", old) as w:
        w.write("/det", T["perception_msgs/msg/Detection2DArray"](header=hdr, detections=[det, det]), 1_000_000_000)
    ((_t, msgtype, _ts, cdr),) = read_messages(tmp_path / "old")
    back = typestore(tmp_path / "old").deserialize_cdr(cdr, msgtype)
    assert [(d.class_name, d.id, d.size_y) for d in back.detections] == [("car", 7, 4.0)] * 2
    with pytest.raises(KeyError):  # detections moved to vision_msgs: the installed store has no such type
        typestore().deserialize_cdr(cdr, msgtype)
    from perception_nodes.detection_conversion import read_detections

    boxes = read_detections(back)  # and the evaluation still reads such a recording
    assert [(b.class_name, b.x0, b.y1, b.ground) for b in boxes] == [("car", -0.5, 4.0, None)] * 2


@pytest.mark.parametrize("fraction", [0.5, 0.99])
def test_a_truncated_mcap_reads_up_to_the_cut(tmp_path, demo_bag, fraction):
    """A crash or a killed recorder leaves an MCAP without footer (and a bag folder without
    metadata.yaml): every message before the cut is read, and bag_info says how many."""
    src = next(demo_bag.glob("*.mcap"))
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "cut.mcap").write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
    full = [(t, ts) for t, _m, ts, _c in read_messages(demo_bag)]
    info = bag_info(cut)
    msgs = list(read_messages(cut))
    assert 0 < len(msgs) <= len(full) and info.recovered == len(msgs)
    assert set((t, ts) for t, _m, ts, _c in msgs) <= set(full)
    assert f"recovered {len(msgs)} messages" in info.note
    images = list(read_messages(cut, ["/camera/image_raw"]))
    assert images and all(header_stamp_ns(c) == ts for _t, _m, ts, c in images)
    if fraction == 0.99:
        assert len(images) >= 18  # all but the last one or two frames of 20
    assert bag_info(demo_bag).recovered is None and bag_info(demo_bag).note == ""


def test_a_flushed_writer_that_is_killed_leaves_a_readable_bag(tmp_path):
    """What the recorder does every flush_period: after flush(), the file on disk holds complete
    chunks, so a SIGKILL later loses only what came after."""
    import shutil

    import numpy as np

    w = BagWriter(tmp_path / "live", typestore())
    hdr = w.header(1_000_000_000, "cam")
    for i in range(5):
        w.write(
            "/camera/image_raw",
            w.image(w.header(1_000_000_000 + i, "cam"), np.zeros((4, 6, 3), np.uint8), "rgb8"),
            1_000_000_000 + i,
        )
    w.flush()
    w.write("/camera/image_raw", w.image(hdr, np.zeros((4, 6, 3), np.uint8), "rgb8"), 2_000_000_000)  # not flushed
    shutil.copytree(tmp_path / "live", tmp_path / "killed")  # the files as a kill would leave them
    w.close()
    info = bag_info(tmp_path / "killed")
    assert info.recovered == 5 and info.topics["/camera/image_raw"] == ("sensor_msgs/msg/Image", 5)
    assert [ts for *_x, ts, _c in read_messages(tmp_path / "killed")] == [10**9 + i for i in range(5)]
    assert bag_info(tmp_path / "live").recovered is None  # closed normally: the complete bag
