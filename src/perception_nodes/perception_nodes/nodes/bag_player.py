"""bag_player: replays a rosbag2 bag by publishing its stored CDR bytes (no re-serialisation).

Modes: ``realtime`` (bag timing x ``rate``), ``fast`` (as fast as possible) and ``lockstep``:
each message on ``lockstep_topic`` is published and then the player waits until every node in
``lockstep_nodes`` has published a ``perception_msgs/FrameStatus`` with that frame's stamp,
re-publishing after ``lockstep_timeout`` (a frame lost in transport is sent again), so evaluation
never drops a frame. A node that already answered a stamp answers a re-published frame again
without processing it (node_base), so retries never duplicate results. Before each retry the
player checks that every lockstep node is still on the ROS graph: a node that left ends the
replay at once, named (error_kind ``node_died``), instead of waiting out every frame's retries.
Frames that share a header stamp are refused before the first message (``duplicate_stamps``):
their answers could not be told apart. ``/clock`` carries bag time for ``use_sim_time``.

Exit codes: :mod:`perception_nodes.exit_codes` (0 only when every frame got every answer).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import rclpy
from perception_msgs.msg import FrameStatus
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from tqdm import tqdm

from ..dds_profile import SEGMENT_ENV, segment_limit
from ..bag_io import BagError, bag_info, frame_topic_problem, header_stamp_ns, read_messages
from ..params import ParameterError, declare_from_schema, load_schema, read_parameters
from ..workspace import resolve_path


def message_class(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy class, or None when its package is not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


class ReplayError(BagError):
    """The replay cannot go on; ``kind`` is a key of exit_codes.ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Progress:
    """Frames played so far, in a small JSON file the supervising ``perception replay`` reads for
    its terminal progress bar (this process logs to a file). Written at most every 0.25 s, atomically."""

    def __init__(self, path: str, frames_total: int) -> None:
        self.path, self.total, self._last = path, frames_total, 0.0

    def update(self, frames: int, lost: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.path or (not force and now - self._last < 0.25):
            return
        self._last = now
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"frames": frames, "frames_total": self.total, "lost": lost}, f)
        os.replace(tmp, self.path)


class BagPlayer(Node):
    def __init__(self, name: str = "bag_player") -> None:
        super().__init__(name)
        self.schema = load_schema("bag_player")
        declare_from_schema(self, self.schema)
        self.params = read_parameters(self, self.schema)
        p = self.params
        if not p["bag_path"]:
            raise ParameterError("parameter 'bag_path' is empty; set it to a rosbag2 directory or file")
        if p["mode"] == "lockstep" and (not p["lockstep_topic"] or not p["lockstep_nodes"]):
            raise ParameterError("lockstep mode needs 'lockstep_topic' and 'lockstep_nodes'")
        self.bag = resolve_path(p["bag_path"])
        self.info = bag_info(self.bag)
        if self.info.note:
            self.get_logger().warn(self.info.note)
        self.lockstep_nodes = {n if n.startswith("/") else "/" + n for n in p["lockstep_nodes"]}
        try:
            self.outputs_pattern = re.compile(p["wait_for_outputs_regex"]) if p["wait_for_outputs_regex"] else None
        except re.error as exc:
            raise ParameterError(f"parameter 'wait_for_outputs_regex' is not a regular expression: {exc}") from exc
        qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)
        self.pubs: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        for topic, (msgtype, _count) in self.info.topics.items():
            if p["topics"] and topic not in p["topics"]:
                continue
            cls = message_class(msgtype)
            if cls is None:
                self.skipped[topic] = msgtype
                continue
            self.pubs[topic] = self.create_publisher(cls, topic, qos)
        if self.skipped:
            self.get_logger().warn(f"not publishing {self.skipped}: their message packages are not installed for rclpy")
        if p["mode"] == "lockstep" and p["lockstep_topic"] not in self.pubs:
            raise ParameterError(
                f"lockstep_topic '{p['lockstep_topic']}' is not a playable topic of the bag; it has {sorted(self.pubs)}"
            )
        self.clock_pub = self.create_publisher(Clock, "/clock", 10) if p["publish_clock"] else None
        self._acks: dict[int, dict[str, FrameStatus]] = defaultdict(dict)
        self._seen_nodes: set[str] = set()
        self._cv = threading.Condition()
        self.create_subscription(
            FrameStatus,
            p["status_topic"],
            self._on_status,
            QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000),
        )
        self.summary: dict[str, Any] = {}
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run_safely, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ answers
    def _on_status(self, msg: FrameStatus) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._cv:
            self._seen_nodes.add(msg.node)
            self._acks[stamp][msg.node] = msg
            self._cv.notify_all()

    def _wait_answers(self, stamp: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not self.lockstep_nodes <= set(self._acks.get(stamp, {})):
                left = deadline - time.monotonic()
                if left <= 0 or not rclpy.ok():
                    return False
                self._cv.wait(min(left, 0.1))
        return True

    # ------------------------------------------------------------------ playback
    def _subscribers(self, topic: str) -> set[str]:
        """Fully qualified names of the nodes subscribed to ``topic``."""
        return {f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in self.get_subscriptions_info_by_topic(topic)}

    def _unsubscribed_outputs(self, required: set[str]) -> list[str]:
        """Outputs of the lockstep nodes (matching ``wait_for_outputs_regex``) that a ``required``
        subscriber has not subscribed to yet, as ``topic (missing nodes)`` lines.

        A node publishes before it subscribes (configure creates its publishers, activate its
        input subscription), so once it takes the frames its outputs are all in the graph; a
        recorder that discovers topics by polling may not have found them yet, and would lose
        that node's answers to the first frames (a short bag: all of them)."""
        pattern = self.outputs_pattern
        if pattern is None or not required:
            return []
        missing: list[str] = []
        for fqn in sorted(self.lockstep_nodes):
            ns, _, name = fqn.rpartition("/")
            try:
                topics = self.get_publisher_names_and_types_by_node(name, ns or "/")
            except Exception:  # noqa: BLE001 - the node is not in the graph (yet)
                continue
            for topic, _types in topics:
                if pattern.search(topic):
                    lacking = required - self._subscribers(topic)
                    if lacking:
                        missing.append(f"{topic} ({', '.join(sorted(lacking))})")
        return missing

    def _wait_for_graph(self) -> None:
        p = self.params
        required = {n if n.startswith("/") else "/" + n for n in p["wait_for_subscribers"]}
        deadline = time.monotonic() + p["wait_for_nodes_timeout"]
        while rclpy.ok() and time.monotonic() < deadline:
            if required and p["lockstep_topic"] in self.pubs and not required <= self._subscribers(p["lockstep_topic"]):
                pass  # e.g. the recorder has not subscribed yet: it would miss the first frames
            elif (
                p["mode"] == "lockstep"
                and p["lockstep_topic"] in self.pubs
                and not self.lockstep_nodes <= self._subscribers(p["lockstep_topic"])
            ):
                pass  # a node that has not subscribed may not have all its outputs in the graph either
            elif self._unsubscribed_outputs(required):
                pass  # the recorder has not found every node's outputs yet
            elif p["mode"] == "lockstep":
                enough = max(len(self.lockstep_nodes), p["min_subscribers"])
                sub_count = self.pubs[p["lockstep_topic"]].get_subscription_count()
                if self.lockstep_nodes <= self._graph_nodes() and sub_count >= enough:
                    break
            elif (
                max((pub.get_subscription_count() for pub in self.pubs.values()), default=0)
                >= max(1, p["min_subscribers"])
                or p["wait_for_nodes_timeout"] == 0
            ):
                break
            time.sleep(0.05)
        else:
            missing = required - self._subscribers(p["lockstep_topic"]) if p["lockstep_topic"] in self.pubs else set()
            if missing:
                raise BagError(
                    f"{sorted(missing)} did not subscribe to {p['lockstep_topic']} within "
                    f"{p['wait_for_nodes_timeout']} s"
                )
            unrecorded = self._unsubscribed_outputs(required)
            if unrecorded:
                raise BagError(
                    f"within {p['wait_for_nodes_timeout']} s these node outputs got no subscription from "
                    f"the required subscribers: {'; '.join(unrecorded)}"
                )
            if p["mode"] == "lockstep":
                names = self._graph_nodes()
                absent = self.lockstep_nodes - names
                if not absent and p["lockstep_topic"] in self.pubs:
                    deaf = sorted(self.lockstep_nodes - self._subscribers(p["lockstep_topic"]))
                    raise BagError(
                        f"lockstep: nodes {deaf} are running but did not subscribe to {p['lockstep_topic']} "
                        f"within {p['wait_for_nodes_timeout']} s (check their image remapping)"
                    )
                raise BagError(
                    f"lockstep: nodes {sorted(absent)} did not appear "
                    f"within {p['wait_for_nodes_timeout']} s (running: {sorted(names)})"
                )
        time.sleep(p["start_delay"])

    def _graph_nodes(self) -> set[str]:
        return {f"{ns.rstrip('/')}/{n}" for n, ns in self.get_node_names_and_namespaces()}

    def _check_lockstep_input(self) -> None:
        """Refuse up front what lockstep cannot replay: no frames, or frames sharing a stamp."""
        problem = frame_topic_problem(self.bag, self.info, self.params["lockstep_topic"], lockstep=True)
        if problem:
            raise ReplayError(*problem)

    def _run_safely(self) -> None:
        try:
            self._run()
        except ReplayError as exc:
            self.get_logger().error(str(exc))
            self.summary.update({"error": str(exc), "error_kind": exc.kind})
        except (BagError, ParameterError) as exc:
            self.get_logger().error(str(exc))
            self.summary.update({"error": str(exc), "error_kind": "bag"})
        finally:
            if "frames" not in self.summary and "error" not in self.summary:
                self.summary.update({"error": "stopped before the end of the bag", "error_kind": "interrupted"})
            self._write_summary()
            self.done.set()
            if self.params["exit_when_done"]:
                rclpy.try_shutdown()

    def _run(self) -> None:
        p = self.params
        if p["mode"] == "lockstep":
            self._check_lockstep_input()
        self._wait_for_graph()
        mode, lock_topic = p["mode"], p["lockstep_topic"]
        total = sum(c for t, (_, c) in self.info.topics.items() if t in self.pubs)
        frames = published = retries = lost = rejected = oversize = 0
        segment = segment_limit()
        lost_stamps: list[int] = []
        frame_published: dict[int, int] = {}
        t_start = time.monotonic()
        frames_total = self.info.topics.get(lock_topic, ("", 0))[1] if lock_topic else 0
        progress = Progress(p["progress_path"], frames_total)
        self.get_logger().info(
            f"playing {self.bag} ({total} messages, {self.info.duration_s:.1f} s) mode={mode}"
            + (f" rate={p['rate']}" if mode == "realtime" else "")
        )
        while True:
            bag_t0: int | None = None
            wall_t0 = time.monotonic()
            bar = tqdm(total=total, desc=f"replay ({mode})", unit="msg", dynamic_ncols=True, disable=None)
            for topic, _msgtype, t_ns, cdr in read_messages(self.bag, list(self.pubs)):
                if not rclpy.ok():
                    return
                if bag_t0 is None:
                    bag_t0 = t_ns
                if mode == "realtime":
                    due = wall_t0 + (t_ns - bag_t0) / 1e9 / p["rate"]
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                if self.clock_pub is not None:
                    clk = Clock()
                    clk.clock.sec, clk.clock.nanosec = divmod(t_ns, 1_000_000_000)
                    self.clock_pub.publish(clk)
                if topic == lock_topic:  # wall (system) time of the first publication, for latency
                    frame_published.setdefault(header_stamp_ns(cdr), time.time_ns())
                if len(cdr) > segment:
                    oversize += 1
                    self.get_logger().warn(
                        f"{topic}: a {len(cdr)} byte message is larger than the {segment} byte shared-memory "
                        f"segment ({SEGMENT_ENV}); best-effort subscribers may not get it "
                        f"({oversize} so far)",
                        throttle_duration_sec=5.0,
                    )
                self.pubs[topic].publish(cdr)
                published += 1
                bar.update(1)
                progress.update(frames, lost)
                if mode == "lockstep" and topic == lock_topic:
                    frames += 1
                    stamp = header_stamp_ns(cdr)
                    attempt = 0
                    while not self._wait_answers(stamp, p["lockstep_timeout"]):
                        if not rclpy.ok():
                            return
                        if attempt >= p["lockstep_retries"]:
                            lost += 1
                            lost_stamps.append(stamp)
                            missing = self.lockstep_nodes - set(self._acks.get(stamp, {}))
                            self.get_logger().error(
                                f"lockstep: frame {stamp} unanswered by {sorted(missing)} after "
                                f"{attempt + 1} tries; continuing"
                            )
                            break
                        gone = sorted(self.lockstep_nodes - self._graph_nodes())
                        if gone:
                            raise ReplayError(
                                "node_died",
                                f"lockstep: node(s) {gone} left the ROS graph; frame "
                                f"{stamp} ({frames} of the bag) cannot be answered",
                            )
                        attempt += 1
                        retries += 1
                        self.get_logger().warn(
                            f"lockstep: frame {stamp} unanswered after {p['lockstep_timeout']} s; publishing it again"
                        )
                        self.pubs[topic].publish(cdr)
                    rejected += sum(1 for s in self._acks.get(stamp, {}).values() if not s.ok)
                elif topic == lock_topic or (not lock_topic and mode != "lockstep"):
                    frames += 1
            bar.close()
            if not p["loop"] or mode == "lockstep":
                break
        progress.update(frames, lost, force=True)
        wall = time.monotonic() - t_start
        self.summary.update(
            {
                "bag": str(self.bag),
                "mode": mode,
                "messages_published": published,
                "frames": frames,
                "frames_answered": frames - lost,
                "frames_lost": lost,
                "lost_stamps": lost_stamps,
                "frames_rejected_by_nodes": rejected,
                "retries": retries,
                "messages_over_transport_limit": oversize,
                "wall_time_s": round(wall, 3),
                "skipped_topics": self.skipped,
                "processing_ms": self._processing_stats(),
                "frame_publish_ns": [[s, t] for s, t in frame_published.items()],
            }
        )
        self.get_logger().info(
            f"done: {published} messages, {frames} frames, lost {lost}, retries {retries}, {wall:.1f} s"
        )

    def _processing_stats(self) -> dict[str, dict[str, float]]:
        import numpy as np

        per_node: dict[str, list[float]] = defaultdict(list)
        with self._cv:
            for answers in self._acks.values():
                for node, st in answers.items():
                    per_node[node].append(st.processing_ms)
        return {
            n: {"median": float(np.median(v)), "p95": float(np.percentile(v, 95)), "count": len(v)}
            for n, v in per_node.items()
        }

    def _write_summary(self) -> None:
        path = self.params.get("summary_path")
        if path:
            out = resolve_path(path)
            out.parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(self.summary, indent=2))


def main(args: list[str] | None = None) -> None:
    from ..node_base import run_plain_node

    from ..exit_codes import ERROR_KINDS, EXIT_FAILED, EXIT_FRAMES_LOST

    node = run_plain_node(BagPlayer, "bag_player", (BagError, ParameterError), args)
    node.done.wait(5.0)  # the playback thread writes the summary after spin ends (Ctrl-C)
    if node.summary.get("error"):
        raise SystemExit(ERROR_KINDS.get(node.summary.get("error_kind", ""), EXIT_FAILED))
    if node.summary.get("frames_lost"):
        raise SystemExit(EXIT_FRAMES_LOST)


if __name__ == "__main__":
    main()
