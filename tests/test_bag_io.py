"""Bag reading/writing: stamps from CDR, corrupt and missing bags give precise errors."""

from __future__ import annotations

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


def test_perception_msgs_round_trip_through_a_bag(tmp_path):
    store = typestore()
    T = store.types
    det = T["perception_msgs/msg/Detection2D"](class_id=2, class_name="cone", score=0.9, center_x=10.0,
                                               center_y=20.0, size_x=5.0, size_y=6.0, id=-1)
    hdr = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=3, nanosec=4), frame_id="cam")
    arr = T["perception_msgs/msg/Detection2DArray"](header=hdr, detections=[det])
    with BagWriter(tmp_path / "b", store) as w:
        w.write("/det", arr, 3_000_000_004)
    (_t, msgtype, _ts, cdr), = read_messages(tmp_path / "b")
    back = store.deserialize_cdr(cdr, msgtype)
    assert back.detections[0].class_name == "cone" and back.detections[0].id == -1
    assert header_stamp_ns(cdr) == 3_000_000_004


def test_missing_truncated_and_wrong_topic(tmp_path, demo_bag):
    with pytest.raises(BagError, match="does not exist"):
        bag_info(tmp_path / "nothing")
    with pytest.raises(BagError, match=r"has no topic\(s\) \['/nope'\]"):
        list(read_messages(demo_bag, ["/nope"]))
    # A truncated MCAP file: a clear error, not a traceback from deep inside the reader.
    src = next(demo_bag.glob("*.mcap"))
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(BagError, match="broken.mcap"):
        list(read_messages(broken))
    with pytest.raises(BagError, match="already exists"):
        BagWriter(demo_bag)


def test_header_stamp_from_short_buffer():
    with pytest.raises(BagError, match="too short"):
        header_stamp_ns(b"\x00\x01\x00\x00")
