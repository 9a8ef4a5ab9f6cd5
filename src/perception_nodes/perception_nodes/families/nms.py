"""Greedy non-maximum suppression in numpy (the ideas: Neubeck & Van Gool 2006; class-aware by
offsetting each class's boxes so that boxes of different classes never overlap, as torchvision's
batched_nms). Each step compares one kept box with all remaining ones at once."""

from __future__ import annotations

import numpy as np


def box_iou_one(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0 y0 x1 y1 box with (N, 4) boxes."""
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    a = max(0.0, (box[2] - box[0])) * max(0.0, (box[3] - box[1]))
    b = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = a + b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int = 300) -> np.ndarray:
    """Indices of the boxes kept, best score first: a box is dropped when it overlaps a better kept
    one with IoU > ``iou_threshold``."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_keep:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        order = rest[box_iou_one(boxes[i], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, iou_threshold: float, max_keep: int = 300
) -> np.ndarray:
    """:func:`nms` within each class (labels), best score first overall."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    span = float(np.abs(boxes).max()) + 1.0
    shifted = boxes + (np.asarray(labels, np.float64) * 2 * span)[:, None]
    return nms(shifted, scores, iou_threshold, max_keep)
