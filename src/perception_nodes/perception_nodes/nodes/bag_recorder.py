"""bag_recorder: writes chosen topics to a rosbag2 MCAP bag (message definitions embedded).

Subscribes raw (serialised CDR, no deserialisation) to every topic that is listed in ``topics``
or matches ``topic_regex``, as soon as it appears; reliability follows the publishers (a
reliable subscriber would not match a best-effort publisher). On SIGINT/SIGTERM it drains what
is still arriving, then closes the bag. Every ``flush_period`` seconds the buffered messages are
written out as a complete MCAP chunk, so a recorder that is killed (SIGKILL, power loss) leaves
a bag that every tool reads up to the last flush.
"""

from __future__ import annotations

import re
import signal
import time
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..bag_io import BagError, BagWriter
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
        self.writer = BagWriter(resolve_path(p["output"]))
        self.subs: dict[str, Any] = {}
        self.last_message = time.monotonic()
        self.create_timer(p["discovery_period"], self.discover)
        self.create_timer(p["flush_period"], self.writer.flush)
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

    def on_message(self, topic: str, msgtype: str, data: bytes) -> None:
        now = self.get_clock().now().nanoseconds
        self.writer.write_raw(topic, msgtype, now, data)
        self.last_message = time.monotonic()
        if topic in self.params["tf_from_odometry"] and msgtype == "nav_msgs/msg/Odometry":
            self.writer.write("/tf", odometry_to_tf(self.writer.store, data), now)

    def close(self) -> None:
        self.writer.close()
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
