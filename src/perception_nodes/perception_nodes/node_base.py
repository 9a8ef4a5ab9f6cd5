"""What every inference node shares: parameters, lifecycle, input policy, diagnostics.

A task node subclasses :class:`PerceptionNode`, names its schema, and implements

- :meth:`~PerceptionNode.setup` (configure: build the pipeline and backend, create publishers),
- :meth:`~PerceptionNode.process` (one frame: convert -> preprocess -> infer -> postprocess ->
  publish, each inside ``self.timer.stage(...)``),
- optionally :meth:`~PerceptionNode.teardown` and :meth:`~PerceptionNode.subscribe_inputs`.

The base handles the rest:

- Lifecycle: *configure* reads and validates parameters and calls ``setup`` (loads the backend /
  builds the engine); a failure leaves the node up, unconfigured, with the reason in the log and
  on ``/diagnostics``. *activate* subscribes; *deactivate* unsubscribes. With ``autostart`` the
  node drives itself through configure + activate.
- Input policy: ``realtime`` keeps only the newest frame (older unprocessed ones are counted as
  drops); ``lockstep`` queues every frame. A worker thread processes frames, so callbacks never
  block the executor.
- Every frame ends with a ``perception_msgs/FrameStatus`` (ok or the rejection reason) carrying
  the input stamp, which lockstep replay waits on; a bad frame becomes a throttled log, an error
  counter and a diagnostic, and the node keeps running.
- ``/diagnostics``: state, backend, fps, frames in/out, drops, errors, last error, per-stage
  median and p95 milliseconds.
"""

from __future__ import annotations

import threading
from abc import ABCMeta, abstractmethod
import time
import traceback
from collections import OrderedDict, deque
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from perception_msgs.msg import FrameStatus
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import Image

from .backends import BackendError
from .image_conversion import ImageConversionError
from .params import ParameterError, declare_from_schema, load_schema, read_parameters, validate
from .qos import input_qos, output_qos
from .timing import RateMeter, StageTimer


class FrameError(RuntimeError):
    """A frame that cannot be processed (bad content, NaN outputs...); the node keeps running."""


# Errors that reject one frame; anything else is a bug, logged with a traceback, still survived.
FRAME_ERRORS = (ImageConversionError, FrameError, BackendError, ValueError)


class PerceptionNode(LifecycleNode, metaclass=ABCMeta):
    #: schema file name (without .schema.json) in perception_nodes/schema
    schema_name: str = ""
    #: the message type of the main input (``image`` topic)
    input_type: Any = Image

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self.schema = load_schema(self.schema_name)
        declare_from_schema(self, self.schema)
        self.params: dict[str, Any] = {}
        self._frame_lock = threading.Lock()  # held while a frame is processed or the pipeline rebuilt
        self._setup_publishers: list[Any] = []
        self._in_setup = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.timer = StageTimer()
        self.rate_in = RateMeter()
        self.rate_out = RateMeter()
        self.counters = {"frames_in": 0, "frames_out": 0, "dropped": 0, "errors": 0}
        self.last_error = ""
        self.last_error_time = 0.0
        self.config_error = ""
        self.backend_description = "not configured"
        self._subscriptions_active: list[Any] = []
        self._queue: deque[Any] = deque()
        # lockstep: the FrameStatus of the last answered stamps, re-sent for a re-published frame
        self._answered: OrderedDict[int, FrameStatus] = OrderedDict()
        self._cv = threading.Condition()
        self._stop = False
        self._worker = threading.Thread(target=self._work, name=f"{node_name}-worker", daemon=True)
        self._worker.start()

        self.last_request_error = ""
        self.last_input_warning, self.last_input_warning_time = "", 0.0
        self._guard_change_state()
        guard_services(self, self._note_request_error)

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.status_pub = self.create_publisher(FrameStatus, self.get_parameter("status_topic").value, output_qos(100))
        self.create_timer(float(self.get_parameter("diagnostics_period").value), self.publish_diagnostics)
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # ------------------------------------------------------------------ hooks for task nodes
    def setup(self, params: dict[str, Any]) -> None:
        """Configure: build pipeline/backend, create publishers. Raise to fail the transition."""

    @abstractmethod
    def process(self, msg: Any) -> None:
        """Process one input frame and publish the outputs (raise FrameError to reject it)."""

    def teardown(self) -> None:
        """Cleanup: release the pipeline's backend (nodes with more to release extend this)."""
        if getattr(self, "pipeline", None) is not None:
            self.pipeline.backend.close()
            self.pipeline = None

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        """Create the input subscriptions (default: one ``image`` topic of ``input_type``)."""
        return [self.create_subscription(*self.image_input("image"), self.enqueue, qos)]

    def image_input(self, base: str) -> tuple[Any, str]:
        """(message type, topic) of an image input: ``base`` itself (raw), or with ``input_transport:
        compressed`` sensor_msgs/CompressedImage on the resolved (remapped) ``base`` + ``/compressed``,
        image_transport's naming."""
        if self.input_type is Image and self.params.get("input_transport") == "compressed":
            from sensor_msgs.msg import CompressedImage

            return CompressedImage, self.resolve_topic_name(base) + "/compressed"
        return self.input_type, base

    # ------------------------------------------------------------------ runtime parameters
    #: writable parameters that take effect on the next frame without a rebuild: the node reads
    #: them per frame, or :meth:`apply_live` pushes them into the pipeline
    LIVE_PARAMETERS: frozenset[str] = frozenset({"accept_raw_encodings", "warmup_iterations"})
    #: writable only while the node is unconfigured (cleanup, set, configure)
    CONFIGURE_ONLY: frozenset[str] = frozenset({"input_policy", "max_queue"})

    def check_parameters(self, values: dict[str, Any]) -> None:
        """Model-aware checks of a configured node's new values (raise ParameterError)."""

    def apply_live(self, changed: dict[str, Any]) -> None:
        """Push changed LIVE_PARAMETERS into the pipeline (those read per frame need nothing)."""

    def _state(self) -> str:
        return self._state_machine.current_state[1] if hasattr(self, "_state_machine") else "unconfigured"

    def _on_set_parameters(self, params: list) -> Any:
        """Every writable parameter means what it says at once: validated against the schema (and,
        when configured, the model: :meth:`check_parameters`), then applied on the next frame
        (LIVE_PARAMETERS) or by rebuilding the pipeline and outputs; CONFIGURE_ONLY ones are
        refused while configured. A change that cannot be applied is refused and nothing changes."""
        from rcl_interfaces.msg import SetParametersResult

        trial, changed = dict(self.params), {}
        for p in params:
            if p.name in self.schema["properties"]:
                v = p.value
                v = list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v
                trial[p.name] = v
                if self.params.get(p.name, object()) != v:
                    changed[p.name] = v
        try:
            validate(self.schema, {k: v for k, v in trial.items() if v is not None})
            configured = self._state() in ("inactive", "active") and bool(self.params)
            if configured and changed:
                fixed = sorted(set(changed) & self.CONFIGURE_ONLY)
                if fixed:
                    raise ParameterError(
                        f"{fixed} cannot change while the node is configured: deactivate, "
                        "cleanup, set them, then configure and activate"
                    )
                self.check_parameters(trial)
                self._apply(trial, changed)
            else:
                self.params.update(trial)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        if changed and configured:
            self.get_logger().info(f"parameters applied: {changed}")
        return SetParametersResult(successful=True)

    def _apply(self, trial: dict[str, Any], changed: dict[str, Any]) -> None:
        old = dict(self.params)
        with self._frame_lock:
            self.params.update(trial)
            try:
                if set(changed) <= self.LIVE_PARAMETERS:
                    self.apply_live(changed)
                else:
                    self._rebuild()
            except Exception as exc:
                self.params.clear()
                self.params.update(old)
                if not set(changed) <= self.LIVE_PARAMETERS:
                    try:
                        self._rebuild()
                    except Exception as again:  # the old configuration no longer builds either
                        self.config_error = f"{type(again).__name__}: {again}"
                raise ParameterError(f"cannot apply {changed}: {type(exc).__name__}: {exc}") from None

    def _rebuild(self) -> None:
        """Teardown and setup with the current parameters; resubscribe when active (input QoS)."""
        active = self._state() == "active"
        if active:
            self._unsubscribe()
        self.teardown()
        self._destroy_outputs()
        self._setup()
        if active:
            self._subscribe()
        self.get_logger().info(f"pipeline rebuilt: {self.backend_description}")

    def create_publisher(self, *args: Any, **kwargs: Any) -> Any:
        pub = super().create_publisher(*args, **kwargs)
        if getattr(self, "_in_setup", False):  # rclpy creates publishers before our __init__ runs
            self._setup_publishers.append(pub)
        return pub

    def _setup(self) -> None:
        self._in_setup = True
        try:
            self.setup(self.params)
        finally:
            self._in_setup = False

    def _destroy_outputs(self) -> None:
        """Destroy the publishers setup() created (a rebuild or a cleanup/configure cycle makes
        them again; before, each cycle left the old ones behind)."""
        for pub in self._setup_publishers:
            self.destroy_publisher(pub)
        self._setup_publishers = []

    # ------------------------------------------------------------------ lifecycle
    def _guard_change_state(self) -> None:
        """Answer a lifecycle request that is not available in the current state (configure while
        active, an unknown id or label) with success=false and a logged reason. rclpy raises
        'Transition is not registered' inside the service callback there, which ends spin() and
        the process: anyone on the ROS graph could stop a node with one request."""
        service = self._service_change_state
        original = service.callback

        def change_state(req: Any, resp: Any) -> Any:
            _sid, state = self._state_machine.current_state
            available = {tid: label for tid, label, *_ in self._state_machine.available_transitions}
            tid, label = int(req.transition.id), str(req.transition.label)
            if label:
                ids = [i for i, lab in available.items() if lab == label]
                ok = bool(ids)
            else:
                ok = tid in available
            if not ok:
                names = ", ".join(f"{lab} ({i})" for i, lab in sorted(available.items()))
                self._note_request_error(
                    f"lifecycle request '{label or tid}' refused: not available in state '{state}' (available: {names})"
                )
                resp.success = False
                return resp
            return original(req, resp)

        service.callback = change_state

    def warn_input(self, text: str) -> None:
        """A side input (CameraInfo, a reference) was refused or does not fit: throttled log and a
        WARN on /diagnostics for 5 s; the frames go on."""
        self.last_input_warning, self.last_input_warning_time = text, time.monotonic()
        self.get_logger().warn(text, throttle_duration_sec=5.0)

    def _note_request_error(self, reason: str) -> None:
        self.last_request_error = reason
        self.get_logger().warn(reason)

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.params.clear()
            self.params.update(read_parameters(self, self.schema))
            t0 = time.monotonic()
            self._destroy_outputs()
            self._setup()
            self.config_error = ""
            self.get_logger().info(f"configured in {time.monotonic() - t0:.2f} s: {self.backend_description}")
            return TransitionCallbackReturn.SUCCESS
        except (ParameterError, BackendError, FileNotFoundError, ValueError, KeyError) as exc:
            self.config_error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug: keep the node up, but show the traceback
            self.config_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(traceback.format_exc())
        self.get_logger().error(f"configure failed, node stays unconfigured: {self.config_error}")
        self.publish_diagnostics()
        return TransitionCallbackReturn.FAILURE

    def _subscribe(self) -> None:
        qos = input_qos(self.params["input_qos"], self.params["input_policy"], self.params["input_depth"])
        self._subscriptions_active = self.subscribe_inputs(qos)
        self.get_logger().info(
            f"active: policy={self.params['input_policy']} qos={self.params['input_qos']} "
            f"inputs={[s.topic_name for s in self._subscriptions_active]}"
        )

    def _unsubscribe(self) -> None:
        for sub in self._subscriptions_active:
            self.destroy_subscription(sub)
        self._subscriptions_active = []

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._subscribe()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._cv:
            self._queue.clear()
        self._answered.clear()
        with self._frame_lock:
            self.teardown()
            self._destroy_outputs()
        self.backend_description = "not configured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop_worker()
        self.teardown()
        return TransitionCallbackReturn.SUCCESS

    def stop_worker(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._worker.is_alive() and threading.current_thread() is not self._worker:
            self._worker.join(timeout=5.0)

    # ------------------------------------------------------------------ frames
    def enqueue(self, msg: Any) -> None:
        """Subscription callback: hand the frame to the worker according to the input policy."""
        self.counters["frames_in"] += 1
        self.rate_in.tick()
        with self._cv:
            if self.params.get("input_policy") == "realtime" and self._queue:
                self.counters["dropped"] += len(self._queue)
                self._queue.clear()
            elif len(self._queue) >= int(self.params.get("max_queue") or 1):
                # lockstep on an input faster than the node: bounded, the oldest frame goes
                self._queue.popleft()
                self.counters["dropped"] += 1
                self.counters["queue_full"] = self.counters.get("queue_full", 0) + 1
                self.warn_input(
                    f"lockstep queue full ({len(self._queue) + 1} frames, max_queue): the input is "
                    "faster than this node, dropping the oldest frame; use input_policy realtime on a "
                    "live camera (a lockstep replay waits for each answer and never fills it)"
                )
            self._queue.append(msg)
            self._cv.notify()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait(0.5)
                if self._stop:
                    return
                msg = self._queue.popleft()
            self.handle_frame(msg)

    ANSWERED_MEMORY = 64

    def handle_frame(self, msg: Any) -> bool:
        """Process one frame, publish its FrameStatus; returns True when it succeeded. In lockstep,
        a frame whose stamp was already answered (the player re-published it because an answer
        was lost, or another node was slow) gets the same FrameStatus again without being
        processed or published twice."""
        header = self.header_of(msg)
        stamp = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        lockstep = self.params.get("input_policy") == "lockstep" and stamp != 0
        if lockstep and stamp in self._answered:
            self.counters["repeats_answered"] = self.counters.get("repeats_answered", 0) + 1
            self.status_pub.publish(self._answered[stamp])
            return bool(self._answered[stamp].ok)
        t_recv = time.perf_counter()
        self.timer.start_frame()
        ok, detail = True, ""
        try:
            with self._frame_lock:
                self.process(msg)
            self.counters["frames_out"] += 1
            self.rate_out.tick()
        except FRAME_ERRORS as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # a bug; the node must survive it
            ok, detail = False, f"{type(exc).__name__}: {exc}"
            self.get_logger().error(traceback.format_exc(), throttle_duration_sec=10.0)
        finally:
            self.timer.end_frame()
        if not ok:
            self.counters["errors"] += 1
            self.last_error, self.last_error_time = detail, time.monotonic()
            self.get_logger().warn(f"frame rejected: {detail}", throttle_duration_sec=5.0)
        status = FrameStatus()
        status.header = header
        status.node = self.get_fully_qualified_name()
        status.ok = ok
        status.detail = detail
        status.processing_ms = float((time.perf_counter() - t_recv) * 1e3)
        self.status_pub.publish(status)
        if lockstep:
            self._answered[stamp] = status
            while len(self._answered) > self.ANSWERED_MEMORY:
                self._answered.popitem(last=False)
        return ok

    @staticmethod
    def header_of(msg: Any) -> Any:
        header = getattr(msg, "header", None)
        if header is None:
            from std_msgs.msg import Header

            header = Header()
        return header

    @staticmethod
    def check_finite(outputs: dict[str, np.ndarray]) -> None:
        """Reject a frame whose float outputs contain NaN or inf."""
        for name, arr in outputs.items():
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                bad = int((~np.isfinite(arr)).sum())
                raise FrameError(f"model output '{name}' has {bad} non-finite values; frame dropped")

    # ------------------------------------------------------------------ diagnostics
    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}"
        status.hardware_id = self.backend_description
        recent_error = self.last_error and time.monotonic() - self.last_error_time < 5.0
        if self.config_error:
            status.level, status.message = DiagnosticStatus.ERROR, f"not configured: {self.config_error}"
        elif recent_error:
            status.level, status.message = DiagnosticStatus.WARN, f"rejecting frames: {self.last_error}"
        elif self.last_input_warning and time.monotonic() - self.last_input_warning_time < 5.0:
            status.level, status.message = DiagnosticStatus.WARN, self.last_input_warning
        else:
            status.level, status.message = DiagnosticStatus.OK, "ok"
        values = {
            "state": self._state_machine.current_state[1] if hasattr(self, "_state_machine") else "",
            "backend": self.backend_description,
            "input_policy": str(self.params.get("input_policy", "")),
            "fps_in": f"{self.rate_in.rate():.2f}",
            "fps_out": f"{self.rate_out.rate():.2f}",
            **{k: str(v) for k, v in self.counters.items()},
            "last_error": self.last_error,
            "last_refused_request": self.last_request_error,
            "last_input_warning": self.last_input_warning,
        }
        for stage, stats in [*self.timer.stats.items(), ("total", self.timer.total)]:
            s = stats.summary()
            if s:
                values[f"{stage}_ms_median"] = f"{s['median']:.3f}"
                values[f"{stage}_ms_p95"] = f"{s['p95']:.3f}"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [status]
        self.diag_pub.publish(arr)


def guard_services(node: Any, report: Any) -> None:
    """Wrap every service callback the node has now (lifecycle, parameters) so that an exception
    inside one (a malformed parameter message, a request rclpy does not expect) answers a failed
    response and is reported through ``report(reason)`` instead of ending the process."""
    for service in list(getattr(node, "_services", [])):
        callback = service.callback
        if getattr(callback, "_perception_guarded", False):
            continue

        def guarded(req: Any, resp: Any, _cb: Any = callback, _name: str = service.srv_name) -> Any:
            try:
                return _cb(req, resp)
            except Exception as exc:  # any request must leave the node running
                report(f"request to {_name} refused: {type(exc).__name__}: {exc}")
                for field in ("success", "successful"):
                    if hasattr(resp, field):
                        setattr(resp, field, False)
                reason = f"{type(exc).__name__}: {exc}"
                result = getattr(resp, "result", None)
                if result is not None and hasattr(result, "successful"):
                    result.successful, result.reason = False, reason
                if hasattr(resp, "results") and hasattr(req, "parameters"):  # SetParameters: one per parameter
                    from rcl_interfaces.msg import SetParametersResult

                    resp.results = [SetParametersResult(successful=False, reason=reason) for _ in req.parameters]
                return resp

        guarded._perception_guarded = True  # type: ignore[attr-defined]
        service.callback = guarded


def spin_guarded(executor: Any, node: Any, stop: threading.Event | None = None) -> None:
    """Spin until shutdown (or ``stop`` is set); a callback that raises is logged (with its
    traceback) and the node goes on, where ``executor.spin()`` would end and take the process down."""
    from rclpy.executors import ExternalShutdownException

    while rclpy.ok(context=executor.context) and not (stop is not None and stop.is_set()):
        try:
            executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            raise
        except Exception:
            node.get_logger().error(
                f"callback failed, node keeps running:\n{traceback.format_exc()}", throttle_duration_sec=5.0
            )


def start_or_exit(
    node_cls: type,
    name: str | None,
    args: list[str] | None,
    startup_errors: tuple[type[BaseException], ...],
    prog: str = "",
) -> Any:
    """rclpy.init + the node; a start-up failure (an invalid parameter of a plain node, DDS
    security that cannot be enforced, a missing enclave) prints one line and exits 2."""
    import sys

    from rclpy._rclpy_pybind11 import RCLError

    prog = prog or name or node_cls.__name__
    try:
        rclpy.init(args=args)
        return node_cls(name) if name is not None else node_cls()
    except RCLError as exc:
        text = str(exc).replace("\n", " ")
        if "security" in text.lower():
            text += (
                " (DDS security is enforced: ROS_SECURITY_ENABLE/ROS_SECURITY_STRATEGY=Enforce; the PyPI ROS 2 "
                "wheels' Fast DDS has no security plugins, see docs/security.md)"
            )
        print(f"{prog}: cannot start: {text}", file=sys.stderr)
    except startup_errors as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
    rclpy.try_shutdown()
    raise SystemExit(2)


def run_node(node_cls: type, name: str, args: list[str] | None = None) -> None:
    """Entry point shared by every node executable: init, spin, clean shutdown on Ctrl-C/SIGTERM."""
    import signal

    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    node = start_or_exit(node_cls, name, args, ())
    # SIGTERM only sets a flag: calling rclpy.try_shutdown() inside the handler deadlocked when a
    # second SIGTERM (the launcher's parent-death signal after its own) interrupted the first
    # shutdown, which holds rclpy's context lock; the node then lived on as an orphan.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_guarded(executor, node, stop)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if hasattr(node, "stop_worker"):
            node.stop_worker()
        node.destroy_node()
        rclpy.try_shutdown()


def run_plain_node(
    node_cls: type, prog: str, startup_errors: tuple[type[BaseException], ...], args: list[str] | None = None
) -> Any:
    """Entry point of the non-lifecycle nodes (player, camera): a construction error prints one
    clear line and exits 2; otherwise spin until shutdown. Returns the node."""
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    node = start_or_exit(node_cls, None, args, startup_errors, prog)

    guard_services(node, lambda reason: node.get_logger().warn(reason))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        spin_guarded(executor, node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return node
