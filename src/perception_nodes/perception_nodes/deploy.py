"""What a robot's container does before it starts a profile (``perception start``).

The Docker images' entrypoint (``docker/entrypoint.sh``) sources ROS and runs
``perception start PROFILE``, which

1. loads the profile (``config/profiles/<name>.yaml`` or a path) and each node's effective
   parameters, validated against the node's schema;
2. checks the camera: a ``camera_source`` reading ``/dev/videoN`` needs that device in the
   container (``--device`` / compose ``devices:``), readable and writable;
3. checks the GPU for every node with ``backend: tensorrt`` or ``auto``: TensorRT importable and
   a CUDA device visible (``--gpus all`` on a desktop, ``--runtime nvidia`` on a Jetson). Without
   one, ``tensorrt`` nodes stop the start with a clear message (``--allow-cpu`` switches them to
   ONNX Runtime) and ``auto`` nodes are pinned to ONNX Runtime; with one, ``auto`` is pinned to
   TensorRT, so the nodes never decide differently from these checks;
4. checks the engine cache (a mounted volume): writable, and for each TensorRT node whether an
   engine for *this* GPU, TensorRT version, precision and ONNX file is there; builds the missing
   ones with progress before any node starts (engines are never baked into an image: they only
   run on the GPU model and TensorRT version that built them);
5. starts the nodes with ``ros2 launch`` (or as plain processes where launch is absent).

Everything except the last step is plain Python with injectable probes, tested without Docker,
GPU or camera (tests/nodes/test_deploy.py). Each failure has its own exit code (``EXIT_*``).
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from .params import ParameterError, load_schema, validate
from .profile import NodeSpec, Profile, ProfileError, effective_parameters, load_profile
from .workspace import resolve_path, search_roots, shared_path

EXIT_OK = 0
EXIT_PROFILE = 2  # unknown profile, invalid parameter, missing model file
EXIT_NO_GPU = 3  # a TensorRT node but no TensorRT/GPU (and no --allow-cpu)
EXIT_NO_CAMERA = 4  # camera device/file missing or not accessible
EXIT_ENGINE_CACHE = 5  # engine cache directory not writable
EXIT_ENGINE_BUILD = 6  # TensorRT could not build an engine

GPU_HINT = (
    "Run the container with the GPU: `docker run --gpus all` (desktop, NVIDIA Container "
    "Toolkit) or `--runtime nvidia` (Jetson; compose: `runtime: nvidia`), or start with "
    "--allow-cpu to run these nodes with ONNX Runtime on the CPU"
)


class DeployError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class EngineStatus:
    node: str
    model: Path
    engine: Path
    cached: bool
    reasons: list[str]
    built: bool = False


@dataclass
class StartPlan:
    profile: Profile
    overrides: dict[str, dict[str, Any]]
    engines: list[EngineStatus] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    gpu: str = ""


def _default_gpu() -> str:
    from .backends.cuda_runtime import probe_gpu

    return probe_gpu()


def _default_tensorrt() -> str:
    from .backends.tensorrt_backend import require_tensorrt

    return require_tensorrt()


def _default_build(model: Path, params: dict[str, Any], cache_dir: Path, log: Callable[[str], None]) -> Path:
    from .backends.tensorrt_backend import TensorRTBackend

    calib = params.get("int8_calibration_cache") or None
    backend = TensorRTBackend(
        model,
        cache_dir=cache_dir,
        precision=params["precision"],
        calibration_cache=resolve_path(calib) if calib else None,
        progress=True,
        log_fn=log,
    )
    path = Path(backend.engine_path)
    backend.close()
    return path


def _default_key(model: Path, params: dict[str, Any], gpu: str, trt_version: str) -> Any:
    from .backends.tensorrt_backend import compute_engine_key, onnx_input_specs, resolve_input_shapes

    calib = params.get("int8_calibration_cache") or None
    shapes = resolve_input_shapes(onnx_input_specs(model), None)
    return compute_engine_key(
        model, gpu, trt_version, params["precision"], shapes, resolve_path(calib) if calib else None
    )


@dataclass
class Probes:
    """How ``prepare`` looks at the machine; tests replace these."""

    gpu: Callable[[], str] = _default_gpu  # GPU name, or raises BackendError
    tensorrt: Callable[[], str] = _default_tensorrt  # TensorRT version, or raises BackendError
    engine_key: Callable[[Path, dict[str, Any], str, str], Any] = _default_key
    build: Callable[[Path, dict[str, Any], Path, Callable[[str], None]], Path] = _default_build
    video_devices: Callable[[], list[str]] = lambda: sorted(glob.glob("/dev/video*"))


def _camera_device(source: str) -> str | None:
    if source.isdigit():
        return f"/dev/video{source}"
    return source if source.startswith("/dev/") else None


def check_camera(spec: NodeSpec, params: dict[str, Any], probes: Probes) -> str:
    source = str(params.get("source", ""))
    device = _camera_device(source)
    if device is None:
        path = resolve_path(source)
        if not path.exists():
            raise DeployError(
                EXIT_NO_CAMERA,
                f"node '{spec.name}': camera source '{source}' ({path}) "
                "does not exist: mount the video file or image folder into the container",
            )
        return f"node '{spec.name}': reading {path}"
    if not os.path.exists(device):
        present = probes.video_devices()
        raise DeployError(
            EXIT_NO_CAMERA,
            (
                f"node '{spec.name}': camera {device} is not present in this container (video devices "
                f"here: {present or 'none'}). Pass it through: `docker run --device {device}` or compose "
                f'`devices: ["{device}:{device}"]`, or choose another with --camera /dev/videoN'
            ),
        )
    if not os.access(device, os.R_OK | os.W_OK):
        raise DeployError(
            EXIT_NO_CAMERA,
            (
                f"node '{spec.name}': camera {device} exists but is not readable and writable by uid "
                f"{os.getuid()}: add the container user to the device's group (compose `group_add: [video]`)"
            ),
        )
    return f"node '{spec.name}': camera {device}"


def check_cache_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise DeployError(
            EXIT_ENGINE_CACHE,
            (
                f"engine cache {path} is not writable ({exc.strerror or exc}): mount a volume there, e.g. "
                f"`docker run -v perception-engines:{path}` (compose: the `engines` volume)"
            ),
        ) from None


def prepare(
    profile_name: str,
    overrides: dict[str, dict[str, Any]] | None = None,
    *,
    camera: str | None = None,
    engine_cache_dir: str | None = None,
    allow_cpu: bool = False,
    build_engines: bool = True,
    probes: Probes | None = None,
    log: Callable[[str], None] = print,
) -> StartPlan:
    """Run the checks of the module docstring; return what to start, or raise DeployError."""
    probes = probes or Probes()
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    try:
        profile = load_profile(profile_name, overrides)
    except ProfileError as exc:
        raise DeployError(EXIT_PROFILE, str(exc)) from None

    def override(node: str, key: str, value: Any) -> None:
        overrides.setdefault(node, {})[key] = value
        profile.node(node).parameters[key] = value

    cameras = [n for n in profile.nodes if n.executable == "camera_source"]
    if camera is not None:
        if not cameras:
            raise DeployError(
                EXIT_PROFILE,
                f"--camera {camera}: profile '{profile.name}' has no camera_source "
                "node (it reads a bag or topics); pick a camera profile",
            )
        for spec in cameras:
            override(spec.name, "source", camera)
    plan = StartPlan(profile, overrides)

    params: dict[str, dict[str, Any]] = {}
    for spec in profile.nodes:
        values = effective_parameters(spec)
        if engine_cache_dir is not None and "engine_cache_dir" in values:
            override(spec.name, "engine_cache_dir", engine_cache_dir)
            values["engine_cache_dir"] = engine_cache_dir
        try:
            validate(load_schema(spec.executable), values)
        except ParameterError as exc:
            raise DeployError(EXIT_PROFILE, f"node '{spec.name}': {exc}") from None
        params[spec.name] = values

    for spec in cameras:
        plan.notes.append(check_camera(spec, params[spec.name], probes))

    for spec in profile.nodes:
        p = params[spec.name]
        if "model_path" in p:
            model = resolve_path(p["model_path"]) if p["model_path"] else None
            if model is None or not model.is_file():
                raise DeployError(
                    EXIT_PROFILE,
                    f"node '{spec.name}': model_path '{p['model_path']}' "
                    f"is not a file (looked in {', '.join(str(r) for r in search_roots())})",
                )

    trt_nodes = [n.name for n in profile.nodes if params[n.name].get("backend") == "tensorrt"]
    auto_nodes = [n.name for n in profile.nodes if params[n.name].get("backend") == "auto"]
    if not trt_nodes and not auto_nodes:
        return plan
    try:
        trt_version = probes.tensorrt()
        plan.gpu = probes.gpu()
    except Exception as exc:  # BackendError with the reason (no driver, no device, no TensorRT)
        if trt_nodes and not allow_cpu:
            raise DeployError(EXIT_NO_GPU, f"nodes {trt_nodes} use backend tensorrt, but {exc}. {GPU_HINT}") from None
        for name in trt_nodes + auto_nodes:  # pinned, so the nodes do not probe again
            override(name, "backend", "onnxruntime")
            params[name]["backend"] = "onnxruntime"
        plan.notes.append(f"no GPU ({exc}): nodes {trt_nodes + auto_nodes} run with ONNX Runtime on the CPU")
        return plan
    for name in auto_nodes:
        override(name, "backend", "tensorrt")
        params[name]["backend"] = "tensorrt"
    trt_nodes += auto_nodes

    from .backends.engine_cache import EngineCache

    for name in trt_nodes:
        p = params[name]
        model = resolve_path(p["model_path"])
        cache_dir = resolve_path(os.path.expanduser(p["engine_cache_dir"]))
        check_cache_dir(cache_dir)
        key = probes.engine_key(model, p, plan.gpu, trt_version)
        found = EngineCache(cache_dir).lookup(model.stem, key)
        status = EngineStatus(name, model, found.engine_path, found.hit, found.reasons)
        plan.engines.append(status)
        if found.hit:
            log(f"[{name}] engine cached for {plan.gpu} / TensorRT {trt_version}: {found.engine_path}")
            continue
        log(f"[{name}] no usable engine ({'; '.join(found.reasons)})")
        if not build_engines:
            continue
        log(
            f"[{name}] building a {p['precision']} engine from {model.name} for {plan.gpu}: 1-3 min on a "
            "desktop GPU, 10-20 min on a Jetson Orin; later starts reuse it from the cache volume"
        )
        try:
            status.engine = probes.build(model, p, cache_dir, log)
        except Exception as exc:
            raise DeployError(EXIT_ENGINE_BUILD, f"[{name}] TensorRT engine build failed: {exc}") from None
        status.built = True
    return plan


def write_overrides(overrides: dict[str, dict[str, Any]], directory: Path) -> Path:
    path = directory / "overrides.yaml"
    path.write_text(yaml.safe_dump(overrides, sort_keys=True))
    return path


def launch_command(profile: Profile, overrides_file: Path | None) -> list[str] | None:
    """``ros2 launch`` of the stack when launch_ros is installed (ROS from apt), else None."""
    import importlib.util

    ros2 = shutil.which("ros2")
    if ros2 is None or importlib.util.find_spec("launch_ros") is None:
        return None
    cmd = [ros2, "launch", str(shared_path("launch/perception.launch.py")), f"profile:={profile.name}"]
    if overrides_file is not None:
        cmd.append(f"overrides:={overrides_file}")
    return cmd


def start_main(args: Any) -> int:
    """``perception start``: prepare, then exec the launcher (never returns on success)."""
    from .profile import parse_set

    try:
        plan = prepare(
            args.profile,
            parse_set(args.set),
            camera=args.camera,
            engine_cache_dir=args.engine_cache,
            allow_cpu=args.allow_cpu,
            build_engines=not args.no_build,
        )
    except (DeployError, ProfileError) as exc:
        code = exc.code if isinstance(exc, DeployError) else EXIT_PROFILE
        print(f"perception start: {exc}", file=sys.stderr)
        return code
    for note in plan.notes:
        print(f"perception start: {note}")
    if args.build_only or args.check:
        missing = [e.node for e in plan.engines if not (e.cached or e.built)]
        print(
            f"perception start: checks passed; engines: "
            f"{[(e.node, 'cached' if e.cached else 'built' if e.built else 'missing') for e in plan.engines]}"
        )
        return EXIT_ENGINE_BUILD if (args.build_only and missing) else EXIT_OK
    tmp = Path(tempfile.mkdtemp(prefix="perception-start-"))
    overrides_file = write_overrides(plan.overrides, tmp) if plan.overrides else None
    cmd = None if args.launcher == "processes" else launch_command(plan.profile, overrides_file)
    if cmd is None and args.launcher == "ros2":
        print("perception start: --launcher ros2 but ros2/launch_ros is not installed", file=sys.stderr)
        return EXIT_PROFILE
    if cmd is not None:
        print("perception start: " + " ".join(cmd), flush=True)
        os.execvp(cmd[0], cmd)
    from .launcher import run_until_stopped  # no ROS launch here: plain processes, same graph

    return run_until_stopped(
        plan.profile, args.log_dir, banner="perception start: ", restart=getattr(args, "restart", 0)
    )
