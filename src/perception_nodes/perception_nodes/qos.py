"""QoS profiles from parameters (camera input defaults to the sensor-data profile)."""

from __future__ import annotations

from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
    qos_profile_system_default,
)

QOS_NAMES = ("auto", "sensor_data", "reliable", "system_default")


def input_qos(name: str, policy: str, depth: int = 5) -> QoSProfile:
    """QoS for an input subscription.

    ``auto``: sensor_data (best effort) for ``realtime``; reliable keep-all for ``lockstep``, so
    a replayed frame is never lost between the player and the node.
    """
    if name not in QOS_NAMES:
        raise ValueError(f"QoS '{name}' is not one of {QOS_NAMES}")
    if name == "auto":
        name = "reliable_all" if policy == "lockstep" else "sensor_data"
    if name == "sensor_data":
        return QoSProfile(
            reliability=ReliabilityPolicy.BEST_EFFORT,
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            durability=qos_profile_sensor_data.durability,
        )
    if name == "reliable":
        return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth)
    if name == "reliable_all":
        return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_ALL, depth=depth)
    return qos_profile_system_default


def output_qos(depth: int = 10) -> QoSProfile:
    """Outputs are reliable: they reach reliable (recorder, lockstep) and best-effort readers alike."""
    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=depth)


def latched_qos() -> QoSProfile:
    """Transient local, depth 1: a late subscriber still gets the last message (LabelInfo, as
    /tf_static and the map server do)."""
    from rclpy.qos import DurabilityPolicy

    return QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE,
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )
