"""Test-session setup: every ROS test talks over real DDS on this host only, on a random domain."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Before anything imports rclpy (and for every node process the tests start).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ["PERCEPTION_ROOT"] = str(ROOT)
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_shm.xml"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"])
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def pytest_report_header(config):
    return (f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST "
            f"python={sys.executable}")


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory) -> Path:
    from perception_nodes.tools.demo_assets import make_demo_model

    return make_demo_model(tmp_path_factory.mktemp("models") / "demo_model.onnx")


@pytest.fixture(scope="session")
def demo_bag(tmp_path_factory) -> Path:
    from perception_nodes.tools.demo_assets import make_demo_bag

    return make_demo_bag(tmp_path_factory.mktemp("bags") / "demo", frames=20)


@pytest.fixture
def rclpy_context():
    import rclpy

    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)
