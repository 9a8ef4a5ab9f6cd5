"""detection_node and segmentation_node as processes over real DDS: outputs carry the input's
header, boxes are in the input image's pixels, mono images are converted, wrong or corrupt
models fail configure with a clear diagnostic while the node stays up."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from vision_msgs.msg import Detection2DArray, LabelInfo
from sensor_msgs.msg import Image

from perception_nodes.image_conversion import image_to_numpy, numpy_to_image
from perception_nodes.launcher import StackProcesses

from const_models import H, W, const_model, write_card
from rosgraph import Probe, node_profile


def _profile(name, exe, model, **params):
    return node_profile(name, exe, model, **params)


def _image(arr, encoding, sec):
    msg = numpy_to_image(arr, encoding)
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 42
    return msg


def _detector(tmp_path):
    path = const_model(
        tmp_path / "det.onnx",
        {
            "boxes": np.array([[[100, 96, 200, 160], [0, 0, 0, 0]]], np.float32),
            "scores": np.array([[0.9, 0.0]], np.float32),
            "labels": np.array([[1, -1]], np.int32),
        },
    )
    write_card(path, "detection")
    return path


def test_detection_node_publishes_boxes_in_input_pixels(tmp_path, rclpy_context):
    """A subscriber typed on vision_msgs/Detection2DArray gets the detections over DDS, and a late
    subscriber to ~/label_info (transient local) gets the card's class names."""
    from perception_nodes.detection_conversion import label_map, read_detections
    from perception_nodes.qos import latched_qos

    model = _detector(tmp_path)
    with StackProcesses(_profile("det", "detection_node", model, score_threshold=0.5), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        dets = probe.collect(Detection2DArray, "/det/detections")
        annotated = probe.collect(Image, "/det/image_annotated")
        pub = probe.publisher(Image, "/det/in")
        assert pub is not None, stack.log_text("det")
        assert probe.wait_for_publisher("/det/image_annotated")
        pub.publish(_image(np.zeros((400, 800, 3), np.uint8), "rgb8", 7))
        pub.publish(_image(np.zeros((400, 800), np.uint8), "mono8", 8))  # mono into an RGB model
        assert probe.spin_until(lambda: len(dets) >= 2 and len(annotated) >= 2, 30), stack.log_text("det")
        for msg, sec in zip(sorted(dets, key=lambda m: m.header.stamp.sec), (7, 8)):
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (
                sec,
                42,
                "camera_optical_frame",
            )
            (d,) = msg.detections
            # network box (100, 96)-(200, 160) at scale 0.64 with a 64 px band -> image pixels
            (hyp,) = d.results
            assert hyp.hypothesis.class_id == "1" and abs(hyp.hypothesis.score - 0.9) < 1e-6
            assert d.header == msg.header and np.isnan(hyp.pose.pose.position.z)  # no ground position
            np.testing.assert_allclose(
                [d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y],
                [150 / 0.64, 64 / 0.64, 100 / 0.64, 64 / 0.64],
                rtol=1e-9,
            )
        infos = probe.collect(LabelInfo, "/det/label_info", latched_qos())  # joins after it was published
        assert probe.spin_until(lambda: len(infos) >= 1, 10), "LabelInfo is latched"
        assert label_map(infos[0]) == {0: "person", 1: "car", 2: "cone"} and infos[0].threshold == pytest.approx(0.5)
        assert [b.class_name for b in read_detections(dets[0], label_map(infos[0]))] == ["car"]
        img = image_to_numpy(annotated[0])
        assert img.shape == (400, 800, 3) and img.any(), "the box is drawn"
        assert stack.alive()["det"]
        probe.close()


def test_detection_node_takes_compressed_images_as_image_transport_names_them(tmp_path, rclpy_context):
    """input_transport: compressed subscribes to sensor_msgs/CompressedImage on the remapped image
    topic + /compressed (image_transport's compressed plugin); boxes and header as for raw frames."""
    from sensor_msgs.msg import CompressedImage

    from perception_nodes.image_conversion import numpy_to_compressed

    model = _detector(tmp_path)
    prof = _profile("det", "detection_node", model, score_threshold=0.5, input_transport="compressed")
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        dets = probe.collect(Detection2DArray, "/det/detections")
        pub = probe.publisher(CompressedImage, "/det/in/compressed")
        assert pub is not None, stack.log_text("det")
        msg = numpy_to_compressed(np.zeros((400, 800, 3), np.uint8), "rgb8", "jpeg")
        msg.header.frame_id, msg.header.stamp.sec = "camera_optical_frame", 9
        pub.publish(msg)
        assert probe.spin_until(lambda: dets, 30), stack.log_text("det")
        assert (dets[0].header.stamp.sec, dets[0].header.frame_id) == (9, "camera_optical_frame")
        (d,) = dets[0].detections
        assert d.results[0].hypothesis.class_id == "1"
        np.testing.assert_allclose([d.bbox.size_x, d.bbox.size_y], [100 / 0.64, 64 / 0.64], rtol=1e-9)
        probe.close()


def test_detection_node_places_detections_on_the_ground_once_camera_info_arrives(tmp_path, rclpy_context):
    from sensor_msgs.msg import CameraInfo

    from visualization_msgs.msg import Marker, MarkerArray

    from perception_nodes.detection_conversion import read_detections

    model = _detector(tmp_path)
    prof = _profile("det", "detection_node", model, score_threshold=0.5, use_camera_info=True, camera_height=1.5)
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        dets = probe.collect(Detection2DArray, "/det/detections")
        markers = probe.collect(MarkerArray, "/det/markers")
        pub = probe.publisher(Image, "/det/in")
        info_pub = probe.publisher(CameraInfo, "/camera_info")
        assert pub is not None and info_pub is not None, stack.log_text("det")
        pub.publish(_image(np.zeros((400, 800, 3), np.uint8), "rgb8", 1))  # no CameraInfo yet
        assert probe.spin_until(lambda: len(dets) >= 1, 30), stack.log_text("det")
        info = CameraInfo()
        info.width, info.height = 800, 400
        info.k = [500.0, 0.0, 400.0, 0.0, 500.0, 100.0, 0.0, 0.0, 1.0]
        for _ in range(20):  # until the node has it (its subscription may still be matching)
            info_pub.publish(info)
            probe.spin_until(lambda: False, 0.05)
        pub.publish(_image(np.zeros((400, 800, 3), np.uint8), "rgb8", 2))
        assert probe.spin_until(lambda: len(dets) >= 2, 30), stack.log_text("det")
        before, after = (read_detections(m)[0] for m in sorted(dets, key=lambda m: m.header.stamp.sec))
        assert before.ground is None
        # box bottom-centre (150 / 0.64, 150) -> ray ((u - 400) / 500, 0.1, 1) meets y = 1.5 m at 15 m
        expected = [15 * (150 / 0.64 - 400) / 500, 1.5, 15.0]
        np.testing.assert_allclose(after.ground, expected, rtol=1e-9)
        # the same place in 3D for RViz / Foxglove: a cylinder standing there (rising along -y) and its label
        assert probe.spin_until(lambda: any(len(m.markers) == 3 for m in markers), 10), "markers on the ground"
        clear, body, text = next(m for m in markers if len(m.markers) == 3).markers
        assert clear.action == Marker.DELETEALL and body.type == Marker.CYLINDER and body.header.stamp.sec == 2
        np.testing.assert_allclose([body.pose.position.x, body.pose.position.z], [expected[0], 15.0], rtol=1e-9)
        assert body.pose.position.y < 1.5 and text.text.startswith("car ")
        probe.close()


def _error_status(diags, name):
    return [s for d in diags for s in d.status if s.name == name and s.level == b"\x02"]


def test_wrong_task_and_corrupt_models_fail_configure_clearly(tmp_path, rclpy_context):
    seg = const_model(tmp_path / "seg.onnx", {"labels": np.zeros((1, H, W), np.int32)})
    write_card(seg, "segmentation", classes=["a", "b"])
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx file at all")
    (tmp_path / "corrupt.card.yaml").write_text(
        yaml.safe_dump(
            {
                "task": "detection",
                "classes": ["x"],
                "sha256": hashlib.sha256(corrupt.read_bytes()).hexdigest(),
                "input": {"name": "image", "height": H, "width": W, "mean": [0, 0, 0], "std": [1, 1, 1]},
            }
        )
    )
    profile = _profile("wrong", "detection_node", seg)
    profile.nodes += _profile("broken", "detection_node", corrupt).nodes
    with StackProcesses(profile, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        ok = probe.spin_until(lambda: _error_status(diags, "/wrong") and _error_status(diags, "/broken"), 60)
        assert ok, stack.log_text("wrong") + stack.log_text("broken")
        assert "is a segmentation model" in _error_status(diags, "/wrong")[0].message
        assert "corrupt.onnx" in _error_status(diags, "/broken")[0].message
        assert stack.alive() == {"wrong": True, "broken": True}
        probe.close()


def test_segmentation_node_labels_at_input_size(tmp_path, rclpy_context):
    net = np.zeros((1, H, W), np.int32)
    net[0, :, W // 2 :] = 2
    seg = const_model(tmp_path / "seg.onnx", {"labels": net})
    write_card(seg, "segmentation", classes=["sky", "road", "car"], colors=[[0, 0, 0], [128, 64, 128], [0, 0, 142]])
    with StackProcesses(_profile("seg", "segmentation_node", seg), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        labels = probe.collect(Image, "/seg/labels")
        overlay = probe.collect(Image, "/seg/overlay")
        pub = probe.publisher(Image, "/seg/in")
        assert pub is not None, stack.log_text("seg")
        assert probe.wait_for_publisher("/seg/overlay")
        pub.publish(_image(np.full((400, 800, 3), 200, np.uint8), "rgb8", 9))
        assert probe.spin_until(lambda: labels and overlay, 30), stack.log_text("seg")
        lab = image_to_numpy(labels[0])
        assert labels[0].encoding == "mono8" and lab.shape == (400, 800)
        assert (lab[:, :400] == 0).all() and (lab[:, 400:] == 2).all()
        assert labels[0].header.stamp.sec == 9 and labels[0].header.frame_id == "camera_optical_frame"
        assert overlay[0].encoding == "rgb8" and image_to_numpy(overlay[0])[0, 799].tolist() == [100, 100, 171]
        probe.close()
