"""Monocular depth and relative pose networks (Monodepth2's layout on this project's backbone).

- :class:`DepthNet`: backbone -> U-Net decoder with skips at strides 16/8/4/2 -> sigmoid
  disparity at four scales (1, 1/2, 1/4, 1/8 of the input). Depth = 1 / (a + (b - a) disp) between
  ``min_depth`` and ``max_depth`` (:func:`disp_to_depth`).
- :class:`PoseNet`: its own backbone on the stacked frame pair (6 channels) -> 1x1 convolutions ->
  global average -> axis-angle + translation (scaled by 0.01 as in Monodepth2 so training starts
  near the identity). ``PoseNet(a, b)`` predicts ``T_a_b``, the pose of frame b in frame a.
- :class:`DepthExport` / :class:`PoseExport`: what the nodes run (depth in metres; a 4x4 matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone, ConvBNAct
from .geometry import pose_vec_to_matrix


@dataclass
class DepthConfig:
    input_size: tuple[int, int] = (192, 256)  # H, W (multiples of 32)
    min_depth: float = 0.1
    max_depth: float = 100.0
    decoder_widths: tuple[int, ...] = (96, 64, 48, 32, 16)  # at strides 32(in), 16, 8, 4, 2, 1
    scale: float = 1.0  # metric scale applied by DepthExport (1 for supervised / metric training)
    canonical_focal: float = 0.0  # > 0: depth is for this focal length (pixels at input_size), see canonical_factor


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float) -> torch.Tensor:
    """Sigmoid output -> depth; inverse depth is linear in ``disp`` between 1/max and 1/min."""
    lo, hi = 1.0 / max_depth, 1.0 / min_depth
    return 1.0 / (lo + (hi - lo) * disp)


def canonical_factor(K: torch.Tensor, canonical_focal: float) -> torch.Tensor:
    """(B, 1, 1, 1) factors from a canonical camera's depth to that of the cameras ``K`` (B, 3, 3),
    intrinsics at the network's input size: the focal length (geometric mean of fx, fy) over
    ``canonical_focal`` (Metric3D's canonical camera; see perception_nodes.pipelines.depth).
    Ones when ``canonical_focal`` is 0."""
    if canonical_focal <= 0:
        return K.new_ones(K.shape[0], 1, 1, 1)
    return (torch.sqrt(K[:, 0, 0] * K[:, 1, 1]) / canonical_focal).view(-1, 1, 1, 1)


class DepthDecoder(nn.Module):
    """Upsample x2, concatenate the encoder's skip at that stride, 3x3 conv; a disparity head at
    strides 8, 4, 2 and 1 (scales 3..0)."""

    def __init__(self, channels: dict[str, int], widths: tuple[int, ...], stages: int = 5) -> None:
        """``stages`` < 5 stops early: 3 ends at stride 4 (disparity heads at strides 8 and 4 only),
        for a decoder whose finest output is upsampled rather than decoded (the multi-task network)."""
        super().__init__()
        if not 2 <= stages <= 5:
            raise ValueError(f"a depth decoder has 2 to 5 stages, not {stages}")
        skips = ("s16", "s8", "s4", "s2", None)[:stages]
        widths = tuple(widths)[:stages]
        cin = channels["s32"]
        self.skips = skips
        self.reduce = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for skip, w in zip(skips, widths):
            self.reduce.append(ConvBNAct(cin, w))
            self.fuse.append(ConvBNAct(w + (channels[skip] if skip else 0), w))
            cin = w
        # disparity heads after the s8, s4, s2 and s1 stages (indices 1..4)
        self.heads = nn.ModuleDict({str(3 - i): nn.Conv2d(widths[i + 1], 1, 3, padding=1) for i in range(stages - 1)})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[int, torch.Tensor]:
        x = feats["s32"]
        out: dict[int, torch.Tensor] = {}
        for i, (skip, reduce, fuse) in enumerate(zip(self.skips, self.reduce, self.fuse)):
            x = F.interpolate(reduce(x), scale_factor=2.0, mode="nearest")
            if skip:
                x = torch.cat([x, feats[skip]], dim=1)
            x = fuse(x)
            if i >= 1:
                scale = 4 - i
                out[scale] = torch.sigmoid(self.heads[str(scale)](x))
        return out


class DepthNet(nn.Module):
    """Image (B, 3, H, W), normalised -> {scale: disparity (B, 1, H / 2^scale, W / 2^scale)}."""

    def __init__(self, cfg: DepthConfig | None = None, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg or DepthConfig()
        self.backbone = backbone or Backbone()
        self.decoder = DepthDecoder(self.backbone.channels, self.cfg.decoder_widths)

    def forward(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        return self.decoder(self.backbone(images))

    def depth(self, images: torch.Tensor, K: torch.Tensor | None = None) -> torch.Tensor:
        """Full-resolution depth; with ``K`` (intrinsics at the input size) that of those cameras
        when the network predicts for a canonical one (``cfg.canonical_focal``)."""
        d = disp_to_depth(self.forward(images)[0], self.cfg.min_depth, self.cfg.max_depth)
        return d if K is None else d * canonical_factor(K, self.cfg.canonical_focal)


class PoseNet(nn.Module):
    """Frames a, b (B, 3, H, W each, normalised) -> T_a_b (B, 4, 4)."""

    def __init__(self, widths: tuple[int, ...] = (16, 24, 48, 64, 96), blocks: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        super().__init__()
        self.encoder = Backbone(widths, blocks, in_channels=6)
        c = self.encoder.channels["s32"]
        self.head = nn.Sequential(ConvBNAct(c, 128, 1), ConvBNAct(128, 128, 3), nn.Conv2d(128, 6, 1))

    def vector(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, 6): axis-angle (radians) then translation."""
        x = self.head(self.encoder(torch.cat([a, b], dim=1))["s32"])
        return 0.01 * x.mean(dim=(2, 3))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        v = self.vector(a, b)
        return pose_vec_to_matrix(v[:, :3], v[:, 3:])


class DepthExport(nn.Module):
    """Exported graph: image -> depth (B, 1, H, W) in metres (``cfg.scale`` times the network's;
    for the canonical camera when ``cfg.canonical_focal`` is set: the pipeline converts with K)."""

    def __init__(self, net: DepthNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net.depth(image) * self.net.cfg.scale


class PoseExport(nn.Module):
    """Exported graph: (previous, current) images -> T_previous_current (B, 4, 4), translation in
    metres times ``scale`` (the depth network's metric scale, so the two agree)."""

    def __init__(self, net: PoseNet, scale: float = 1.0) -> None:
        super().__init__()
        self.net = net
        self.scale = scale

    def forward(self, previous: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
        T = self.net(previous, current)
        return torch.cat([torch.cat([T[:, :3, :3], T[:, :3, 3:] * self.scale], dim=2), T[:, 3:]], dim=1)
