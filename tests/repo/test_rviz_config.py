"""rviz2 cannot run here, so the RViz config is checked against what the stack publishes under the
default profile: every display's topic exists with the display's message type — topics and types
read from the nodes' own ``create_publisher`` calls (AST), names from the profile's nodes and
remappings — and the fixed frame is the odometry's parent frame."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from perception_nodes.profile import effective_parameters, load_profile

ROOT = Path(__file__).resolve().parents[2]
NODES = ROOT / "src/perception_nodes/perception_nodes/nodes"
DISPLAY_TYPES = {
    "rviz_default_plugins/Image": "Image",
    "rviz_default_plugins/PointCloud2": "PointCloud2",
    "rviz_default_plugins/Odometry": "Odometry",
    "rviz_default_plugins/Path": "Path",
    "rviz_default_plugins/MarkerArray": "MarkerArray",
}


def _publishers(executable: str) -> set[tuple[str, str]]:
    """(message class name, topic) of create_publisher calls in the node's module and its bases."""
    out: set[tuple[str, str]] = set()
    files = {NODES / f"{executable}.py"}
    if executable == "odometry_node":
        files.add(NODES / "depth_node.py")
    for f in files:
        for node in ast.walk(ast.parse(f.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "create_publisher"
                and len(node.args) >= 2
            ):
                cls, topic = node.args[0], node.args[1]
                if isinstance(cls, ast.Name) and isinstance(topic, ast.Constant) and isinstance(topic.value, str):
                    out.add((cls.id, topic.value))
    return out


def _published(profile: str) -> set[tuple[str, str]]:
    from perception_nodes.tasks import MULTITASK_NAMESPACES

    p = load_profile(profile)
    topics: set[tuple[str, str]] = set()
    for n in p.nodes:
        if n.executable == "multitask_node":  # each task's publishers, under that task node's name
            ns = f"/{n.namespace.strip('/')}" if n.namespace.strip("/") else ""
            hosts = {"detection": "detection_node", "segmentation": "segmentation_node", "depth": "odometry_node",
                     "matching": "matching_node"}  # fmt: skip
            for task, exe in hosts.items():
                for cls, t in _publishers(exe):
                    if t.startswith("~/"):
                        topics.add((cls, f"{ns}/{MULTITASK_NAMESPACES[task]}/{t[2:]}"))
            continue
        for cls, t in _publishers(n.executable):
            topics.add((cls, f"{n.fqn}/{t[2:]}" if t.startswith("~/") else n.remappings.get(t, t)))
    return topics


@pytest.mark.parametrize("profile", ["synthetic_replay", "multitask"])
def test_every_display_subscribes_to_a_topic_and_type_the_default_profile_publishes(profile):
    """The same RViz config for the four task nodes and for multitask_node in their place."""
    cfg = yaml.safe_load((ROOT / "rviz" / "perception.rviz").read_text())
    published = _published(profile)
    # the camera topic comes from the camera driver / bag player, remapped into every node's input
    published.add(("Image", "/camera/image_raw"))
    displays = [d for d in cfg["Visualization Manager"]["Displays"] if d["Class"] in DISPLAY_TYPES]
    assert len(displays) >= 8
    for d in displays:
        want = (DISPLAY_TYPES[d["Class"]], d["Topic"]["Value"])
        assert want in published, (
            f"display '{d['Name']}' subscribes to {want}; the profile publishes {sorted(published)}"
        )
    fixed = cfg["Visualization Manager"]["Global Options"]["Fixed Frame"]
    odom = [n for n in load_profile(profile).nodes if n.executable in ("odometry_node", "multitask_node")]
    assert odom and effective_parameters(odom[0])["odom_frame"] == fixed


def test_the_check_notices_a_wrong_topic():
    published = _published("synthetic_replay")
    assert ("Image", "/odometry/depth_colored") in published and ("PointCloud2", "/odometry/points") in published
    assert ("Image", "/odometry/points") not in published  # right topic, wrong type
    assert ("Path", "/odometry/trajectory") not in published
