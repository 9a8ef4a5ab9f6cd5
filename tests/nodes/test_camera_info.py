"""CameraInfo is checked before its K is used: NaN principal points gave an all-NaN cloud
published as ok, NaN/inf/1e300 focal lengths froze the odometry, a singular K made the detector
reject every frame."""

import math

import pytest
from sensor_msgs.msg import CameraInfo

from perception_nodes.camera_info import camera_info_problem, load_camera_info


def _info(fx=500.0, fy=500.0, cx=320.0, cy=240.0, w=640, h=480, d=(0.0,) * 5):
    m = CameraInfo()
    m.width, m.height = w, h
    m.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    m.d = list(d)
    return m


def test_a_good_camera_info_passes():
    assert camera_info_problem(_info()) == ""
    assert camera_info_problem(_info(w=0, h=0)) == ""  # size unknown: taken as is


@pytest.mark.parametrize(
    "kw,why",
    [
        ({"cx": math.nan}, "not finite"),
        ({"cy": math.nan}, "not finite"),
        ({"fx": math.nan}, "not finite"),
        ({"fy": math.inf}, "not finite"),
        ({"fx": 1e300}, "below"),
        ({"fx": 0.0}, "positive"),
        ({"fy": -500.0}, "positive"),
        ({"cx": 700.0}, "outside the 640x480 image"),
        ({"cy": -1.0}, "outside"),
        ({"w": 640, "h": 0}, "both width and height"),
        ({"d": (0.0, math.nan, 0.0, 0.0, 0.0)}, "distortion"),
    ],
)
def test_bad_camera_info_is_refused_with_the_reason(kw, why):
    assert why in camera_info_problem(_info(**kw))


def test_singular_and_malformed_k():
    m = _info()
    m.k = [0.0] * 9
    assert "positive" in camera_info_problem(m)
    m.k = [500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 1.0, 1.0]
    assert "last row" in camera_info_problem(m)


def test_camera_info_file_with_a_bad_matrix_is_refused(tmp_path):
    f = tmp_path / "cam.yaml"
    f.write_text(
        "image_width: 640\nimage_height: 480\ncamera_matrix: {rows: 3, cols: 3, data: [.nan, 0, 320, 0, 500, "
        "240, 0, 0, 1]}\n"
    )
    with pytest.raises(ValueError, match="not finite"):
        load_camera_info(f)


def test_the_detector_refuses_a_bad_camera_info_says_so_and_keeps_the_last_good_one(tmp_path, rclpy_context):
    """NaN principal points gave all-NaN outputs published as 'ok'; a singular K made the detector
    reject every frame (LinAlgError), though CameraInfo only feeds the optional ground positions."""
    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray
    from perception_msgs.msg import FrameStatus
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray

    from perception_nodes.detection_conversion import read_detections

    from perception_nodes.launcher import StackProcesses
    from rosgraph import Probe
    from test_task_nodes import _detector, _image, _profile

    model = _detector(tmp_path)
    prof = _profile("cam", "detection_node", model, score_threshold=0.5, use_camera_info=True, camera_height=1.5)
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        dets = probe.collect(Detection2DArray, "/cam/detections")
        statuses = probe.collect(FrameStatus, "/perception/frame_status")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub = probe.publisher(Image, "/cam/in")
        info_pub = probe.publisher(CameraInfo, "/camera_info")
        assert pub is not None and info_pub is not None, stack.log_text("cam")

        def send_info(msg):
            for _ in range(10):
                info_pub.publish(msg)
                probe.spin_until(lambda: False, 0.05)

        def frame(sec):
            pub.publish(_image(np.zeros((400, 800, 3), np.uint8), "rgb8", sec))
            assert probe.spin_until(
                lambda: (
                    any(d.header.stamp.sec == sec for d in dets) and any(st.header.stamp.sec == sec for st in statuses)
                ),
                30,
            ), stack.log_text("cam")
            return read_detections(next(d for d in dets if d.header.stamp.sec == sec))[0]

        send_info(_info(fx=0.0, fy=0.0, cx=0.0, cy=0.0, w=800, h=400))  # singular: refused, none yet
        d = frame(1)
        assert d.ground is None and next(s for s in statuses if s.header.stamp.sec == 1).ok
        send_info(_info(cx=400.0, cy=100.0, w=800, h=400))
        good = frame(2)
        assert good.ground is not None and math.isfinite(good.ground[2])
        send_info(_info(cx=math.nan, cy=100.0, w=800, h=400))  # refused: the last good one stays
        d = frame(3)
        assert d.ground == good.ground
        assert probe.spin_until(
            lambda: any(
                "CameraInfo rejected (k is not finite" in s.message and s.level == b"\x01"
                for a in diags
                for s in a.status
                if s.name == "/cam"
            ),
            10,
        )
        assert all(s.ok for s in statuses if s.node == "/cam")
        probe.close()
