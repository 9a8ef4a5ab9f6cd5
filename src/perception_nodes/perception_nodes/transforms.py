"""Frames and rotations shared by the nodes and the data code (numpy only: the nodes must not
depend on scipy, which the runtime images do not have).

- ``R_BODY_OPTICAL`` / ``T_BODY_OPTICAL``: the camera optical frame (x right, y down, z forward)
  in the REP-103 camera body frame (x forward, y left, z up);
- rotation matrix <-> unit quaternion (x, y, z, w), the order ROS messages use;
- ``ground_normal_in_optical``: the ground's downward normal as a mounted camera sees it.
"""

from __future__ import annotations

import numpy as np

# optical axes expressed in the body frame: columns are optical x (right), y (down), z (forward)
R_BODY_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
R_BODY_OPTICAL.setflags(write=False)
T_BODY_OPTICAL = np.block([[R_BODY_OPTICAL, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]])
T_BODY_OPTICAL.setflags(write=False)  # shared: nobody may change it in place


def ground_normal_in_optical(T_up_optical: np.ndarray) -> np.ndarray:
    """The flat ground's unit normal pointing down (-z of a z-up frame: REP-103 odom/world or a
    REP-105 base), in the optical frame of a camera whose pose in that frame is ``T_up_optical``."""
    return np.asarray(T_up_optical, np.float64)[:3, :3].T @ np.array([0.0, 0.0, -1.0])


def rotation_angle_deg(R: np.ndarray) -> float:
    """The angle of the rotation ``R`` in degrees (of ``R_a.T @ R_b``: how far apart two are)."""
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> unit quaternion (x, y, z, w) with w >= 0."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q, dtype=np.float64)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> rotation matrix."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def pose_from_xyzrpy(v: list[float]) -> np.ndarray:
    """4x4 pose from x y z (m) roll pitch yaw (rad), R = Rz(yaw) Ry(pitch) Rx(roll) (REP-103)."""
    x, y, z, roll, pitch, yaw = (float(a) for a in v)
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    R = np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, (x, y, z)
    return T
