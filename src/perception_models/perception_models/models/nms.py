"""Non-maximum suppression that exports to ONNX with static shapes (TensorRT-friendly).

``fast_nms`` (YOLACT's Fast NMS): among the top-k boxes sorted by score, a box is kept when its
IoU with every higher-scoring box of the same class is below the threshold. It is one matrix
operation instead of a loop; unlike greedy NMS, a box suppressed by a higher one can still
suppress lower ones, so it keeps slightly fewer boxes in dense clusters (measured against greedy
``nms_reference`` in tests/models/test_models.py). Classes are kept apart by offsetting boxes per class.
"""

from __future__ import annotations

import torch

from .anchors import box_iou


def fast_nms(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou_threshold: float, max_detections: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """boxes (K, 4), scores (K,), labels (K,) sorted by score (descending) -> exactly
    ``max_detections`` rows; rows past the kept ones have score 0 (and label -1)."""
    k = boxes.shape[0]
    offset = labels.to(boxes.dtype)[:, None] * 4096.0  # classes never overlap after the shift
    iou = box_iou(boxes + offset, boxes + offset)
    upper = torch.triu(iou, diagonal=1)  # iou[i, j] for i < j (i scores higher)
    max_iou = upper.max(dim=0).values
    keep = (max_iou < iou_threshold) & (scores > 0)
    kept_scores = torch.where(keep, scores, torch.zeros_like(scores))
    order = torch.argsort(kept_scores, descending=True)[:max_detections]
    out_scores = kept_scores[order]
    out_boxes = boxes[order]
    out_labels = torch.where(out_scores > 0, labels[order], torch.full_like(labels[order], -1))
    if k < max_detections:  # pad to the fixed size
        pad = max_detections - k
        out_boxes = torch.cat([out_boxes, boxes.new_zeros(pad, 4)])
        out_scores = torch.cat([out_scores, scores.new_zeros(pad)])
        out_labels = torch.cat([out_labels, labels.new_full((pad,), -1)])
    return out_boxes, out_scores, out_labels


def nms_reference(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy NMS (the textbook loop), for tests and offline evaluation."""
    order = torch.argsort(scores, descending=True).tolist()
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        if order:
            ious = box_iou(boxes[i : i + 1], boxes[order])[0]
            order = [j for j, v in zip(order, ious.tolist()) if v < iou_threshold]
    return keep
