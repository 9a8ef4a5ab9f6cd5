"""Odometry state -> nav_msgs/Odometry, the Path's PoseStamped and the TF transform (as
cloud_conversion.py does for point clouds): the message building the depth node used to do inline.

REP-105: the pose is the child frame's (the camera's optical frame, or ``base_frame`` when the
camera's mount on the base is given) in ``odom_frame``; the twist is expressed in the child frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .transforms import matrix_to_quaternion


def odometry_message(
    state: Any, header: Any, odom_frame: str, child_frame: str, T_base_optical: np.ndarray | None = None
) -> Any:
    """nav_msgs/Odometry of an :class:`~perception_nodes.pipelines.odometry.OdometryState`
    (``T_odom_camera``, covariances, camera-frame twist). With ``T_base_optical`` (the camera's
    pose on the base) pose and twist are the base's."""
    from nav_msgs.msg import Odometry

    T = state.T_odom_camera
    v, w = state.twist[:3], state.twist[3:]
    if T_base_optical is not None:
        T = T @ np.linalg.inv(T_base_optical)
        R, t = T_base_optical[:3, :3], T_base_optical[:3, 3]
        v, w = R @ v + np.cross(t, R @ w), R @ w  # v_base = v_cam + t x w, in the base's axes
    odom = Odometry()
    odom.header.stamp = header.stamp
    odom.header.frame_id = odom_frame
    odom.child_frame_id = child_frame
    p = odom.pose.pose
    p.position.x, p.position.y, p.position.z = (float(x) for x in T[:3, 3])
    q = matrix_to_quaternion(T[:3, :3])
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(x) for x in q)
    odom.pose.covariance = [float(x) for x in state.pose_covariance.reshape(-1)]
    tw = odom.twist.twist
    tw.linear.x, tw.linear.y, tw.linear.z = (float(x) for x in v)
    tw.angular.x, tw.angular.y, tw.angular.z = (float(x) for x in w)
    odom.twist.covariance = [float(x) for x in state.twist_covariance.reshape(-1)]
    return odom


def pose_stamped(odom: Any) -> Any:
    """The Odometry's pose as a geometry_msgs/PoseStamped (one entry of nav_msgs/Path)."""
    from geometry_msgs.msg import PoseStamped

    ps = PoseStamped()
    ps.header = odom.header
    ps.pose = odom.pose.pose
    return ps


def transform_stamped(odom: Any) -> Any:
    """The Odometry's pose as the TF transform odom_frame -> child_frame."""
    from geometry_msgs.msg import TransformStamped

    t = TransformStamped()
    t.header = odom.header
    t.child_frame_id = odom.child_frame_id
    pos = odom.pose.pose.position
    t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = pos.x, pos.y, pos.z
    t.transform.rotation = odom.pose.pose.orientation
    return t
