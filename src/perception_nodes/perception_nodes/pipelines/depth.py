"""DepthPipeline: image -> depth in metres at the *input image's* size (bilinear), from a depth
model whose card says how it was scaled; plus the pinhole helpers the depth node needs (point
cloud in the camera optical frame, colour map for viewing).

A model whose card gives ``depth.canonical_focal`` predicts depth for a *canonical camera* (the
idea of Metric3D, Yin et al. 2023): an object of size S at depth Z spans f S / Z pixels, so one
image is consistent with any (f, Z) of the same ratio, and a network that does not know f cannot
tell a wide lens near from a narrow lens far. It predicts the depth the scene would have for
the focal length ``canonical_focal`` (pixels of its input), and the pipeline converts with the
camera's own: Z = Z_canonical f / canonical_focal (:func:`network_focal`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ..backends import Backend
from ..model_card import ModelCard, ModelCardError
from .preprocess import Letterbox
from .task_base import CardPipeline

OUTPUTS = ("depth",)


@dataclass
class DepthResult:
    depth: np.ndarray  # (H, W) float32 metres of the input image; NaN where the network gave no valid value
    network_depth: np.ndarray  # (h, w) at the network's input size (what odometry uses)
    invalid_pixels: int = 0  # non-finite or non-positive network outputs
    focal_factor: float | None = 1.0  # camera focal / canonical focal applied; None: canonical model without intrinsics
    relative: np.ndarray | None = None  # relative-depth models: (H, W) inverse depth up to scale and shift


class DepthPipeline(CardPipeline):
    task = "depth"
    required_resize = "stretch"

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        # relative-depth family (Depth Anything, MiDaS): affine-invariant inverse depth, made metric by
        # the node's scale source (families.relative_depth); ``depth`` stays NaN here
        self.relative = card.family == "relative-depth"
        if card.family not in ("native", "relative-depth"):
            raise ValueError(f"a {card.family} model gives no depth")
        self.output = str(card.decode.get("output", "depth")) if self.relative else "depth"
        self.inverse = str(card.decode.get("kind", "inverse")) == "inverse"
        super().__init__(backend, card, (self.output,))
        depth = card.raw.get("depth") or {}
        self.min_depth = float(depth.get("min", 0.1))
        self.max_depth = float(depth.get("max", 100.0))
        self.scale_source = str(depth.get("scale_source", "unknown"))  # supervised | self-supervised
        self.canonical_focal = float(depth.get("canonical_focal", 0.0))  # 0: depth as the network gives it
        if not (self.canonical_focal >= 0 and np.isfinite(self.canonical_focal)):
            raise ModelCardError(
                f"depth model card: depth.canonical_focal must be >= 0 (0: none), got {self.canonical_focal}"
            )

    def run(self, rgb: np.ndarray, timer: Any = None, K: np.ndarray | None = None) -> DepthResult:
        """Depth of ``rgb`` in metres; ``K`` (its intrinsics) converts a canonical-camera model's
        depth to this camera's (without it such depth is for the canonical focal length, and
        ``focal_factor`` is None)."""
        result: DepthResult = super().run(rgb, timer)
        self.to_camera(result, K, rgb.shape[:2], self.letterbox)
        return result

    def to_camera(self, result: DepthResult, K: np.ndarray | None, shape: tuple[int, int], lb: Letterbox) -> None:
        """A canonical-camera model's depth (in place) -> that of the camera ``K`` whose image of
        ``shape`` went into the network as ``lb`` says (stretched or letterboxed); without ``K``
        ``focal_factor`` is None. Nothing to do for other models."""
        if self.canonical_focal <= 0:
            return
        if K is None:
            result.focal_factor = None
            return
        fitted = (shape[0] * lb.scale_y, shape[1] * lb.scale_x)  # the image's size inside the input
        f = network_focal(K, shape, fitted) / self.canonical_focal
        result.depth *= np.float32(f)
        result.network_depth *= np.float32(f)
        result.focal_factor = f

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> DepthResult:
        if self.relative:
            return self._relative(outputs, shape)
        net = np.asarray(outputs["depth"], np.float32)
        net = net.reshape(net.shape[-2:])  # the card's input size (a multi-task model: its image part)
        bad = ~np.isfinite(net) | (net <= 0)
        net = np.where(bad, np.nan, net).astype(np.float32)
        h, w = shape
        full = (
            net
            if (h, w) == net.shape
            else cv2.resize(np.nan_to_num(net, nan=0.0), (w, h), interpolation=cv2.INTER_LINEAR)
        )
        if bad.any() and full is not net:
            holes = cv2.resize(bad.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
            full = np.where(holes, np.nan, full)
        return DepthResult(np.ascontiguousarray(full, np.float32), net, int(bad.sum()))

    def _relative(self, outputs: dict[str, np.ndarray], shape: tuple[int, int]) -> DepthResult:
        out = np.asarray(outputs[self.output], np.float32)
        net = out.reshape(out.shape[-2], out.shape[-1])
        bad = ~np.isfinite(net)
        if not self.inverse:  # a relative *depth* map: its inverse is what is affine-invariant here
            with np.errstate(divide="ignore", invalid="ignore"):
                net = np.where(net > 0, 1.0 / net, np.nan).astype(np.float32)
            bad |= ~np.isfinite(net)
        h, w = shape
        full = net if net.shape == (h, w) else cv2.resize(np.nan_to_num(net), (w, h), interpolation=cv2.INTER_LINEAR)
        if bad.any() and full is not net:
            full = np.where(cv2.resize(bad.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0, np.nan, full)
        nan = np.full((h, w), np.nan, np.float32)
        return DepthResult(nan, np.full(net.shape, np.nan, np.float32), int(bad.sum()), 1.0, full.astype(np.float32))


def colorize_relative(relative: np.ndarray) -> np.ndarray:
    """rgb8 view of a relative inverse depth (near = red), normalised to its own 2-98 % range: a
    picture, not a measurement."""
    finite = np.isfinite(relative)
    if not finite.any():
        return np.zeros(relative.shape + (3,), np.uint8)
    lo, hi = np.percentile(relative[finite], [2, 98])
    grey = np.clip((np.nan_to_num(relative, nan=lo) - lo) / max(hi - lo, 1e-9) * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~finite] = 0
    return rgb


def network_focal(K: np.ndarray, image_size: tuple[int, int], input_size: tuple[int, int]) -> float:
    """The camera's focal length in pixels of the network's input (an image of ``image_size``
    (H, W) stretched to ``input_size``): the geometric mean of fx and fy, each scaled."""
    K = np.asarray(K, np.float64).reshape(3, 3)
    return float(np.sqrt(K[0, 0] * input_size[1] / image_size[1] * K[1, 1] * input_size[0] / image_size[0]))


def scale_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Intrinsics for an image resized by (sx, sy) (OpenCV pixel centres)."""
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])
    return S @ np.asarray(K, np.float64).reshape(3, 3)


def depth_to_points(
    depth: np.ndarray, K: np.ndarray, decimation: int = 1, rgb: np.ndarray | None = None, max_depth: float = np.inf
) -> tuple[np.ndarray, np.ndarray | None]:
    """Back-project every ``decimation``-th pixel with finite depth in (0, max_depth]: xyz (N, 3)
    float32 in the camera optical frame (x right, y down, z forward) and their colours (N, 3) uint8."""
    if decimation < 1:
        raise ValueError(f"decimation must be >= 1, got {decimation}")
    K = np.asarray(K, np.float64).reshape(3, 3)
    d = depth[::decimation, ::decimation]
    v, u = np.mgrid[0 : depth.shape[0] : decimation, 0 : depth.shape[1] : decimation]
    ok = np.isfinite(d) & (d > 0) & (d <= max_depth)
    z = d[ok].astype(np.float64)
    x = (u[ok] - K[0, 2]) / K[0, 0] * z
    y = (v[ok] - K[1, 2]) / K[1, 1] * z
    xyz = np.stack([x, y, z], axis=1).astype(np.float32)
    colours = rgb[::decimation, ::decimation][ok] if rgb is not None else None
    return xyz, colours


def depth_color_range(depth: np.ndarray, percentiles: tuple[float, float] = (2.0, 98.0)) -> tuple[float, float]:
    """The near and far ends of a frame's colour scale: percentiles of its valid depths, so an
    indoor scene (0.5-5 m) and a road (3-80 m) each use the whole colour map."""
    valid = depth[np.isfinite(depth) & (depth > 0)]
    if valid.size < 16:
        return 0.5, 50.0
    near, far = (float(v) for v in np.percentile(valid, percentiles))
    return max(near, 1e-3), max(far, near * 1.05 + 1e-3)


def colorize_depth(depth: np.ndarray, min_depth: float = 0.0, max_depth: float = 0.0) -> np.ndarray:
    """rgb8 view of a depth map: inverse depth through the TURBO colour map (near = red), black where
    unknown. ``min_depth``/``max_depth`` fix the scale (metres); 0 adapts that end to the frame
    (:func:`depth_color_range`)."""
    if min_depth <= 0 or max_depth <= 0:
        near, far = depth_color_range(depth)
        min_depth, max_depth = min_depth if min_depth > 0 else near, max_depth if max_depth > 0 else far
    inv = 1.0 / np.clip(np.nan_to_num(depth, nan=max_depth), min_depth, max_depth)
    lo, hi = 1.0 / max_depth, 1.0 / min_depth
    grey = np.clip((inv - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(grey, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~np.isfinite(depth)] = 0
    return rgb
