"""Node processes over real DDS (what launch_testing does on a ROS install)."""

from __future__ import annotations

import array

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from perception_msgs.msg import FrameStatus, InferenceResult
from sensor_msgs.msg import Image

from perception_nodes.image_conversion import numpy_to_image
from perception_nodes.launcher import StackProcesses
from perception_nodes.profile import Profile
from rosgraph import Probe, node_profile


def generic_node(name: str, model: str, **params) -> Profile:
    return node_profile(name, "generic_onnx_node", model, **params)


def image(i: int, encoding: str = "rgb8", h: int = 120, w: int = 160) -> Image:
    arr = np.full((h, w, 3), i % 255, np.uint8)
    msg = numpy_to_image(arr, "rgb8")
    msg.encoding = encoding
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = 100 + i, 5000
    return msg


def test_generic_node_answers_every_frame_survives_bad_ones_and_reports(tmp_path, demo_model, rclpy_context):
    with StackProcesses(generic_node("gen", demo_model), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        results = probe.collect(InferenceResult, "/gen/result")
        statuses = probe.collect(FrameStatus, "/perception/frame_status")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub = probe.publisher(Image, "/gen/in")
        assert pub is not None, stack.log_text("gen")

        bad_encoding = image(1, encoding="bayer_gbrg16")
        short = image(2)
        short.data = array.array("B", bytes(10))
        frames = [image(0), bad_encoding, short, image(3, h=480, w=640)]
        for m in frames:
            pub.publish(m)
        assert probe.spin_until(lambda: len(statuses) >= 4, 30), stack.log_text("gen")

        by_stamp = {s.header.stamp.sec: s for s in statuses}
        assert by_stamp[100].ok and by_stamp[103].ok
        assert not by_stamp[101].ok and "bayer_gbrg16" in by_stamp[101].detail
        assert not by_stamp[102].ok and "'data' has 10 bytes" in by_stamp[102].detail
        assert all(s.node == "/gen" for s in statuses)
        # Outputs carry the input stamp and frame_id; one per good frame.
        assert sorted(r.header.stamp.sec for r in results) == [100, 103]
        assert {r.header.frame_id for r in results} == {"camera_optical_frame"}
        means = {t.name: np.asarray(t.data).reshape(t.shape) for t in results[0].outputs}
        np.testing.assert_allclose(means["channel_means"][0, :3], 0.0, atol=1e-6)
        assert stack.alive()["gen"], "node died on bad input"

        def diag_with_errors():
            for d in diags:
                for s in d.status:
                    kv = {v.key: v.value for v in s.values}
                    if s.name == "/gen" and kv.get("errors") == "2":
                        return kv
            return None

        assert probe.spin_until(lambda: diag_with_errors() is not None, 10)
        kv = diag_with_errors()
        assert kv["frames_out"] == "2" and "onnxruntime" in kv["backend"]
        assert float(kv["infer_ms_median"]) > 0 and "preprocess_ms_p95" in kv
        probe.close()


def test_missing_model_fails_configure_but_node_stays_up_and_says_why(tmp_path, rclpy_context):
    with StackProcesses(generic_node("nomodel", tmp_path / "missing.onnx"), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        diags = probe.collect(DiagnosticArray, "/diagnostics")

        def error_status():
            return [s for d in diags for s in d.status if s.name == "/nomodel" and s.level == b"\x02"]

        assert probe.spin_until(lambda: bool(error_status()), 60), stack.log_text("nomodel")
        assert "does not exist" in error_status()[0].message
        assert stack.alive()["nomodel"]
        assert "configure failed, node stays unconfigured" in stack.log_text("nomodel")
        probe.close()


def test_invalid_parameter_is_reported_precisely(tmp_path, demo_model, rclpy_context):
    with StackProcesses(generic_node("badparam", demo_model, input_policy="sometimes"), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        assert probe.spin_until(
            lambda: any(s.name == "/badparam" and "input_policy" in s.message for d in diags for s in d.status), 60
        ), stack.log_text("badparam")
        assert stack.alive()["badparam"]
        probe.close()
