"""OpenCV's two-view and PnP estimators behind calls that never raise.

OpenCV's geometry functions fail differently from version to version on degenerate input: 4.x
returns ``None`` or an empty matrix for a pair without parallax, 5.1's ``findEssentialMat``
raises ``cv2.error`` (an assertion in ``solvePoly``). A robot's odometry or matcher must treat
all of these the same way: a failed estimate with a reason, the frame goes on. Every call here
checks its input (enough finite points, a finite non-singular K), runs the OpenCV function
inside ``try``, checks its output (shape, finiteness) and returns :class:`Estimate`, whose
``ok`` is False with ``reason`` set when there is no usable result. No caller catches
``cv2.error`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np


@dataclass
class Estimate:
    """One estimator's result: ``value`` (None on failure), inlier ``mask`` over the input
    points, ``reason`` why it failed ('' when ok) and any ``extra`` outputs (R, t, rvec ...)."""

    value: np.ndarray | None
    mask: np.ndarray
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None and not self.reason

    @property
    def inliers(self) -> int:
        return int(self.mask.sum())


def _fail(n: int, reason: str) -> Estimate:
    return Estimate(None, np.zeros(n, bool), reason)


def _points(name: str, pts: np.ndarray, dims: int) -> np.ndarray:
    arr = np.asarray(pts, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != dims:
        raise ValueError(f"{name} must be (N, {dims}) points, got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_pair(a: np.ndarray, b: np.ndarray, need: int) -> str:
    if len(a) != len(b):
        return f"{len(a)} points against {len(b)}"
    if len(a) < need:
        return f"{len(a)} points < {need}"
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return "non-finite point coordinates"
    return ""


def check_intrinsics(K: np.ndarray | None) -> str:
    """'' when ``K`` is a usable 3x3 pinhole matrix, else why not."""
    if K is None:
        return "no camera matrix"
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        return "camera matrix is not a finite 3x3 matrix"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"focal lengths must be positive (fx {K[0, 0]:g}, fy {K[1, 1]:g})"
    if abs(np.linalg.det(K)) < 1e-12 or np.linalg.cond(K) > 1e12:
        return "camera matrix is singular"
    return ""


def _call(name: str, fn: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return fn(), ""
    except cv2.error as exc:  # OpenCV assertion on degenerate input (e.g. 5.1's solvePoly)
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return None, f"{name} failed on degenerate input: {detail[:160]}"


def _mask(mask: Any, n: int) -> np.ndarray:
    if mask is None:
        return np.zeros(n, bool)
    m = np.asarray(mask).ravel() > 0
    return m if len(m) == n else np.zeros(n, bool)


def find_homography(a: np.ndarray, b: np.ndarray, threshold_px: float) -> Estimate:
    """RANSAC homography mapping ``a`` to ``b``."""
    a, b = _points("a", a, 2), _points("b", b, 2)
    why = _check_pair(a, b, 4)
    if why:
        return _fail(len(a), why)
    out, why = _call("findHomography", lambda: cv2.findHomography(a, b, cv2.RANSAC, float(threshold_px)))
    if why:
        return _fail(len(a), why)
    H, mask = out
    if H is None or np.shape(H) != (3, 3) or not np.isfinite(H).all():
        return _fail(len(a), "no homography")
    return Estimate(H, _mask(mask, len(a)))


def find_essential(
    a: np.ndarray, b: np.ndarray, K: np.ndarray, method: int, threshold_px: float, prob: float = 0.999
) -> Estimate:
    """Essential matrix (``method``: cv2.RANSAC or cv2.USAC_MAGSAC) followed by ``recoverPose``:
    ``value`` is E, ``extra`` holds R, t (x_b = R x_a + t, |t| = 1) and the cheirality inlier
    count ``pose_inliers``; ``mask`` is recoverPose's inlier mask."""
    a, b = _points("a", a, 2), _points("b", b, 2)
    why = _check_pair(a, b, 5) or check_intrinsics(K)
    if why:
        return _fail(len(a), why)
    K = np.ascontiguousarray(K, dtype=np.float64)  # OpenCV misreads a strided view (a slice of P)
    out, why = _call(
        "findEssentialMat",
        lambda: cv2.findEssentialMat(a, b, K, method=method, prob=prob, threshold=float(threshold_px)),
    )
    if why:
        return _fail(len(a), why)
    E, mask = out
    if E is None or np.shape(E) != (3, 3) or not np.isfinite(E).all():
        return _fail(len(a), "no essential matrix")
    out, why = _call("recoverPose", lambda: cv2.recoverPose(E, a, b, K, mask=mask))
    if why:
        return _fail(len(a), why)
    n, R, t, mask = out
    t = np.asarray(t, dtype=np.float64).ravel()
    norm = float(np.linalg.norm(t)) if t.size == 3 else 0.0
    if R is None or np.shape(R) != (3, 3) or not np.isfinite(R).all() or not np.isfinite(norm) or norm < 1e-12:
        return _fail(len(a), "recoverPose gave no valid pose")
    return Estimate(
        E, _mask(mask, len(a)), extra={"R": np.asarray(R, np.float64), "t": t / norm, "pose_inliers": int(n)}
    )


def solve_pnp_ransac(
    object_points: np.ndarray,
    image_points: np.ndarray,
    K: np.ndarray,
    reprojection_px: float,
    iterations: int = 200,
    confidence: float = 0.999,
) -> Estimate:
    """EPnP inside RANSAC: ``value`` is the 4x4 pose of the points' frame in the camera frame
    (x_cam = T x_obj); ``mask`` marks the inliers."""
    obj, img = _points("object_points", object_points, 3), _points("image_points", image_points, 2)
    why = _check_pair(obj, img, 4) or check_intrinsics(K)
    if why:
        return _fail(len(obj), why)
    K = np.ascontiguousarray(K, dtype=np.float64)  # OpenCV misreads a strided view (a slice of P)
    out, why = _call(
        "solvePnPRansac",
        lambda: cv2.solvePnPRansac(
            obj,
            img,
            K,
            None,
            iterationsCount=iterations,
            reprojectionError=float(reprojection_px),
            confidence=confidence,
            flags=cv2.SOLVEPNP_EPNP,
        ),
    )
    if why:
        return _fail(len(obj), why)
    found, rvec, tvec, inl = out
    mask = np.zeros(len(obj), bool)
    if inl is not None:
        idx = np.asarray(inl).ravel().astype(int)
        mask[idx[(idx >= 0) & (idx < len(obj))]] = True
    if not found or rvec is None or tvec is None or not (np.isfinite(rvec).all() and np.isfinite(tvec).all()):
        return Estimate(None, mask, "PnP RANSAC found no pose")
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rvec, np.float64))[0]
    T[:3, 3] = np.asarray(tvec, np.float64).ravel()
    return Estimate(T, mask)


def triangulate(P1: np.ndarray, P2: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Points (N, 3) seen at ``a`` by projection P1 and at ``b`` by P2; NaN rows where a point is
    at infinity (w = 0) or OpenCV refuses the input."""
    a, b = _points("a", a, 2), _points("b", b, 2)
    if len(a) == 0 or len(a) != len(b):
        return np.full((len(a), 3), np.nan)
    X, why = _call("triangulatePoints", lambda: cv2.triangulatePoints(P1, P2, a.T.copy(), b.T.copy()))
    if why or X is None:
        return np.full((len(a), 3), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (X[:3] / X[3]).T
