"""SegmentationPipeline: image -> class-id map of the *input image's* size (nearest neighbour),
plus a colour overlay from the card's palette."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..backends import Backend
from ..model_card import ModelCard
from .preprocess import Letterbox
from .task_base import CardPipeline

OUTPUTS = ("labels",)


@dataclass
class Segmentation:
    labels: np.ndarray  # (H, W) uint8 class ids of the input image
    invalid_pixels: int = 0  # network labels outside the card's classes (set to 0)


def default_colors(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    return rng.integers(0, 256, (n, 3)).astype(np.uint8)


class SegmentationPipeline(CardPipeline):
    task = "segmentation"

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        super().__init__(backend, card, OUTPUTS)
        if card.num_classes > 255:
            raise ValueError(f"{card.num_classes} classes do not fit a mono8 label image")
        colors = np.asarray(card.colors, np.uint8).reshape(-1, 3) if card.colors else default_colors(card.num_classes)
        if len(colors) < card.num_classes:
            colors = np.vstack([colors, default_colors(card.num_classes)[len(colors) :]])
        self.colors = colors

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> Segmentation:
        net = np.asarray(outputs["labels"]).reshape(self.card.input_height, self.card.input_width)
        bad = (net < 0) | (net >= self.card.num_classes)
        net = np.where(bad, 0, net).astype(np.uint8)
        h, w = shape
        # the part of the network input that holds the image (letterbox padding cut away)
        x0, y0 = int(round(lb.pad_x)), int(round(lb.pad_y))
        x1, y1 = x0 + int(round(w * lb.scale_x)), y0 + int(round(h * lb.scale_y))
        crop = net[y0:y1, x0:x1]
        labels = cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST) if crop.shape != (h, w) else crop
        return Segmentation(np.ascontiguousarray(labels), int(bad.sum()))

    def overlay(self, rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        colour = self.colors[labels]
        return (rgb.astype(np.float32) * (1 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)
