"""depth_node and odometry_node as processes over real DDS: depth at the input's size with the
input's header, the point cloud only once CameraInfo is known, one odometry message per frame in
lockstep (a static camera stays at the origin), and a clear configure error for a wrong model."""

from __future__ import annotations

import numpy as np
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from perception_nodes.cloud_conversion import cloud2_to_points
from perception_nodes.image_conversion import image_to_numpy, numpy_to_image
from perception_nodes.launcher import StackProcesses

from const_models import H, W, const_model, write_card
from rosgraph import Probe, node_profile


def _depth_model(tmp_path, value=5.0, **depth):
    path = const_model(tmp_path / "depth.onnx", {"depth": np.full((1, 1, H, W), value, np.float32)})
    write_card(path, "depth", classes=[], depth={"min": 0.1, "max": 100.0, "scale_source": "supervised", **depth})
    text = (tmp_path / "depth.card.yaml").read_text().replace("resize: letterbox", "resize: stretch")
    (tmp_path / "depth.card.yaml").write_text(text)
    return path


def _profile(name, exe, model, **params):
    return node_profile(name, exe, model, {"camera_info": f"/{name}/camera_info"}, **params)


def _image(arr, sec):
    msg = numpy_to_image(arr, "rgb8")
    msg.header.frame_id = "camera_optical_frame"
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, 42
    return msg


def _info(width, height, f=300.0):
    msg = CameraInfo()
    msg.header.frame_id = "camera_optical_frame"
    msg.width, msg.height = width, height
    msg.k = [f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0]
    return msg


def _send_info(probe, info_pub):
    """CameraInfo a few times over ~1 s (latched-like: the node may subscribe late)."""
    for _ in range(20):
        info_pub.publish(_info(320, 240))
        probe.spin_until(lambda: False, 0.05)


def _publishers(probe, stack, name):
    """The node's image and CameraInfo inputs, once it subscribes to them."""
    pub = probe.publisher(Image, f"/{name}/in")
    info_pub = probe.publisher(CameraInfo, f"/{name}/camera_info")
    assert pub is not None and info_pub is not None, stack.log_text(name)
    return pub, info_pub


def _diagnostic_values(diags, node, key):
    """Every value of ``key`` in ``node``'s status across the collected /diagnostics arrays."""
    return [kv.value for d in diags for st in d.status if st.name == node for kv in st.values if kv.key == key]


def test_odometry_node_publishes_depth_cloud_and_one_odometry_per_frame(tmp_path, rclpy_context):
    model = _depth_model(tmp_path)
    prof = _profile("vo", "odometry_node", model, publish_points=True, point_decimation=8)
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        depth = probe.collect(Image, "/vo/depth")
        points = probe.collect(PointCloud2, "/vo/points")
        odom = probe.collect(Odometry, "/vo/odometry")
        path = probe.collect(Path, "/vo/path")
        pub, info_pub = _publishers(probe, stack, "vo")
        texture = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        pub.publish(_image(texture, 1))  # before any CameraInfo: depth and odometry, no cloud
        assert probe.spin_until(lambda: depth and odom, 30), stack.log_text("vo")
        assert not points
        _send_info(probe, info_pub)
        for sec in (2, 3):
            pub.publish(_image(texture, sec))
        assert probe.spin_until(lambda: len(depth) >= 3 and len(odom) >= 3 and points and len(path) >= 3, 30), (
            stack.log_text("vo")
        )
        d = image_to_numpy(depth[0])
        assert depth[0].encoding == "32FC1" and d.shape == (240, 320) and np.allclose(d, 5.0)
        assert (depth[0].header.stamp.sec, depth[0].header.frame_id) == (1, "camera_optical_frame")
        xyz, _rgb = cloud2_to_points(points[0])
        assert len(xyz) == 30 * 40 and np.allclose(xyz[:, 2], 5.0)
        assert points[0].header.frame_id == "camera_optical_frame"
        by_sec = {m.header.stamp.sec: m for m in odom}
        assert sorted(by_sec) == [1, 2, 3]
        last = by_sec[3]
        assert (last.header.frame_id, last.child_frame_id) == ("odom", "camera_optical_frame")
        pos = last.pose.pose.position
        assert abs(pos.x) < 0.05 and abs(pos.y) < 0.05 and abs(pos.z) < 0.05  # a static camera
        # the optical frame in odom (x forward, z up): camera z axis -> odom x
        q = last.pose.pose.orientation
        assert abs(abs(q.w) - 0.5) < 0.05 and abs(abs(q.x) - 0.5) < 0.05
        assert len(path[-1].poses) == 3
        assert stack.alive()["vo"]
        probe.close()


def test_odometry_node_with_camera_height_reports_its_ground_scale(tmp_path, rclpy_context):
    """scale_source camera_height + the hybrid estimator + a mounting (base_frame): the ground
    scale is configured (normal from base_to_camera) and says on /diagnostics why it has no
    length here (a camera sliding along a flat wall: no essential motion, PnP on the depth
    instead); every frame still gets its odometry."""
    model = _depth_model(tmp_path)
    prof = _profile(
        "vg",
        "odometry_node",
        model,
        scale_source="camera_height",
        camera_height=1.2,
        estimator="hybrid",
        base_frame="base_link",
        base_to_camera=[0.0, 0.0, 1.2, 0.0, 0.2, 0.0],
    )
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        odom = probe.collect(Odometry, "/vg/odometry")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub, info_pub = _publishers(probe, stack, "vg")
        _send_info(probe, info_pub)
        texture = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        for sec in (1, 2, 3, 4):  # the camera slides sideways along the wall
            pub.publish(_image(np.roll(texture, 4 * sec, axis=1), sec))
        assert probe.spin_until(lambda: len(odom) >= 4, 30), stack.log_text("vg")

        def ground_status():
            return _diagnostic_values(diags, "/vg", "odometry_scale")

        # diagnostics are periodic: wait for one taken after the last frame
        expected = "hybrid (pnp); no essential motion to scale"
        assert probe.spin_until(lambda: ground_status() and ground_status()[-1].startswith(expected), 10), (
            ground_status()
        )
        assert odom[-1].child_frame_id == "base_link"
        assert stack.alive()["vg"]
        probe.close()


def test_odometry_node_aligns_the_ground_a_segmentation_node_labels(tmp_path, rclpy_context):
    """ground_from_labels over topics: a rendered drive, a depth model that says 5 m everywhere
    and the renderer's labels published as a segmentation node would (after the image, latched
    LabelInfo): the hybrid's lengths come from the labelled ground (diagnostics say so) and the
    odometry's path is the true one; the constant depth alone gives half of it (the estimator
    test measures that). A label image that is not mono8 is refused with a warning."""
    import cv2
    from vision_msgs.msg import LabelInfo

    from perception_models.data.readers.common import read_rgb
    from perception_models.data.readers.tum import read_tum_trajectory
    from perception_models.data.synth import SynthConfig, SyntheticSequence
    from perception_models.data.synth.scene import CLASSES
    from perception_models.data.writers import write_sequence
    from perception_nodes.detection_conversion import label_info_message
    from perception_nodes.qos import latched_qos
    from perception_nodes.transforms import T_BODY_OPTICAL

    root = tmp_path / "drive"
    cfg = SynthConfig(preset="driving", seed=77, frames=12, width=320, height=240, randomization=0.3)
    write_sequence(SyntheticSequence(cfg), root, flow=False, workers=1, progress=False)
    times, poses = read_tum_trajectory(root / "trajectory_tum.txt")
    K = np.array(yaml.safe_load((root / "camera_info.yaml").read_text())["camera_matrix"]["data"]).reshape(3, 3)
    # the mounting: the first pose's height and its roll/pitch (base_to_camera, yaw 0)
    R = poses[0][:3, :3] @ T_BODY_OPTICAL[:3, :3].T
    roll, pitch = float(np.arctan2(R[2, 1], R[2, 2])), float(-np.arcsin(R[2, 0]))
    height = float(poses[0][2, 3])
    model = _depth_model(tmp_path)
    prof = node_profile(
        "vl",
        "odometry_node",
        model,
        {"camera_info": "/vl/camera_info", "ground_labels": "/seg/labels", "ground_label_info": "/seg/label_info"},
        scale_source="camera_height",
        camera_height=height,
        estimator="hybrid",
        base_frame="base_link",
        base_to_camera=[0.0, 0.0, height, roll, pitch, 0.0],
        ground_from_labels=True,
        input_policy="lockstep",
        max_gap=10.0,
    )
    with StackProcesses(prof, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        odom = probe.collect(Odometry, "/vl/odometry")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub, info_pub = _publishers(probe, stack, "vl")
        labels_pub = probe.publisher(Image, "/seg/labels")
        label_info_pub = probe.publisher(LabelInfo, "/seg/label_info", qos=latched_qos())
        assert labels_pub is not None and label_info_pub is not None, stack.log_text("vl")
        label_info_pub.publish(label_info_message(_image(np.zeros((1, 1, 3), np.uint8), 0).header, list(CLASSES), 0.0))
        info = _info(320, 240)
        info.k = K.ravel().tolist()
        for _ in range(20):
            info_pub.publish(info)
            probe.spin_until(lambda: False, 0.05)
        labels_pub.publish(_image(np.zeros((240, 320, 3), np.uint8), 0))  # rgb8: not class ids
        assert probe.spin_until(lambda: "ground_labels rejected: must be mono8" in stack.log_text("vl"), 10)
        frames = sorted((root / "rgb").glob("*.png"))
        for i, (f, t) in enumerate(zip(frames, times)):
            msg = _image(read_rgb(f), 0)
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(t), int(round((t % 1) * 1e9))
            pub.publish(msg)
            labels = numpy_to_image(cv2.imread(str(root / "labels" / f.name), cv2.IMREAD_UNCHANGED), "mono8")
            labels.header = msg.header  # a segmentation node's labels of the same frame, after it
            labels_pub.publish(labels)
            assert probe.spin_until(lambda: len(odom) > i, 30), stack.log_text("vl")

        def ground_status():
            return _diagnostic_values(diags, "/vl", "odometry_scale")

        assert probe.spin_until(lambda: any("the segmenter's" in v for v in ground_status()), 10), ground_status()
        gt = np.linalg.inv(poses[0]) @ poses
        p = odom[-1].pose.pose.position
        length = np.linalg.norm([p.x, p.y, p.z]) / np.linalg.norm(gt[-1, :3, 3])
        print(f"path length / true {length:.3f}; last ground status: {ground_status()[-1]}")
        assert abs(length - 1.0) < 0.15, (length, ground_status()[-3:])
        assert stack.alive()["vl"]
        probe.close()


def test_depth_node_converts_a_canonical_camera_model_with_the_camera_info(tmp_path, rclpy_context):
    """A canonical-camera depth model: before CameraInfo the node publishes the canonical lens's
    depth and says so on /diagnostics; with it, depth times the camera's focal length (at the
    network's input) over the canonical one."""
    f_in = np.sqrt(300.0 * W / 320 * 300.0 * H / 240)  # _info's focal at the model's input
    model = _depth_model(tmp_path, 5.0, canonical_focal=float(f_in / 2))
    with StackProcesses(_profile("dc", "depth_node", model), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        depth = probe.collect(Image, "/dc/depth")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub, info_pub = _publishers(probe, stack, "dc")
        texture = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        pub.publish(_image(texture, 1))

        def focal_status():
            return [
                kv.value for d in diags for st in d.status if st.name == "/dc" for kv in st.values if kv.key == "focal"
            ]

        assert probe.spin_until(lambda: depth and focal_status(), 30), stack.log_text("dc")
        assert np.allclose(image_to_numpy(depth[0]), 5.0) and focal_status()[-1].startswith("no CameraInfo"), (
            focal_status()
        )
        _send_info(probe, info_pub)
        pub.publish(_image(texture, 2))
        assert probe.spin_until(lambda: len(depth) >= 2, 30), stack.log_text("dc")
        assert depth[1].header.stamp.sec == 2 and np.allclose(image_to_numpy(depth[1]), 10.0, rtol=1e-4)
        assert probe.spin_until(
            lambda: focal_status() and focal_status()[-1].startswith("camera focal / canonical focal 2.000"), 10
        ), focal_status()
        assert stack.alive()["dc"]
        probe.close()


def test_depth_node_rejects_a_pose_model_as_depth_model(tmp_path, rclpy_context):
    path = const_model(tmp_path / "pose.onnx", {"T_previous_current": np.eye(4, dtype=np.float32)[None]})
    write_card(path, "pose", classes=[])
    with StackProcesses(_profile("dn", "depth_node", path), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        errs = lambda: [s for d in diags for s in d.status if s.name == "/dn" and s.level == b"\x02"]  # noqa: E731
        assert probe.spin_until(errs, 60), stack.log_text("dn")
        assert "is a pose model" in errs()[0].message
        assert stack.alive()["dn"]
        probe.close()


def test_recorder_turns_odometry_into_tf_for_the_bag():
    """tf2_msgs is not on PyPI, so the recorder writes /tf itself from the odometry topic."""
    from perception_nodes.bag_io import typestore
    from perception_nodes.nodes.bag_recorder import odometry_to_tf

    store = typestore()
    T = store.types
    header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=5, nanosec=7), frame_id="odom")
    pose = T["geometry_msgs/msg/PoseWithCovariance"](
        pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=1.0, y=2.0, z=3.0),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.6, w=0.8),
        ),
        covariance=np.zeros(36),
    )
    twist = T["geometry_msgs/msg/TwistWithCovariance"](
        twist=T["geometry_msgs/msg/Twist"](
            linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
        ),
        covariance=np.zeros(36),
    )
    odom = T["nav_msgs/msg/Odometry"](header=header, child_frame_id="base_link", pose=pose, twist=twist)
    tf = odometry_to_tf(store, store.serialize_cdr(odom, "nav_msgs/msg/Odometry"))
    (t,) = tf.transforms
    assert (t.header.frame_id, t.child_frame_id, t.header.stamp.sec, t.header.stamp.nanosec) == (
        "odom",
        "base_link",
        5,
        7,
    )
    assert (t.transform.translation.x, t.transform.translation.y, t.transform.translation.z) == (1.0, 2.0, 3.0)
    assert (t.transform.rotation.z, t.transform.rotation.w) == (0.6, 0.8)
    store.serialize_cdr(tf, "tf2_msgs/msg/TFMessage")  # writable as is


def test_odometry_node_reports_the_frames_whose_forward_ambiguity_it_refitted(tmp_path, rclpy_context):
    """Real KITTI frames 0-4 (../shared): the essential matrix of frames 1-3 turns sideways with
    4-8 degrees of yaw; the hybrid refits them (rotation_jump) and /diagnostics counts them, with
    the last refit's jump, while every frame gets its odometry."""
    from pathlib import Path

    import cv2
    import pytest

    root = Path(__file__).resolve().parents[3] / "shared" / "data" / "kitti_odom06"
    if not (root / "calib.txt").is_file():
        pytest.skip(f"{root} not present (real data lives in ../shared/data on dev machines only)")
    frames = [cv2.imread(str(p))[:, :, ::-1].copy() for p in sorted((root / "image_l").glob("*.png"))[:5]]
    h, w = frames[0].shape[:2]
    info = _info(w, h, f=707.0912)
    info.k = [707.0912, 0.0, 601.8873, 0.0, 707.0912, 183.1104, 0.0, 0.0, 1.0]
    model = _depth_model(tmp_path, value=10.0)
    with StackProcesses(_profile("va", "odometry_node", model, estimator="hybrid"), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        odom = probe.collect(Odometry, "/va/odometry")
        diags = probe.collect(DiagnosticArray, "/diagnostics")
        pub, info_pub = _publishers(probe, stack, "va")
        for _ in range(20):
            info_pub.publish(info)
            probe.spin_until(lambda: False, 0.05)
        for sec, rgb in enumerate(frames, start=1):
            pub.publish(_image(rgb, sec))
        assert probe.spin_until(lambda: len(odom) >= 5, 60), stack.log_text("va")

        def refitted():
            return _diagnostic_values(diags, "/va", "odometry_refitted")

        assert probe.spin_until(lambda: refitted() and refitted()[-1].startswith("3 frames"), 10), refitted()
        assert "essential rotation jumped" in refitted()[-1]
        assert stack.alive()["va"]
        probe.close()
