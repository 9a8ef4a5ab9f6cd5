"""A small residual CNN (ResNet-style basic blocks) sized for CPU training and Jetson inference."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, dilation: int = 1, act: bool = True) -> None:
        pad = dilation * (k - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, k, stride, pad, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(cin, cout, 3, stride)
        self.conv2 = ConvBNAct(cout, cout, 3, 1, act=False)
        self.skip = nn.Identity() if stride == 1 and cin == cout else ConvBNAct(cin, cout, 1, stride, act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.skip(x))


class Backbone(nn.Module):
    """Image (B, in_channels, H, W), normalised -> {"s2", "s4", "s8", "s16", "s32"} feature maps
    (``in_channels`` 6 for the pose network's stacked frame pair)."""

    default_conf = {"widths": (24, 32, 64, 96, 128), "blocks": (1, 2, 2, 2)}

    def __init__(
        self,
        widths: tuple[int, ...] = default_conf["widths"],
        blocks: tuple[int, ...] = default_conf["blocks"],
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBNAct(in_channels, widths[0], 3, 2), ConvBNAct(widths[0], widths[0], 3, 1)
        )  # stride 2
        stages = []
        cin = widths[0]
        for cout, n in zip(widths[1:], blocks):
            stages.append(nn.Sequential(BasicBlock(cin, cout, 2), *[BasicBlock(cout, cout) for _ in range(n - 1)]))
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.channels = {"s2": widths[0], "s4": widths[1], "s8": widths[2], "s16": widths[3], "s32": widths[4]}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        out = {"s2": x}
        for name, stage in zip(("s4", "s8", "s16", "s32"), self.stages):
            x = stage(x)
            out[name] = x
        return out
