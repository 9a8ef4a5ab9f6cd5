"""RetinaNet-style one-stage detector: backbone -> FPN -> shared class and box towers per level.

Why anchor-based: it keeps the two classic answers to the foreground/background imbalance
comparable on the same network — focal loss over all anchors, or online hard negative mining
(SSD) — which is a comparison this project reports. Decoding and NMS are part of the exported
graph (:class:`DetectorWithPostprocess`), so nodes read final boxes and the output shapes are
fixed for TensorRT.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .anchors import AnchorGenerator, decode, encode, intersection_over_first, match
from .backbone import Backbone, ConvBNAct
from .losses import ohem_bce_loss, sigmoid_focal_loss, smooth_l1
from .neck import FPN
from .nms import fast_nms


class DetectionHead(nn.Module):
    """Class logits (B, N, C) and box deltas (B, N, 4) over all levels' anchors."""

    def __init__(
        self, channels: int, anchors_per_location: int, num_classes: int, depth: int = 2, prior: float = 0.01
    ) -> None:
        super().__init__()
        self.num_classes, self.a = num_classes, anchors_per_location
        self.cls_tower = nn.Sequential(*[ConvBNAct(channels, channels) for _ in range(depth)])
        self.box_tower = nn.Sequential(*[ConvBNAct(channels, channels) for _ in range(depth)])
        self.cls_out = nn.Conv2d(channels, anchors_per_location * num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, anchors_per_location * 4, 3, padding=1)
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))  # start at p = prior
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.zeros_(self.box_out.bias)

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls, box = [], []
        for x in levels:
            b = x.shape[0]
            c = self.cls_out(self.cls_tower(x))  # (B, A*C, h, w) -> (B, h*w*A, C)
            cls.append(c.permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            d = self.box_out(self.box_tower(x))
            box.append(d.permute(0, 2, 3, 1).reshape(b, -1, 4))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)


@dataclass
class DetectorConfig:
    num_classes: int = 6
    input_size: tuple[int, int] = (384, 512)  # H, W of the network input (letterboxed)
    fpn_channels: int = 64
    head_depth: int = 2
    anchor_sizes: tuple[float, ...] = (24.0, 64.0, 160.0)
    loss: str = "focal"  # or "ohem"
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    pre_nms_top_k: int = 300
    max_detections: int = 100


class Detector(nn.Module):
    def __init__(self, cfg: DetectorConfig, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone or Backbone()
        self.neck = FPN(self.backbone.channels, ("s8", "s16", "s32"), cfg.fpn_channels)
        self.anchor_gen = AnchorGenerator((8, 16, 32), cfg.anchor_sizes)
        self.head = DetectionHead(cfg.fpn_channels, self.anchor_gen.per_location, cfg.num_classes, cfg.head_depth)
        self.register_buffer("anchors", self.anchor_gen(cfg.input_size), persistent=False)

    architecture = "retinanet"

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.neck(self.backbone(images)))

    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image -> boxes, scores, labels (see :func:`postprocess`)."""
        return postprocess(*self(images), self.anchors, self.cfg)

    def loss(
        self, cls_logits: torch.Tensor, box_deltas: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """targets[i] = {"boxes": (G, 4) xyxy input pixels, "labels": (G,) long, optional
        "uncertain": (U, 4) boxes a teacher was unsure of}. Anchors mostly inside an uncertain box
        (intersection over the anchor's area >= 0.5) that match no box are left out of the
        classification loss: not taught as background (a teacher's low-confidence box is ignored,
        not treated as background; COCO's crowd regions work the same way). Losses are normalised by
        the number of positive anchors (at least 1)."""
        cls_terms, box_terms, n_pos = [], [], 0
        for logits, deltas, tgt in zip(cls_logits, box_deltas, targets):
            m = match(self.anchors, tgt["boxes"])
            valid = m >= -1
            pos = m >= 0
            unsure = tgt.get("uncertain")
            if unsure is not None and unsure.numel():
                valid &= pos | (intersection_over_first(self.anchors, unsure).max(dim=1).values < 0.5)
            onehot = torch.zeros_like(logits)
            if pos.any():
                onehot[pos, tgt["labels"][m[pos]]] = 1.0
                box_terms.append(smooth_l1(deltas[pos], encode(self.anchors[pos], tgt["boxes"][m[pos]])))
            if self.cfg.loss == "focal":
                cls_terms.append(sigmoid_focal_loss(logits[valid], onehot[valid]))
            elif self.cfg.loss == "ohem":
                cls_terms.append(ohem_bce_loss(logits[valid], onehot[valid]))
            else:
                raise ValueError(f"loss '{self.cfg.loss}' must be 'focal' or 'ohem'")
            n_pos += int(pos.sum())
        norm = max(n_pos, 1)
        cls_loss = torch.stack(cls_terms).sum() / norm
        box_loss = (torch.stack(box_terms).sum() / norm) if box_terms else cls_loss.new_zeros(())
        return {"classification": cls_loss, "box": box_loss, "total": cls_loss + box_loss}


class DetectorWithPostprocess(nn.Module):
    """What gets exported: image -> boxes (B, D, 4) xyxy input pixels, scores (B, D), labels (B, D)
    int32 (-1 and score 0 for empty rows). D = max_detections, fixed."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector  # Detector or anchor_free.AnchorFreeDetector

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.detector.detect(image)


def postprocess(
    cls_logits: torch.Tensor, box_deltas: torch.Tensor, anchors: torch.Tensor, cfg: DetectorConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head outputs -> boxes (B, D, 4), scores (B, D), labels (B, D) int32: top-k, decode, clamp,
    NMS (export-friendly: fixed D rows, empty ones score 0 and label -1). The detector's export and
    the multi-task network's share it."""
    return select_detections(torch.sigmoid(cls_logits), cfg, lambda i, idx: decode(anchors[idx], box_deltas[i, idx]))


def select_detections(
    probs: torch.Tensor, cfg: DetectorConfig, boxes_of: Callable[[int, torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cell (or per-anchor) class probabilities (B, N, C) -> the exported boxes, scores, labels:
    each image's top-k cells by their best class, their boxes from ``boxes_of(image index, cell
    indices)`` (so the anchor detector decodes only the k it keeps), clamped, thresholded, NMS'd."""
    out_b, out_s, out_l = [], [], []
    for i, p in enumerate(probs):
        scores, labels = p.max(dim=1)
        top, idx = torch.topk(scores, min(cfg.pre_nms_top_k, scores.shape[0]))
        b, s, lab = _suppress(boxes_of(i, idx), top, labels[idx], cfg)
        out_b.append(b)
        out_s.append(s)
        out_l.append(lab)
    return torch.stack(out_b), torch.stack(out_s), torch.stack(out_l)


def _suppress(
    boxes: torch.Tensor, top: torch.Tensor, labels: torch.Tensor, cfg: DetectorConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-k's boxes clamped to the input, thresholded, NMS'd to ``max_detections`` rows."""
    h, w = cfg.input_size
    boxes = torch.stack(
        [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], dim=1
    )
    # boxes squeezed to nothing by the image border are not detections
    size_ok = ((boxes[:, 2] - boxes[:, 0]) >= 1.0) & ((boxes[:, 3] - boxes[:, 1]) >= 1.0)
    top = torch.where((top >= cfg.score_threshold) & size_ok, top, torch.zeros_like(top))
    b, s, lab = fast_nms(boxes, top, labels, cfg.nms_iou, cfg.max_detections)
    return b, s, lab.to(torch.int32)
