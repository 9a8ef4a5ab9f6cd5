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


@pytest.mark.parametrize("kw,why", [
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
])
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
    f.write_text("image_width: 640\nimage_height: 480\ncamera_matrix: {rows: 3, cols: 3, data: [.nan, 0, 320, 0, 500, 240, 0, 0, 1]}\n")
    with pytest.raises(ValueError, match="not finite"):
        load_camera_info(f)
