"""matching_node as a process over real DDS: keypoints in the input image's pixels with the input's
header, matches against the previous frame with the homography, a frame without keypoints gives
an empty result (not an error), and stereo mode pairs two topics by stamp."""

from __future__ import annotations

import numpy as np
from perception_msgs.msg import FrameStatus, Keypoints, Matches
from sensor_msgs.msg import Image

from perception_nodes.image_conversion import numpy_to_image
from perception_nodes.launcher import StackProcesses

from const_models import H, W, const_model, write_card
from rosgraph import Probe, node_profile

K = 50


def _model(tmp_path, scores_value=0.5, name="matcher"):
    rng = np.random.default_rng(0)
    kp = np.stack([rng.uniform(10, W - 10, K), rng.uniform(10, H - 10, K)], 1).astype(np.float32)[None]
    desc = rng.normal(size=(1, K, 16)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=2, keepdims=True)
    path = const_model(
        tmp_path / f"{name}.onnx",
        {"keypoints": kp, "scores": np.full((1, K), scores_value, np.float32), "descriptors": desc},
    )
    write_card(path, "matching", classes=[])
    text = (tmp_path / f"{name}.card.yaml").read_text().replace("resize: letterbox", "resize: stretch")
    (tmp_path / f"{name}.card.yaml").write_text(text)
    return path, kp[0]


def _profile(name, model, **params):
    return node_profile(
        name, "matching_node", model, {"image1": f"/{name}/in1"}, **{"geometry": "homography", **params}
    )


def _image(sec, shape=(2 * H, 2 * W, 3)):
    msg = numpy_to_image(np.full(shape, 128, np.uint8), "rgb8")
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 5
    return msg


def test_sequential_matches_and_keypoints_in_input_pixels(tmp_path, rclpy_context):
    model, kp = _model(tmp_path)
    with StackProcesses(_profile("m", model), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        kps = probe.collect(Keypoints, "/m/keypoints")
        matches = probe.collect(Matches, "/m/matches")
        pub = probe.publisher(Image, "/m/in")
        assert pub is not None, stack.log_text("m")
        for sec in (1, 2):
            pub.publish(_image(sec))
        assert probe.spin_until(lambda: len(kps) >= 2 and len(matches) >= 2, 30), stack.log_text("m")
        k = kps[0]
        assert (k.header.stamp.sec, k.header.frame_id) == (1, "camera_optical_frame") and len(k.x) == K
        # network pixel -> input pixel for a 2x stretch: (x + 0.5) * 2 - 0.5
        np.testing.assert_allclose(np.array(k.x), (kp[:, 0] + 0.5) * 2 - 0.5, atol=1e-3)
        first, second = sorted(matches, key=lambda m: m.header.stamp.sec)
        assert first.model == "none" and len(first.current_index) == 0
        assert second.reference_stamp.sec == 1 and second.header.stamp.sec == 2
        assert len(second.current_index) == K and second.model == "homography" and second.inlier_count == K
        Hm = np.array(second.matrix).reshape(3, 3)
        np.testing.assert_allclose(Hm / Hm[2, 2], np.eye(3), atol=1e-6)  # the same keypoints: identity
        probe.close()


def test_no_keypoints_is_an_empty_result_and_stereo_pairs_topics(tmp_path, rclpy_context):
    empty, _ = _model(tmp_path, scores_value=0.0, name="empty")
    model, _ = _model(tmp_path)
    prof = _profile("e", empty)
    prof.nodes += _profile("s", model, mode="stereo").nodes
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        kps = probe.collect(Keypoints, "/e/keypoints")
        status = probe.collect(FrameStatus, "/perception/frame_status")
        smatch = probe.collect(Matches, "/s/matches")
        pub = probe.publisher(Image, "/e/in")
        p0, p1 = probe.publisher(Image, "/s/in"), probe.publisher(Image, "/s/in1")
        assert pub is not None and p0 is not None and p1 is not None, stack.log_text("e") + stack.log_text("s")
        pub.publish(_image(3))
        pub.publish(_image(4))
        p0.publish(_image(7))
        p1.publish(_image(7))
        ok = probe.spin_until(lambda: len(kps) >= 2 and smatch and len([s for s in status if s.node == "/e"]) >= 2, 30)
        assert ok, stack.log_text("e") + stack.log_text("s")
        assert all(len(k.x) == 0 for k in kps)
        assert all(s.ok for s in status if s.node == "/e")
        m = smatch[0]
        assert m.header.stamp.sec == 7 and m.reference_stamp.sec == 7 and len(m.current_index) == K
        probe.close()
