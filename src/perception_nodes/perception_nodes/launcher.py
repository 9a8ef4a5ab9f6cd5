"""Start a profile's nodes as plain processes (no launch package needed).

Each node runs as ``python -m perception_nodes.nodes.<executable> --ros-args ...`` with its
parameter files, then a generated file for the profile's overrides, and its remappings — the
same arguments launch_ros builds from the same profile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

import yaml

from .profile import NodeSpec, Profile
from .workspace import workspace_root


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: the shipped Fast DDS profile (16 MiB shared memory
    segment + UDPv4, so VGA images are not lost) unless the user chose another."""
    env = dict(os.environ if base is None else base)
    xml = str(workspace_root() / "config" / "fastdds_shm.xml")
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", xml)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.setdefault("PERCEPTION_ROOT", str(workspace_root()))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def node_command(spec: NodeSpec, override_file: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", f"perception_nodes.nodes.{spec.executable}", "--ros-args",
           "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.param_files:
        cmd += ["--params-file", str(f)]
    if override_file is not None:
        cmd += ["--params-file", str(override_file)]
    for src, dst in spec.remappings.items():
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


class StackProcesses:
    """Context manager running every node of a profile; logs go to ``log_dir/<node>.log``."""

    def __init__(self, profile: Profile, log_dir: str | os.PathLike[str], env: dict[str, str] | None = None,
                 only: list[str] | None = None) -> None:
        self.profile = profile
        self.log_dir = Path(log_dir)
        self.env = ros_environment(env)
        self.only = only
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[IO[Any]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="perception-params-")

    def start(self) -> "StackProcesses":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in self.profile.nodes:
            if self.only is not None and spec.name not in self.only:
                continue
            self.start_node(spec)
        return self

    def start_node(self, spec: NodeSpec) -> subprocess.Popen[bytes]:
        override = None
        if spec.parameters:
            override = Path(self._tmp.name) / f"{spec.name}.yaml"
            override.write_text(yaml.safe_dump({"/**": {"ros__parameters": spec.parameters}}))
        log = open(self.log_dir / f"{spec.name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(node_command(spec, override), stdout=log, stderr=subprocess.STDOUT,
                                env=self.env, start_new_session=True)
        self.procs[spec.name] = proc
        return proc

    def wait(self, name: str, timeout: float | None = None) -> int:
        return self.procs[name].wait(timeout)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, names: list[str] | None = None, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGINT (clean shutdown: the recorder drains and closes its bag), then SIGKILL."""
        targets = {n: p for n, p in self.procs.items() if names is None or n in names}
        for p in targets.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for p in targets.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return {n: p.returncode for n, p in targets.items()}

    def log_text(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> "StackProcesses":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
        for log in self._logs:
            log.close()
        self._tmp.cleanup()


def run_until_stopped(profile: Profile, log_dir: str | os.PathLike[str], banner: str = "") -> int:
    """Start a profile's nodes as processes and wait until they all exit or Ctrl-C."""
    with StackProcesses(profile, log_dir) as stack:
        print(f"{banner}started {[n.fqn for n in profile.nodes]}; logs in {log_dir}; Ctrl-C stops", flush=True)
        try:
            while any(stack.alive().values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0
