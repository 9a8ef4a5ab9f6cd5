"""The detection ground-truth protocol, one definition for every evaluation (numpy only, no torch):
``perception eval`` on recorded bags (tools/evaluation.py), ``perception-models evaluate`` on
stored scenes, and the training set's validation flags (so best.pt is chosen by what the cards
score). Boxes shorter than MIN_HEIGHT pixels, or with fewer than MIN_PIXELS visible pixels, are
ignored: neither a hit nor a miss (COCO's "crowd" treatment)."""

from __future__ import annotations

import numpy as np

MIN_HEIGHT = 16.0
MIN_PIXELS = 64


def ignored_ground_truth(
    boxes: np.ndarray, areas: np.ndarray | None, min_height: float = MIN_HEIGHT, min_pixels: int = MIN_PIXELS
) -> np.ndarray:
    """(G,) bool: the boxes (G, 4) xyxy, in the stored image's pixels, that the protocol ignores;
    ``areas`` are their visible pixels (None or NaN: unknown, which is not small)."""
    area = areas if areas is not None else np.full(len(boxes), np.nan)
    return ((boxes[:, 3] - boxes[:, 1]) < min_height) | (area < min_pixels)
