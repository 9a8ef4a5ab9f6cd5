"""Keypoints + dense descriptors (SuperPoint-like, DeTone et al. 2018; LIFT for the learned
pipeline) on this project's backbone.

- Detector: stride-8 features -> 65 logits per cell (64 pixel positions + "no keypoint"), softmax,
  depth-to-space -> a full-resolution score *heatmap*.
- Descriptors: stride-8 features -> D channels, L2-normalised (dense, reduced resolution).
- :func:`extract` (inside the exported graph): non-maximum suppression by max-pooling, a fixed top
  k (static shapes for TensorRT), sub-pixel refinement by *soft-argmax* over a small window of the
  heatmap, descriptors *sampled* at the refined positions with ``grid_sample`` (bilinear) — the
  spatial-transformer sampling — and re-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, ConvBNAct


@dataclass
class MatcherConfig:
    input_size: tuple[int, int] = (240, 320)  # H, W, multiples of 8 (the exported graph's fixed size)
    descriptor_dim: int = 64
    top_k: int = 512
    nms_radius: int = 4
    score_threshold: float = 0.02  # above 1/65: a cell with no opinion (uniform softmax) gives no keypoint
    refine_radius: int = 2  # soft-argmax window (2r + 1)^2
    softargmax_temperature: float = 1.0  # 1: the heatmap's centroid in the window; < 1 sharper


class KeypointNet(nn.Module):
    """Image (B, 3, H, W), normalised -> (score logits (B, 65, H/8, W/8), descriptors (B, D, H/8, W/8))."""

    def __init__(self, cfg: MatcherConfig | None = None, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg or MatcherConfig()
        self.backbone = backbone or Backbone(widths=(24, 32, 64, 96, 128), blocks=(1, 2, 2, 1))
        c8 = self.backbone.channels["s8"]
        self.lateral = ConvBNAct(self.backbone.channels["s16"], c8, 1)
        self.det = nn.Sequential(ConvBNAct(c8, 128), nn.Conv2d(128, 65, 1))
        self.desc = nn.Sequential(ConvBNAct(c8, 128), nn.Conv2d(128, self.cfg.descriptor_dim, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.backbone(images)
        x = f["s8"] + F.interpolate(self.lateral(f["s16"]), size=f["s8"].shape[-2:], mode="nearest")
        return self.det(x), F.normalize(self.desc(x), dim=1)


def heatmap(logits: torch.Tensor) -> torch.Tensor:
    """(B, 65, h, w) cell logits -> (B, 1, 8h, 8w) keypoint probability per pixel."""
    prob = torch.softmax(logits, dim=1)[:, :64]
    return F.pixel_shuffle(prob, 8)


def nms(scores: torch.Tensor, radius: int) -> torch.Tensor:
    """Keep local maxima of (B, 1, H, W) within a (2r + 1)^2 window (others set to 0)."""
    pooled = F.max_pool2d(scores, 2 * radius + 1, stride=1, padding=radius)
    return torch.where(scores == pooled, scores, torch.zeros_like(scores))


def soft_argmax_refine(scores: torch.Tensor, xy: torch.Tensor, radius: int, temperature: float) -> torch.Tensor:
    """Sub-pixel keypoints: the soft-argmax of the heatmap in a (2r + 1)^2 window around each integer
    keypoint — the mean offset weighted by softmax(log(score) / temperature), i.e. score^(1/T)
    normalised (T = 1: the window's centroid). scores (B, 1, H, W), xy (B, K, 2) integer pixels."""
    b, _, h, w = scores.shape
    k = 2 * radius + 1
    r = torch.arange(-radius, radius + 1, dtype=scores.dtype, device=scores.device)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    # only the K windows, gathered from the padded map (unfolding every pixel's window first cost
    # 11 ms of ONNX Runtime at 384x512, a sixth of the multi-task network)
    padded = F.pad(scores, (radius,) * 4).flatten(1)  # (B, (H + 2r) (W + 2r))
    xi, yi = xy[..., 0].long() + radius, xy[..., 1].long() + radius  # (B, K), padded coordinates
    idx = (yi[..., None] + dy.reshape(-1).long()) * (w + 2 * radius) + (xi[..., None] + dx.reshape(-1).long())
    win = torch.gather(padded, 1, idx.reshape(b, -1)).reshape(b, -1, k * k)  # (B, K, k*k)
    weights = torch.softmax(torch.log(win.clamp(min=1e-12)) / temperature, dim=-1)
    offset = torch.stack([(weights * dx.reshape(-1)).sum(-1), (weights * dy.reshape(-1)).sum(-1)], dim=-1)
    return xy + offset


def sample_descriptors(desc: torch.Tensor, xy: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Bilinear descriptors at pixel positions: desc (B, D, h, w) at stride s, xy (B, K, 2) in
    input pixels -> (B, K, D), L2-normalised. A descriptor cell c covers pixels 8c .. 8c+7, so its
    centre is pixel 8c + 3.5."""
    h_img, w_img = image_size
    _, _, h, w = desc.shape
    sx, sy = w_img / w, h_img / h
    gx = ((xy[..., 0] + 0.5) / sx - 0.5) / (w - 1) * 2 - 1
    gy = ((xy[..., 1] + 0.5) / sy - 0.5) / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1)[:, :, None]  # (B, K, 1, 2)
    out = F.grid_sample(desc, grid, mode="bilinear", padding_mode="border", align_corners=True)[..., 0]
    return F.normalize(out.transpose(1, 2), dim=-1)


def extract(
    logits: torch.Tensor, desc: torch.Tensor, cfg: MatcherConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Network outputs -> keypoints (B, K, 2) x, y sub-pixel, scores (B, K) (0 for empty slots),
    descriptors (B, K, D); K = cfg.top_k always."""
    scores = heatmap(logits)
    b, _, h, w = scores.shape
    kept = nms(scores, cfg.nms_radius)
    # no keypoints on the outermost cells: their descriptors and refinement windows are clipped
    border = cfg.nms_radius
    inner = torch.ones(1, 1, h - 2 * border, w - 2 * border, dtype=kept.dtype, device=kept.device)
    flat = (kept * F.pad(inner, (border, border, border, border))).reshape(b, -1)
    top, idx = torch.topk(flat, cfg.top_k, dim=1)
    xy = torch.stack([idx % w, torch.div(idx, w, rounding_mode="floor")], dim=-1).to(scores.dtype)
    xy = soft_argmax_refine(scores, xy, cfg.refine_radius, cfg.softargmax_temperature)
    top = torch.where(top >= cfg.score_threshold, top, torch.zeros_like(top))
    return xy, top, sample_descriptors(desc, xy, (h, w))


class KeypointExport(nn.Module):
    """Exported graph: image -> keypoints (1, K, 2), scores (1, K), descriptors (1, K, D)."""

    def __init__(self, net: KeypointNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, desc = self.net(image)
        return extract(logits, desc, self.net.cfg)
