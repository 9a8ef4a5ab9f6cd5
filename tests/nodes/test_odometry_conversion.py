"""Odometry state -> nav_msgs/Odometry, PoseStamped and TF (odometry_conversion.py, formerly built
inline in the depth node): the pose of the child frame in odom, the twist in the child frame."""

from types import SimpleNamespace

import numpy as np
from std_msgs.msg import Header

from perception_nodes.odometry_conversion import odometry_message, pose_stamped, transform_stamped
from perception_nodes.transforms import T_BODY_OPTICAL, quaternion_to_matrix


def _state(T, twist):
    return SimpleNamespace(
        T_odom_camera=T,
        twist=np.asarray(twist, float),
        pose_covariance=np.eye(6) * 0.01,
        twist_covariance=np.eye(6) * 0.02,
    )


def _header():
    h = Header()
    h.stamp.sec, h.stamp.nanosec, h.frame_id = 12, 34, "camera_optical_frame"
    return h


def _pose(m):
    p = m.pose.pose
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix([p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w])
    T[:3, 3] = [p.position.x, p.position.y, p.position.z]
    return T


def test_camera_pose_and_twist_in_the_optical_frame():
    T = T_BODY_OPTICAL.copy()
    T[:3, 3] = [3.0, -1.0, 0.5]
    odom = odometry_message(_state(T, [0, 0, 2.0, 0, 0.1, 0]), _header(), "odom", "camera_optical_frame")
    assert (odom.header.stamp.sec, odom.header.stamp.nanosec, odom.header.frame_id) == (12, 34, "odom")
    assert odom.child_frame_id == "camera_optical_frame"
    np.testing.assert_allclose(_pose(odom), T, atol=1e-9)
    tw = odom.twist.twist
    assert (tw.linear.z, tw.angular.y) == (2.0, 0.1)  # optical frame: forward is z
    assert odom.pose.covariance[0] == 0.01 and odom.twist.covariance[35] == 0.02


def test_base_frame_pose_and_twist_follow_the_mount():
    """REP-105: with base_frame, the pose is the base's and the twist is in the base's axes:
    v_base = R v_cam + t x (R w), w_base = R w."""
    mount = T_BODY_OPTICAL.copy()
    mount[:3, 3] = [0.5, 0.0, 1.2]  # camera 0.5 m ahead of and 1.2 m above the base origin
    T_odom_base = np.eye(4)
    T_odom_base[:3, 3] = [10.0, 2.0, 0.0]
    T_odom_camera = T_odom_base @ mount
    w_cam = np.array([0.0, -0.2, 0.0])  # optical y is down: -0.2 about y = +0.2 yaw (left turn) about base z
    odom = odometry_message(_state(T_odom_camera, [0, 0, 1.0, *w_cam]), _header(), "odom", "base_link", mount)
    np.testing.assert_allclose(_pose(odom), T_odom_base, atol=1e-9)
    tw = odom.twist.twist
    w_base = mount[:3, :3] @ w_cam
    np.testing.assert_allclose([tw.angular.x, tw.angular.y, tw.angular.z], w_base, atol=1e-12)
    assert abs(tw.angular.z - 0.2) < 1e-12
    v_expected = mount[:3, :3] @ [0, 0, 1.0] + np.cross(mount[:3, 3], w_base)
    np.testing.assert_allclose([tw.linear.x, tw.linear.y, tw.linear.z], v_expected, atol=1e-12)
    # rigid body: v_base = v_cam + w x (p_base - p_cam); the base origin, 0.5 m behind the camera,
    # swings to the right (-y) while the robot turns left
    assert abs(tw.linear.x - 1.0) < 1e-12 and abs(tw.linear.y + 0.1) < 1e-12


def test_path_entry_and_tf_carry_the_same_pose():
    odom = odometry_message(_state(T_BODY_OPTICAL, np.zeros(6)), _header(), "odom", "base_link", T_BODY_OPTICAL)
    ps, tf = pose_stamped(odom), transform_stamped(odom)
    assert ps.header == odom.header and ps.pose == odom.pose.pose
    assert (tf.header.frame_id, tf.child_frame_id) == ("odom", "base_link")
    assert tf.transform.rotation == odom.pose.pose.orientation
    assert tf.transform.translation.x == odom.pose.pose.position.x
