"""Frame triplets (t-1, t, t+1) for depth + pose training, from this project's synthetic sets (with
ground-truth depth, poses and moving-object masks) or from any rosbag with a camera topic (no
labels: the robot's own footage). Frames are resized to the network input and K scaled with them.

Each item: ``color`` (3, 3, H, W) float in [0, 1] (previous, target, next, un-augmented: the
photometric loss compares these), ``color_aug`` (same frames with one colour jitter: the networks
see these), ``K`` (3, 3), ``depth`` (1, H, W) metres (NaN: none), ``static`` (1, H, W) 0 on
objects flagged as moving on their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from torch.utils.data import Dataset

from perception_nodes.pipelines.depth import scale_K
from perception_nodes.pipelines.preprocess import fit_image

from ..data.readers.common import DataFormatError, read_rgb
from ..data.readers.depth import read_nyu_depth
from .data import Augment


@dataclass
class Sequence:
    name: str
    K: np.ndarray  # 3x3 at the stored resolution
    size: tuple[int, int]  # stored (H, W)
    frames: list = field(default_factory=list)  # paths, or (H, W, 3) uint8 arrays (bags, cache_inputs)
    depth: list = field(default_factory=list)  # paths, arrays at the network size (cache_inputs), or empty
    dynamic: list = field(default_factory=list)  # the same for the moving-object masks
    stamps_ns: list[int] = field(default_factory=list)
    relative: Any = None  # a relative-depth teacher's cached maps (frames, H, W) (relative_teacher.py)


def read_camera_matrix(path: Path | str) -> tuple[np.ndarray, tuple[int, int]]:
    """K and (height, width) of a ROS camera_info YAML."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    try:
        K = np.array(data["camera_matrix"]["data"], np.float64).reshape(3, 3)
        return K, (int(data["image_height"]), int(data["image_width"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a ROS camera_info YAML ({exc!r})") from None


def load_synthetic_sequence(root: Path) -> Sequence:
    root = Path(root)
    if not (root / "camera_info.yaml").is_file() or not (root / "rgb").is_dir():
        raise DataFormatError(f"{root}: not a synthetic sequence (needs rgb/ and camera_info.yaml)")
    K, size = read_camera_matrix(root / "camera_info.yaml")
    frames = sorted((root / "rgb").glob("*.png"))
    depth = sorted((root / "depth").glob("*.png")) if (root / "depth").is_dir() else []
    dynamic = sorted((root / "dynamic").glob("*.png")) if (root / "dynamic").is_dir() else []
    if depth and len(depth) != len(frames):
        raise DataFormatError(f"{root}: {len(frames)} images but {len(depth)} depth maps")
    return Sequence(root.name, K, size, frames, depth, dynamic if len(dynamic) == len(frames) else [])


def load_bag_sequence(
    bag: Path, topic: str, K: np.ndarray | None = None, every: int = 1, max_side: int = 640
) -> Sequence:
    """All frames of ``topic`` in memory (downscaled so the longer side is at most ``max_side``);
    K from the bag's CameraInfo unless given."""
    from ..data.readers.rosbag import read_images

    frames, stamps, K_bag, size, original = [], [], None, None, None
    for i, msg in enumerate(read_images(bag, topic)):
        if i % every:
            continue
        img = msg.rgb
        h, w = img.shape[:2]
        if original is None:
            original = (h, w)
            s = min(1.0, max_side / max(h, w))
            size = (int(round(h * s)), int(round(w * s)))
            if msg.K is not None:
                K_bag = scale_K(msg.K, size[1] / w, size[0] / h)
        elif (h, w) != original:
            raise DataFormatError(f"{bag} {topic}: image size changes from {original} to {(h, w)} at message {i}")
        if (h, w) != size:
            img = cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_AREA)
        frames.append(np.ascontiguousarray(img))
        stamps.append(msg.stamp_ns)
    if size is None or len(frames) < 3:
        raise DataFormatError(f"{bag} {topic}: need at least 3 frames for depth training, got {len(frames)}")
    if K is None:
        if K_bag is None:
            raise DataFormatError(f"{bag}: no CameraInfo next to {topic}; give the intrinsics (--camera-info)")
        K = K_bag
    else:  # given for the recorded resolution
        K = scale_K(K, size[1] / original[1], size[0] / original[0])
    return Sequence(f"{Path(bag).name}:{topic}", np.asarray(K, np.float64), size, frames, [], [], stamps)


def network_input(seq: Sequence, t: int, size: tuple[int, int]) -> np.ndarray:
    """Frame ``t`` resized to the network input (H, W) exactly as the depth node does it."""
    img = seq.frames[t] if isinstance(seq.frames[t], np.ndarray) else read_rgb(seq.frames[t])
    return fit_image(img, size[1], size[0], mode="stretch")[0]


def input_K(seq: Sequence, size: tuple[int, int]) -> np.ndarray:
    """The sequence's intrinsics for its frames stretched to the network input (H, W)."""
    return scale_K(seq.K, size[1] / seq.size[1], size[0] / seq.size[0])


# below this share of valid pixels a depth map is sparse (projected lidar, a triangulated reference):
# nearest-neighbour sampling would keep only the points that happen to sit on a sampled pixel
SPARSE_SHARE = 0.5


def resize_sparse_depth(d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A sparse depth map (NaN = none) at (H, W): every point moved to the pixel its position scales
    to, the nearest one where several land on the same pixel."""
    h, w = size
    v, u = np.nonzero(np.isfinite(d))
    z = d[v, u]
    ti = np.minimum(((v + 0.5) * h / d.shape[0]).astype(int), h - 1)
    tj = np.minimum(((u + 0.5) * w / d.shape[1]).astype(int), w - 1)
    out = np.full((h, w), np.inf, np.float32)
    np.minimum.at(out, (ti, tj), z.astype(np.float32))
    out[np.isinf(out)] = np.nan
    return out


def depth_at(seq: Sequence, t: int, size: tuple[int, int]) -> np.ndarray:
    """Ground-truth depth of frame ``t`` at the network size (H, W): nearest neighbour for dense maps,
    ``resize_sparse_depth`` for sparse ones."""
    d = seq.depth[t] if isinstance(seq.depth[t], np.ndarray) else read_nyu_depth(seq.depth[t])
    return d if d.shape == tuple(size) else resize_depth(d, size)


def resize_depth(d: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A depth map (NaN = none) at (H, W): nearest neighbour when dense, :func:`resize_sparse_depth`
    when sparse (below ``SPARSE_SHARE`` valid pixels)."""
    if np.isfinite(d).mean() < SPARSE_SHARE:
        return resize_sparse_depth(d, size)
    return cv2.resize(d, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def moving_at(seq: Sequence, t: int, size: tuple[int, int]) -> np.ndarray:
    """Moving-object mask (uint8, non-zero = moving) of frame ``t`` at the network size."""
    m = (
        seq.dynamic[t]
        if isinstance(seq.dynamic[t], np.ndarray)
        else cv2.imread(str(seq.dynamic[t]), cv2.IMREAD_GRAYSCALE)
    )
    return m if m.shape == tuple(size) else cv2.resize(m, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)


def cache_inputs(sequences: list[Sequence], size: tuple[int, int], threads: int = 8) -> int:
    """Decode every frame (and its ground truth) once, at the network size, in place of its path:
    a GPU run's data-loader workers then share them instead of decoding PNGs. Returns bytes held."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(seq, t) for seq in sequences for t in range(len(seq.frames))]

    def one(job):
        seq, t = job
        return (
            network_input(seq, t, size),
            depth_at(seq, t, size) if seq.depth else None,
            moving_at(seq, t, size) if seq.dynamic else None,
        )

    with ThreadPoolExecutor(max(1, threads)) as pool:
        done = list(pool.map(one, jobs))
    held = 0
    for (seq, t), (img, depth, moving) in zip(jobs, done):
        seq.frames[t] = img
        held += img.nbytes
        if depth is not None:
            seq.depth[t] = depth
            held += depth.nbytes
        if moving is not None:
            seq.dynamic[t] = moving
            held += moving.nbytes
    return held


def frame_tensor(seq: Sequence, t: int, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) float in [0, 1] of :func:`network_input` (normalise before the network)."""
    return torch.from_numpy(network_input(seq, t, size).astype(np.float32).transpose(2, 0, 1) / 255.0)[None]


def zoom_triplet(
    frames: np.ndarray,
    depth: np.ndarray,
    static: np.ndarray,
    relative: np.ndarray | None,
    K: np.ndarray,
    crop: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Cut ``crop`` (x0, y0, x1, y1, as :meth:`Augment.crop` draws it) out of frames (N, H, W, 3),
    depth, static mask and relative map (H, W) and scale it back to (H, W); K moves with the pixels
    (pixel-centre convention of cv2.resize: u' = (u - x0 + 0.5) * sx - 0.5). Depth goes through
    :func:`resize_depth` (a mostly empty window of a dense map is resampled as sparse: fewer pixels,
    none wrong), the masks take the nearest value. Depths are not changed: a crop is a longer focal
    length from the same viewpoint."""
    x0, y0, x1, y1 = crop
    h, w = depth.shape
    sx, sy = w / (x1 - x0), h / (y1 - y0)
    frames = np.stack([cv2.resize(np.ascontiguousarray(f[y0:y1, x0:x1]), (w, h)) for f in frames])
    depth = resize_depth(np.ascontiguousarray(depth[y0:y1, x0:x1]), (h, w))
    static = cv2.resize(np.ascontiguousarray(static[y0:y1, x0:x1]), (w, h), interpolation=cv2.INTER_NEAREST)
    if relative is not None:
        relative = cv2.resize(np.ascontiguousarray(relative[y0:y1, x0:x1]), (w, h))
    K = np.asarray(K, np.float64).copy()
    K[0, 0], K[1, 1] = K[0, 0] * sx, K[1, 1] * sy
    K[0, 2], K[1, 2] = (K[0, 2] - x0 + 0.5) * sx - 0.5, (K[1, 2] - y0 + 0.5) * sy - 0.5
    return frames.astype(np.float32), depth.astype(np.float32), static.astype(np.float32), relative, K


class TripletDataset(Dataset):
    def __init__(
        self,
        sequences: list[Sequence],
        input_size: tuple[int, int],
        augment: bool = True,
        seed: int = 0,
        stride: int = 1,
        zoom: float = 1.0,
        p_zoom: float = 0.5,
    ) -> None:
        """``zoom`` > 1 (with ``augment``): with probability ``p_zoom`` a triplet is cut to a window
        1/z of the frame's size (z uniform in [1, zoom], same aspect, a random place; the same window
        in all three frames) and scaled back up, K with it: the same scene seen through a longer lens
        from the same place, so depths stay as they are (see :func:`zoom_triplet`)."""
        if not zoom >= 1.0 or not 0.0 <= p_zoom <= 1.0:
            raise ValueError(f"zoom must be >= 1 and p_zoom in [0, 1], got {zoom}, {p_zoom}")
        self.sequences = sequences
        self.size = tuple(input_size)
        self.augment, self.seed, self.stride = augment, seed, stride
        self.window = Augment(zoom=float(zoom), p_zoom=float(p_zoom))  # only its crop() is used
        self.epoch = 0
        self.index = [(s, t) for s, seq in enumerate(sequences) for t in range(stride, len(seq.frames) - stride)]
        if not self.index:
            raise DataFormatError(f"no triplets: every sequence has fewer than {2 * stride + 1} frames")

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        s, t = self.index[i]
        seq = self.sequences[s]
        h, w = self.size
        rng = np.random.default_rng([self.seed, self.epoch, i])
        frames = np.stack([network_input(seq, t + d, self.size) for d in (-self.stride, 0, self.stride)])
        frames = frames.astype(np.float32) / 255.0
        K = input_K(seq, self.size)
        depth = np.full((h, w), np.nan, np.float32)
        if seq.depth:
            depth = depth_at(seq, t, self.size)
        static = np.ones((h, w), np.float32)
        if seq.dynamic:
            static = (moving_at(seq, t, self.size) == 0).astype(np.float32)
        relative = np.asarray(seq.relative[t], np.float32) if seq.relative is not None else None
        aug = frames
        if self.augment:
            if rng.random() < 0.5:  # horizontal flip of every frame; the principal point moves with it
                frames, depth, static = frames[:, :, ::-1], depth[:, ::-1], static[:, ::-1]
                relative = relative[:, ::-1] if relative is not None else None
                K = K.copy()
                K[0, 2] = (w - 1) - K[0, 2]
            crop = self.window.crop(h, w, rng)
            if crop is not None:
                frames, depth, static, relative, K = zoom_triplet(frames, depth, static, relative, K, crop)
            gain = 1 + rng.uniform(-0.2, 0.2, size=3).astype(np.float32)  # per-channel colour
            bright = np.float32(rng.uniform(-0.1, 0.1))
            aug = np.clip(frames * gain + bright, 0, 1)
        return {
            "color": torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 3, 1, 2))),
            "color_aug": torch.from_numpy(np.ascontiguousarray(np.asarray(aug, np.float32).transpose(0, 3, 1, 2))),
            "K": torch.from_numpy(K.astype(np.float32)),
            "depth": torch.from_numpy(np.ascontiguousarray(depth))[None],
            "static": torch.from_numpy(np.ascontiguousarray(static))[None],
            **({"relative": torch.from_numpy(np.ascontiguousarray(relative))[None]} if relative is not None else {}),
        }
