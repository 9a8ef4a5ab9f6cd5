from setuptools import find_packages, setup

package_name = "perception_models"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless", "pyyaml", "tqdm"],
    extras_require={"test": ["pytest"], "train": ["torch", "onnx", "onnxscript"]},
    zip_safe=True,
    maintainer="Perception team",
    maintainer_email="perception@example.com",
    description="Models, data, training, metrics and export for the perception stack.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["perception-models = perception_models.cli:main"]},
)
