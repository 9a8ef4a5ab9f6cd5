"""Monocular visual odometry: frame-to-frame motion estimators and the tracker that chains them.

Estimators (``estimator`` parameter of the odometry node), each returning ``T_prev_cur`` (the
current camera's pose in the previous camera's optical frame):

- ``posenet``: the pose network (two frames -> 6-DoF), metric through the depth model's scale;
- ``pnp``: ORB keypoints of the previous frame lifted to 3D with the *predicted depth*, matched
  into the current frame, ``cv2.solvePnPRansac`` -> metric motion from one image;
- ``pnp_learned``: the same with the learned keypoints and descriptors of the matching model
  (:class:`LearnedMatcher`, mutual nearest neighbours) instead of ORB;
- ``essential`` (the classical OpenCV baseline): ORB + ``findEssentialMat`` (RANSAC) +
  ``recoverPose``; the unit translation gets its length from the same scale source (the predicted
  depth of the matched points against their triangulation);
- ``hybrid`` (the default): the same essential matrix with MAGSAC++ instead of RANSAC, and PnP on
  the same matches for the frames where it fails (too little parallax, too few inliers).

:class:`OdometryTracker` chains motions into ``T_odom_camera`` (odom = the first camera pose with
REP-103 axes: x forward, z up), resets on a large time gap, skips frames whose motion failed
(too few inliers, NaN, implausible speed) with the reason and an inflated covariance, and never
raises on bad input.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..backends import Backend
from ..model_card import ModelCard
from ..transforms import T_BODY_OPTICAL
from .cv_geometry import find_essential, solve_pnp_ransac
from .cv_geometry import triangulate as cv_triangulate
from .depth import scale_K
from .metric_scale import PlaneFit, fit_ground_plane
from .preprocess import fit_image, to_nchw

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


class PoseNetOdometry:
    """``previous``/``current`` inputs from the pose model's card; its output is T_previous_current."""

    method = "posenet"

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        names = {s.name for s in backend.inputs}
        if not {"previous", "current"} <= names:
            raise ValueError(f"pose model needs inputs 'previous' and 'current'; it has {sorted(names)}")
        if [s.name for s in backend.outputs] != ["T_previous_current"]:
            raise ValueError(f"pose model must output 'T_previous_current'; it has {[s.name for s in backend.outputs]}")
        self.backend, self.card = backend, card
        self.mean, self.std = np.asarray(card.mean, np.float32), np.asarray(card.std, np.float32)
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def estimate(self, rgb: np.ndarray, scale: float = 1.0) -> Motion:
        x = to_nchw(fit_image(rgb, self.card.input_width, self.card.input_height, "stretch")[0], self.mean, self.std)
        prev, self._prev = self._prev, x
        if prev is None:
            return Motion(None, reason="first frame", method=self.method)
        T = np.asarray(self.backend.infer({"previous": prev, "current": x})["T_previous_current"], np.float64).reshape(
            4, 4
        )
        if not np.isfinite(T).all():
            return Motion(None, reason="pose network returned NaN/inf", method=self.method)
        T = T.copy()
        T[:3, 3] *= scale
        return Motion(T, method=self.method)


class OrbMatcher:
    """ORB keypoints + Hamming kNN with Lowe's ratio test between consecutive frames. Images wider
    than ``max_width`` are searched at that width (keypoints scaled back to full-image pixels):
    most of the cost of ORB + matching goes with the pixel count."""

    def __init__(self, features: int = 1000, ratio: float = 0.8, max_width: int = 640) -> None:
        self.orb = cv2.ORB_create(nfeatures=features)
        self.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        self.ratio, self.max_width = ratio, max_width
        self._prev: tuple | None = None

    def reset(self) -> None:
        self._prev = None

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Matched pixel coordinates (prev (N, 2), cur (N, 2)) between the last frame and this one."""
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        s = min(1.0, self.max_width / grey.shape[1])
        if s < 1.0:
            grey = cv2.resize(
                grey, (int(round(grey.shape[1] * s)), int(round(grey.shape[0] * s))), interpolation=cv2.INTER_AREA
            )
        kp, desc = self.orb.detectAndCompute(grey, None)
        if s < 1.0:  # keypoints in full-image pixels (OpenCV centres)
            kp = [cv2.KeyPoint((k.pt[0] + 0.5) / s - 0.5, (k.pt[1] + 0.5) / s - 0.5, k.size / s) for k in kp]
        prev, self._prev = self._prev, (kp, desc)
        if prev is None or desc is None or prev[1] is None or len(kp) < 2 or len(prev[0]) < 2:
            return None
        good = [
            m
            for m, n in (p for p in self.matcher.knnMatch(prev[1], desc, k=2) if len(p) == 2)
            if m.distance < self.ratio * n.distance
        ]
        a = np.array([prev[0][m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
        b = np.array([kp[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
        return a, b


class LearnedMatcher:
    """The matching model's keypoints + descriptors (``pipeline.run(rgb) -> Features``) matched
    between consecutive frames with mutual nearest neighbours; same interface as OrbMatcher."""

    def __init__(self, pipeline: Any, ratio: float = 0.9) -> None:
        self.pipeline, self.ratio = pipeline, ratio
        self._prev: Any = None

    def reset(self) -> None:
        self._prev = None

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        from .matching import mutual_nn_match

        feats = self.pipeline.run(rgb)
        prev, self._prev = self._prev, feats
        if prev is None:
            return None
        idx, _ = mutual_nn_match(prev.descriptors, feats.descriptors, self.ratio)
        return (prev.keypoints[idx[:, 0]].astype(np.float64), feats.keypoints[idx[:, 1]].astype(np.float64))


class FeatureOdometry:
    """What the feature-based estimators share: a matcher between consecutive frames and the
    previous frame's depth (the metric scale of the motion between it and the current one).

    Their ``estimate(rgb, depth, K, ground_plane=None)`` all take ``ground_plane``: the ground
    plane of ``depth`` in its units when the caller has fitted it already (the ``camera_height``
    scale does, :meth:`.metric_scale.ScaleEstimator.ground_plane`); the hybrid's
    :class:`GroundScale` then uses it for the next frame instead of fitting it again."""

    method = ""

    def __init__(self, matcher: OrbMatcher | LearnedMatcher, min_inliers: int) -> None:
        self.matcher, self.min_inliers = matcher, min_inliers
        self._prev_depth: np.ndarray | None = None
        self._prev_plane: PlaneFit | None = None

    def reset(self) -> None:
        self.matcher.reset()
        self._prev_depth = None
        self._prev_plane = None

    def _advance(
        self, rgb: np.ndarray, depth: np.ndarray | None, plane: PlaneFit | None = None
    ) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None, PlaneFit | None]:
        """Matches previous -> this frame (None on the first), the previous frame's depth and its
        ground plane (None when the caller gave none)."""
        pairs = self.matcher.step(rgb)
        prev_depth, self._prev_depth = self._prev_depth, depth
        prev_plane, self._prev_plane = self._prev_plane, plane
        return pairs, prev_depth, prev_plane


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


class GroundScale:
    """Metric translation length from the camera's known height above a flat ground, by direct
    (photometric) alignment of the ground between the previous and this frame, for ground robots
    and vehicles with one camera.

    The ground is the part of the previous frame whose back-projected depth lies on the depth
    map's ground plane (:func:`fit_ground_plane`; only which pixels are on it is used, so the
    depth network's scale cancels). A ground point moves between the frames by the plane-induced
    homography ``H(s) = K (R + s/h t n^T) K^-1`` of the essential matrix's rotation ``R`` and unit
    direction ``t``, the ground's normal ``n`` and the height ``h``. ``normal`` (unit, towards the
    ground, in the optical frame) is the camera's mounting: a rigidly mounted camera sees the
    ground under a nearly fixed normal, and a few degrees of error in it bias the length (on six
    held-out driving sequences the median measured length was 0.74-1.03 of the true one with the
    depth network's plane, 0.99-1.03 with the mounting's normal); without it, the depth's plane
    normal is used each frame. The length ``s`` is the one that best warps this frame's ground
    onto the previous one (mean absolute
    difference of band-passed grey images at ``max_width``, a log-spaced search over
    ``[min_step, max_step]`` metres refined by a parabola). Every ground pixel takes part, so it
    holds on weakly textured road where corner tracks stick (they underestimate the motion).
    A search whose best cost is not clearly below its median (``min_contrast``), or a length
    more than ``gate`` (log) away from the running one, gives no measurement; three such lengths
    within ``switch_frames`` frames that agree with each other (within ``gate``) are a new speed,
    and the running length starts over from their median (lengths that disagree, or come far
    apart, are outliers: the alignment can lock onto a repeated road pattern). Lengths are smoothed
    (EMA of the log, ``smoothing``) and the last one is kept for ``hold`` frames. :attr:`status`
    says what happened."""

    def __init__(
        self,
        camera_height: float,
        max_width: int = 320,
        min_step: float = 0.02,
        max_step: float = 4.0,
        samples: int = 40,
        min_contrast: float = 0.8,
        gate: float = 0.4,
        smoothing: float = 0.3,
        hold: int = 10,
        plane_threshold: float = 0.05,
        min_pixels: int = 500,
        normal: np.ndarray | None = None,
        switch_frames: int = 5,
    ) -> None:
        if not camera_height > 0:
            raise ValueError(f"camera_height must be > 0 m, got {camera_height}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"ground scale smoothing must be in (0, 1], got {smoothing}")
        if not 0 < min_step < max_step:
            raise ValueError(f"ground scale search needs 0 < min_step < max_step, got {min_step}, {max_step}")
        if switch_frames < 3:
            raise ValueError(f"ground scale switch_frames must be >= 3 (three agreeing lengths), got {switch_frames}")
        self.camera_height, self.max_width = float(camera_height), max_width
        self.grid = np.exp(np.linspace(math.log(min_step), math.log(max_step), samples))
        self.min_contrast, self.gate, self.smoothing, self.hold = min_contrast, gate, smoothing, hold
        self.switch_frames = switch_frames
        self.plane_threshold, self.min_pixels = plane_threshold, min_pixels
        self.normal: np.ndarray | None = None
        if normal is not None:
            n = np.asarray(normal, np.float64).reshape(3)
            if not (
                np.all(np.isfinite(n))
                and np.linalg.norm(n) > 0
                and n[1] / np.linalg.norm(n) > math.cos(math.radians(60))
            ):
                raise ValueError(
                    f"ground normal {n.tolist()} must point down (+y in the optical frame) within 60 degrees"
                )
            self.normal = n / np.linalg.norm(n)
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._cur: np.ndarray | None = None
        self.log_scale: float | None = None
        self.measured: float | None = None  # this frame's length before smoothing (None: none)
        self.age = 0
        self._frame = 0  # frames stepped since the reset
        self._outliers: list[tuple[int, float]] = []  # (frame, log length) of the recent rejected lengths
        self.status = "no ground yet"

    def step(self, rgb: np.ndarray) -> None:
        """Every frame, before :meth:`scale` (which aligns the previous frame with this one)."""
        self._frame += 1
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        w = min(grey.shape[1], self.max_width)
        h = max(1, int(round(grey.shape[0] * w / grey.shape[1])))
        g = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
        g = cv2.GaussianBlur(g, (0, 0), 1.0)
        self._prev, self._cur = self._cur, g - cv2.GaussianBlur(g, (0, 0), 4.0)  # band-pass: no shading

    def _measure(
        self, g: TwoViewGeometry, K: np.ndarray, prev_depth: np.ndarray, plane: PlaneFit | None
    ) -> float | None:
        prev, cur = self._prev, self._cur
        if prev is None or cur is None or prev.shape != cur.shape:
            self.status = "no previous frame"
            return None
        H, W = prev.shape
        Ks = scale_K(K, W / prev_depth.shape[1], H / prev_depth.shape[0])
        depth = cv2.resize(np.nan_to_num(prev_depth, nan=0.0, posinf=0.0), (W, H), interpolation=cv2.INTER_NEAREST)
        depth[~(depth > 0)] = np.nan
        fit = plane if plane is not None else fit_ground_plane(depth, Ks)
        if fit is None:
            self.status = "no ground plane in the depth"
            return None
        nd = -fit.normal  # towards the ground: nd . X = distance
        u, v = np.meshgrid(np.arange(W), np.arange(H))
        rays = np.stack([(u - Ks[0, 2]) / Ks[0, 0], (v - Ks[1, 2]) / Ks[1, 1], np.ones((H, W))], -1)
        with np.errstate(invalid="ignore"):
            on = np.abs(rays @ nd * depth - fit.distance) < self.plane_threshold * depth
        mask = cv2.erode((on & (rays @ nd > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        n = nd if self.normal is None else self.normal
        if mask.sum() < self.min_pixels:
            self.status = f"too little ground ({int(mask.sum())} px < {self.min_pixels})"
            return None
        Ki = np.linalg.inv(Ks)

        def cost(s: float) -> float:
            Hs = Ks @ (g.R + (s / self.camera_height) * np.outer(g.t, n)) @ Ki
            warped = cv2.warpPerspective(
                cur,
                Hs,
                (W, H),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=np.nan,
            )
            m = mask & np.isfinite(warped)
            return float(np.abs(prev[m] - warped[m]).mean()) if m.sum() >= self.min_pixels // 2 else np.inf

        c = np.array([cost(s) for s in self.grid])
        j = int(np.argmin(c))
        finite = c[np.isfinite(c)]
        if not np.isfinite(c[j]) or not 0 < j < len(c) - 1:
            self.status = "ground alignment out of the search range"
            return None
        contrast = c[j] / float(np.median(finite))
        if contrast > self.min_contrast:
            self.status = f"ground alignment ambiguous (best/median cost {contrast:.2f} > {self.min_contrast})"
            return None
        lg = np.log(self.grid)
        fine = np.linspace(lg[j - 1], lg[j + 1], 11)
        cf = np.array([cost(math.exp(x)) for x in fine])
        k = int(np.argmin(cf))
        off = 0.0
        if 0 < k < len(cf) - 1:
            den = cf[k - 1] - 2 * cf[k] + cf[k + 1]
            off = 0.5 * (cf[k - 1] - cf[k + 1]) / den if den > 0 else 0.0
        self.status = f"ground: {int(mask.sum())} px, best/median cost {contrast:.2f}"
        return math.exp(fine[k] + off * (fine[1] - fine[0]))

    def scale(
        self, g: TwoViewGeometry, K: np.ndarray, prev_depth: np.ndarray, plane: PlaneFit | None = None
    ) -> float | None:
        """The smoothed translation length for this frame's unit-baseline geometry ``g``, or None
        (no measurement for more than ``hold`` frames). ``plane``: the ground plane of
        ``prev_depth`` (its units) when already fitted; else it is fitted here."""
        s = self._measure(g, np.asarray(K, np.float64).reshape(3, 3), prev_depth, plane)
        if s is not None and self.log_scale is not None and abs(math.log(s) - self.log_scale) > self.gate:
            self._outliers = [(f, v) for f, v in self._outliers if self._frame - f < self.switch_frames]
            self._outliers.append((self._frame, math.log(s)))
            logs = [v for _, v in self._outliers[-3:]]
            if len(logs) == 3 and max(logs) - min(logs) <= self.gate:  # a new speed: start over from it
                self.log_scale, self._outliers, self.measured, self.age = float(np.median(logs)), [], s, 0
                self.status = f"ground: new speed, 3 lengths agree on {math.exp(self.log_scale):.3f} m"
                return math.exp(self.log_scale)
            self.status = f"ground length {s:.3f} m rejected (running {math.exp(self.log_scale):.3f} m)"
            s = None
        if s is None:
            return self.skip()
        self.measured, self._outliers, self.age = s, [], 0
        ls = math.log(s)
        self.log_scale = ls if self.log_scale is None else (1 - self.smoothing) * self.log_scale + self.smoothing * ls
        return math.exp(self.log_scale)

    def skip(self, why: str = "") -> float | None:
        """A frame without a measurement (``why``, when given, becomes the status): the last length
        is held for ``hold`` frames."""
        if why:
            self.status = why
        self.measured = None
        self.age += 1
        if self.age > self.hold:
            self.log_scale = None
        return None if self.log_scale is None else math.exp(self.log_scale)


class PnPOdometry(FeatureOdometry):
    method = "pnp"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        reprojection_px: float = 2.0,
        max_width: int = 640,
        matcher: LearnedMatcher | None = None,
    ) -> None:
        super().__init__(matcher or OrbMatcher(features, max_width=max_width), min_inliers)
        if matcher is not None:
            self.method = "pnp_learned"
        self.reprojection_px = reprojection_px

    def estimate(
        self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, ground_plane: PlaneFit | None = None
    ) -> Motion:
        """``depth``: this frame's metric depth at ``rgb``'s size (used for the next frame)."""
        pairs, prev_depth, _ = self._advance(rgb, depth, ground_plane)
        if pairs is None or prev_depth is None:
            return Motion(None, reason="first frame" if prev_depth is None else "no features", method=self.method)
        a, b = pairs
        if len(a) < self.min_inliers:
            return Motion(None, len(a), f"{len(a)} matches < {self.min_inliers}", self.method)
        return pnp_motion(
            a,
            b,
            prev_depth,
            np.asarray(K, np.float64).reshape(3, 3),
            self.min_inliers,
            self.reprojection_px,
            self.method,
        )


class EssentialOdometry(FeatureOdometry):
    """The classical baseline: 2D-2D essential matrix; translation length from the depth source."""

    method = "essential"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        threshold_px: float = 1.0,
        min_parallax_deg: float = 1.0,
        max_width: int = 640,
    ) -> None:
        super().__init__(OrbMatcher(features, max_width=max_width), min_inliers)
        self.threshold_px, self.min_parallax_deg = threshold_px, min_parallax_deg

    def estimate(
        self, rgb: np.ndarray, depth: np.ndarray | None, K: np.ndarray, ground_plane: PlaneFit | None = None
    ) -> Motion:
        pairs, prev_depth, _ = self._advance(rgb, depth, ground_plane)
        if pairs is None:
            return Motion(None, reason="first frame", method=self.method)
        a, b = pairs
        return essential_motion(
            a,
            b,
            prev_depth,
            np.asarray(K, np.float64).reshape(3, 3),
            self.min_inliers,
            self.threshold_px,
            self.min_parallax_deg,
            self.method,
        )


class HybridOdometry(FeatureOdometry):
    """Essential matrix first (MAGSAC++; rotation and direction from 2D-2D geometry, which does not
    inherit the depth network's per-pixel errors), and PnP on the same matches where that fails
    (little parallax, a near pure rotation, too few inliers), so no frame is skipped that either
    could solve. The essential motion's length comes from the ground's motion between the frames
    (:class:`GroundScale`) when ``camera_height`` is given (and ``ground_normal``, the camera's
    mounting, where known), else (and while it has no length) from the depth."""

    method = "hybrid"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        threshold_px: float = 1.0,
        min_parallax_deg: float = 1.0,
        reprojection_px: float = 2.0,
        max_width: int = 640,
        camera_height: float = 0.0,
        ground_normal: np.ndarray | None = None,
    ) -> None:
        super().__init__(OrbMatcher(features, max_width=max_width), min_inliers)
        self.threshold_px, self.min_parallax_deg, self.reprojection_px = threshold_px, min_parallax_deg, reprojection_px
        self.ground = GroundScale(camera_height, normal=ground_normal) if camera_height > 0 else None

    def reset(self) -> None:
        super().reset()
        if self.ground is not None:
            self.ground.reset()

    def estimate(
        self, rgb: np.ndarray, depth: np.ndarray, K: np.ndarray, ground_plane: PlaneFit | None = None
    ) -> Motion:
        pairs, prev_depth, prev_plane = self._advance(rgb, depth, ground_plane)
        if self.ground is not None:
            self.ground.step(rgb)
        if pairs is None or prev_depth is None:
            return Motion(None, reason="first frame" if prev_depth is None else "no features", method=self.method)
        a, b = pairs
        K = np.asarray(K, np.float64).reshape(3, 3)
        g = essential_geometry(a, b, K, self.min_inliers, self.threshold_px, "hybrid (essential)", cv2.USAC_MAGSAC)
        if not isinstance(g, Motion):
            scale = None if self.ground is None else self.ground.scale(g, K, prev_depth, prev_plane)
            method = "hybrid (essential, ground scale)"
            why = ""
            if scale is None:
                scale, why = depth_scale(g, prev_depth, K, self.min_parallax_deg)
                method = "hybrid (essential)"
            if scale is not None:
                return Motion(np.linalg.inv(_pose(g.R, g.t * scale)), g.inliers, method=method)
            m = Motion(None, g.inliers, why, "hybrid (essential)")
        else:
            m = g
            if self.ground is not None:
                self.ground.skip(f"no essential motion to scale: {g.reason}")
        if len(a) < self.min_inliers:
            return m
        p = pnp_motion(a, b, prev_depth, K, self.min_inliers, self.reprojection_px, "hybrid (pnp)")
        return p if p.T_prev_cur is not None else Motion(None, p.inliers, f"{m.reason}; then {p.reason}", self.method)


def make_estimator(
    name: str,
    min_inliers: int = 20,
    pose: tuple[Backend, ModelCard] | None = None,
    matcher: Any = None,
    camera_height: float = 0.0,
    ground_normal: np.ndarray | None = None,
) -> Any:
    """One of ``ESTIMATORS`` by name, as the node, the evaluation and the benchmarks build them:
    ``posenet`` needs ``pose`` (the pose network's backend and card), ``pnp_learned`` ``matcher``
    (a ``MatchingPipeline``); ``hybrid`` takes its length from the ground with ``camera_height`` > 0
    (``ground_normal``: the camera's mounting, see :class:`GroundScale`)."""
    if name == "posenet":
        if pose is None:
            raise ValueError("estimator posenet needs the pose network (pose_model_path)")
        return PoseNetOdometry(*pose)
    if name == "pnp":
        return PnPOdometry(min_inliers)
    if name == "pnp_learned":
        if matcher is None:
            raise ValueError("estimator pnp_learned needs the keypoint model (matcher_model_path)")
        return PnPOdometry(min_inliers, matcher=LearnedMatcher(matcher))
    if name == "hybrid":
        return HybridOdometry(min_inliers, camera_height=camera_height, ground_normal=ground_normal)
    if name == "essential":
        return EssentialOdometry(min_inliers)
    raise ValueError(f"estimator '{name}' must be one of {ESTIMATORS}")


@dataclass
class OdometryState:
    T_odom_camera: np.ndarray
    stamp_ns: int
    ok: bool  # this frame's motion was used
    status: str  # "" or why it was skipped / reset
    pose_covariance: np.ndarray  # 6x6 (x y z roll pitch yaw) of T_odom_camera
    twist: np.ndarray  # (6,) linear m/s, angular rad/s in the camera frame
    twist_covariance: np.ndarray
    frames: int = 0
    resets: int = 0
    skipped: int = 0
    path: deque = field(default_factory=deque)  # (stamp_ns, T_odom_camera), the last ``history``


class OdometryTracker:
    def __init__(
        self,
        max_gap_s: float = 1.0,
        max_speed: float = 50.0,
        step_sigma_t: float = 0.02,
        step_sigma_r: float = 0.005,
        failure_inflation: float = 100.0,
        T_odom_camera0: np.ndarray | None = None,
        history: int | None = None,
    ) -> None:
        """``history``: how many (stamp, pose) pairs ``state.path`` keeps (None: all, for
        evaluating a whole sequence; a node that runs for days keeps a few: ~360 B a pose)."""
        if max_gap_s <= 0 or max_speed <= 0:
            raise ValueError("max_gap_s and max_speed must be > 0")
        if history is not None and history < 1:
            raise ValueError("history must be >= 1 (or None to keep every pose)")
        self.history = history
        self.max_gap_s, self.max_speed = max_gap_s, max_speed
        self.step_cov = np.diag([step_sigma_t**2] * 3 + [step_sigma_r**2] * 3)
        self.inflation = failure_inflation
        self.T0 = T_BODY_OPTICAL.copy() if T_odom_camera0 is None else np.asarray(T_odom_camera0, np.float64)
        self.state: OdometryState | None = None

    def needs_reset(self, stamp_ns: int) -> str:
        """Non-empty when the estimators should forget their previous frame before this one."""
        if self.state is None:
            return ""
        dt = (stamp_ns - self.state.stamp_ns) * 1e-9
        if dt <= 0:
            return f"stamp not after the previous one (dt {dt:.3f} s)"
        if dt > self.max_gap_s:
            return f"time gap {dt:.2f} s > max_gap {self.max_gap_s:.2f} s"
        return ""

    def update(self, stamp_ns: int, motion: Motion | None) -> OdometryState:
        s = self.state
        if s is None:
            self.state = OdometryState(
                self.T0.copy(),
                stamp_ns,
                True,
                "initialised",
                np.zeros((6, 6)),
                np.zeros(6),
                self.step_cov.copy(),
                frames=1,
                path=deque([(stamp_ns, self.T0.copy())], maxlen=self.history),
            )
            return self.state
        dt = (stamp_ns - s.stamp_ns) * 1e-9
        reason = self.needs_reset(stamp_ns)
        T = None if motion is None else motion.T_prev_cur
        if not reason:
            if T is None:
                reason = motion.reason if motion is not None and motion.reason else "no motion estimate"
            elif not np.isfinite(T).all():
                reason = "motion has NaN/inf"
            elif np.linalg.norm(T[:3, 3]) > self.max_speed * dt:
                reason = (
                    f"implausible motion {np.linalg.norm(T[:3, 3]):.2f} m in {dt:.3f} s "
                    f"(max_speed {self.max_speed} m/s)"
                )
        s.frames += 1
        if reason:
            if "gap" in reason or "stamp" in reason:
                s.resets += 1
            s.skipped += 1
            s.ok, s.status = False, reason
            s.pose_covariance = s.pose_covariance + self.inflation * self.step_cov
            s.twist, s.twist_covariance = np.zeros(6), self.inflation * self.step_cov
        else:
            assert T is not None
            s.T_odom_camera = s.T_odom_camera @ T
            s.ok, s.status = True, ""
            s.pose_covariance = s.pose_covariance + self.step_cov
            rvec = cv2.Rodrigues(T[:3, :3])[0].ravel()
            s.twist = np.concatenate([T[:3, 3], rvec]) / dt
            s.twist_covariance = self.step_cov / dt**2
        if dt > 0:
            s.stamp_ns = stamp_ns
        s.path.append((stamp_ns, s.T_odom_camera.copy()))
        return s
