"""Frames, rotations and the pinhole camera used by the synthetic renderer.

Conventions (REP-103/105):

- world (``odom``): x forward, y left, z up; the ground is the plane z = 0.
- camera body (``camera_link``): x forward, y left, z up, carried by the trajectory.
- camera optical (``camera_optical_frame``): x right, y down, z forward (what images, depth and
  intrinsics refer to). Poses ``T_world_cam`` map optical-frame points to the world
  (camera-to-world), 4x4 homogeneous.
- pixels: OpenCV convention, the centre of pixel (u, v) is at (u, v); depth is the optical-frame
  z (metres), not the distance along the ray.
"""

from __future__ import annotations

import numpy as np

# one implementation for the nodes (which cannot import this package) and the data code
from perception_nodes.transforms import R_BODY_OPTICAL, matrix_to_quaternion, quaternion_to_matrix  # noqa: F401


def rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rpy_to_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """REP-103 fixed-axis roll (x), pitch (y), yaw (z): R = Rz(yaw) Ry(pitch) Rx(roll)."""
    return rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    R, t = T[:3, :3], T[:3, 3]
    return make_pose(R.T, -R.T @ t)


def body_to_optical_pose(T_world_body: np.ndarray) -> np.ndarray:
    """camera_link pose -> camera_optical_frame pose (same origin, REP-103 optical axes)."""
    out = T_world_body.copy()
    out[:3, :3] = T_world_body[:3, :3] @ R_BODY_OPTICAL
    return out


def intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Pinhole K for a horizontal field of view; principal point at the image centre."""
    fx = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    return np.array([[fx, 0.0, (width - 1) / 2.0], [0.0, fx, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def pixel_rays(K: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Optical-frame ray directions with z = 1 for pixel coordinates (so t along the ray = depth)."""
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return np.stack([x, y, np.ones_like(x)], axis=-1)


def project(K: np.ndarray, T_world_cam: np.ndarray, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (..., 3) -> pixel coordinates (..., 2) and optical-frame depth (...)."""
    T = invert_pose(T_world_cam)
    pc = points_world @ T[:3, :3].T + T[:3, 3]
    z = pc[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * pc[..., 0] / z + K[0, 2]
        v = K[1, 1] * pc[..., 1] / z + K[1, 2]
    return np.stack([u, v], axis=-1), z


def backproject(K: np.ndarray, T_world_cam: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Depth map (H, W) in metres -> world points (H, W, 3) of each pixel centre."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    pc = pixel_rays(K, u, v) * depth[..., None]
    return pc @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
