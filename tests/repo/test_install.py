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


def test_a_colcon_install_carries_launch_config_rviz_and_models_in_its_share(tmp_path, monkeypatch):
    """`ros2 launch perception_nodes perception.launch.py` and a robot's IncludeLaunchDescription
    need the launch file, parameter files, profiles, RViz config and shipped models in
    share/perception_nodes of a copied (not symlinked) install; run from elsewhere, without
    PERCEPTION_ROOT, the package finds its profiles, parameter files and models there."""
    import runpy

    ws = tmp_path / "ws"
    ignore = shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT / "src/perception_nodes", ws / "src/perception_nodes", ignore=ignore)
    for folder in ("launch", "config", "rviz", "models"):
        shutil.copytree(ROOT / folder, ws / folder, ignore=ignore)
    install = tmp_path / "install"
    colcon = shutil.which("colcon") or str(Path(sys.prefix) / "bin" / "colcon")
    build = subprocess.run(
        [
            colcon,
            "--log-base",
            str(tmp_path / "log"),
            "build",
            "--base-paths",
            str(ws / "src"),
            "--build-base",
            str(tmp_path / "build"),
            "--install-base",
            str(install),
            "--merge-install",
            "--packages-select",
            "perception_nodes",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    share = install / "share" / "perception_nodes"
    import setuptools

    monkeypatch.setattr(setuptools, "setup", lambda **kw: None)  # read setup.py's SHARE without running setup
    patterns = runpy.run_path(str(ROOT / "src/perception_nodes/setup.py"))["SHARE"]
    expected = sorted(
        str(f.relative_to(ROOT)) for folder, pats in patterns.items() for p in pats for f in (ROOT / folder).glob(p)
    )
    assert expected and "launch/perception.launch.py" in expected and "models/detection.onnx" in expected
    for rel in expected:
        copy = share / rel
        assert copy.is_file() and not copy.is_symlink(), f"{rel} is not installed in {share}"
        assert copy.read_bytes() == (ROOT / rel).read_bytes(), rel
    site = next(install.glob("lib/python3*/site-packages"))
    code = (
        "import json; from perception_nodes.workspace import share_dir, resolve_path; "
        "from perception_nodes.profile import load_profile; p = load_profile('camera_detection'); "
        "print(json.dumps([str(share_dir()), str(p.node('detector').param_files[0]), "
        "str(resolve_path('models/detection.onnx'))]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PERCEPTION_ROOT"}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{env.get('PYTHONPATH', '')}", AMENT_PREFIX_PATH=str(install))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    found, params, model = json.loads(out.stdout)
    assert found == str(share)
    assert params == str(share / "config/detection_node.param.yaml") and model == str(share / "models/detection.onnx")
