"""Frame-to-frame keypoint matchers of the feature estimators: ORB (OpenCV) and the learned
keypoints + descriptors of the matching model (mutual nearest neighbours)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


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

    def close(self) -> None:
        """Nothing to release (OpenCV only)."""

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
    between consecutive frames with mutual nearest neighbours, or with ``match_fn`` (a learned
    LightGlue-style matcher); same interface as OrbMatcher."""

    def __init__(self, pipeline: Any, ratio: float = 0.9, match_fn: Any = None) -> None:
        self.pipeline, self.ratio, self.match_fn = pipeline, ratio, match_fn
        self._prev: Any = None

    def reset(self) -> None:
        self._prev = None

    def close(self) -> None:
        """Release the keypoint model's backend and the learned matcher's."""
        self.pipeline.backend.close()
        if self.match_fn is not None:
            self.match_fn.backend.close()

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        from ..matching import mutual_nn_match

        feats = self.pipeline.run(rgb)
        prev, self._prev = self._prev, feats
        if prev is None:
            return None
        if self.match_fn is not None:
            idx, _ = self.match_fn(prev, feats)
        else:
            idx, _ = mutual_nn_match(prev.descriptors, feats.descriptors, self.ratio)
        return (prev.keypoints[idx[:, 0]].astype(np.float64), feats.keypoints[idx[:, 1]].astype(np.float64))
