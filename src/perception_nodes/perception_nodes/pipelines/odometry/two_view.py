"""Two-view geometry between the previous and this frame: PnP on the previous frame's depth,
the essential matrix + recoverPose, triangulation, and the unit translation's metric length.
Every OpenCV call goes through cv_geometry (a failed estimate, never an exception)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..cv_geometry import find_essential, solve_pnp_ransac
from ..cv_geometry import triangulate as cv_triangulate
from .common import Motion, _pose, sample_depth


def pnp_motion(
    a: np.ndarray,
    b: np.ndarray,
    prev_depth: np.ndarray,
    K: np.ndarray,
    min_inliers: int,
    reprojection_px: float,
    method: str,
) -> Motion:
    """Matches ``a`` (previous frame) -> ``b`` (this frame): ``a`` lifted to 3D with the previous
    frame's metric depth, then PnP RANSAC -> metric motion."""
    z = sample_depth(prev_depth, a)
    ok = np.isfinite(z)
    if ok.sum() < min_inliers:
        return Motion(None, int(ok.sum()), f"{int(ok.sum())} matches with depth < {min_inliers}", method)
    pts = np.stack([(a[ok, 0] - K[0, 2]) / K[0, 0] * z[ok], (a[ok, 1] - K[1, 2]) / K[1, 1] * z[ok], z[ok]], 1)
    est = solve_pnp_ransac(pts, b[ok], K, reprojection_px)
    n = est.inliers
    if not est.ok or n < min_inliers:
        return Motion(None, n, f"PnP RANSAC: {n} inliers < {min_inliers}" if est.ok else f"PnP: {est.reason}", method)
    T_cur_prev = est.value
    return Motion(np.linalg.inv(T_cur_prev), n, method=method)


@dataclass
class TwoViewGeometry:
    """Essential-matrix motion between the previous and this frame, translation of unit length."""

    R: np.ndarray  # x_cur = R x_prev + t
    t: np.ndarray  # (3,), |t| = 1
    a: np.ndarray  # inlier pixels in the previous frame (N, 2)
    b: np.ndarray  # and in this frame
    inliers: int


def essential_geometry(
    a: np.ndarray,
    b: np.ndarray,
    K: np.ndarray,
    min_inliers: int,
    threshold_px: float,
    method: str,
    robust: int = cv2.RANSAC,
) -> TwoViewGeometry | Motion:
    """``findEssentialMat`` (``robust``: cv2.RANSAC, the classical baseline, or cv2.USAC_MAGSAC) +
    ``recoverPose``; a failed :class:`Motion` with the reason when it does not hold."""
    if len(a) < max(8, min_inliers):
        return Motion(None, len(a), f"{len(a)} matches < {max(8, min_inliers)}", method)
    est = find_essential(a, b, K, robust, threshold_px)
    if not est.ok:
        return Motion(None, 0, est.reason, method)
    n = est.extra["pose_inliers"]
    if n < min_inliers:
        return Motion(None, int(n), f"recoverPose: {n} inliers < {min_inliers}", method)
    inl = est.mask
    return TwoViewGeometry(est.extra["R"], est.extra["t"], a[inl], b[inl], int(n))


def triangulate(g: TwoViewGeometry, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``g``'s inliers as points (N, 3) in the previous camera's frame, in units of the (unit)
    baseline, and the angle in degrees between their two viewing rays (parallax: near the epipole,
    straight ahead when driving, triangulated depth is noise)."""
    if len(g.a) == 0:
        return np.zeros((0, 3)), np.zeros(0)
    Xc = cv_triangulate(K @ np.hstack([np.eye(3), np.zeros((3, 1))]), K @ np.hstack([g.R, g.t.reshape(3, 1)]), g.a, g.b)
    c1 = -g.R.T @ g.t
    r1 = Xc - c1
    cosang = (Xc * r1).sum(1) / (np.linalg.norm(Xc, axis=1) * np.linalg.norm(r1, axis=1) + 1e-12)
    return Xc, np.degrees(np.arccos(np.clip(cosang, -1, 1)))


def depth_scale(
    g: TwoViewGeometry, prev_depth: np.ndarray, K: np.ndarray, min_parallax_deg: float
) -> tuple[float | None, str]:
    """The unit translation's length from metric depth: the median ratio of the previous frame's
    depth to the triangulated depth of the inliers with parallax."""
    Xc, parallax = triangulate(g, K)
    z_pred = sample_depth(prev_depth, g.a)
    z_tri = Xc[:, 2]
    ok = np.isfinite(z_pred) & np.isfinite(z_tri) & (z_tri > 0) & (parallax > min_parallax_deg)
    if ok.sum() < 8:
        return None, f"only {int(ok.sum())} triangulated points with depth for the scale"
    return float(np.median(z_pred[ok] / z_tri[ok])), ""


def essential_motion(
    a: np.ndarray,
    b: np.ndarray,
    prev_depth: np.ndarray | None,
    K: np.ndarray,
    min_inliers: int,
    threshold_px: float,
    min_parallax_deg: float,
    method: str,
    robust: int = cv2.RANSAC,
) -> Motion:
    """2D-2D: :func:`essential_geometry`, the translation's length from :func:`depth_scale` (1
    without depth)."""
    g = essential_geometry(a, b, K, min_inliers, threshold_px, method, robust)
    if isinstance(g, Motion):
        return g
    scale = 1.0
    if prev_depth is not None:
        s, why = depth_scale(g, prev_depth, K, min_parallax_deg)
        if s is None:
            return Motion(None, g.inliers, why, method)
        scale = s
    return Motion(np.linalg.inv(_pose(g.R, g.t * scale)), g.inliers, method=method)
