import runpy
from pathlib import Path

from setuptools import find_packages, setup

package_name = "perception_nodes"

# the node executables come from the task registry (perception_nodes/tasks.py: standard library only)
NODES = runpy.run_path(str(Path(__file__).parent / package_name / "tasks.py"))["NODE_EXECUTABLES"]

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
