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
if os.environ.get("PYTEST_XDIST_WORKER", "").startswith("gw"):
    # pytest-xdist's workers (make test runs two) inherit the controller's domain: each worker takes
    # the next one, so their nodes never discover each other's (domains 1-100 stay clear of 0 and
    # of the ports Linux hands out above domain 101)
    worker = int(os.environ["PYTEST_XDIST_WORKER"][2:])
    os.environ["ROS_DOMAIN_ID"] = str((int(os.environ["ROS_DOMAIN_ID"]) + worker) % 100 + 1)
os.environ["PERCEPTION_ROOT"] = str(ROOT)
os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(ROOT / "config" / "fastdds_shm.xml"))
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"])
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")


def pytest_report_header(config):
    return (
        f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']} ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST python={sys.executable}"
    )


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


# ---------------------------------------------------------------- markers (make test-fast)
# Every test gets one kind, from what it touches, so the quick loop can leave out the slow ones:
#   ros      starts node processes or talks over DDS (StackProcesses, the CLI, rclpy)
#   train    runs torch (models, training, export)
#   shipped  checks the models in models/ against their cards
#   unit     the rest: pure Python/numpy, a second or less each
# `make test` runs all of them; `make test-fast` runs -m unit.
_ROS_SIGNS = (
    "rclpy_context",
    "StackProcesses(",
    "_perception(",
    "_replay(",
    "replay(",
    "Probe(",
    'main(["',
    'subprocess.run([sys.executable, "-m", "perception_nodes',
)
KINDS = ("unit", "ros", "train", "shipped")


def pytest_configure(config):
    for kind, text in (
        ("unit", "pure Python/numpy, fast"),
        ("ros", "node processes or DDS"),
        ("train", "torch: models, training, export"),
        ("shipped", "the shipped models in models/"),
    ):
        config.addinivalue_line("markers", f"{kind}: {text}")


def _kind(item) -> str:
    import inspect

    module = item.module.__name__
    try:
        source = inspect.getsource(item.function)
    except (OSError, TypeError):
        source = ""
    if module == "test_shipped_models":
        return "shipped"
    # the test's own fixtures count too (a module fixture that replays a bag makes its tests "ros")
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
    for name, fixture_defs in defs.items():
        func = getattr(fixture_defs[-1], "func", None)
        if func is not None and getattr(func, "__module__", "") == module:
            try:
                source += inspect.getsource(func)
            except (OSError, TypeError):
                pass
    if "rclpy_context" in getattr(item, "fixturenames", ()) or any(s in source for s in _ROS_SIGNS):
        return "ros"
    module_source = inspect.getsource(item.module)
    if "import torch" in module_source or "from perception_models.train" in module_source:
        return "train"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not any(item.get_closest_marker(k) for k in KINDS):
            item.add_marker(getattr(pytest.mark, _kind(item)))
