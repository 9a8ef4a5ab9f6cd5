"""Reproducible installs: every dependency range in requirements/*.txt (and the images'
docker/requirements.txt) is pinned, with hashes, in its lock file, and the pins satisfy the
ranges; the venv holds exactly the lock (scripts/check_lock.py, as setup runs it)."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
check_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_lock)


def _requirements(path: Path) -> list[Requirement]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            out.append(Requirement(line))
    return out


def _lock_blocks(path: Path) -> dict[str, str]:
    """name -> the lock's text for that pin (the pin line and its hash lines)."""
    blocks: dict[str, str] = {}
    name = None
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if m:
            name = check_lock.normalise(m.group(1))
            blocks[name] = blocks.get(name, "") + line + "\n"
        elif name and line.startswith("    "):
            blocks[name] += line + "\n"
    return blocks


@pytest.mark.parametrize(
    "lock,inputs",
    [
        (
            "requirements/lock.txt",
            ["requirements/ros.txt", "requirements/runtime.txt", "requirements/dev.txt", "requirements/models.txt"],
        ),
        ("requirements/lock-stubs.txt", ["requirements/stubs.txt"]),
        ("requirements/lock-uv.txt", ["requirements/uv.txt"]),  # the installer setup_venv.sh uses
    ],
)
def test_every_requirement_is_locked_with_hashes_inside_its_range(lock, inputs):
    pins = check_lock.read_lock(ROOT / lock)
    blocks = _lock_blocks(ROOT / lock)
    for inp in inputs:
        for req in _requirements(ROOT / inp):
            name = check_lock.normalise(req.name)
            assert name in pins, f"{req.name} ({inp}) is not in {lock}: run `make lock`"
            assert req.specifier.contains(pins[name], prereleases=True), (
                f"{lock} pins {name}=={pins[name]}, outside {inp}'s '{req}': run `make lock`"
            )
    for name, block in blocks.items():
        assert "--hash=sha256:" in block, f"{name} has no hash in {lock}"


def test_docker_lock_covers_the_images_requirements():
    blocks = _lock_blocks(ROOT / "docker" / "requirements.lock")
    reqs = _requirements(ROOT / "docker" / "requirements.txt") + _requirements(ROOT / "requirements" / "runtime.txt")
    for req in reqs:
        name = check_lock.normalise(req.name)
        assert name in blocks and "--hash=sha256:" in blocks[name], f"{req.name} is not locked for the images"
    for dockerfile in (ROOT / "docker").glob("*.Dockerfile"):
        text = dockerfile.read_text()
        assert "--require-hashes -r docker/requirements.lock" in text, dockerfile.name


def test_opencv_is_pinned_not_a_range_that_moves():
    pins = check_lock.read_lock(ROOT / "requirements" / "lock.txt")
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", pins["opencv-python-headless"])


def test_check_lock_reports_drift_both_ways():
    pins = {"numpy": "2.4.6", "opencv-python-headless": "5.1.0.95"}
    assert (
        check_lock.compare(
            pins, {"numpy": "2.4.6", "opencv-python-headless": "5.1.0.95", "pip": "26.3", "perception-nodes": "0.1.0"}
        )
        == []
    )
    problems = check_lock.compare(pins, {"numpy": "1.26.4", "requests": "2.0"})
    assert any("numpy is 1.26.4, the lock says 2.4.6" in p for p in problems)
    assert any("opencv-python-headless==5.1.0.95 is locked but not installed" in p for p in problems)
    assert any("requests==2.0 is installed but not in the lock" in p for p in problems)


def test_this_venv_is_exactly_the_lock():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_lock.py"), str(ROOT / "requirements" / "lock.txt")],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
