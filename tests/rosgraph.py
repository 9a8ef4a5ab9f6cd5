"""Helpers for tests that start node processes and talk to them over real DDS."""

from __future__ import annotations

import time
from typing import Any, Callable

import rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy


def node_profile(name: str, exe: str, model: Any, remappings: dict[str, str] | None = None, **params: Any) -> Any:
    """A one-node profile for a test: ``exe`` on ``model`` (an ONNX file or a card) with ONNX Runtime,
    lockstep input, 1 thread and fast diagnostics (``params`` override), its ``image`` on
    ``/<name>/in`` (``remappings`` add or override)."""
    from perception_nodes.profile import NodeSpec, Profile

    p = {
        "model_path": str(model),
        "backend": "onnxruntime",
        "input_policy": "lockstep",
        "diagnostics_period": 0.2,
        "onnxruntime_threads": 1,
        **params,
    }
    remap = {"image": f"/{name}/in", **(remappings or {})}
    return Profile("test", "", [NodeSpec(name, exe, parameters=p, remappings=remap)])


RELIABLE = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=100)


class Probe:
    """An in-test node that publishes and collects messages."""

    def __init__(self, context: Any, name: str = "test_probe") -> None:
        self.node = Node(name, context=context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}
        self.subscriptions: dict[str, Any] = {}

    def collect(self, msg_type: Any, topic: str, qos: QoSProfile = RELIABLE) -> list[Any]:
        bucket = self.received.setdefault(topic, [])
        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, bucket.append, qos)
        return bucket

    def publisher(self, msg_type: Any, topic: str, timeout: float = 60.0, qos: QoSProfile = RELIABLE) -> Any:
        """A publisher on ``topic`` once a subscriber has matched it and the probe's own
        subscriptions have matched every publisher the graph shows on their topics; None if no
        subscriber within ``timeout``.

        A node creates its publishers before it subscribes, but discovery matches each pair of
        endpoints on its own: without the second wait, the answer to a single frame published
        right after the first match can go to a publisher not yet matched with the probe."""
        pub = self.node.create_publisher(msg_type, topic, qos)
        if not self.spin_until(lambda: pub.get_subscription_count() > 0, timeout):
            return None
        self.spin_until(self._collecting_everything_published, 10.0)
        self.spin_until(lambda: False, 0.3)  # the other side's matches of the probe's readers
        return pub

    def _collecting_everything_published(self) -> bool:
        return all(
            sub.get_publisher_count() >= self.node.count_publishers(topic) for topic, sub in self.subscriptions.items()
        )

    def wait_for_publisher(self, topic: str, timeout: float = 10.0) -> bool:
        return self.spin_until(lambda: self.node.count_publishers(topic) > 0, timeout)

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        """Call a service and return its response (None when it did not answer in time)."""
        client = self._clients.get(name) if hasattr(self, "_clients") else None
        if client is None:
            self._clients = getattr(self, "_clients", {})
            client = self._clients[name] = self.node.create_client(srv_type, name)
        if not self.spin_until(client.service_is_ready, timeout):
            return None
        future = client.call_async(request)
        self.spin_until(future.done, timeout)
        return future.result() if future.done() else None

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
