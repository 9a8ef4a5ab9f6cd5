"""Deployment: Dockerfiles (hadolint), the compose file, the entrypoint script and the start
checks of ``perception start`` (camera, GPU, engine cache, profile) — all without Docker.

The GPU-less paths use the real probes (cuda-python answers cudaErrorInsufficientDriver here,
TensorRT is absent); the GPU-present paths inject probes and a fake engine builder that writes
through the real EngineCache, so cache hits, misses and their reasons are the real logic.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from perception_nodes import deploy
from perception_nodes.backends.base import BackendError
from perception_nodes.backends.engine_cache import EngineCache
from perception_nodes.tools.cli import perception_argv

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
DOCKERFILES = sorted((ROOT / "docker").glob("*.Dockerfile"))


# ---------------------------------------------------------------- Dockerfiles, compose, script


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in the venv (requirements/dev.txt); run `make setup`")
    return str(path)


def test_there_is_a_desktop_and_a_jetson_dockerfile():
    assert {p.name for p in DOCKERFILES} == {"desktop.Dockerfile", "jetson.Dockerfile"}


def test_hadolint_passes_on_the_dockerfiles():
    proc = subprocess.run(
        [_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_really_lints(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run(
        [_tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "DL3006" in proc.stdout  # untagged base image


def test_shellcheck_passes_on_the_entrypoint():
    proc = subprocess.run([_tool("shellcheck"), str(ROOT / "docker" / "entrypoint.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _ignored(rel: str, patterns: list[str]) -> bool:
    parts = Path(rel).parts
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) for p in patterns)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copy_source_is_in_the_build_context(dockerfile):
    patterns = _dockerignore()
    text = dockerfile.read_text().replace("\\\n", " ")
    copies = [shlex.split(ln)[1:] for ln in text.splitlines() if ln.startswith("COPY ")]
    assert copies
    for args in copies:
        sources = [a for a in args[:-1] if not a.startswith("--")]
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile.name}: COPY {src}: not in the repository"
            assert not _ignored(src.rstrip("/"), patterns), (
                f"{dockerfile.name}: COPY {src} is excluded by .dockerignore"
            )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_builds_with_colcon_against_system_ros_and_uses_the_entrypoint(dockerfile):
    text = dockerfile.read_text()
    assert re.search(r'source "/opt/ros/\$\{ROS_DISTRO\}/setup.bash"\s*\\\s*\n\s*&& colcon build --merge-install', text)
    assert 'ENTRYPOINT ["/usr/local/bin/perception-entrypoint"]' in text
    assert "PERCEPTION_ENGINE_CACHE=/cache/engines" in text and 'VOLUME ["/cache/engines"]' in text
    assert "COPY models/ models/" in text
    # engines are never baked into an image (they only run on the GPU that built them)
    assert "build-engine" not in text and ".engine" not in text


def test_compose_file_for_a_camera_robot():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"perception-desktop", "perception-jetson"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host" and svc["ipc"] == "host", name
        assert any("/dev/video0" in d for d in svc["devices"]), name
        assert "video" in svc["group_add"]
        assert any(v.split(":")[1] == "/cache/engines" for v in svc["volumes"]), name
        assert (ROOT / "docker" / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        assert svc["stop_signal"] == "SIGINT"
    gpu = services["perception-desktop"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert services["perception-jetson"]["runtime"] == "nvidia"
    assert "engines" in compose["volumes"]


@pytest.fixture
def fake_image_root(tmp_path):
    """A fake /opt/ros + workspace whose python3 prints its arguments (the dispatch is tested)."""
    ros = tmp_path / "ros" / "setup.bash"
    ros.parent.mkdir()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    ros.write_text(f'export PATH="{bindir}:$PATH"\nexport SOURCED_ROS=1\n')
    ws = tmp_path / "ws" / "install" / "setup.bash"
    ws.parent.mkdir(parents=True)
    ws.write_text("export SOURCED_WS=1\n")
    py = bindir / "python3"
    py.write_text('#!/bin/bash\necho "python3 $* ros=$SOURCED_ROS ws=$SOURCED_WS"\n')
    py.chmod(0o755)
    env = {
        "PATH": os.environ["PATH"],
        "ROS_DISTRO": "jazzy",
        "ROS_SETUP": str(ros),
        "PERCEPTION_ROOT": str(tmp_path / "ws"),
    }
    return env


@pytest.mark.parametrize(
    "args,expect",
    [
        ([], "python3 -m perception_nodes.tools.cli start ros=1 ws=1"),
        (
            ["camera_generic", "--allow-cpu"],
            "python3 -m perception_nodes.tools.cli start camera_generic --allow-cpu ros=1 ws=1",
        ),
        (
            ["build-engines", "camera_generic"],
            "python3 -m perception_nodes.tools.cli start --build-only camera_generic ros=1 ws=1",
        ),
        (["check"], "python3 -m perception_nodes.tools.cli start --check ros=1 ws=1"),
        (["bash", "-c", "echo hello $SOURCED_WS"], "hello 1"),
    ],
)
def test_entrypoint_dispatch(fake_image_root, args, expect):
    proc = subprocess.run(
        ["bash", str(ROOT / "docker" / "entrypoint.sh"), *args],
        env=fake_image_root,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expect


def test_entrypoint_without_ros_says_so(fake_image_root, tmp_path):
    env = dict(fake_image_root, ROS_SETUP=str(tmp_path / "nowhere" / "setup.bash"))
    proc = subprocess.run(
        ["bash", str(ROOT / "docker" / "entrypoint.sh")], env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "nowhere/setup.bash not found" in proc.stderr


# ---------------------------------------------------------------- perception start checks


@pytest.fixture
def profile_file(tmp_path, demo_model):
    """A camera profile reading an image folder, with a generic node on the demo model."""
    import cv2
    import numpy as np

    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "000.png"), np.zeros((48, 64, 3), np.uint8))

    def make(backend: str = "auto", source: str | None = None, **generic) -> Path:
        path = tmp_path / f"profile_{backend}.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "nodes": {
                        "camera": {
                            "executable": "camera_source",
                            "param_files": ["camera_source.param.yaml"],
                            "parameters": {"source": source or str(images)},
                        },
                        "generic": {
                            "executable": "generic_onnx_node",
                            "param_files": ["generic_onnx_node.param.yaml"],
                            "parameters": {
                                "model_path": str(demo_model),
                                "backend": backend,
                                "engine_cache_dir": str(tmp_path / "engines"),
                                **generic,
                            },
                        },
                    }
                }
            )
        )
        return path

    return make


class FakeGPU(deploy.Probes):
    """A machine with a GPU: the real engine key, a builder that writes through EngineCache."""

    def __init__(self, gpu="NVIDIA Jetson AGX Orin", trt="10.3.0", fail_build=False):
        super().__init__(gpu=lambda: gpu, tensorrt=lambda: trt)
        self.built: list[Path] = []
        self.gpu_name, self.trt, self.fail_build = gpu, trt, fail_build
        self.build = self._build

    def _build(self, model, params, cache_dir, log):
        if self.fail_build:
            raise BackendError("TensorRT could not parse the model")
        key = self.engine_key(model, params, self.gpu_name, self.trt)
        path = EngineCache(cache_dir).store(model.stem, key, b"serialized-engine", 1.0)
        self.built.append(path)
        return path


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare("no_such_profile")
    assert err.value.code == deploy.EXIT_PROFILE
    assert "available" in str(err.value) and "camera_generic" in str(err.value)


def test_missing_camera_device_says_how_to_pass_it(profile_file):
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(
            str(profile_file()), camera="/dev/video97", probes=deploy.Probes(video_devices=lambda: ["/dev/video2"])
        )
    assert err.value.code == deploy.EXIT_NO_CAMERA
    msg = str(err.value)
    assert "/dev/video97 is not present" in msg and "--device /dev/video97" in msg and "/dev/video2" in msg


def test_camera_index_means_a_video_device(profile_file):
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(str(profile_file()), camera="7", probes=deploy.Probes(video_devices=lambda: []))
    assert "/dev/video7" in str(err.value) and "video devices here: none" in str(err.value)


def test_camera_option_needs_a_camera_profile():
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare("generic_replay", camera="/dev/video0")
    assert err.value.code == deploy.EXIT_PROFILE and "no camera_source" in str(err.value)


def test_tensorrt_node_without_gpu_fails_with_the_fix(profile_file):
    # real probes: TensorRT is not installed and cuda-python has no driver on this machine
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(str(profile_file("tensorrt")))
    assert err.value.code == deploy.EXIT_NO_GPU
    msg = str(err.value)
    assert "['generic'] use backend tensorrt" in msg and "--gpus all" in msg and "--runtime nvidia" in msg
    assert "--allow-cpu" in msg


def test_allow_cpu_switches_tensorrt_nodes_to_onnxruntime(profile_file):
    plan = deploy.prepare(str(profile_file("tensorrt")), allow_cpu=True)
    assert plan.overrides["generic"]["backend"] == "onnxruntime"
    assert plan.profile.node("generic").parameters["backend"] == "onnxruntime"
    assert any("ONNX Runtime on the CPU" in n for n in plan.notes)


def test_auto_backend_is_pinned_to_what_the_checks_found(profile_file):
    plan = deploy.prepare(str(profile_file("auto")))  # no GPU here
    assert plan.overrides["generic"]["backend"] == "onnxruntime"
    probes = FakeGPU()
    plan = deploy.prepare(str(profile_file("auto")), probes=probes, log=lambda m: None)
    assert plan.overrides["generic"]["backend"] == "tensorrt" and len(probes.built) == 1


def test_engine_is_built_once_then_cached_then_rebuilt_for_another_gpu(profile_file, tmp_path):
    profile = str(profile_file("tensorrt"))
    logs: list[str] = []
    first = FakeGPU()
    plan = deploy.prepare(profile, probes=first, log=logs.append)
    assert [e.built for e in plan.engines] == [True] and plan.gpu == "NVIDIA Jetson AGX Orin"
    assert first.built[0].parent == tmp_path / "engines"
    assert any("10-20 min on a Jetson" in m for m in logs)

    again = FakeGPU()
    plan = deploy.prepare(profile, probes=again, log=logs.append)
    assert again.built == [] and plan.engines[0].cached and plan.engines[0].engine == first.built[0]

    other = FakeGPU(gpu="NVIDIA GeForce RTX 4090")
    logs.clear()
    plan = deploy.prepare(profile, probes=other, log=logs.append)
    assert len(other.built) == 1 and not plan.engines[0].cached
    assert any("built for GPU 'NVIDIA Jetson AGX Orin'; this is 'NVIDIA GeForce RTX 4090'" in m for m in logs)

    newer_trt = FakeGPU(gpu="NVIDIA GeForce RTX 4090", trt="10.13.0")
    plan = deploy.prepare(profile, probes=newer_trt, build_engines=False, log=logs.append)
    assert newer_trt.built == [] and not plan.engines[0].cached
    assert any("TensorRT 10.3.0; this is 10.13.0" in r for r in plan.engines[0].reasons)


def test_engine_cache_override_and_unwritable_cache(profile_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(
            str(profile_file("tensorrt")),
            engine_cache_dir=str(blocker / "engines"),
            probes=FakeGPU(),
            log=lambda m: None,
        )
    assert err.value.code == deploy.EXIT_ENGINE_CACHE
    assert "not writable" in str(err.value) and "perception-engines:" in str(err.value)

    probes = FakeGPU()
    plan = deploy.prepare(
        str(profile_file("tensorrt")), engine_cache_dir=str(tmp_path / "vol"), probes=probes, log=lambda m: None
    )
    assert plan.overrides["generic"]["engine_cache_dir"] == str(tmp_path / "vol")
    assert probes.built[0].parent == tmp_path / "vol"


def test_build_failure_has_its_own_exit_code(profile_file):
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(str(profile_file("tensorrt")), probes=FakeGPU(fail_build=True), log=lambda m: None)
    assert err.value.code == deploy.EXIT_ENGINE_BUILD and "could not parse" in str(err.value)


def test_invalid_parameter_and_missing_model_are_profile_errors(profile_file, tmp_path):
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(str(profile_file("tensorrt", precision="fp8")))
    assert err.value.code == deploy.EXIT_PROFILE and "'precision'" in str(err.value)
    with pytest.raises(deploy.DeployError) as err:
        deploy.prepare(str(profile_file("onnxruntime")), {"generic": {"model_path": str(tmp_path / "gone.onnx")}})
    assert err.value.code == deploy.EXIT_PROFILE and "gone.onnx" in str(err.value)


def test_overrides_file_round_trips_into_the_profile(profile_file, tmp_path):
    from perception_nodes.profile import effective_parameters, load_profile

    plan = deploy.prepare(str(profile_file("tensorrt")), {"generic": {"warmup_iterations": 3}}, allow_cpu=True)
    path = deploy.write_overrides(plan.overrides, tmp_path)
    again = load_profile(str(profile_file("tensorrt")), yaml.safe_load(path.read_text()))
    params = effective_parameters(again.node("generic"))
    assert params["backend"] == "onnxruntime" and params["warmup_iterations"] == 3
    assert params["input_policy"] == "realtime"  # from the parameter file / schema defaults


def _start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        perception_argv("start", *args),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_perception_start_check_cli(profile_file):
    ok = _start(str(profile_file("auto")), "--check")
    assert ok.returncode == 0, ok.stderr
    assert "checks passed" in ok.stdout and "run with ONNX Runtime on the CPU" in ok.stdout

    no_cam = _start("camera_generic", "--camera", "/dev/video97", "--check")
    assert no_cam.returncode == deploy.EXIT_NO_CAMERA
    assert "camera /dev/video97 is not present" in no_cam.stderr

    no_gpu = _start(str(profile_file("tensorrt")), "--check")
    assert no_gpu.returncode == deploy.EXIT_NO_GPU and "--gpus all" in no_gpu.stderr
