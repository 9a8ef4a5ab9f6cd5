"""Anchor-free student detector (FCOS / YOLOX style): depthwise CSP backbone -> FPN with depthwise
smoothing -> one decoupled head shared by the levels (classification | box distances + centre-ness).

Why a second detector (issue 28, item 4): measured side by side on this CPU (ONNX Runtime, 2
threads, network only) the RetinaNet-style :class:`~.detection.Detector` costs 14.6 ms at 384x512
where YOLOX-Nano (0.9 M parameters, anchor-free, depthwise CSP) costs 7.1 ms at 416x416 and sees
real people that ours does not. The student keeps the project's structure (backbone + neck +
head, the same targets and the same exported outputs: boxes, scores, labels after NMS, so the
detection pipeline and node read it unchanged) and changes what costs:

- depthwise-separable convolutions (MobileNet) in CSP stages (CSPNet / YOLOX): a 3x3 depthwise and a
  1x1 pointwise instead of a full 3x3;
- no anchors: every feature-map cell predicts its distances to the four box sides (FCOS), so the
  head has C + 5 outputs per cell instead of 9 x (C + 4);
- decoupled branches (YOLOX): classification and localisation do not share a tower;
- assignment by centre sampling (FCOS): a cell near the centre of a box, on the level whose size
  range holds the box, is positive; the box's centre-ness weights its localisation and multiplies its
  score at inference so off-centre cells rank lower.
The same ignore rule as the anchor detector: cells inside a teacher's low-confidence ("uncertain")
box that are not positive are left out of the classification loss rather than taught background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, ConvBNAct
from .detection import DetectorConfig, select_detections
from .losses import sigmoid_focal_loss
from .neck import FPN

STRIDES = (8, 16, 32)
# box size (longest side, input pixels) each level is responsible for; FCOS's ranges scaled to 384x512
SIZE_RANGES = ((0.0, 64.0), (64.0, 160.0), (160.0, math.inf))
CENTRE_RADIUS = 1.5  # centre sampling: cells within this many strides of a box's centre


class DWConv(nn.Sequential):
    """Depthwise k x k then pointwise 1x1, each with BatchNorm and ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, k, stride, k // 2, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            ConvBNAct(cin, cout, 1),
        )


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(c, c, 1), DWConv(c, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class CSPStage(nn.Module):
    """Cross-stage partial stage: half the channels go through ``n`` bottlenecks, the other half
    around them; a 1x1 fuses both."""

    def __init__(self, cin: int, cout: int, n: int) -> None:
        super().__init__()
        half = cout // 2
        self.main = nn.Sequential(ConvBNAct(cin, half, 1), *[Bottleneck(half) for _ in range(n)])
        self.short = ConvBNAct(cin, half, 1)
        self.fuse = ConvBNAct(2 * half, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.main(x), self.short(x)], dim=1))


class LightBackbone(nn.Module):
    """Image (B, 3, H, W) -> {"s2" ... "s32"}, as :class:`~.backbone.Backbone`, from a full 3x3 stem
    and depthwise CSP stages (each: a stride-2 depthwise-separable convolution, then a CSP stage)."""

    # 0.49 M parameters with the head; 13.3 ms at 384x512 where YOLOX-Nano takes 14.2 ms at 416x416
    # (ONNX Runtime, one CPU thread, network + NMS; docs/model-history.md has the 2-thread table)
    default_conf = {"widths": (24, 48, 96, 192, 256), "blocks": (1, 2, 3, 1)}

    def __init__(
        self,
        widths: tuple[int, ...] = default_conf["widths"],
        blocks: tuple[int, ...] = default_conf["blocks"],
    ) -> None:
        super().__init__()
        self.stem = ConvBNAct(3, widths[0], 3, 2)
        self.stages = nn.ModuleList(
            nn.Sequential(DWConv(cin, cout, 3, 2), CSPStage(cout, cout, n))
            for cin, cout, n in zip(widths[:-1], widths[1:], blocks)
        )
        self.channels = dict(zip(("s2", "s4", "s8", "s16", "s32"), widths))

    forward = Backbone.forward  # stem, then the stages: {"s2": ..., "s32": ...}


class DecoupledHead(nn.Module):
    """Per cell: class logits (C) and, on a separate branch, box side distances (4, in strides,
    made non-negative by a ReLU, FCOS's normalised regression) and a centre-ness logit. Shared by
    the levels, with a learned scale per level for the distances."""

    def __init__(self, channels: int, num_classes: int, levels: int, prior: float = 0.01) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_branch = nn.Sequential(DWConv(channels, channels), DWConv(channels, channels))
        self.box_branch = nn.Sequential(DWConv(channels, channels), DWConv(channels, channels))
        self.cls_out = nn.Conv2d(channels, num_classes, 1)
        self.box_out = nn.Conv2d(channels, 4, 1)
        self.ctr_out = nn.Conv2d(channels, 1, 1)
        self.scales = nn.Parameter(torch.ones(levels))
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - prior) / prior))
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.constant_(self.box_out.bias, 1.0)  # start as a box two strides wide around the cell
        nn.init.normal_(self.ctr_out.weight, std=0.01)
        nn.init.zeros_(self.ctr_out.bias)

    def forward(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        cls, box = [], []
        for i, x in enumerate(levels):
            b = x.shape[0]
            cls.append(self.cls_out(self.cls_branch(x)).flatten(2).transpose(1, 2))  # (B, h*w, C)
            r = self.box_branch(x)
            dist = F.relu(self.box_out(r) * self.scales[i])
            box.append(torch.cat([dist, self.ctr_out(r)], dim=1).reshape(b, 5, -1).transpose(1, 2))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1)


def cell_centres(input_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (N, 2) x, y in input pixels of every level's cells (finest level first, row-major, the
    head's order) and each cell's stride (N,)."""
    h, w = input_size
    centres, strides = [], []
    for s in STRIDES:
        ys = (torch.arange(math.ceil(h / s), dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(math.ceil(w / s), dtype=torch.float32) + 0.5) * s
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
        centres.append(torch.stack([cx, cy], dim=-1).reshape(-1, 2))
        strides.append(torch.full((cx.numel(),), float(s)))
    return torch.cat(centres), torch.cat(strides)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - generalised IoU of matching rows of two (N, 4) xyxy sets, per row."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    area_p = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(dim=1)
    area_t = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(dim=1)
    union = (area_p + area_t - inter).clamp(min=1e-6)
    hull = (torch.maximum(pred[:, 2:], target[:, 2:]) - torch.minimum(pred[:, :2], target[:, :2])).prod(dim=1)
    return 1 - inter / union + (hull - union) / hull.clamp(min=1e-6)


def assign(centres: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the box each cell learns (-1: background) and the cell's distances to that box's
    sides (N, 4). A cell is positive for a box when it lies inside the box, within CENTRE_RADIUS
    strides of its centre, on the level whose SIZE_RANGES holds the box's longest side; a cell
    claimed by several boxes takes the smallest (FCOS)."""
    n = centres.shape[0]
    if boxes.numel() == 0:
        return torch.full((n,), -1, dtype=torch.long, device=centres.device), centres.new_zeros(n, 4)
    x, y = centres[:, 0:1], centres[:, 1:2]
    dist = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], dim=-1)  # (N, G, 4)
    inside = dist.min(dim=-1).values > 0
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    r = CENTRE_RADIUS * strides[:, None]
    near = ((x - cx).abs() < r) & ((y - cy).abs() < r)
    side = (boxes[:, 2:] - boxes[:, :2]).max(dim=1).values  # (G,)
    lo = torch.tensor([r[0] for r in SIZE_RANGES], device=centres.device)
    hi = torch.tensor([r[1] for r in SIZE_RANGES], device=centres.device)
    level = torch.bucketize(strides, torch.tensor(STRIDES, dtype=strides.dtype, device=centres.device))
    in_range = (side[None] >= lo[level][:, None]) & (side[None] < hi[level][:, None])
    ok = inside & near & in_range
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    cost = torch.where(ok, area[None].expand(n, -1), torch.full_like(dist[..., 0], math.inf))
    best_cost, best = cost.min(dim=1)
    out = torch.where(torch.isfinite(best_cost), best, torch.full_like(best, -1))
    # a box left without a cell (smaller than its level's cell spacing, or every cell taken by a
    # smaller box) gets the free cell of its level nearest its centre, else the nearest one
    nearest = torch.where(in_range, (x - cx) ** 2 + (y - cy) ** 2, torch.full_like(dist[..., 0], math.inf))
    claimed = torch.zeros(boxes.shape[0], dtype=torch.bool, device=centres.device)
    claimed[out[out >= 0]] = True
    for g in torch.nonzero(~claimed).flatten().tolist():
        free = torch.where(out < 0, nearest[:, g], torch.full_like(nearest[:, g], math.inf))
        out[int((free if torch.isfinite(free).any() else nearest[:, g]).argmin())] = g
    pos = out >= 0
    targets = centres.new_zeros(n, 4)
    targets[pos] = dist[pos, out[pos]].clamp(min=0)
    return out, targets


def centreness(dist: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness of side distances (N, 4): sqrt(min(l, r)/max(l, r) * min(t, b)/max(t, b))."""
    lr, tb = dist[:, [0, 2]], dist[:, [1, 3]]
    return torch.sqrt(
        (lr.min(dim=1).values / lr.max(dim=1).values.clamp(min=1e-6))
        * (tb.min(dim=1).values / tb.max(dim=1).values.clamp(min=1e-6))
    )


def distances_to_boxes(centres: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """Cell centres (N, 2) and side distances (..., N, 4) in pixels -> boxes (..., N, 4) xyxy."""
    return torch.cat([centres - dist[..., :2], centres + dist[..., 2:]], dim=-1)


class AnchorFreeDetector(nn.Module):
    """Same interface as :class:`~.detection.Detector`: ``forward`` gives (class logits (B, N, C),
    box outputs (B, N, 5)), ``loss`` takes the detection targets, ``detect`` gives the exported
    boxes, scores, labels."""

    architecture = "anchor_free"

    def __init__(self, cfg: DetectorConfig, backbone: LightBackbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone or LightBackbone()
        self.neck = FPN(self.backbone.channels, ("s8", "s16", "s32"), cfg.fpn_channels, depthwise=True)
        self.head = DecoupledHead(cfg.fpn_channels, cfg.num_classes, len(STRIDES))
        centres, strides = cell_centres(cfg.input_size)
        self.register_buffer("centres", centres, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.neck(self.backbone(images)))

    def loss(
        self, cls_logits: torch.Tensor, box_out: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Focal loss over the cells (uncertain ones left out), GIoU of the positives' boxes weighted
        by their centre-ness target, binary cross-entropy of the centre-ness; normalised by the
        number of positives (at least 1)."""
        cls_terms, box_terms, ctr_terms, n_pos, ctr_sum = [], [], [], 0, 0.0
        for logits, out, tgt in zip(cls_logits, box_out, targets):
            idx, dist_t = assign(self.centres, self.strides, tgt["boxes"])
            pos = idx >= 0
            valid = torch.ones_like(pos)
            unsure = tgt.get("uncertain")
            if unsure is not None and unsure.numel():
                x, y = self.centres[:, 0:1], self.centres[:, 1:2]
                in_unsure = ((x > unsure[:, 0]) & (y > unsure[:, 1]) & (x < unsure[:, 2]) & (y < unsure[:, 3])).any(1)
                valid = pos | ~in_unsure
            onehot = torch.zeros_like(logits)
            if pos.any():
                onehot[pos, tgt["labels"][idx[pos]]] = 1.0
                stride = self.strides[pos, None]
                pred = distances_to_boxes(self.centres[pos], out[pos, :4] * stride)
                true = distances_to_boxes(self.centres[pos], dist_t[pos])
                ctr = centreness(dist_t[pos])
                box_terms.append((giou_loss(pred, true) * ctr).sum())
                ctr_terms.append(F.binary_cross_entropy_with_logits(out[pos, 4], ctr, reduction="sum"))
                ctr_sum += float(ctr.detach().sum())
            cls_terms.append(sigmoid_focal_loss(logits[valid], onehot[valid]))
            n_pos += int(pos.sum())
        norm = max(n_pos, 1)
        cls_loss = torch.stack(cls_terms).sum() / norm
        zero = cls_loss.new_zeros(())
        box_loss = torch.stack(box_terms).sum() / max(ctr_sum, 1e-6) if box_terms else zero
        ctr_loss = torch.stack(ctr_terms).sum() / norm if ctr_terms else zero
        return {"classification": cls_loss, "box": box_loss, "centreness": ctr_loss,
                "total": cls_loss + box_loss + ctr_loss}  # fmt: skip

    def detect(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image -> boxes (B, D, 4) xyxy input pixels, scores (B, D), labels (B, D) int32: score =
        sqrt(class probability x centre-ness), then the anchor detector's top-k and NMS."""
        cls_logits, box_out = self(images)
        probs = torch.sqrt(torch.sigmoid(cls_logits) * torch.sigmoid(box_out[..., 4:5]))
        boxes = distances_to_boxes(self.centres, box_out[..., :4] * self.strides[:, None])
        return select_detections(probs, self.cfg, lambda i, idx: boxes[i, idx])
