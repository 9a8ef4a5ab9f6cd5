"""LightGlue-style learned matchers (Lindenberger et al. 2023; LightGlue-ONNX, XFeat's LighterGlue):
inputs ``kpts0``/``kpts1`` [1, N, 2] normalised to the image as ``(k - [W/2, H/2]) / (max(W, H)/2)``
and ``desc0``/``desc1`` [1, N, D] unit descriptors; outputs ``matches`` [M, 2] index pairs and
``scores`` [M] (filtered inside the graph). An optional replacement for the mutual-nearest-neighbour
matcher of the matching node and the ``pnp_learned`` odometry."""

from __future__ import annotations

from typing import Any

import numpy as np


def normalise_keypoints(kp: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """LightGlue's convention: image centre at 0, the longer side spanning [-1, 1]."""
    h, w = size
    return ((np.asarray(kp, np.float32) - np.float32([w / 2, h / 2])) / np.float32(max(w, h) / 2)).astype(np.float32)


class LightGlueMatcher:
    def __init__(self, backend: Any, card: Any, min_score: float = 0.0) -> None:
        names = {s.name for s in backend.inputs}
        d = card.decode
        self.kpts = list(d.get("keypoints", ["kpts0", "kpts1"]))
        self.desc = list(d.get("descriptors", ["desc0", "desc1"]))
        missing = set(self.kpts + self.desc) - names
        if missing:
            raise ValueError(
                f"matcher model inputs {sorted(names)} lack {sorted(missing)}: not a LightGlue-style matcher"
            )
        outs = {s.name for s in backend.outputs}
        if not {"matches", "scores"} <= outs:
            raise ValueError(f"matcher model outputs {sorted(outs)}; a LightGlue-style matcher gives matches, scores")
        self.backend, self.card, self.min_score = backend, card, float(min_score)

    def __call__(self, a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (M, 2) into a's and b's keypoints and their scores (M,); Features ``a``/``b``
        carry their image sizes (``image_size``)."""
        if len(a.keypoints) < 2 or len(b.keypoints) < 2:
            return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
        feeds = {
            self.kpts[0]: normalise_keypoints(a.keypoints, a.image_size)[None],
            self.kpts[1]: normalise_keypoints(b.keypoints, b.image_size)[None],
            self.desc[0]: np.ascontiguousarray(a.descriptors, np.float32)[None],
            self.desc[1]: np.ascontiguousarray(b.descriptors, np.float32)[None],
        }
        out = self.backend.infer(feeds)
        pairs = np.asarray(out["matches"], np.int64).reshape(-1, 2)
        scores = np.asarray(out["scores"], np.float32).reshape(-1)
        ok = (
            (pairs[:, 0] >= 0)
            & (pairs[:, 0] < len(a.keypoints))
            & (pairs[:, 1] >= 0)
            & (pairs[:, 1] < len(b.keypoints))
            & (scores >= self.min_score)
        )
        return pairs[ok], scores[ok]
