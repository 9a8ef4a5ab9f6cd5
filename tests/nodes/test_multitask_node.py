"""multitask_node as a process over real DDS: one multi-task model, one inference per frame, and
in lockstep exactly one message per frame on every per-frame output the four task nodes publish,
under their names (/detector, /segmenter, /odometry, /matcher) and with the input's header; the
detector's and the segmenter's LabelInfo each name their own classes; a single-task model is
refused at configure with a clear message."""

from __future__ import annotations

import numpy as np
from nav_msgs.msg import Odometry, Path
from perception_msgs.msg import Keypoints, Matches
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, LabelInfo

from perception_nodes.detection_conversion import label_map
from perception_nodes.image_conversion import image_to_numpy, numpy_to_image
from perception_nodes.launcher import StackProcesses
from perception_nodes.qos import latched_qos

from const_models import const_detector, const_multitask
from rosgraph import Probe, node_profile


def _image(arr, sec):
    msg = numpy_to_image(arr, "rgb8")
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec = sec
    return msg


def _info():
    msg = CameraInfo()
    msg.header.frame_id = "camera_optical_frame"
    msg.width, msg.height = 640, 480
    msg.k = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    return msg


def test_multitask_node_publishes_every_task_once_per_frame_under_the_task_nodes_names(tmp_path, rclpy_context):
    model, _card = const_multitask(tmp_path)
    prof = node_profile("multitask", "multitask_node", model, {"camera_info": "/cam/camera_info"})
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        got = {
            "dets": probe.collect(Detection2DArray, "/detector/detections"),
            "labels": probe.collect(Image, "/segmenter/labels"),
            "depth": probe.collect(Image, "/odometry/depth"),
            "odom": probe.collect(Odometry, "/odometry/odometry"),
            "path": probe.collect(Path, "/odometry/path"),
            "kps": probe.collect(Keypoints, "/matcher/keypoints"),
            "matches": probe.collect(Matches, "/matcher/matches"),
        }
        det_info = probe.collect(LabelInfo, "/detector/label_info", latched_qos())
        seg_info = probe.collect(LabelInfo, "/segmenter/label_info", latched_qos())
        pub = probe.publisher(Image, "/multitask/in")
        info_pub = probe.publisher(CameraInfo, "/cam/camera_info")
        assert pub is not None and info_pub is not None, stack.log_text("multitask")
        for _ in range(10):
            info_pub.publish(_info())
            probe.spin_until(lambda: False, 0.05)
        texture = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        for sec in (1, 2, 3):
            pub.publish(_image(texture, sec))
        assert probe.spin_until(lambda: all(len(v) >= 3 for v in got.values()), 60), stack.log_text("multitask")
        probe.spin_until(lambda: False, 0.5)  # nothing more may come
        for name, msgs in got.items():
            stamps = sorted(m.header.stamp.sec for m in msgs)
            assert stamps == [1, 2, 3], (name, stamps)
        for name in ("dets", "labels", "depth", "kps", "matches"):
            assert got[name][0].header.frame_id == "camera_optical_frame", name
        assert [r.hypothesis.class_id for d in got["dets"][0].detections for r in d.results] == ["0"]
        labels = image_to_numpy(got["labels"][0])
        assert labels.shape == (480, 640) and labels[0, 0] == 0 and labels[-1, 0] == 2
        depth = image_to_numpy(got["depth"][0])
        assert depth.shape == (480, 640) and 2.0 <= float(np.nanmin(depth)) < float(np.nanmax(depth)) <= 7.2
        assert len(got["kps"][0].x) == 3
        assert probe.spin_until(lambda: det_info and seg_info, 10), "both LabelInfo are latched"
        assert label_map(det_info[0]) == {0: "person", 1: "car", 2: "cone"}
        assert label_map(seg_info[0]) == {0: "sky", 1: "ground", 2: "wall"}
        assert stack.alive()["multitask"]
        probe.close()


def test_multitask_node_refuses_a_single_task_model(tmp_path, rclpy_context):
    model, _card = const_detector(tmp_path, [[0, 0, 10, 10]], [0.9], [0])
    prof = node_profile("mt", "multitask_node", model)
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        assert probe.spin_until(lambda: "this node needs a multitask model" in stack.log_text("mt"), 30), (
            stack.log_text("mt")
        )
        probe.close()
