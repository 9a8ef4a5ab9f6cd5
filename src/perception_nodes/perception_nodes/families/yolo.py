"""Ultralytics YOLOv8 / YOLO11 heads, as ``yolo export format=onnx`` writes them.

Detect: ``output0`` ``[1, 4+nc, N]``: per anchor point cx, cy, w, h in network-input pixels and nc
class scores (sigmoid applied, no objectness), no NMS in the graph: decoded here, then class-aware
NMS (ultralytics' default IoU 0.7). Segment: ``output0`` ``[1, 4+nc+32, N]`` (+ 32 mask
coefficients) and ``output1`` prototypes ``[1, 32, H/4, W/4]``: an instance's mask is
sigmoid(coefficients . prototypes) (YOLACT, Bolya et al. 2019), cut to its box. With ``nms=True``
at export the graph ends in NMS and gives ``[1, K, 6(+32)]`` rows x0 y0 x1 y1 score class
(card ``decode.layout: end2end``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .nms import batched_nms


@dataclass
class Candidates:
    """Decoded boxes before the pipeline's letterbox mapping (network-input pixels)."""

    boxes: np.ndarray  # (N, 4) float64 x0 y0 x1 y1
    scores: np.ndarray  # (N,)
    labels: np.ndarray  # (N,) int64
    coefficients: np.ndarray | None = None  # (N, 32) mask coefficients (segment heads)

    def take(self, idx: np.ndarray) -> Candidates:
        co = None if self.coefficients is None else self.coefficients[idx]
        return Candidates(self.boxes[idx], self.scores[idx], self.labels[idx], co)


def _rows(output: np.ndarray, width: int, what: str) -> np.ndarray:
    """(N, width) rows of a ``[1, width, N]`` or ``[1, N, width]`` head."""
    a = np.asarray(output)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"{what} output has shape {np.shape(output)}; expected [1, {width}, N]")
    if a.shape[0] == width and a.shape[1] != width:
        return a.T
    if a.shape[1] == width:
        return a
    raise ValueError(
        f"{what} output has shape {np.shape(output)}; expected [1, {width}, N] ({width} = 4 + classes + masks)"
    )


def select(
    c: Candidates, iou_threshold: float, max_detections: int, allowed: np.ndarray | None = None, pre_nms: int = 3000
) -> Candidates:
    """The candidates of the ``allowed`` classes (None: all), the ``pre_nms`` best of them, then
    class-aware NMS, best first."""
    if allowed is not None:
        c = c.take(np.nonzero(np.isin(c.labels, allowed))[0])
    if len(c.scores) > pre_nms:
        c = c.take(np.argpartition(-c.scores, pre_nms)[:pre_nms])
    return c.take(batched_nms(c.boxes, c.scores, c.labels, iou_threshold, max_detections))


class YoloDecoder:
    """Card ``decode``: ``output`` (output0), ``prototypes`` (output1, segment only),
    ``mask_coefficients`` (32 / 0), ``layout`` (raw | end2end), ``iou_threshold`` (0.7)."""

    def __init__(self, card: Any) -> None:
        d = card.decode
        self.num_classes = card.num_classes
        self.output = str(d.get("output", "output0"))
        self.num_masks = int(d.get("mask_coefficients", 0))
        self.prototypes = str(d["prototypes"]) if self.num_masks else None
        self.layout = str(d.get("layout", "raw"))
        if self.layout not in ("raw", "end2end"):
            raise ValueError(f"YOLO card decode.layout '{self.layout}' must be raw or end2end")
        self.iou_threshold = float(d.get("iou_threshold", 0.7))

    @property
    def required_outputs(self) -> tuple[str, ...]:
        return (self.output,) + ((self.prototypes,) if self.prototypes else ())

    def candidates(self, outputs: dict[str, np.ndarray], score_threshold: float) -> Candidates:
        nm = self.num_masks
        if self.layout == "end2end":
            a = _rows(outputs[self.output], 6 + nm, "YOLO end2end").astype(np.float64)
            keep = np.isfinite(a[:, :5]).all(1) & (a[:, 4] >= score_threshold)
            a = a[keep]
            return Candidates(a[:, :4], a[:, 4], a[:, 5].astype(np.int64), a[:, 6:] if nm else None)
        a = _rows(outputs[self.output], 4 + self.num_classes + nm, "YOLO")
        cls = a[:, 4 : 4 + self.num_classes]
        labels = cls.argmax(1)
        scores = cls[np.arange(len(a)), labels].astype(np.float64)
        keep = np.nonzero(np.isfinite(scores) & (scores >= score_threshold) & np.isfinite(a[:, :4]).all(1))[0]
        xywh = a[keep, :4].astype(np.float64)
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        co = a[keep, 4 + self.num_classes :].astype(np.float32) if nm else None
        return Candidates(boxes, scores[keep], labels[keep].astype(np.int64), co)

    def decode(
        self,
        outputs: dict[str, np.ndarray],
        score_threshold: float,
        max_detections: int,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        c = self.candidates(outputs, score_threshold)
        if self.layout == "end2end":  # NMS already ran in the graph
            if allowed is not None:
                c = c.take(np.nonzero(np.isin(c.labels, allowed))[0])
            return c.take(np.argsort(-c.scores, kind="stable")[:max_detections])
        return select(c, self.iou_threshold, max_detections, allowed)


def paint_instances(
    coefficients: np.ndarray,
    prototypes: np.ndarray,
    boxes: np.ndarray,
    class_ids: np.ndarray,
    lb: Any,
    input_size: tuple[int, int],
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel class ids (class + 1, 0 = none; uint8) and instance ids (detection index + 1, 0 =
    none; uint16) of the input image (``shape``), from the instances' mask coefficients (K, 32),
    the prototypes ([1,] 32, h, w) and their boxes in input-image pixels. Each mask is sampled
    straight at the image pixels inside its box (the prototypes' grid mapped through the letterbox),
    so it is cut to its box exactly; where masks overlap, the better-scored (earlier) one wins."""
    h, w = shape
    labels = np.zeros((h, w), np.uint8)
    instances = np.zeros((h, w), np.uint16)
    protos = np.asarray(prototypes, np.float32)
    protos = protos.reshape(protos.shape[-3], protos.shape[-2], protos.shape[-1])
    nm, ph, pw = protos.shape
    if len(boxes) == 0:
        return labels, instances
    logits = (np.asarray(coefficients, np.float32).reshape(-1, nm) @ protos.reshape(nm, -1)).reshape(-1, ph, pw)
    sx, sy = input_size[1] / pw, input_size[0] / ph  # network pixels per prototype cell
    for k in range(len(boxes) - 1, -1, -1):  # worst first: the best is painted last
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
        r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
        if c1 <= c0 or r1 <= r0:
            continue
        xs = np.arange(c0, c1, dtype=np.float64) + 0.5
        ys = np.arange(r0, r1, dtype=np.float64) + 0.5
        px = ((xs * lb.scale_x + lb.pad_x) / sx - 0.5).astype(np.float32)
        py = ((ys * lb.scale_y + lb.pad_y) / sy - 0.5).astype(np.float32)
        mx, my = np.meshgrid(px, py)
        patch = cv2.remap(logits[k], mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        inside = ((xs >= x0) & (xs <= x1))[None, :] & ((ys >= y0) & (ys <= y1))[:, None]
        m = (patch > 0) & inside  # sigmoid > 0.5
        labels[r0:r1, c0:c1][m] = int(class_ids[k]) + 1
        instances[r0:r1, c0:c1][m] = k + 1
    return labels, instances
