import os
import runpy
from pathlib import Path

from setuptools import find_packages, setup

package_name = "perception_nodes"

# the node executables come from the task registry (perception_nodes/tasks.py: standard library only)
NODES = runpy.run_path(str(Path(__file__).parent / package_name / "tasks.py"))["NODE_EXECUTABLES"]

HERE = Path(__file__).resolve().parent
CHECKOUT = HERE.parents[1]  # launch/, config/, rviz/ and models/ sit at the workspace root
# what `ros2 launch perception_nodes ...` and a robot's bringup need from share/perception_nodes
SHARE = {
    "launch": ["*.launch.py"],
    "config": ["*.yaml", "*.xml"],
    "config/profiles": ["*.yaml"],
    "config/cameras": ["*.yaml"],
    "config/class_maps": ["*.yaml"],
    "rviz": ["*.rviz"],
    "models": ["*.onnx", "*.yaml", "README.md"],
}


def share_files() -> list[tuple[str, list[str]]]:
    """data_files for the share folder; none for a copy of this package alone (no checkout around it)."""
    if not (CHECKOUT / "config" / "profiles").is_dir():
        return []
    out = []
    for folder, patterns in SHARE.items():
        files = sorted({f for pattern in patterns for f in (CHECKOUT / folder).glob(pattern) if f.is_file()})
        if files:
            out.append((f"share/{package_name}/{folder}", [os.path.relpath(f, HERE) for f in files]))
    return out


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    # the parameter schemas are read at run time (importlib.resources): without them a copied
    # (non-symlink) install, as in the container images, fails at every node's start
    package_data={package_name: ["schema/*.json"]},
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *share_files(),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="Perception team",
    maintainer_email="perception@example.com",
    description="rclpy nodes of the perception stack (no torch).",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"{n} = perception_nodes.nodes.{n}:main" for n in NODES]
        + ["perception = perception_nodes.tools.cli:main"],
    },
)
