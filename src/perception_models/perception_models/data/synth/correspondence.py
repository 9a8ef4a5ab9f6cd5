"""Dense correspondence between two rendered frames, derived from depth and poses.

A pixel's 3D point (from its depth) is carried to the other frame's time — by the object's own
motion when it lies on a moving object, unchanged otherwise — and projected with the other
frame's pose. The result is optical flow in pixels plus a per-pixel status: visible in the other
frame, occluded there, out of its view, or without a surface (sky).
"""

from __future__ import annotations

import numpy as np

from .geometry import backproject, invert_pose, project

VISIBLE, OCCLUDED, OUT_OF_VIEW, NO_DEPTH = 0, 1, 2, 3
STATUS_NAMES = {VISIBLE: "visible", OCCLUDED: "occluded", OUT_OF_VIEW: "out_of_view", NO_DEPTH: "no_depth"}


def correspondence(
    K: np.ndarray,
    depth_i: np.ndarray,
    instance_i: np.ndarray,
    T_i: np.ndarray,
    T_j: np.ndarray,
    depth_j: np.ndarray,
    instance_j: np.ndarray,
    motions: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
    rel_tol: float = 0.01,
    abs_tol: float = 0.02,
    rays: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flow (H, W, 2) float32 from frame i to j, and status (H, W) uint8 (VISIBLE, OCCLUDED, ...).

    ``T_i``/``T_j``: camera-optical -> world poses. ``motions``: instance id -> (object pose at
    t_i, object pose at t_j) for objects that move on their own. A point counts as visible when
    its depth in frame j lies within the depths of the 2x2 pixels around its projection (plus
    ``rel_tol``·z + ``abs_tol``) and one of them shows the same instance. ``rays``: the
    optical-frame rays of the pixels (z = 1), when the caller has them.
    """
    H, W = depth_i.shape
    finite = np.isfinite(depth_i)
    d = np.where(finite, depth_i, 0.0)
    if rays is None:
        X = backproject(K, T_i, d)
    else:  # same as backproject, reusing the rays
        X = (rays * d[..., None]) @ T_i[:3, :3].T.astype(np.float32) + T_i[:3, 3].astype(np.float32)
    for inst, (M_i, M_j) in (motions or {}).items():
        sel = instance_i == inst
        if sel.any():
            M = M_j @ invert_pose(M_i)
            X[sel] = X[sel] @ M[:3, :3].T + M[:3, 3]
    uv, z = project(K, T_j, X)
    u, v = uv[..., 0], uv[..., 1]
    vv, uu = np.mgrid[0:H, 0:W]
    flow = np.stack([u - uu, v - vv], axis=-1).astype(np.float32)

    status = np.full((H, W), OUT_OF_VIEW, np.uint8)
    status[~finite] = NO_DEPTH
    inside = finite & (z > 1e-3) & (u >= 0) & (u <= W - 1) & (v >= 0) & (v <= H - 1)
    ui, vi = u[inside], v[inside]
    u0 = np.clip(np.floor(ui).astype(np.int64), 0, W - 1)
    v0 = np.clip(np.floor(vi).astype(np.int64), 0, H - 1)
    u1, v1 = np.minimum(u0 + 1, W - 1), np.minimum(v0 + 1, H - 1)
    nb = np.stack([depth_j[v0, u0], depth_j[v0, u1], depth_j[v1, u0], depth_j[v1, u1]])
    nb_inst = np.stack([instance_j[v0, u0], instance_j[v0, u1], instance_j[v1, u0], instance_j[v1, u1]])
    zi = z[inside]
    tol = rel_tol * zi + abs_tol
    lo = np.where(np.isfinite(nb), nb, np.inf).min(axis=0)
    hi = np.where(np.isfinite(nb), nb, -np.inf).max(axis=0)
    same = (nb_inst == instance_i[inside][None]).any(axis=0)
    visible = (zi >= lo - tol) & (zi <= hi + tol) & same
    status[inside] = np.where(visible, VISIBLE, OCCLUDED)
    flow[~finite] = np.nan
    return flow, status
