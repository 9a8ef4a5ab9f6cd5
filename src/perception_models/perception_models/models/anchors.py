"""Anchors on the pyramid levels, IoU matching and box coding (RetinaNet deltas: dx, dy relative
to the anchor size, log dw, log dh; unit weights, as torchvision's RetinaNet - Faster R-CNN's
(10, 10, 5, 5) made the box loss outweigh the focal loss about 6 to 1 here)."""

from __future__ import annotations

import math

import torch

BBOX_CLIP = math.log(1000.0 / 16)


class AnchorGenerator:
    """``sizes[l]`` x ``scales`` x ``ratios`` anchors per location of level l (stride ``strides[l]``),
    centred on (x + 0.5) * stride; boxes are (x0, y0, x1, y1) in input pixels, ordered level ->
    row -> column -> anchor, the order the detection head flattens its outputs in."""

    def __init__(
        self,
        strides: tuple[int, ...] = (8, 16, 32),
        sizes: tuple[float, ...] = (24.0, 64.0, 160.0),
        scales: tuple[float, ...] = (1.0, 1.6),
        ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
    ) -> None:
        self.strides, self.sizes, self.scales, self.ratios = strides, sizes, scales, ratios

    @property
    def per_location(self) -> int:
        return len(self.scales) * len(self.ratios)

    def cell_anchors(self, size: float) -> torch.Tensor:
        out = []
        for s in self.scales:
            for r in self.ratios:  # r = h / w
                area = (size * s) ** 2
                w = math.sqrt(area / r)
                h = w * r
                out.append([-w / 2, -h / 2, w / 2, h / 2])
        return torch.tensor(out, dtype=torch.float32)

    def __call__(self, image_size: tuple[int, int]) -> torch.Tensor:
        """All anchors (N, 4) for an input of (H, W) pixels."""
        H, W = image_size
        all_anchors = []
        for stride, size in zip(self.strides, self.sizes):
            fh, fw = math.ceil(H / stride), math.ceil(W / stride)
            ys = (torch.arange(fh, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(fw, dtype=torch.float32) + 0.5) * stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)
            all_anchors.append((centres + self.cell_anchors(size)[None]).reshape(-1, 4))
        return torch.cat(all_anchors)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def intersection_over_first(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M): the share of each box of ``a`` that lies inside each box of ``b``."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    return (rb - lt).clamp(min=0).prod(dim=-1) / area_a[:, None].clamp(min=1e-9)


def match(anchors: torch.Tensor, gt_boxes: torch.Tensor, pos_iou: float = 0.5, neg_iou: float = 0.4) -> torch.Tensor:
    """Index of the matched ground truth per anchor; -1 background, -2 ignored (between thresholds).
    Every ground truth also gets its best anchor (so small objects are not left without one)."""
    n = anchors.shape[0]
    if gt_boxes.numel() == 0:
        return torch.full((n,), -1, dtype=torch.long, device=anchors.device)
    iou = box_iou(anchors, gt_boxes)  # (N, G)
    best_iou, best_gt = iou.max(dim=1)
    out = torch.full((n,), -2, dtype=torch.long, device=anchors.device)
    out[best_iou < neg_iou] = -1
    pos = best_iou >= pos_iou
    out[pos] = best_gt[pos]
    best_per_gt, best_anchor = iou.max(dim=0)
    has = best_per_gt > 0  # a ground truth overlapping no anchor at all gets none
    out[best_anchor[has]] = torch.arange(gt_boxes.shape[0], device=anchors.device)[has]
    return out


def encode(
    anchors: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Boxes relative to anchors: (dx, dy, dw, dh) scaled by ``weights``."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3), (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    wx, wy, ww, wh = weights
    return torch.stack(
        [wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)], dim=-1
    )


def decode(
    anchors: torch.Tensor, deltas: torch.Tensor, weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
) -> torch.Tensor:
    """Inverse of :func:`encode`; ``deltas`` (..., N, 4) broadcast against anchors (N, 4)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    wx, wy, ww, wh = weights
    dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
    dw = (deltas[..., 2] / ww).clamp(max=BBOX_CLIP)
    dh = (deltas[..., 3] / wh).clamp(max=BBOX_CLIP)
    cx, cy = ax + dx * aw, ay + dy * ah
    w, h = aw * torch.exp(dw), ah * torch.exp(dh)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)
