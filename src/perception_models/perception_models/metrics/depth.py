"""Depth accuracy with the KITTI (Eigen split) conventions: errors over pixels whose ground truth is
finite and in [min_depth, max_depth], predictions clamped to the same range, averaged per image
then over images. Up-to-scale predictions are evaluated *median-scaled* (each image's prediction
times median(gt) / median(pred)); metric ones both ways — the absolute numbers are what a robot
gets, the median-scaled ones compare the shape with self-supervised methods."""

from __future__ import annotations

import numpy as np

KEYS = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def depth_errors(
    gt: np.ndarray, pred: np.ndarray, min_depth: float = 0.1, max_depth: float = 80.0, median_scaling: bool = False
) -> dict[str, float] | None:
    """One image's errors (None if it has no valid ground truth). ``a1..a3``: share of pixels with
    max(gt/pred, pred/gt) < 1.25, 1.25², 1.25³. ``scale``: the median ratio applied (1 if not)."""
    gt = np.asarray(gt, np.float64)
    pred = np.asarray(pred, np.float64)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} differ in shape")
    valid = np.isfinite(gt) & (gt >= min_depth) & (gt <= max_depth) & np.isfinite(pred) & (pred > 0)
    if not valid.any():
        return None
    g, p = gt[valid], pred[valid]
    scale = float(np.median(g) / np.median(p)) if median_scaling else 1.0
    p = np.clip(p * scale, min_depth, max_depth)
    ratio = np.maximum(g / p, p / g)
    return {
        "abs_rel": float(np.mean(np.abs(g - p) / g)),
        "sq_rel": float(np.mean((g - p) ** 2 / g)),
        "rmse": float(np.sqrt(np.mean((g - p) ** 2))),
        "rmse_log": float(np.sqrt(np.mean((np.log(g) - np.log(p)) ** 2))),
        "a1": float(np.mean(ratio < 1.25)),
        "a2": float(np.mean(ratio < 1.25**2)),
        "a3": float(np.mean(ratio < 1.25**3)),
        "scale": scale,
    }


class DepthEvaluator:
    """Accumulates per-image errors, absolute and median-scaled."""

    def __init__(self, min_depth: float = 0.1, max_depth: float = 80.0) -> None:
        self.min_depth, self.max_depth = min_depth, max_depth
        self.absolute: list[dict[str, float]] = []
        self.median_scaled: list[dict[str, float]] = []

    def add(self, gt: np.ndarray, pred: np.ndarray) -> dict[str, float] | None:
        """Adds one image; returns its absolute errors (None when it has no valid ground truth)."""
        a = depth_errors(gt, pred, self.min_depth, self.max_depth, median_scaling=False)
        m = depth_errors(gt, pred, self.min_depth, self.max_depth, median_scaling=True)
        if a is None or m is None:
            return None
        self.absolute.append(a)
        self.median_scaled.append(m)
        return a

    def summary(self) -> dict:
        def mean(rows: list[dict[str, float]]) -> dict[str, float]:
            return {k: float(np.mean([r[k] for r in rows])) for k in KEYS} if rows else {k: float("nan") for k in KEYS}

        scales = [r["scale"] for r in self.median_scaled]
        return {
            "images": len(self.absolute),
            "depth_range": [self.min_depth, self.max_depth],
            "absolute": mean(self.absolute),
            "median_scaled": mean(self.median_scaled),
            # a spread of the median scales near 0 means the network's scale is consistent
            "median_scale": float(np.median(scales)) if scales else float("nan"),
            "median_scale_std": float(np.std(scales) / np.median(scales)) if scales else float("nan"),
        }
