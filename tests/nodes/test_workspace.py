"""The colcon workspace itself: `colcon test` must discover and run each package's tests.

Regression guard: with `tests_require` (dropped by modern setuptools) colcon silently fell
back to unittest and ran 0 tests while reporting success.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.prefix)


def test_colcon_test_runs_every_python_package(tmp_path):
    colcon = shutil.which("colcon") or str(VENV / "bin" / "colcon")
    if not Path(colcon).exists():
        pytest.fail("colcon is not installed in the venv; run `make setup`")
    results = tmp_path / "results"
    env = dict(os.environ)
    proc = subprocess.run(
        [
            colcon,
            "test",
            "--merge-install",
            "--install-base",
            str(VENV),
            "--build-base",
            str(ROOT / "build"),
            "--test-result-base",
            str(results),
            "--packages-select",
            "perception_nodes",
            "perception_models",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = subprocess.run(
        [colcon, "test-result", "--test-result-base", str(results), "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    for pkg in ("perception_nodes", "perception_models"):
        line = next((ln for ln in summary.splitlines() if f"/{pkg}/pytest.xml" in ln), None)
        assert line is not None, f"no pytest.xml for {pkg}:\n{summary}"
        n, errors, failures = map(int, re.search(r"(\d+) tests?, (\d+) errors, (\d+) failures", line).groups())
        assert n >= 1 and errors == 0 and failures == 0, line
