"""The ground-plane scale of the hybrid odometry (next to metric_scale.py, whose ground-plane
fit it reuses): the camera height turned into the length of the unit translation."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .depth import scale_K
from .metric_scale import PlaneFit, fit_ground_plane
from .odometry.two_view import TwoViewGeometry


def parabola_offset(left: float, mid: float, right: float) -> float:
    """Where the parabola through three equally spaced costs has its minimum, in steps from the
    middle one (within +-0.5 when the middle is the least); 0 when it has none: not curving
    upwards, or a cost that is not finite (too few ground pixels left in the picture at that
    length), which would make the length NaN and, smoothed, every length after it."""
    den = left - 2.0 * mid + right
    if not (math.isfinite(left) and math.isfinite(mid) and math.isfinite(right) and den > 0):
        return 0.0
    return 0.5 * (left - right) / den


class GroundScale:
    """Metric translation length from the camera's known height above a flat ground, by direct
    (photometric) alignment of the ground between the previous and this frame, for ground robots
    and vehicles with one camera.

    The ground is the part of the previous frame whose back-projected depth lies on the depth
    map's ground plane (:func:`fit_ground_plane`; only which pixels are on it is used, so the
    depth network's scale cancels), or, when the caller has a segmenter's labels of that frame,
    what the segmenter calls ground, below the horizon (then the length does not depend on the
    depth model at all where the mounting's ``normal`` is known; a multi-task network's own
    labels serve). A ground point moves between the frames by the plane-induced homography
    ``H(s) = K (R + s/h t n^T) K^-1`` of the essential matrix's rotation ``R`` and unit
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
    says what happened.

    Only the ground within ``corridor`` metres to either side of the camera's axis is aligned (0:
    all of it): beside a road, pavements, kerbs and verges stand 0.1-0.4 m above it and are the
    best textured "ground" in the picture, and a surface ``d`` above the ground gives lengths
    ``h / (h - d)`` too long (KITTI seq-06, 51 frames, hybrid ATE with all of the ground / within
    2 m: 2.61 / 1.73 % on the depth's plane, 2.35 / 1.59 % with the segmenter's ground; numbers and
    the synthetic scenes in docs/model-history.md)."""

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
        corridor: float = 2.0,
    ) -> None:
        if not camera_height > 0:
            raise ValueError(f"camera_height must be > 0 m, got {camera_height}")
        if not 0 < smoothing <= 1:
            raise ValueError(f"ground scale smoothing must be in (0, 1], got {smoothing}")
        if not 0 < min_step < max_step:
            raise ValueError(f"ground scale search needs 0 < min_step < max_step, got {min_step}, {max_step}")
        if not corridor >= 0:
            raise ValueError(f"ground scale corridor must be >= 0 m (0: all the ground), got {corridor}")
        if switch_frames < 3:
            raise ValueError(f"ground scale switch_frames must be >= 3 (three agreeing lengths), got {switch_frames}")
        self.camera_height, self.max_width = float(camera_height), max_width
        self.grid = np.exp(np.linspace(math.log(min_step), math.log(max_step), samples))
        self.min_contrast, self.gate, self.smoothing, self.hold = min_contrast, gate, smoothing, hold
        self.switch_frames, self.corridor = switch_frames, float(corridor)
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

    def _ground_mask(
        self, Ks: np.ndarray, W: int, H: int, prev_depth: np.ndarray, plane: PlaneFit | None, ground: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | str:
        """The previous frame's ground pixels at the working size and the ground's normal (towards
        it, optical frame), or why there are none: the segmenter's ``ground`` where given (with
        the mounting's normal, else the depth plane's), else the pixels on the depth's plane."""
        fit = None
        if ground is None or self.normal is None:
            depth = cv2.resize(np.nan_to_num(prev_depth, nan=0.0, posinf=0.0), (W, H), interpolation=cv2.INTER_NEAREST)
            depth[~(depth > 0)] = np.nan
            fit = plane if plane is not None else fit_ground_plane(depth, Ks)
            if fit is None:
                return "no ground plane in the depth"
        nd = -fit.normal if fit is not None else self.normal  # towards the ground: nd . X = distance
        # nd . ray of every pixel, ray = K^-1 (u, v, 1): separable in u and v
        facing = (nd[0] * (np.arange(W) - Ks[0, 2]) / Ks[0, 0])[None, :] + (
            nd[1] * (np.arange(H) - Ks[1, 2]) / Ks[1, 1] + nd[2]
        )[:, None]
        if ground is not None:  # which pixels are ground does not depend on the depth model
            on = cv2.resize(ground.astype(np.uint8), (W, H), interpolation=cv2.INTER_NEAREST) > 0
        else:
            assert fit is not None
            with np.errstate(invalid="ignore"):
                on = np.abs(facing * depth - fit.distance) < self.plane_threshold * depth
        if self.corridor > 0:  # the ground ahead: its lateral offset on the plane, x h / (n . ray)
            xs = np.abs(np.arange(W) - Ks[0, 2]) / Ks[0, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                on = on & (xs[None, :] * self.camera_height < self.corridor * facing)
        mask = cv2.erode((on & (facing > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        return mask, (nd if self.normal is None else self.normal)

    def _measure(
        self,
        g: TwoViewGeometry,
        K: np.ndarray,
        prev_depth: np.ndarray,
        plane: PlaneFit | None,
        ground: np.ndarray | None = None,
    ) -> float | None:
        prev, cur = self._prev, self._cur
        if prev is None or cur is None or prev.shape != cur.shape:
            self.status = "no previous frame"
            return None
        H, W = prev.shape
        Ks = scale_K(K, W / prev_depth.shape[1], H / prev_depth.shape[0])
        found = self._ground_mask(Ks, W, H, prev_depth, plane, ground)
        if isinstance(found, str):
            self.status = found
            return None
        mask, n = found
        if mask.sum() < self.min_pixels:
            self.status = f"too little ground ({int(mask.sum())} px < {self.min_pixels})"
            return None
        Ki = np.linalg.inv(Ks)
        # only the ground's bounding box is warped (the homography shifted to its corner) and only
        # the ground's pixels are compared (gathered by flat index): the same costs as warping the
        # whole image, at a third of the time (the odometry's largest cost per frame)
        rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
        y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        source = "the segmenter's" if ground is not None else "on the depth's plane"
        pick = np.flatnonzero(mask[y0:y1, x0:x1])
        ref = prev[y0:y1, x0:x1].ravel()[pick]
        corner = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0], [0.0, 0.0, 1.0]])

        def cost(s: float) -> float:
            Hs = Ks @ (g.R + (s / self.camera_height) * np.outer(g.t, n)) @ Ki @ corner
            warped = cv2.warpPerspective(
                cur,
                Hs,
                (x1 - x0, y1 - y0),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=np.nan,
            )
            err = np.abs(warped.ravel()[pick] - ref)
            err = err[~np.isnan(err)]
            return float(err.mean(dtype=np.float64)) if len(err) >= self.min_pixels // 2 else np.inf

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
        off = parabola_offset(*cf[k - 1 : k + 2]) if 0 < k < len(cf) - 1 else 0.0
        self.status = f"ground: {int(mask.sum())} px {source}, best/median cost {contrast:.2f}"
        return math.exp(fine[k] + off * (fine[1] - fine[0]))

    def scale(
        self,
        g: TwoViewGeometry,
        K: np.ndarray,
        prev_depth: np.ndarray,
        plane: PlaneFit | None = None,
        ground: np.ndarray | None = None,
    ) -> float | None:
        """The smoothed translation length for this frame's unit-baseline geometry ``g``, or None
        (no measurement for more than ``hold`` frames). ``plane``: the ground plane of
        ``prev_depth`` (its units) when already fitted; else it is fitted here. ``ground``: the
        previous frame's ground pixels from a segmenter (boolean, any size with the image's
        aspect), used instead of the depth's plane to say which pixels are ground."""
        s = self._measure(g, np.asarray(K, np.float64).reshape(3, 3), prev_depth, plane, ground)
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
