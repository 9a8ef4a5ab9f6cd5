"""What every odometry estimator shares: the estimator names, the per-frame :class:`Motion`,
depth sampling at keypoints and the 4x4 pose helper."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


#: Motion.reason of an estimator that has no previous frame yet (the tracker's Skip.FIRST_FRAME)
FIRST_FRAME = "first frame"

ESTIMATORS = ("posenet", "pnp", "pnp_learned", "essential", "hybrid")


@dataclass
class Motion:
    T_prev_cur: np.ndarray | None  # 4x4, None when the estimate failed
    inliers: int = 0
    reason: str = ""  # why it failed ("" when it did not)
    method: str = ""


def sample_depth(depth: np.ndarray, uv: np.ndarray, window: int = 1) -> np.ndarray:
    """Depth at keypoints: the nearest finite value in a (2 window + 1)^2 neighbourhood. Corners
    sit on object outlines, where the pixel itself may already be the far background."""
    h, w = depth.shape
    u = np.clip(np.round(uv[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.round(uv[:, 1]).astype(int), 0, h - 1)
    best = np.full(len(uv), np.inf)
    for dv in range(-window, window + 1):
        for du in range(-window, window + 1):
            z = depth[np.clip(v + dv, 0, h - 1), np.clip(u + du, 0, w - 1)]
            best = np.where(np.isfinite(z) & (z > 0) & (z < best), z, best)
    return np.where(np.isfinite(best), best, np.nan)


def _pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, np.asarray(t).reshape(3)
    return T
