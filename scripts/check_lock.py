"""Check that this Python environment holds exactly the packages of a lock file.

    python scripts/check_lock.py requirements/lock.txt

Exit 1 listing each locked package that is missing or at another version, and each installed
distribution the lock does not name (the workspace's own colcon-built packages, pip itself and
the egg-info folders inside the ROS wheels excepted). Run by scripts/setup_venv.sh after
installing the lock, so a venv that drifted (a package installed by hand, a lock refreshed
without reinstalling) is caught before the tests.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

OWN = ("perception-nodes", "perception-models", "perception-msgs", "pip")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            pins[normalise(m.group(1))] = m.group(2)
    return pins


def compare(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    problems = []
    for name, version in sorted(pins.items()):
        have = installed.get(name)
        if have is None:
            problems.append(f"{name}=={version} is locked but not installed")
        elif have != version:
            problems.append(f"{name} is {have}, the lock says {version}")
    for name in sorted(set(installed) - set(pins)):
        if not name.startswith(OWN):
            problems.append(f"{name}=={installed[name]} is installed but not in the lock")
    return problems


def main(argv: list[str]) -> int:
    lock = Path(argv[1] if len(argv) > 1 else "requirements/lock.txt")
    # Distributions a package manager installed (they carry an INSTALLER file); the ROS wheels
    # also ship egg-info folders of their own components (rclpy, rcutils ...), which are not.
    installed = {
        normalise(d.metadata["Name"]): d.version
        for d in metadata.distributions()
        if d.metadata["Name"] and d.read_text("INSTALLER") is not None
    }
    problems = compare(read_lock(lock), installed)
    if problems:
        print(f"check_lock: this environment does not match {lock}:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print("  (remove the venv and run `make setup` again to install exactly the lock)", file=sys.stderr)
        return 1
    print(f"check_lock: {len(read_lock(lock))} packages exactly as {lock} pins them")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
