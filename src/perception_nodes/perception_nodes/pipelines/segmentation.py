"""SegmentationPipeline: image -> class-id map of the *input image's* size (nearest neighbour),
plus a colour overlay from the card's palette.

This project's segmenter (family ``native``) gives per-pixel class ids. A YOLO-seg model
(``yolo-segment``) gives instances: its boxes go through the detection decoder (NMS) and each
instance's mask is cut to its box (``families.yolo.paint_instances``); the class map then holds
class + 1 for the thing classes (0 = none: "background" in :attr:`label_names`), an instance id
image goes with it, and the same inference's detections are returned too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..backends import Backend
from ..model_card import ModelCard
from .preprocess import Letterbox
from .task_base import CardPipeline

OUTPUTS = ("labels",)


@dataclass
class Segmentation:
    labels: np.ndarray  # (H, W) uint8 class ids of the input image (indices of SegmentationPipeline.label_names)
    invalid_pixels: int = 0  # network labels outside the card's classes (set to 0)
    instances: np.ndarray | None = None  # (H, W) uint16 instance ids (detection index + 1, 0 = none)
    detections: Any = None  # instance models: the Detections of the same inference


def default_colors(n: int) -> np.ndarray:
    rng = np.random.default_rng(12345)
    return rng.integers(0, 256, (n, 3)).astype(np.uint8)


GROUND = "ground"  # the class of the surface the robot stands on (road, pavement, floor)


class SegmentationPipeline(CardPipeline):
    task = "segmentation"

    def ground_class(self) -> int:
        """The class id of :data:`GROUND` (the hybrid odometry's ground, the ground prior of the
        depth reference); ValueError naming the classes when the model has none."""
        if GROUND not in self.label_names:
            raise ValueError(f"the segmenter has no '{GROUND}' class among {self.label_names}")
        return self.label_names.index(GROUND)

    def __init__(
        self, backend: Backend, card: ModelCard, score_threshold: float = 0.25, max_instances: int = 100
    ) -> None:
        self.detector = None
        self.label_names = list(card.classes)
        required: tuple[str, ...] = OUTPUTS
        if card.family == "yolo-segment":
            from .detection import DetectionPipeline

            self.detector = DetectionPipeline(backend, card, score_threshold, None, max_instances)
            required = self.detector.decoder.required_outputs
            self.label_names = ["background"] + list(card.classes)
        elif card.family != "native":
            raise ValueError(f"a {card.family} model does not segment")
        super().__init__(backend, card, required)
        n = len(self.label_names)
        if n > 255:
            raise ValueError(f"{n} classes do not fit a mono8 label image")
        colors = np.asarray(card.colors, np.uint8).reshape(-1, 3) if card.colors else default_colors(n)
        if len(colors) < n:
            colors = np.vstack([colors, default_colors(n)[len(colors) :]])
        if self.detector is not None and not card.colors:
            colors[0] = 0  # no instance: the image shows through the overlay unchanged (see overlay)
        self.colors = colors
        # class id -> colour as an OpenCV lookup table (overlay), built once
        self._lut = np.zeros((256, 1, 3), np.uint8)
        self._lut[: len(colors), 0] = colors[:256]

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> Segmentation:
        if self.detector is not None:
            from ..families.yolo import paint_instances

            det, rows = self.detector.detect(outputs, lb, shape)
            labels, instances = paint_instances(
                rows.coefficients,
                outputs[self.detector.decoder.prototypes],
                det.boxes,
                det.class_ids,
                lb,
                (self.card.input_height, self.card.input_width),
                shape,
            )
            return Segmentation(labels, 0, instances, det)
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
        """The image blended with each pixel's class colour (``alpha`` of the colour). OpenCV's
        table lookup and blend (rounded): a twelfth of NumPy's fancy indexing and float blend at VGA."""
        ids = np.ascontiguousarray(labels, np.uint8)  # mono8 class ids (< 256 classes, see __init__)
        colour = cv2.LUT(cv2.merge([ids, ids, ids]), self._lut)
        out = cv2.addWeighted(np.ascontiguousarray(rgb), 1 - alpha, colour, alpha, 0.0)
        if self.detector is not None:  # instance models: pixels of no instance keep the image
            out[labels == 0] = rgb[labels == 0]
        return out
