"""Matching metrics (HPatches / SuperGlue protocols):

- mean matching accuracy: share of putative matches whose reprojection error under the true
  geometry is within t pixels, for t = 1..10;
- homography accuracy: mean distance of the four image corners mapped by the estimated and the
  true homography, counted correct below 1 / 3 / 5 px;
- relative pose: angular errors of rotation and translation direction from the essential matrix;
  AUC of the pose error (max of the two) up to 5 / 10 / 20 degrees.
"""

from __future__ import annotations

import numpy as np

from perception_nodes.transforms import rotation_angle_deg


def mma(errors_px: np.ndarray, thresholds=tuple(range(1, 11))) -> dict[int, float]:
    e = np.asarray(errors_px, np.float64)
    return {int(t): (float(np.mean(e <= t)) if e.size else 0.0) for t in thresholds}


def warp_points(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(H, np.float64).T
    return p[:, :2] / p[:, 2:3]


def homography_corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, width: int, height: int) -> float:
    if H_est is None or not np.isfinite(H_est).all():
        return float("inf")
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], np.float64)
    return float(np.mean(np.linalg.norm(warp_points(H_est, corners) - warp_points(H_gt, corners), axis=1)))


def relative_pose_error(
    R_est: np.ndarray, t_est: np.ndarray, R_gt: np.ndarray, t_gt: np.ndarray
) -> tuple[float, float]:
    """Rotation error and translation *direction* error in degrees (the direction's sign is
    ambiguous for the essential matrix, so the smaller of the two angles)."""
    err_R = rotation_angle_deg(R_est.T @ R_gt)
    a, b = np.ravel(t_est), np.ravel(t_gt)
    n = np.linalg.norm(a) * np.linalg.norm(b)
    if n < 1e-12:
        return err_R, 90.0
    cos = float(np.clip(a @ b / n, -1.0, 1.0))
    err_t = float(np.degrees(np.arccos(abs(cos))))
    return err_R, err_t


def pose_auc(errors_deg: list[float] | np.ndarray, thresholds=(5, 10, 20)) -> dict[int, float]:
    """Area under the recall curve of pose errors up to each threshold, normalised (SuperGlue)."""
    errors = np.sort(np.asarray(errors_deg, np.float64))
    n = len(errors)
    recall = (np.arange(n) + 1) / n if n else np.zeros(0)
    errors = np.r_[0.0, errors]
    recall = np.r_[0.0, recall]
    out = {}
    for t in thresholds:
        last = int(np.searchsorted(errors, t))
        r = np.r_[recall[:last], recall[last - 1]]
        e = np.r_[errors[:last], t]
        out[int(t)] = float(np.trapezoid(r, x=e) / t)
    return out
