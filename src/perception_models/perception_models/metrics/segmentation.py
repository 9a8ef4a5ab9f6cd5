"""Semantic segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """``matrix[t, p]`` counts pixels of true class t predicted as p; ``ignore_index`` skipped."""

    def __init__(self, num_classes: int, class_names: list[str] | None = None, ignore_index: int = 255) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, target: np.ndarray, prediction: np.ndarray) -> None:
        target = np.asarray(target).reshape(-1).astype(np.int64)
        prediction = np.asarray(prediction).reshape(-1).astype(np.int64)
        if target.shape != prediction.shape:
            raise ValueError(f"target has {target.size} pixels, prediction {prediction.size}")
        keep = target != self.ignore_index
        t, p = target[keep], prediction[keep]
        bad = (t < 0) | (t >= self.num_classes) | (p < 0) | (p >= self.num_classes)
        if bad.any():
            raise ValueError(f"class ids outside 0..{self.num_classes - 1} (and not ignore {self.ignore_index})")
        self.matrix += np.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both target and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def summary(self) -> dict:
        iou = self.iou()
        total = self.matrix.sum()
        return {
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "pixel_accuracy": float(np.trace(self.matrix) / total) if total else float("nan"),
            "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.class_names, iou)},
        }
