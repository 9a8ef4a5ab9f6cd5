"""bag_recorder: writes chosen topics to a rosbag2 MCAP bag (message definitions embedded).

Subscribes raw (serialised CDR, no deserialisation) to every topic that is listed in ``topics``
or matches ``topic_regex``, as soon as it appears; reliability follows the publishers (a
reliable subscriber would not match a best-effort publisher). On SIGINT/SIGTERM it drains what
is still arriving, then closes the bag. Every ``flush_period`` seconds the buffered messages are
written out as a complete MCAP chunk, so a recorder that is killed (SIGKILL, power loss) leaves
a bag that every tool reads up to the last flush.

Chunks are zstd-compressed (``compression``). Log times are bag time (``log_time: bag``): a
message's own header stamp, and for messages without a header (``/tf``) the receive time shifted
by the last stamp's offset, so a recording lines up with the bag it was made from when both are
opened in Foxglove; the wall-clock receive times, from which ``perception eval`` measures latency,
go beside the MCAP in ``receive_times.tsv``. ``copy_from`` + ``copy_topics`` copy topics straight
from a bag into the recording (``/tf_static`` of a replayed bag: tf2_msgs has no rclpy package on
the PyPI install, so it cannot travel over DDS there).
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..bag_io import RECEIVE_TIMES, BagError, BagWriter, has_header, header_stamp_ns, read_messages
from ..params import ParameterError, declare_from_schema, load_schema, read_parameters
from .bag_player import message_class
from ..workspace import resolve_path


def odometry_to_tf(store: Any, cdr: bytes) -> Any:
    """tf2_msgs/TFMessage (rosbags) with the transform header.frame_id -> child_frame_id of an Odometry."""
    T = store.types
    odom = store.deserialize_cdr(bytes(cdr), "nav_msgs/msg/Odometry")
    p, q = odom.pose.pose.position, odom.pose.pose.orientation
    tf = T["geometry_msgs/msg/TransformStamped"](
        header=odom.header,
        child_frame_id=odom.child_frame_id,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=p.x, y=p.y, z=p.z), rotation=q
        ),
    )
    return T["tf2_msgs/msg/TFMessage"](transforms=[tf])


class BagRecorder(Node):
    def __init__(self, name: str = "bag_recorder") -> None:
        super().__init__(name)
        self.schema = load_schema("bag_recorder")
        declare_from_schema(self, self.schema)
        p = self.params = read_parameters(self, self.schema)
        if not p["output"]:
            raise ParameterError("parameter 'output' is empty; set it to a new bag directory")
        if not p["topics"] and not p["topic_regex"]:
            raise ParameterError("nothing to record: set 'topics' and/or 'topic_regex'")
        self.include = re.compile(p["topic_regex"]) if p["topic_regex"] else None
        self.exclude = re.compile(p["exclude_regex"]) if p["exclude_regex"] else None
        self.writer = BagWriter(resolve_path(p["output"]), compression=p["compression"])
        self.bag_time = p["log_time"] == "bag"
        self.offset: int | None = None  # bag time - receive time of the last message with a stamp
        self.headers: dict[str, bool] = {}
        self.receive_log = open(self.writer.path / RECEIVE_TIMES, "w") if self.bag_time else None  # noqa: SIM115
        if p["copy_from"] and p["copy_topics"]:
            self.copy(resolve_path(p["copy_from"]), list(p["copy_topics"]))
        self.subs: dict[str, Any] = {}
        self.last_message = time.monotonic()
        self.create_timer(p["discovery_period"], self.discover)
        self.create_timer(p["flush_period"], self.flush)
        self.discover()
        self.get_logger().info(f"recording to {self.writer.path}")

    def wanted(self, topic: str) -> bool:
        if self.exclude and self.exclude.search(topic):
            return False
        return topic in self.params["topics"] or bool(self.include and self.include.search(topic))

    def discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.subs or not self.wanted(topic):
                continue
            msgtype = types[0]
            cls = message_class(msgtype)
            if cls is None:
                self.get_logger().warn(
                    f"cannot record {topic}: type {msgtype} not installed", throttle_duration_sec=30.0
                )
                continue
            pubs = self.get_publishers_info_by_topic(topic)
            if not pubs:
                continue
            reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in pubs)
            qos = QoSProfile(
                reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                history=HistoryPolicy.KEEP_LAST,
                depth=1000,
            )
            try:
                self.writer.add_topic(topic, msgtype)
            except BagError as exc:
                self.get_logger().error(str(exc))
                self.subs[topic] = None
                continue
            self.subs[topic] = self.create_subscription(
                cls, topic, lambda data, t=topic, m=msgtype: self.on_message(t, m, data), qos, raw=True
            )
            self.get_logger().info(f"recording {topic} [{msgtype}] ({'reliable' if reliable else 'best effort'})")

    def copy(self, bag: Any, topics: list[str]) -> None:
        """Write ``topics`` of ``bag`` (those it has) into the recording with their bag times."""
        from ..bag_io import bag_info

        have = [t for t in topics if t in bag_info(bag).topics]
        for topic, msgtype, t_ns, cdr in read_messages(bag, have) if have else []:
            self.writer.write_raw(topic, msgtype, t_ns, cdr)
        if have:
            self.get_logger().info(f"copied {have} from {bag}")

    def log_time(self, topic: str, msgtype: str, data: bytes, received: int) -> tuple[int, int]:
        """(log time, header stamp or -1) of a message received at ``received`` (wall ns)."""
        if topic not in self.headers:
            self.headers[topic] = has_header(self.writer.store, msgtype)
        stamp = header_stamp_ns(data) if self.headers[topic] and len(data) >= 12 else -1
        if not self.bag_time:
            return received, stamp
        if stamp > 0:
            self.offset = stamp - received
            return stamp, stamp
        return received + (self.offset or 0), stamp

    def on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        received = time.time_ns()  # the clock the player stamps its publishing with (latency)
        log, stamp = self.log_time(topic, msgtype, data, received)
        self.writer.write_raw(topic, msgtype, log, data)
        if self.receive_log is not None:
            self.receive_log.write(f"{topic}\t{stamp}\t{received}\n")
        self.last_message = time.monotonic()
        if topic in self.params["tf_from_odometry"] and msgtype == "nav_msgs/msg/Odometry":
            self.writer.write("/tf", odometry_to_tf(self.writer.store, data), log)

    def flush(self) -> None:
        self.writer.flush()
        if self.receive_log is not None:
            self.receive_log.flush()

    def close(self) -> None:
        self.writer.close()
        if self.receive_log is not None:
            self.receive_log.close()
        self.get_logger().info(f"closed {self.writer.path}: {self.writer.counts}")


def main(args: list[str] | None = None) -> None:
    import sys

    from rclpy.executors import SingleThreadedExecutor

    rclpy.init(args=args, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    try:
        node = BagRecorder()
    except (BagError, ParameterError) as exc:
        print(f"bag_recorder: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        raise SystemExit(2)
    stop = {"at": 0.0}
    signal.signal(signal.SIGINT, lambda *_: stop.update(at=time.monotonic()))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(at=time.monotonic()))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            if stop["at"]:
                # Drain: keep receiving until 0.3 s pass without a message (at most 5 s).
                quiet = time.monotonic() - node.last_message > 0.3
                if quiet or time.monotonic() - stop["at"] > 5.0:
                    break
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
