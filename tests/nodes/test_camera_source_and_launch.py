"""camera_source over DDS from an image folder; camera_info YAML; the launch file's inputs."""

from __future__ import annotations

import py_compile
from pathlib import Path

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image

from perception_nodes.camera_info import load_camera_info
from perception_nodes.image_conversion import image_to_numpy
from perception_nodes.launcher import StackProcesses, node_command
from perception_nodes.profile import NodeSpec, Profile, ProfileError, load_profile, parse_set
from rosgraph import Probe

ROOT = Path(__file__).resolve().parents[2]
CAMERA_YAML = """image_width: 64
image_height: 48
camera_name: test
camera_matrix: {rows: 3, cols: 3, data: [50.0, 0, 32.0, 0, 50.0, 24.0, 0, 0, 1]}
distortion_model: plumb_bob
distortion_coefficients: {rows: 1, cols: 5, data: [0.1, 0, 0, 0, 0]}
"""


def test_camera_info_yaml(tmp_path):
    f = tmp_path / "cam.yaml"
    f.write_text(CAMERA_YAML)
    info = load_camera_info(f)
    assert (info.width, info.height, list(info.k)[:3], list(info.p)[:4]) == (
        64,
        48,
        [50.0, 0.0, 32.0],
        [50.0, 0.0, 32.0, 0.0],
    )
    f.write_text("image_width: 64\n")
    with pytest.raises(ValueError, match="camera_info YAML format"):
        load_camera_info(f)


def test_camera_source_publishes_an_image_folder_with_camera_info(tmp_path, rclpy_context):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        img = np.zeros((48, 64, 3), np.uint8)
        img[:, :, 2] = 200  # red in BGR
        img[0, 0] = (i, i, i)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    (tmp_path / "cam.yaml").write_text(CAMERA_YAML)
    spec = NodeSpec(
        "cam",
        "camera_source",
        parameters={"source": str(folder), "rate": 20.0, "loop": True, "camera_info_url": str(tmp_path / "cam.yaml")},
    )
    with StackProcesses(Profile("t", "", [spec]), tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        images = probe.collect(Image, "/image_raw")
        infos = probe.collect(CameraInfo, "/camera_info")
        assert probe.spin_until(lambda: len(images) >= 1 and len(infos) >= 1, 30), stack.log_text("cam")
        img = image_to_numpy(images[0])
        assert images[0].encoding == "rgb8" and img.shape == (48, 64, 3) and img[10, 10, 0] == 200
        assert images[0].header.frame_id == "camera_optical_frame"
        assert infos[0].header.stamp == images[0].header.stamp
        probe.close()


def test_camera_info_url_takes_file_and_package_urls_as_camera_info_manager(tmp_path):
    from perception_nodes.camera_info import resolve_camera_info_url

    (tmp_path / "cam.yaml").write_text(CAMERA_YAML)
    assert resolve_camera_info_url(f"file://{tmp_path / 'cam.yaml'}") == tmp_path / "cam.yaml"
    assert resolve_camera_info_url(str(tmp_path / "cam.yaml")) == tmp_path / "cam.yaml"
    shipped = resolve_camera_info_url("package://perception_nodes/config/cameras/tum_fr3.yaml")
    assert shipped.name == "tum_fr3.yaml" and load_camera_info(shipped).width == 640
    with pytest.raises(ValueError, match="no config/cameras/nope.yaml in the share folder of 'perception_nodes'"):
        resolve_camera_info_url("package://perception_nodes/config/cameras/nope.yaml")
    with pytest.raises(ValueError, match="is it installed"):
        resolve_camera_info_url("package://no_such_package/cam.yaml")
    with pytest.raises(ValueError, match="only file:// and package://"):
        resolve_camera_info_url("http://example.com/cam.yaml")
    with pytest.raises(ValueError, match="is not a file"):
        resolve_camera_info_url(f"file://{tmp_path / 'missing.yaml'}")


def test_camera_detection_profile_runs_a_video_file_as_the_camera(tmp_path, rclpy_context):
    """The robot path with a video file for the camera: camera_source (stamped at capture, the
    camera's calibration from a package:// URL) -> the shipped detector -> vision_msgs detections
    with the frame's header, class names on the latched LabelInfo."""
    from vision_msgs.msg import Detection2DArray, LabelInfo

    from perception_models.data.synth import SynthConfig, SyntheticSequence
    from perception_nodes.detection_conversion import label_map, read_detections
    from perception_nodes.qos import latched_qos

    video = tmp_path / "camera.avi"
    seq = SyntheticSequence(SynthConfig(preset="driving", seed=11, frames=4, width=320, height=240))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (320, 240))
    for i in range(4):
        writer.write(cv2.cvtColor(seq.frame(i).rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    profile = load_profile(
        "camera_detection",
        parse_set(
            [
                f"camera.source={video}",
                "camera.rate=5.0",
                "camera.camera_info_url=package://perception_nodes/config/cameras/tum_fr3.yaml",
                "detector.onnxruntime_threads=1",
            ]
        ),
    )
    with StackProcesses(profile, tmp_path / "logs") as stack:
        probe = Probe(rclpy_context)
        dets = probe.collect(Detection2DArray, "/detector/detections")
        images = probe.collect(Image, "/camera/image_raw")
        infos = probe.collect(CameraInfo, "/camera/camera_info")
        assert probe.spin_until(lambda: len(dets) >= 3, 90), stack.log_text("detector") + stack.log_text("camera")
        labels = probe.collect(LabelInfo, "/detector/label_info", latched_qos())
        assert probe.spin_until(lambda: labels, 10)
        names = label_map(labels[0])
        assert set(names.values()) == {"person", "car", "cone", "box", "barrel", "chair"}
        stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}
        # each carries its camera frame's header (the probe may have joined after the first frames)
        assert all(m.header.frame_id == "camera_optical_frame" for m in dets)
        assert any((m.header.stamp.sec, m.header.stamp.nanosec) in stamps for m in dets)
        assert infos and infos[0].width == 640, "the package:// calibration is published"
        found = [b.class_name for m in dets for b in read_detections(m, names)]
        assert found, "the shipped detector finds the rendered scene's objects"
        assert all(stack.alive().values())
        probe.close()


def test_camera_source_bad_source_exits_with_clear_message(tmp_path):
    spec = NodeSpec("cam", "camera_source", parameters={"source": str(tmp_path / "nothing.mp4")})
    with StackProcesses(Profile("t", "", [spec]), tmp_path / "logs") as stack:
        assert stack.wait("cam", 60) == 2
        assert "neither a device, a video file nor an image folder" in stack.log_text("cam")


def test_profiles_load_and_build_the_same_arguments_launch_uses():
    for path in (ROOT / "config" / "profiles").glob("*.yaml"):
        profile = load_profile(path.stem)
        for spec in profile.nodes:
            cmd = node_command(spec, None)
            assert cmd[1:3] == ["-m", f"perception_nodes.nodes.{spec.executable}"]
            assert all(str(f) in cmd for f in spec.param_files)
    prof = load_profile("generic_replay", parse_set(["generic.backend=tensorrt", "generic.mean=[0.5,0.5,0.5]"]))
    assert prof.node("generic").parameters["mean"] == [0.5, 0.5, 0.5]
    with pytest.raises(ProfileError, match="not in profile"):
        load_profile("generic_replay", parse_set(["nosuchnode.x=1"]))
    with pytest.raises(ProfileError, match="available"):
        load_profile("no_such_profile")
    with pytest.raises(ProfileError, match="node.parameter=value"):
        parse_set(["justtext"])


class _Recorded:
    """An action as launch / launch_ros would hold it: its class name and its keyword arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _launch_modules(monkeypatch, arguments: dict[str, str]) -> str:
    """launch and launch_ros when installed (the ROS path: "real"); else (PyPI has neither) stand-ins
    with the names and keyword arguments of their Jazzy API that record what the launch file builds."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("launch") and importlib.util.find_spec("launch_ros"):
        return "real"
    kinds = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "OpaqueFunction", "SetEnvironmentVariable"],
        "launch.substitutions": [],
        "launch_ros": [],
        "launch_ros.actions": ["Node", "LifecycleNode"],
    }
    for name, classes in kinds.items():
        mod = types.ModuleType(name)
        for cls in classes:
            setattr(mod, cls, type(cls, (_Recorded,), {}))
        monkeypatch.setitem(sys.modules, name, mod)

    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return arguments[self.name]

    sys.modules["launch.substitutions"].LaunchConfiguration = LaunchConfiguration
    return "stand-in"


def test_launch_file_builds_the_profiles_nodes(monkeypatch, tmp_path):
    """generate_launch_description() declares its arguments, and its OpaqueFunction turns a profile
    (with overrides) into one launch_ros Node per profile node with that node's executable, name,
    parameter files, overrides and remappings, plus the DDS environment."""
    import runpy

    import yaml

    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump({"detector": {"score_threshold": 0.6}}))
    arguments = {
        "profile": "synthetic_replay",
        "overrides": str(overrides),
        "namespace": "front",
        "use_sim_time": "true",
        "log_level": "debug",
    }
    profile = load_profile("synthetic_replay", {"detector": {"score_threshold": 0.6}})
    kind = _launch_modules(monkeypatch, arguments)
    module = runpy.run_path(str(ROOT / "launch" / "perception.launch.py"))
    ld = module["generate_launch_description"]()
    if kind == "real":  # the ROS path: the real LaunchDescription, its OpaqueFunction run in a context
        from launch import LaunchContext, LaunchDescription
        from launch.actions import OpaqueFunction
        from launch_ros.actions import Node

        assert isinstance(ld, LaunchDescription)
        context = LaunchContext()
        context.launch_configurations.update(arguments)
        (opaque,) = [e for e in ld.entities if isinstance(e, OpaqueFunction)]
        built = opaque.execute(context)
        assert sum(isinstance(a, Node) for a in built) == len(profile.nodes)  # LifecycleNode is a Node
        return
    print("launch/launch_ros are not on PyPI: the launch file runs against recording stand-ins")
    declared = [a for a in ld.args[0] if type(a).__name__ == "DeclareLaunchArgument"]
    assert [a.args[0] for a in declared] == ["profile", "overrides", "namespace", "use_sim_time", "log_level"]
    assert declared[0].kwargs["default_value"] == "camera_detection"
    opaque = [a for a in ld.args[0] if type(a).__name__ == "OpaqueFunction"]
    assert len(opaque) == 1
    actions = opaque[0].kwargs["function"](context=None)
    env = {a.args[0]: a.args[1] for a in actions if type(a).__name__ == "SetEnvironmentVariable"}
    assert Path(env["FASTRTPS_DEFAULT_PROFILES_FILE"]).is_file() and env["PERCEPTION_ROOT"]
    kinds = {a.kwargs["name"]: type(a).__name__ for a in actions if "name" in a.kwargs}
    # the inference nodes are lifecycle nodes; the data plumbing is not
    assert kinds == {n.name: "LifecycleNode" for n in profile.nodes}
    nodes = {a.kwargs["name"]: a.kwargs for a in actions if "name" in a.kwargs}
    assert set(nodes) == {n.name for n in profile.nodes}
    for spec in profile.nodes:
        node = nodes[spec.name]
        assert node["package"] == "perception_nodes" and node["executable"] == spec.executable
        assert node["parameters"][: len(spec.param_files)] == [str(f) for f in spec.param_files]
        assert dict(node["remappings"]) == spec.remappings
        assert node["namespace"] == "front" and node["parameters"][-1] == {"use_sim_time": True}
        assert node["arguments"] == ["--ros-args", "--log-level", "debug"]
    assert nodes["detector"]["parameters"][-2]["score_threshold"] == 0.6


def test_launch_file_compiles():
    py_compile.compile(str(ROOT / "launch" / "perception.launch.py"), doraise=True)
