"""Start a profile's nodes as plain processes (no launch package needed), and supervise them.

Each node runs as ``python -m perception_nodes.nodes.<executable> --ros-args ...`` with its
parameter files, then a generated file for the profile's overrides, and its remappings — the
same arguments launch_ros builds from the same profile.

Supervision: every child runs in its own process group and gets SIGTERM from the kernel when
the launcher dies (``PR_SET_PDEATHSIG``), so even a SIGKILLed ``perception run``/``replay``
leaves no orphan holding a camera or an open bag. SIGINT, SIGTERM and SIGHUP of the launcher
stop the children cleanly (SIGINT, then SIGKILL after a timeout). :meth:`StackProcesses.deaths`
reports a child that exited on its own with its exit code and last log lines;
:func:`run_until_stopped` restarts it (``restart`` times at most) or stops the stack, and always
writes a summary JSON.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Iterator

import yaml

from .dds_profile import BYTES_PER_PIXEL, apply_profile, remove_stale_shm, segment_bytes_for
from .exit_codes import EXIT_NODE_DIED, EXIT_OK

from .profile import NodeSpec, Profile
from .workspace import shared_path, source_root


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for node processes: the shipped Fast DDS profile (16 MiB shared memory
    segment + UDPv4, so VGA images are not lost) unless the user chose another."""
    env = dict(os.environ if base is None else base)
    xml = str(shared_path("config/fastdds_shm.xml"))
    env.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", xml)
    env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    root = source_root()
    if root is not None:  # a checkout: the nodes read its files first (an install finds its share)
        env.setdefault("PERCEPTION_ROOT", str(root))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def profile_frame_bytes(profile: Profile) -> int | None:
    """The largest frame a profile's camera_source nodes ask for (width x height x bytes per pixel
    of their encoding); None when no camera sets a resolution."""
    sizes = []
    for spec in profile.nodes:
        if spec.executable != "camera_source":
            continue
        from .profile import effective_parameters

        p = effective_parameters(spec)
        w, h = int(p.get("width") or 0), int(p.get("height") or 0)
        if w and h:
            sizes.append(w * h * BYTES_PER_PIXEL.get(str(p.get("encoding", "rgb8")), 3))
    return max(sizes) if sizes else None


def node_command(spec: NodeSpec, override_file: Path | None, enclave: str | None = None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        f"perception_nodes.nodes.{spec.executable}",
        "--ros-args",
        "-r",
        f"__node:={spec.name}",
    ]
    if enclave:
        cmd += ["--enclave", enclave]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace.strip('/')}"]
    for f in spec.param_files:
        cmd += ["--params-file", str(f)]
    if override_file is not None:
        cmd += ["--params-file", str(override_file)]
    for src, dst in spec.remappings.items():
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


PR_SET_PDEATHSIG = 1


def _child_setup(parent: int) -> None:  # runs in the child between fork and exec
    os.setsid()  # own process group: a terminal's Ctrl-C reaches the launcher only
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except OSError:  # not Linux/glibc: no parent-death signal
        return
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the launcher (SIGINT arrives as a plain KeyboardInterrupt)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Interrupted` (a KeyboardInterrupt) for the duration,
    so the ``with StackProcesses`` blocks stop their children as they do on Ctrl-C."""

    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():  # only the main thread may
        yield
        return
    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@dataclass
class ChildExit:
    """A child that exited while it should have been running."""

    name: str
    returncode: int
    log_tail: str

    def describe(self) -> str:
        how = (
            f"killed by {signal.Signals(-self.returncode).name}"
            if self.returncode < 0
            else f"exit code {self.returncode}"
        )
        tail = "\n".join("    " + line for line in self.log_tail.splitlines())
        return f"node '{self.name}' died ({how}); last log lines:\n{tail}"


class StackProcesses:
    """Context manager running every node of a profile; logs go to ``log_dir/<node>.log``."""

    def __init__(
        self,
        profile: Profile,
        log_dir: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        only: list[str] | None = None,
        frame_bytes: int | None = None,
        interfaces: list[str] | None = None,
        keystore: str | os.PathLike[str] | None = None,
    ) -> None:
        """``frame_bytes``: the largest frame that will travel (default: from the profile's
        camera_source resolution, if set); ``interfaces``: bind UDP to these addresses only
        (see :mod:`dds_profile`); ``keystore``: DDS security enforced, each node in its enclave
        (see :mod:`security`)."""
        self.profile = profile
        self.log_dir = Path(log_dir)
        self._tmp = tempfile.TemporaryDirectory(prefix="perception-params-")
        frame_bytes = frame_bytes or profile_frame_bytes(profile)
        self.env = apply_profile(
            ros_environment(env),
            shared_path("config/fastdds_shm.xml"),
            self._tmp.name,
            segment_bytes_for(frame_bytes) if frame_bytes else None,
            interfaces,
        )
        self.keystore = keystore
        if keystore is not None:
            from .security import secure_environment

            self.env = secure_environment(self.env, keystore)
        self.only = only
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.specs: dict[str, NodeSpec] = {}
        self.restarts: dict[str, int] = {}
        self.exits: dict[str, list[int]] = {}
        self._reported: set[int] = set()  # pids whose exit was already reported or expected
        self._logs: list[IO[Any]] = []

    def start(self) -> "StackProcesses":
        self.log_dir.mkdir(parents=True, exist_ok=True)
        removed, freed = remove_stale_shm()
        if removed:
            print(
                f"removed {removed} shared-memory segments of killed DDS processes "
                f"({freed / 2**20:.0f} MiB of /dev/shm)",
                file=sys.stderr,
            )
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
        log = open(self.log_dir / f"{spec.name}.log", "ab")
        self._logs.append(log)
        enclave = None
        if self.keystore is not None:
            from .security import enclave_of

            enclave = enclave_of(spec)
        proc = subprocess.Popen(
            node_command(spec, override, enclave),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=functools.partial(_child_setup, os.getpid()),
        )
        self.procs[spec.name] = proc
        self.specs[spec.name] = spec
        return proc

    def deaths(self) -> list[ChildExit]:
        """Children that exited since the last call without being stopped by :meth:`stop`."""
        out = []
        for name, proc in self.procs.items():
            rc = proc.poll()
            if rc is not None and proc.pid not in self._reported:
                self._reported.add(proc.pid)
                self.exits.setdefault(name, []).append(rc)
                out.append(ChildExit(name, rc, self.log_tail(name)))
        return out

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        with open(self.log_dir / f"{name}.log", "ab") as log:
            log.write(f"\n==== restarted by the launcher (restart {self.restarts[name]}) ====\n".encode())
        return self.start_node(self.specs[name])

    def log_tail(self, name: str, lines: int = 12) -> str:
        return "\n".join(self.log_text(name).rstrip().splitlines()[-lines:])

    def wait(self, name: str, timeout: float | None = None) -> int:
        return self.procs[name].wait(timeout)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self, names: list[str] | None = None, timeout: float = 10.0) -> dict[str, int | None]:
        """SIGINT (clean shutdown: the recorder drains and closes its bag), then SIGKILL."""
        targets = {n: p for n, p in self.procs.items() if names is None or n in names}
        for p in targets.values():
            if p.poll() is None:
                self._reported.add(p.pid)  # an exit we asked for, not a death
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


def run_until_stopped(
    profile: Profile,
    log_dir: str | os.PathLike[str],
    banner: str = "",
    restart: int = 0,
    summary_path: str | os.PathLike[str] | None = None,
    poll_s: float = 0.2,
    interfaces: list[str] | None = None,
    keystore: str | os.PathLike[str] | None = None,
) -> int:
    """Start a profile's nodes as processes and supervise them until Ctrl-C/SIGTERM/SIGHUP.

    A node that dies is reported (name, exit code, last log lines) and restarted while it has
    restarts left (``restart`` per node); after that the whole stack is stopped and this returns
    EXIT_NODE_DIED. A signal stops the stack and returns EXIT_OK (a requested stop). The summary
    (``summary_path``, default ``log_dir/run_summary.json``) is written in every case."""
    summary_file = Path(summary_path) if summary_path else Path(log_dir) / "run_summary.json"
    t0 = time.time()
    summary: dict[str, Any] = {
        "profile": profile.name,
        "started_unix": t0,
        "restart_limit": restart,
        "deaths": [],
        "stopped_by": None,
    }
    code = EXIT_OK
    stack = StackProcesses(profile, log_dir, interfaces=interfaces, keystore=keystore)
    try:
        with stop_on_signals(), stack:
            print(f"{banner}started {[n.fqn for n in profile.nodes]}; logs in {log_dir}; Ctrl-C stops", flush=True)
            while True:
                for death in stack.deaths():
                    summary["deaths"].append(asdict(death))
                    print(f"{banner}{death.describe()}", file=sys.stderr, flush=True)
                    if stack.restarts.get(death.name, 0) < restart:
                        stack.restart(death.name)
                        print(
                            f"{banner}restarted '{death.name}' ({stack.restarts[death.name]}/{restart})",
                            file=sys.stderr,
                            flush=True,
                        )
                    else:
                        summary["stopped_by"] = f"node '{death.name}' died"
                        code = EXIT_NODE_DIED
                if code != EXIT_OK or not any(stack.alive().values()):
                    break
                time.sleep(poll_s)
    except KeyboardInterrupt as exc:
        summary["stopped_by"] = exc.args[0] if isinstance(exc, Interrupted) else "SIGINT"
    finally:
        summary.update(
            {
                "wall_time_s": round(time.time() - t0, 2),
                "exit_code": code,
                "nodes": {
                    n: {
                        "pid": p.pid,
                        "restarts": stack.restarts.get(n, 0),
                        "exit_codes": stack.exits.get(n, []),
                        "final_returncode": p.returncode,
                    }
                    for n, p in stack.procs.items()
                },
            }
        )
        summary_file.parent.mkdir(parents=True, exist_ok=True)
        summary_file.write_text(json.dumps(summary, indent=2))
    if code == EXIT_NODE_DIED:
        print(
            f"{banner}stopped the stack: {summary['stopped_by']} (restarts used up; summary in {summary_file})",
            file=sys.stderr,
        )
    return code
