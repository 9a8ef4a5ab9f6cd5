"""Metric scale for monocular depth. Self-supervised depth is right up to one unknown factor; the
depth and odometry nodes get it from one of three sources (parameter ``scale_source``):

- ``model``: the network is metric already (trained with supervision on the synthetic sets; its
  card says ``scale_source: supervised``) -> factor 1;
- ``camera_height``: the camera's known height above a flat ground (a parameter): the ground plane
  is fitted (RANSAC) to the back-projected lower part of the image and the factor makes its
  distance from the camera equal the known height;
- ``depth_topic``: a metric depth image (RGB-D, stereo, a lidar projected into the camera): the
  factor is the median ratio over pixels both have.

Estimates are smoothed (exponential moving average of the log factor) and the last good one is
kept when a frame gives none; :attr:`ScaleEstimator.status` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SOURCES = ("model", "camera_height", "depth_topic")


@dataclass
class PlaneFit:
    normal: np.ndarray  # unit, pointing from the plane towards the camera
    distance: float  # camera centre -> plane, in the depth map's units
    inliers: int

    def scaled(self, factor: float) -> PlaneFit:
        """The same plane in the units of a depth map multiplied by ``factor``."""
        return PlaneFit(self.normal, self.distance * factor, self.inliers)


def fit_plane_ransac(
    pts: np.ndarray,
    threshold: float,
    max_tilt_deg: float = 30.0,
    iterations: int = 100,
    min_inliers: int = 30,
    seed: int = 0,
) -> PlaneFit | None:
    """RANSAC plane through 3D points in the optical frame whose normal is within ``max_tilt_deg``
    of the camera's up (-y), refined by least squares on its inliers (``threshold``: distance, in
    the points' units). None when no such plane has ``min_inliers``."""
    if len(pts) < max(3, min_inliers):
        return None
    rng = np.random.default_rng(seed)
    pts = np.asarray(pts, np.float64)
    up = np.array([0.0, -1.0, 0.0])
    cos_max = math.cos(math.radians(max_tilt_deg))
    if iterations < 1:
        return None
    # every hypothesis at once (the same draws as one at a time): normals (I, 3), then the
    # inlier counts of all of them in one product with the points
    tri = pts[np.stack([rng.choice(len(pts), 3, replace=False) for _ in range(iterations)])]  # (I, 3, 3)
    a = tri[:, 0]
    normals = np.cross(tri[:, 1] - a, tri[:, 2] - a)
    norms = np.linalg.norm(normals, axis=1)
    keep = norms >= 1e-12
    normals, a = normals[keep] / norms[keep, None], a[keep]
    normals *= np.where(normals @ up < 0, -1.0, 1.0)[:, None]
    upright = normals @ up >= cos_max
    normals, a = normals[upright], a[upright]
    if len(normals) == 0:
        return None
    offsets = -np.einsum("ij,ij->i", normals, a)  # planes n.x + d = 0
    counts = (np.abs(pts @ normals.T + offsets) < threshold).sum(0)
    k = int(np.argmax(counts))  # the first of the best, as the loop kept it
    if counts[k] < min_inliers:
        return None
    n, d = normals[k], offsets[k]
    inl = pts[np.abs(pts @ n + d) < threshold]
    centre = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
    n = vt[-1] if vt[-1] @ up > 0 else -vt[-1]
    return PlaneFit(n, abs(float(n @ centre)), len(inl))


def fit_ground_plane(
    depth: np.ndarray,
    K: np.ndarray,
    rows: tuple[float, float] = (0.6, 1.0),
    max_tilt_deg: float = 30.0,
    iterations: int = 100,
    threshold: float = 0.03,
    seed: int = 0,
    max_points: int = 4000,
) -> PlaneFit | None:
    """The ground plane of a depth map: :func:`fit_plane_ransac` on the points back-projected from
    the image rows ``rows`` (fractions of the height); ``threshold`` is relative to the points'
    median depth."""
    from .depth import depth_to_points

    h = depth.shape[0]
    r0, r1 = int(rows[0] * h), int(rows[1] * h)
    K2 = np.asarray(K, np.float64).reshape(3, 3).copy()
    K2[1, 2] -= r0
    pts, _ = depth_to_points(depth[r0:r1], K2)
    if len(pts) < 50:
        return None
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    pts = pts.astype(np.float64)
    return fit_plane_ransac(pts, threshold * float(np.median(pts[:, 2])), max_tilt_deg, iterations, 30, seed)


class ScaleEstimator:
    def __init__(self, source: str = "model", camera_height: float = 0.0, smoothing: float = 0.2) -> None:
        if source not in SOURCES:
            raise ValueError(f"scale_source '{source}' must be one of {SOURCES}")
        if source == "camera_height" and not camera_height > 0:
            raise ValueError("scale_source camera_height needs camera_height > 0 (metres above the ground)")
        if not 0 < smoothing <= 1:
            raise ValueError(f"scale smoothing must be in (0, 1], got {smoothing}")
        self.source, self.camera_height, self.smoothing = source, float(camera_height), float(smoothing)
        self.log_scale: float | None = 0.0 if source == "model" else None
        self.plane: PlaneFit | None = None  # the last update_from_ground's fit (None: none this frame)
        self.status = "model is metric (scale 1)" if source == "model" else "no scale yet"

    @property
    def scale(self) -> float | None:
        return None if self.log_scale is None else math.exp(self.log_scale)

    def _fold(self, s: float, why: str) -> None:
        ls = math.log(s)
        self.log_scale = ls if self.log_scale is None else (1 - self.smoothing) * self.log_scale + self.smoothing * ls
        self.status = why

    def update_from_ground(self, depth: np.ndarray, K: np.ndarray, downsample: int = 2) -> float | None:
        """Fold in the ground plane of ``depth`` (fitted at 1/``downsample`` resolution: the
        RANSAC needs thousands of points, not a whole VGA frame)."""
        self.plane = None
        if self.source != "camera_height":
            return self.scale
        if downsample > 1:
            import cv2

            from .depth import scale_K

            h, w = depth.shape
            small = cv2.resize(
                np.nan_to_num(depth, nan=0.0), (w // downsample, h // downsample), interpolation=cv2.INTER_NEAREST
            )
            small[small == 0] = np.nan
            depth, K = small, scale_K(K, (w // downsample) / w, (h // downsample) / h)
        fit = fit_ground_plane(depth, K)
        if fit is None or fit.distance <= 0:
            self.status = "no ground plane found in the lower image; keeping the last scale"
            return self.scale
        self.plane = fit
        self._fold(
            self.camera_height / fit.distance,
            f"ground plane: {fit.inliers} inliers, camera height {fit.distance:.3f} (model units)",
        )
        return self.scale

    def ground_plane(self, factor: float | None) -> PlaneFit | None:
        """The ground plane this frame's :meth:`update_from_ground` fitted, in the units of the
        depth map times ``factor`` (the scale the caller applied; None: 1), for the hybrid
        odometry's ground scale, which then does not fit it a second time."""
        return None if self.plane is None else self.plane.scaled(1.0 if factor is None else factor)

    def metric(self, depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, PlaneFit | None]:
        """:meth:`update_from_ground` and its result applied: ``depth`` times the running scale (1
        before there is one) and this frame's ground plane in those units (None: none fitted), what
        the hybrid odometry takes per frame where no node sits between the depth and the odometry
        (evaluation, the odometry of footage without a pose source)."""
        s = self.update_from_ground(depth, K) or 1.0
        return depth * np.float32(s), self.ground_plane(s)

    def update_from_reference(self, depth: np.ndarray, reference: np.ndarray, min_pixels: int = 100) -> float | None:
        if self.source != "depth_topic":
            return self.scale
        if reference.shape != depth.shape:
            import cv2

            reference = cv2.resize(reference, (depth.shape[1], depth.shape[0]), interpolation=cv2.INTER_NEAREST)
        ok = np.isfinite(depth) & (depth > 0) & np.isfinite(reference) & (reference > 0)
        if ok.sum() < min_pixels:
            self.status = f"only {int(ok.sum())} pixels with both depths (< {min_pixels}); keeping the last scale"
            return self.scale
        self._fold(float(np.median(reference[ok] / depth[ok])), f"median ratio over {int(ok.sum())} pixels")
        return self.scale
