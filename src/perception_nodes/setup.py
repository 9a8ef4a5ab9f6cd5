from setuptools import find_packages, setup

package_name = "perception_nodes"

NODES = [
    "generic_onnx_node",
    "bag_player",
    "bag_recorder",
    "camera_source",
    "detection_node",
    "segmentation_node",
    "depth_node",
    "odometry_node",
    "matching_node",
]

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
