"""DetectionPipeline: image -> boxes in the *input image's* pixels, scores, class ids.

This project's detector (family ``native``) already decodes and runs NMS (fixed number of rows,
empty rows have score 0); a third-party family's raw head is decoded and NMS'd by its decoder
(``perception_nodes.families``: YOLOv8/YOLO11, YOLO-seg's boxes, YOLOX). Then rows are filtered
(score threshold, class filter, max count), rows with non-finite numbers are dropped and counted,
and boxes are mapped back through the letterbox and clipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import Backend
from ..model_card import ModelCard
from .preprocess import Letterbox
from .task_base import CardPipeline

OUTPUTS = ("boxes", "scores", "labels")


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float64 x0, y0, x1, y1 in input-image pixels
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,) int
    class_names: list[str] = field(default_factory=list)
    dropped_nonfinite: int = 0


def make_box_decoder(card: ModelCard) -> Any:
    """The family decoder of a detection-capable card (None: native outputs)."""
    if card.family in ("yolo-detect", "yolo-segment"):
        from ..families.yolo import YoloDecoder

        return YoloDecoder(card)
    if card.family == "yolox":
        from ..families.yolox import YoloxDecoder

        return YoloxDecoder(card)
    if card.family != "native":
        raise ValueError(f"a {card.family} model has no boxes to detect with")
    return None


class DetectionPipeline(CardPipeline):
    task = "detection"

    def __init__(
        self,
        backend: Backend,
        card: ModelCard,
        score_threshold: float = 0.3,
        class_filter: list[str] | None = None,
        max_detections: int = 100,
    ) -> None:
        self.decoder = make_box_decoder(card)
        super().__init__(backend, card, OUTPUTS if self.decoder is None else self.decoder.required_outputs)
        unknown = set(class_filter or []) - set(card.classes)
        if unknown:
            raise ValueError(f"class_filter names {sorted(unknown)}; the model's classes are {card.classes}")
        self.score_threshold, self.max_detections = float(score_threshold), int(max_detections)
        self.allowed = None if not class_filter else np.array([card.classes.index(c) for c in class_filter])

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> Detections:
        return self.detect(outputs, lb, shape)[0]

    def detect(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> tuple[Detections, Any]:
        """The detections and, for a family decoder, its decoded rows in the same order (YOLO-seg:
        the masks' coefficients); None for native outputs."""
        rows = None
        if self.decoder is not None:
            rows = self.decoder.decode(outputs, self.score_threshold, self.max_detections, self.allowed)
            boxes, scores, labels = rows.boxes, rows.scores, rows.labels
        else:
            boxes = np.asarray(outputs["boxes"], np.float64).reshape(-1, 4)
            scores = np.asarray(outputs["scores"], np.float64).reshape(-1)
            labels = np.asarray(outputs["labels"]).reshape(-1).astype(np.int64)
        finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
        dropped = int((~finite & (scores != 0)).sum())
        keep = finite & (scores >= self.score_threshold) & (labels >= 0) & (labels < self.card.num_classes)
        if self.allowed is not None:
            keep &= np.isin(labels, self.allowed)
        idx = np.nonzero(keep)[0]
        idx = idx[np.argsort(-scores[idx], kind="stable")][: self.max_detections]
        h, w = shape
        corners = lb.to_image(boxes[idx].reshape(-1, 2, 2)).reshape(-1, 4)
        corners[:, 0::2] = corners[:, 0::2].clip(0, w)
        corners[:, 1::2] = corners[:, 1::2].clip(0, h)
        ids = labels[idx]
        det = Detections(corners, scores[idx], ids, [self.card.classes[i] for i in ids], dropped)
        return det, (rows.take(idx) if rows is not None else None)


def ground_points(
    boxes: np.ndarray, K: np.ndarray, camera_height: float, pitch_deg: float = 0.0, max_range: float = 200.0
) -> tuple[np.ndarray, np.ndarray]:
    """Where each box's bottom-centre pixel ray meets a flat ground ``camera_height`` metres below
    the camera, which looks ``pitch_deg`` below the horizon (no roll). Returns (N, 3) points in the
    optical frame (x right, y down, z forward) and (N,) validity: false for rays at or above the
    horizon and for points further than ``max_range``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pix = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3], np.ones(len(boxes))], axis=1)
    rays = pix @ np.linalg.inv(np.asarray(K, np.float64).reshape(3, 3)).T
    c, s = np.cos(np.radians(pitch_deg)), np.sin(np.radians(pitch_deg))
    R_level_optical = np.array([[1.0, 0.0, 0.0], [0.0, c, s], [0.0, -s, c]])  # optical -> level (y down)
    level = rays @ R_level_optical.T
    down = level[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(down > 1e-9, camera_height / down, np.nan)
    points = (level * t[:, None]) @ R_level_optical  # back to the optical frame
    valid = np.isfinite(t) & (np.linalg.norm(points, axis=1) <= max_range)
    return np.where(valid[:, None], points, 0.0), valid
