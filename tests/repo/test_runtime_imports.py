"""perception_nodes runs on a Jetson image with only its runtime dependencies: every package it
imports must be the standard library, ROS 2, TensorRT/CUDA, or listed in requirements/runtime.txt
(or docker/requirements.txt) — never torch, never scipy (neither is in the images)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src/perception_nodes/perception_nodes"
# distribution name in the requirement files -> module name
MODULE_OF = {"opencv-python-headless": "cv2", "pyyaml": "yaml", "mcap-ros2-support": "mcap_ros2", "cuda-python": "cuda"}
ROS = {
    "rclpy",
    "launch",
    "launch_ros",
    "ament_index_python",
    "tf2_ros",
    "rcl_interfaces",
    "lifecycle_msgs",
    "builtin_interfaces",
}
# perception_models (torch) is only ever imported inside functions that the demo / evaluation run
# on a desktop, after an ``except ImportError`` guard; so is matplotlib, for report.html's plots
# (without it the report has tables and sample frames: tests/tools/test_eval_report.py)
OPTIONAL = {"perception_models", "matplotlib"}


def _requirements() -> set[str]:
    names = set()
    for f in (ROOT / "requirements/runtime.txt", ROOT / "docker/requirements.txt"):
        for line in f.read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                dist = line.split(">")[0].split("<")[0].split("=")[0].split("[")[0].strip().lower()
                names.add(MODULE_OF.get(dist, dist.replace("-", "_")))
    return names


def _imports() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            else:
                continue
            for m in mods:
                out.setdefault(m.split(".")[0], set()).add(str(f.relative_to(PACKAGE)))
    return out


def test_perception_nodes_imports_only_runtime_dependencies():
    allowed = set(sys.stdlib_module_names) | _requirements() | ROS | OPTIONAL | {"perception_nodes", "tensorrt"}
    bad = {
        m: sorted(files) for m, files in _imports().items() if m not in allowed and not m.endswith(("_msgs", "_srvs"))
    }
    assert not bad, f"perception_nodes imports packages its runtime images do not have: {bad}"


def test_the_check_sees_forbidden_packages():
    imports = _imports()
    assert "numpy" in imports and "rclpy" in imports and "sensor_msgs" in imports
    assert "torch" not in imports and "scipy" not in imports
    assert "scipy" not in _requirements() and "cv2" in _requirements()
