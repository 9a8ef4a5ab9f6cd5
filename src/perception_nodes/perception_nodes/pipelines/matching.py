"""Feature matching without ROS: the keypoint model's pipeline (resize, normalise, run, keypoints
back to input pixels) and a vectorised mutual-nearest-neighbour matcher with Lowe's ratio test.

Why no learned matcher (SuperGlue / LightGlue) here: on these 2-core CPUs and with <= 512 keypoints
a mutual-NN + ratio matcher costs < 2 ms per pair; a small attention matcher (LightGlue with 9
layers at 64 dims) would cost tens of ms on CPU and needs its own training on many pairs. It
pays off on GPUs and on wide baselines; the node's matcher is a swappable function.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends import Backend
from ..model_card import ModelCard
from .preprocess import Letterbox
from .task_base import CardPipeline

OUTPUTS = ("keypoints", "scores", "descriptors")


@dataclass
class Features:
    keypoints: np.ndarray    # (N, 2) float32 x, y in input-image pixels
    scores: np.ndarray       # (N,) float32
    descriptors: np.ndarray  # (N, D) float32, unit length


def mutual_nn_match(desc_a: np.ndarray, desc_b: np.ndarray, ratio: float = 0.9, min_similarity: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (M, 2) and their cosine similarities (M,): i in A and j in B that are each
    other's nearest neighbour, with the best at least ``1/ratio`` times closer (in squared distance)
    than the second best on A's side."""
    if len(desc_a) == 0 or len(desc_b) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    sim = desc_a @ desc_b.T
    nn_ab = sim.argmax(1)
    nn_ba = sim.argmax(0)
    i = np.arange(len(desc_a))
    mutual = nn_ba[nn_ab] == i
    best = sim[i, nn_ab]
    if ratio < 1.0 and sim.shape[1] > 1:
        second = np.partition(sim, -2, axis=1)[:, -2]
        d1, d2 = 2 - 2 * best, 2 - 2 * second
        mutual &= d1 <= (ratio ** 2) * d2
    mutual &= best >= min_similarity
    idx = np.nonzero(mutual)[0]
    return np.stack([idx, nn_ab[idx]], axis=1), best[idx].astype(np.float32)


class MatchingPipeline(CardPipeline):
    task = "matching"

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        super().__init__(backend, card, OUTPUTS)
        if card.resize != "stretch":
            raise ValueError(f"matching model card says resize '{card.resize}'; keypoint models run on stretched frames")

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> Features:
        kp = np.asarray(outputs["keypoints"], np.float32).reshape(-1, 2)
        sc = np.asarray(outputs["scores"], np.float32).reshape(-1)
        de = np.asarray(outputs["descriptors"], np.float32).reshape(len(sc), -1)
        ok = (sc > 0) & np.isfinite(kp).all(1) & np.isfinite(de).all(1)
        xy = lb.to_image(kp[ok] + 0.5) - 0.5  # network pixel centres -> input pixel centres
        return Features(xy.astype(np.float32), sc[ok], de[ok])
