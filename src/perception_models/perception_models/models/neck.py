"""Feature pyramid network: top-down pathway with lateral 1x1 and smoothing 3x3 convolutions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ConvBNAct


class FPN(nn.Module):
    def __init__(
        self,
        in_channels: dict[str, int],
        levels: tuple[str, ...] = ("s8", "s16", "s32"),
        out: int = 64,
        depthwise: bool = False,
    ) -> None:
        """``depthwise``: smooth with a depthwise 3x3 + pointwise 1x1 (the anchor-free student)."""
        super().__init__()
        self.levels = levels
        self.lateral = nn.ModuleDict({k: nn.Conv2d(in_channels[k], out, 1) for k in levels})
        self.smooth = nn.ModuleDict({k: _smooth(out, depthwise) for k in levels})
        self.out_channels = out

    def forward(self, feats: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        x = self.lateral[self.levels[-1]](feats[self.levels[-1]])
        outs = [self.smooth[self.levels[-1]](x)]
        for k in reversed(self.levels[:-1]):
            lat = self.lateral[k](feats[k])
            x = lat + F.interpolate(x, size=lat.shape[-2:], mode="nearest")
            outs.insert(0, self.smooth[k](x))
        return outs  # finest first, matching ``levels``


def _smooth(c: int, depthwise: bool) -> nn.Module:
    if not depthwise:
        return ConvBNAct(c, c, 3)
    return nn.Sequential(
        nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True), ConvBNAct(c, c, 1)
    )
