"""Relative (affine-invariant) depth: Depth Anything V1/V2 and MiDaS give an inverse depth that is
right only up to an unknown scale *and* shift, both changing from frame to frame (MiDaS, Ranftl et
al. 2020: trained with a scale-and-shift-invariant loss). Metric depth needs a metric source per
frame; both are fitted in inverse depth, by least squares with the worst residuals trimmed away
(obstacles on the ground, sky, reflections):

- ``camera_height``: the flat ground the camera stands on. With K, the camera's height h and the
  ground's downward normal n (its mounting), the ground at pixel p has inverse depth (n . K^-1 p) / h;
  pixels in the lower image where the ray meets the ground are fitted to that.
- ``depth_topic``: any metric depth (RGB-D, stereo, lidar projected into the camera) on the pixels
  both have.

Without a source no metric depth is published (only a normalised view)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AffineFit:
    scale: float
    shift: float
    pixels: int  # pixels kept in the final fit
    residual: float  # their RMS residual, inverse metres

    def to_depth(self, relative: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
        """Metric depth (NaN where the fitted inverse depth is not in [1/max, 1/min])."""
        inv = self.scale * np.asarray(relative, np.float32) + np.float32(self.shift)
        ok = np.isfinite(inv) & (inv >= 1.0 / max_depth) & (inv <= 1.0 / min_depth)
        return np.where(ok, 1.0 / np.where(ok, inv, 1.0), np.nan).astype(np.float32)


def fit_scale_shift(
    relative: np.ndarray, target_inverse: np.ndarray, keep: float = 0.7, rounds: int = 3, min_pixels: int = 200
) -> AffineFit | None:
    """``scale * relative + shift ~= target_inverse`` over the finite pairs given (1-D arrays),
    refitted ``rounds`` times on the ``keep`` share with the smallest residuals. None when too few
    pixels are left or the scale comes out <= 0 (the relative map does not grow with closeness)."""
    r = np.asarray(relative, np.float64).ravel()
    y = np.asarray(target_inverse, np.float64).ravel()
    ok = np.isfinite(r) & np.isfinite(y)
    r, y = r[ok], y[ok]
    if len(r) < min_pixels:
        return None
    idx = np.arange(len(r))
    s = t = 0.0
    for i in range(rounds + 1):
        A = np.stack([r[idx], np.ones(len(idx))], 1)
        (s, t), *_ = np.linalg.lstsq(A, y[idx], rcond=None)
        if i == rounds:
            break
        res = np.abs(s * r + t - y)
        n = max(min_pixels, int(keep * len(idx)))
        idx = np.argsort(res)[:n]
    if not (np.isfinite(s) and s > 0):
        return None
    res = s * r[idx] + t - y[idx]
    return AffineFit(float(s), float(t), len(idx), float(np.sqrt(np.mean(res**2))))


def ground_inverse_depth(
    K: np.ndarray, shape: tuple[int, int], camera_height: float, normal_down: np.ndarray, stride: int = 1
) -> np.ndarray:
    """(H, W) (every ``stride``-th pixel) inverse depth of the flat ground ``camera_height`` below
    the camera (``normal_down``: the ground's downward normal in the optical frame); NaN where the
    ray does not meet the ground (above the horizon)."""
    h, w = shape
    v, u = np.mgrid[0:h:stride, 0:w:stride].astype(np.float64)
    Ki = np.linalg.inv(np.asarray(K, np.float64).reshape(3, 3))
    rays = np.stack([u, v, np.ones_like(u)], -1) @ Ki.T  # z = 1
    down = rays @ np.asarray(normal_down, np.float64)
    return np.where(down > 1e-6, down / camera_height, np.nan)


class RelativeDepthScaler:
    """Per frame, the scale + shift that make a relative inverse depth metric (see module doc)."""

    def __init__(
        self,
        source: str,
        camera_height: float = 0.0,
        normal_down: np.ndarray | None = None,
        rows: tuple[float, float] = (0.55, 1.0),
        min_depth: float = 0.1,
        max_depth: float = 80.0,
        max_ground_depth: float = 30.0,
    ) -> None:
        self.source, self.camera_height = source, float(camera_height)
        self.normal = np.array([0.0, 1.0, 0.0]) if normal_down is None else np.asarray(normal_down, np.float64)
        self.rows, self.min_depth, self.max_depth = rows, min_depth, max_depth
        self.max_ground_depth = max_ground_depth
        self.fit: AffineFit | None = None
        self.status = "no metric source" if source not in ("camera_height", "depth_topic") else "no fit yet"

    @property
    def available(self) -> bool:
        return self.source == "depth_topic" or (self.source == "camera_height" and self.camera_height > 0)

    def from_ground(self, relative: np.ndarray, K: np.ndarray, stride: int = 4) -> AffineFit | None:
        h, w = relative.shape
        target = ground_inverse_depth(K, (h, w), self.camera_height, self.normal, stride)
        rel = relative[::stride, ::stride]
        r0 = int(self.rows[0] * h) // stride
        target[:r0] = np.nan
        target[target < 1.0 / self.max_ground_depth] = np.nan  # far ground: too thin a sliver to trust
        fit = fit_scale_shift(rel, target)
        self._set(fit, "ground plane")
        return fit

    def from_reference(self, relative: np.ndarray, reference: np.ndarray, stride: int = 2) -> AffineFit | None:
        if reference.shape != relative.shape:
            import cv2

            reference = cv2.resize(reference, relative.shape[::-1], interpolation=cv2.INTER_NEAREST)
        ref = reference[::stride, ::stride].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = np.where(np.isfinite(ref) & (ref > 0), 1.0 / ref, np.nan)
        fit = fit_scale_shift(relative[::stride, ::stride], inv, keep=0.9)
        self._set(fit, "depth_reference")
        return fit

    def _set(self, fit: AffineFit | None, what: str) -> None:
        if fit is None:
            self.status = f"{what}: no fit this frame (too few usable pixels or a non-positive scale)" + (
                "; using the last fit" if self.fit is not None else ""
            )
        else:
            self.fit = fit
            self.status = (
                f"{what}: scale {fit.scale:.4g} shift {fit.shift:.4g} over {fit.pixels} px (rms {fit.residual:.3g} 1/m)"
            )
