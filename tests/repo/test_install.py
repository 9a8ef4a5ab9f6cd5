"""A copied (non-symlink) install, as the container images make: every file the nodes read at run
time is in it. The parameter schemas were not package data, so such an install failed at every
node's start."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = sorted(p.name for p in (ROOT / "src/perception_nodes/perception_nodes/schema").glob("*.json"))


def test_a_copied_install_carries_every_schema(tmp_path):
    target = tmp_path / "site"
    src = tmp_path / "src"  # a copy: an in-tree build would leave build/ and egg-info in the checkout
    shutil.copytree(
        ROOT / "src/perception_nodes", src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(src),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr
    installed = target / "perception_nodes" / "schema"
    assert not (target / "perception_nodes").is_symlink()
    assert sorted(p.name for p in installed.glob("*.json")) == SCHEMAS
    # a node's schema loads from the copy, away from the source tree
    code = (
        "import json, perception_nodes, perception_nodes.params as p; "
        "print(json.dumps([perception_nodes.__file__, sorted(p.load_schema('detection_node')['properties'])]))"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    where, props = json.loads(out.stdout)
    assert where.startswith(str(target)) and "score_threshold" in props and "input_policy" in props
