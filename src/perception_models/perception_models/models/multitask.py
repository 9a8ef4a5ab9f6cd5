"""One network, four tasks: a shared backbone with per-task spatial attention (MTAN: Liu, Johns and
Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019) feeding the same heads the
single-task models use.

    image -> Backbone (s2 ... s32, computed once)
          -> per task t and scale s: feature_s * sigmoid(mask_t,s(feature_s))     (attention=True)
          -> detection:    FPN(s8, s16, s32) -> DetectionHead (anchors, focal loss)  = models/detection.py
             segmentation: SegmentationHead (ASPP on s32, skips s8, s4)               = models/segmentation.py
             depth:        DepthDecoder (s32 up to s4, skips), disparity upsampled   = models/depth.py
             keypoints:    s8 + s16 -> cell logits (65) and descriptors               = models/matching.py

Each mask is MTAN's: 1x1 conv-BN-ReLU to a few channels, then 1x1 back to the feature's channels,
whose sigmoid starts near 1 (bias +4: 0.98), so training starts from the shared features as they
are and each task learns where to look; ``attention=False`` is the ablation (heads read the shared
features directly).

Compute (``benchmarks/bench_multitask.py``): at 384x512 a depth decoder run to full resolution
costs 2.6 GMACs, more than the whole single-task depth network at its 192x256 input, and 3x3 masks
on the stride-2 map another 0.4; so the decoder stops at stride 4 (``depth_stages`` 3; its
disparity is upsampled bilinearly, as the single-task network's coarser heads are trained to be
read), the masks are 1x1, and the keypoint head is 64 wide.

Light heads (``head_rank`` r > 0, models/separable.py): after sharing, the heads are most of the
cost (detection 0.9, segmentation 1.3, depth 0.9 GMACs at 384x512 beside a 1.2-GMAC backbone), so
every 3x3 convolution of the neck and heads that it makes at least 2x cheaper becomes a rank-r
depthwise + pointwise pair; ``factorize_heads`` turns a trained network's convolutions into their
SVD approximations, so fine-tuning starts from what the full heads learned. The shared backbone
and the attention masks stay as they are.

The heads, their losses and post-processing are the single-task ones: a multi-task checkpoint can
start from single-task models (the shared backbone from one of them, each head from its own) and
the exported graph (``MultiTaskExport``) gives every task's outputs from one backbone pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .anchors import AnchorGenerator
from .backbone import Backbone, ConvBNAct
from .depth import DepthDecoder, disp_to_depth
from .detection import DetectionHead, DetectorConfig, postprocess
from .matching import MatcherConfig, extract
from .neck import FPN
from .separable import factorize
from .segmentation import SegmentationHead, SegmenterConfig, labels_and_confidence

TASKS = ("detection", "segmentation", "depth", "keypoints")
# the backbone scales each task's head reads
SCALES = {
    "detection": ("s8", "s16", "s32"),
    "segmentation": ("s4", "s8", "s32"),
    "depth": ("s2", "s4", "s8", "s16", "s32"),
    "keypoints": ("s8", "s16"),
}


class TaskAttention(nn.Module):
    """A task's soft spatial (and channel) mask over one shared feature map."""

    def __init__(self, channels: int, hidden: int = 16) -> None:
        super().__init__()
        self.mask = nn.Sequential(ConvBNAct(channels, hidden, 1), nn.Conv2d(hidden, channels, 1))
        nn.init.zeros_(self.mask[1].weight)
        nn.init.constant_(self.mask[1].bias, 4.0)  # sigmoid 0.98: starts as (almost) the identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.mask(x))


@dataclass
class MultiTaskConfig:
    input_size: tuple[int, int] = (384, 512)  # H, W, letterboxed like the detector and segmenter
    detection_classes: list[str] = field(default_factory=lambda: ["person", "car", "cone", "box", "barrel", "chair"])
    segmentation_classes: list[str] = field(
        default_factory=lambda: ["sky", "ground", "wall", "clutter", "person", "car", "cone", "box", "barrel", "chair"]
    )
    attention: bool = True
    tasks: tuple[str, ...] = TASKS
    min_depth: float = 0.1
    max_depth: float = 100.0
    canonical_focal: float = 0.0  # > 0: depth for a camera of this focal length (pixels at input_size)
    depth_widths: tuple[int, ...] = (96, 64, 48, 32, 16)
    depth_stages: int = 3  # decoder stages from s32: 3 ends at s4 (upsampled), 5 at full resolution
    keypoint_width: int = 64
    descriptor_dim: int = 64
    top_k: int = 512
    head_rank: int = 0  # > 0: light heads, 3x3 convolutions as rank-r depthwise-separable pairs
    detection_rank: int = 0  # with head_rank: the detection neck and head's own rank (0 = head_rank)

    def detector(self) -> DetectorConfig:
        return DetectorConfig(num_classes=len(self.detection_classes), input_size=tuple(self.input_size))

    def segmenter(self) -> SegmenterConfig:
        return SegmenterConfig(num_classes=len(self.segmentation_classes), input_size=tuple(self.input_size))

    def matcher(self) -> MatcherConfig:
        return MatcherConfig(input_size=tuple(self.input_size), descriptor_dim=self.descriptor_dim, top_k=self.top_k)


class MultiTaskNet(nn.Module):
    """Image (B, 3, H, W), normalised -> {task: raw head outputs} from one backbone pass:
    detection (cls logits, box deltas), segmentation logits (B, C, H, W), depth {scale: disparity},
    keypoints (cell logits (B, 65, H/8, W/8), unit descriptors (B, D, H/8, W/8))."""

    def __init__(self, cfg: MultiTaskConfig | None = None, backbone: Backbone | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or MultiTaskConfig()
        unknown = set(cfg.tasks) - set(TASKS)
        if unknown:
            raise ValueError(f"tasks {sorted(unknown)} are not among {TASKS}")
        self.backbone = backbone or Backbone()
        ch = self.backbone.channels
        self.attention = nn.ModuleDict(
            {t: nn.ModuleDict({s: TaskAttention(ch[s]) for s in self.scales(t)}) for t in cfg.tasks}
            if cfg.attention
            else {}
        )
        self.det_cfg = cfg.detector()
        if "detection" in cfg.tasks:
            self.neck = FPN(ch, SCALES["detection"], self.det_cfg.fpn_channels)
            self.anchor_gen = AnchorGenerator((8, 16, 32), self.det_cfg.anchor_sizes)
            d = self.det_cfg
            self.det_head = DetectionHead(d.fpn_channels, self.anchor_gen.per_location, d.num_classes, d.head_depth)
            self.register_buffer("anchors", self.anchor_gen(tuple(cfg.input_size)), persistent=False)
        if "segmentation" in cfg.tasks:
            self.seg_head = SegmentationHead(ch, len(cfg.segmentation_classes))
        if "depth" in cfg.tasks:
            self.depth_decoder = DepthDecoder(ch, cfg.depth_widths, cfg.depth_stages)
        if "keypoints" in cfg.tasks:
            c8 = ch["s8"]
            self.kp_lateral = ConvBNAct(ch["s16"], c8, 1)
            k = cfg.keypoint_width
            self.kp_det = nn.Sequential(ConvBNAct(c8, k), nn.Conv2d(k, 65, 1))
            self.kp_desc = nn.Sequential(ConvBNAct(c8, k), nn.Conv2d(k, cfg.descriptor_dim, 1))
        if cfg.head_rank:
            self.factorize_heads(cfg.head_rank, cfg.detection_rank)

    HEADS = ("neck", "det_head", "seg_head", "depth_decoder", "kp_det", "kp_desc")
    DETECTION_TOWER = ("neck", "det_head")

    def factorize_heads(self, rank: int, detection_rank: int = 0) -> list[str]:
        """Light heads: the heads' (and the detection neck's) 3x3 convolutions -> rank-``rank``
        separable pairs initialised by SVD from their current weights (models/separable.py), the
        detection tower's at ``detection_rank`` when given (its logits feed a thresholded sigmoid:
        it loses most to a low rank); the network then has the architecture of ``head_rank = rank,
        detection_rank``. Returns what was replaced."""
        tower_rank = detection_rank or rank
        replaced = [
            f"{head}.{name}"
            for head in self.HEADS
            if hasattr(self, head)
            for name in factorize(getattr(self, head), tower_rank if head in self.DETECTION_TOWER else rank)
        ]
        self.cfg.head_rank, self.cfg.detection_rank = rank, detection_rank
        return replaced

    def adopt(self, detector: nn.Module | None = None, segmenter: nn.Module | None = None,
              depth_net: nn.Module | None = None) -> list[str]:  # fmt: skip
        """Start from single-task models: the shared backbone and the detection neck and head from
        ``detector`` (the segmenter's backbone when there is no detector), the segmentation head from
        ``segmenter``, the depth decoder from ``depth_net``; their backbones have this network's
        channels (``Backbone()``), so each head reads features of the kind it was trained on, from
        another backbone of the same shape until fine-tuning adapts them. Returns what was adopted."""
        done = []
        source = detector if detector is not None else segmenter
        if source is not None:
            self.backbone.load_state_dict(source.backbone.state_dict())
            done.append(f"backbone ({'detector' if detector is not None else 'segmenter'})")
        if detector is not None and "detection" in self.cfg.tasks:
            self.neck.load_state_dict(detector.neck.state_dict())
            self.det_head.load_state_dict(detector.head.state_dict())
            done.append("detection neck + head")
        if segmenter is not None and "segmentation" in self.cfg.tasks:
            self.seg_head.load_state_dict(segmenter.head.state_dict())
            done.append("segmentation head")
        if depth_net is not None and "depth" in self.cfg.tasks:
            # a shorter decoder takes the stages it has (and their disparity heads)
            own = self.depth_decoder.state_dict()
            self.depth_decoder.load_state_dict({k: v for k, v in depth_net.decoder.state_dict().items() if k in own})
            done.append("depth decoder")
        return done

    def scales(self, task: str) -> tuple[str, ...]:
        """The backbone scales ``task``'s head reads (a shorter depth decoder: fewer skips)."""
        if task == "depth":
            return SCALES["depth"][max(0, 4 - self.cfg.depth_stages) :]
        return SCALES[task]

    def task_features(self, shared: dict[str, torch.Tensor], task: str) -> dict[str, torch.Tensor]:
        """The shared maps a task's head reads, each through the task's attention (when on)."""
        masks = self.attention[task] if self.cfg.attention else None
        return {s: masks[s](shared[s]) if masks is not None else shared[s] for s in self.scales(task)}

    def depth(self, disparities: dict[int, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Depth (B, 1, H, W) at ``size`` from the finest disparity (upsampled bilinearly), for the
        canonical camera when ``canonical_focal`` is set."""
        disp = disparities[min(disparities)]
        if tuple(disp.shape[-2:]) != tuple(size):
            disp = F.interpolate(disp, size=tuple(size), mode="bilinear", align_corners=False)
        return disp_to_depth(disp, self.cfg.min_depth, self.cfg.max_depth)

    def forward(self, images: torch.Tensor) -> dict[str, object]:
        shared = self.backbone(images)
        out: dict[str, object] = {}
        if "detection" in self.cfg.tasks:
            out["detection"] = self.det_head(self.neck(self.task_features(shared, "detection")))
        if "segmentation" in self.cfg.tasks:
            out["segmentation"] = self.seg_head(self.task_features(shared, "segmentation"), images.shape[-2:])
        if "depth" in self.cfg.tasks:
            out["depth"] = self.depth_decoder(self.task_features(shared, "depth"))
        if "keypoints" in self.cfg.tasks:
            f = self.task_features(shared, "keypoints")
            x = f["s8"] + F.interpolate(self.kp_lateral(f["s16"]), size=f["s8"].shape[-2:], mode="nearest")
            out["keypoints"] = (self.kp_det(x), F.normalize(self.kp_desc(x), dim=1))
        return out


class MultiTaskExport(nn.Module):
    """Exported graph: one image -> every task's outputs, named like the single-task graphs where
    they do not collide (``boxes``, ``scores``, ``labels`` of detection; ``depth``; ``keypoints``,
    ``descriptors``) and prefixed where they do (``seg_labels``, ``seg_confidence``,
    ``keypoint_scores``); the card's ``outputs`` maps each task's names."""

    OUTPUTS = {
        "detection": ("boxes", "scores", "labels"),
        "segmentation": ("seg_labels", "seg_confidence"),
        "depth": ("depth",),
        "keypoints": ("keypoints", "keypoint_scores", "descriptors"),
    }

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__()
        self.net = net

    def output_names(self) -> list[str]:
        return [n for t in self.net.cfg.tasks for n in self.OUTPUTS[t]]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        cfg, out = self.net.cfg, self.net(image)
        result: list[torch.Tensor] = []
        for task in cfg.tasks:
            if task == "detection":
                result += postprocess(*out["detection"], self.net.anchors, self.net.det_cfg)  # type: ignore[misc]
            elif task == "segmentation":
                result += list(labels_and_confidence(out["segmentation"]))  # type: ignore[arg-type]
            elif task == "depth":
                result.append(self.net.depth(out["depth"], image.shape[-2:]))  # type: ignore[arg-type]
            else:
                result += extract(*out["keypoints"], cfg.matcher())  # type: ignore[misc]
        return tuple(result)
