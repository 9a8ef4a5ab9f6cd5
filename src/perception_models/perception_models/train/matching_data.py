"""Training pairs for the keypoint network, two sources (both give the same dict):

- :class:`HomographyPairs`: a real photo (CamVid train when present, else synthetic frames) and the
  same photo under a random homography (perspective, rotation, scale, translation) with separate
  photometric jitter — correspondences are exact everywhere;
- :class:`SequencePairs`: two frames of a synthetic sequence a few steps apart, correspondences from
  the ground-truth depth and poses (occlusion-checked against the other frame's depth, moving
  objects left out) — real 3D parallax and lighting changes.

Keypoint labels are pseudo ground truth: Shi-Tomasi corners of view A, carried into view B with
the correspondences (homographies) or detected in B (sequences). Item: ``image_a``/``image_b``
(3, H, W) normalised, ``kp_a``/``kp_b`` (H, W) {0, 1}, ``valid_b`` (H/8, W/8) cells of B that show
the scene, ``corr`` (H/8, W/8, 2) each A cell's position in B in cell units, ``corr_valid``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.readers.common import read_rgb
from .data import MEAN, STD


def random_homography(
    rng: np.random.Generator,
    w: int,
    h: int,
    perspective: float = 0.12,
    rotation_deg: float = 20.0,
    scale: tuple[float, float] = (0.8, 1.2),
    translation: float = 0.1,
) -> np.ndarray:
    """A homography that maps image A's pixels to image B's, composed as SuperPoint does."""
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    dst = src + rng.uniform(-perspective, perspective, (4, 2)) * [w, h]
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    a = np.radians(rng.uniform(-rotation_deg, rotation_deg))
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) * rng.uniform(*scale)
    dst = (dst - c) @ R.T + c + rng.uniform(-translation, translation, 2) * [w, h]
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def corners(rgb: np.ndarray, max_corners: int = 400) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    pts = cv2.goodFeaturesToTrack(grey, max_corners, 0.01, 4, blockSize=3)
    return np.zeros((0, 2), np.float32) if pts is None else pts.reshape(-1, 2)


def keypoint_map(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    if len(pts):
        u, v = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        m[v[ok], u[ok]] = 1
    return m


def cell_centres(h: int, w: int) -> np.ndarray:
    """(h/8 * w/8, 2) pixel centres of the stride-8 cells (row-major)."""
    y, x = np.mgrid[0 : h // 8, 0 : w // 8]
    return np.stack([x.ravel() * 8 + 3.5, y.ravel() * 8 + 3.5], 1)


def jitter(rgb: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    x = rgb.astype(np.float32)
    x = x * rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength) + rng.uniform(-25, 25) * strength
    x = x + rng.normal(0, 3.0 * strength, x.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def normalise(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((rgb.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1).copy())


def _fit(rgb: np.ndarray, size: tuple[int, int], rng: np.random.Generator | None) -> np.ndarray:
    """Crop to the target aspect (random position when ``rng``) and resize."""
    h, w = size
    H, W = rgb.shape[:2]
    if W * h > H * w:  # too wide
        cw = int(round(H * w / h))
        x0 = int(rng.integers(0, W - cw + 1)) if rng is not None else (W - cw) // 2
        rgb = rgb[:, x0 : x0 + cw]
    else:
        ch = int(round(W * h / w))
        y0 = int(rng.integers(0, H - ch + 1)) if rng is not None else (H - ch) // 2
        rgb = rgb[y0 : y0 + ch]
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def homography_pair(rgb: np.ndarray, size: tuple[int, int], rng: np.random.Generator, photometric: bool = True) -> dict:
    h, w = size
    a = _fit(rgb, size, rng)
    H = random_homography(rng, w, h)
    b = cv2.warpPerspective(a, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    seen = cv2.warpPerspective(np.ones((h, w), np.uint8), H, (w, h), flags=cv2.INTER_NEAREST)
    if photometric:
        a, b = jitter(a, rng), jitter(b, rng)
    return {"a": a, "b": b, "H": H, "seen_b": seen}


def _corr_from_homography(H: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    from ..metrics.matching import warp_points

    p = warp_points(H, cell_centres(h, w))
    cells = (p - 3.5) / 8.0
    ok = (cells[:, 0] >= 0) & (cells[:, 0] <= w // 8 - 1) & (cells[:, 1] >= 0) & (cells[:, 1] <= h // 8 - 1)
    return cells.reshape(h // 8, w // 8, 2).astype(np.float32), ok.reshape(h // 8, w // 8)


class HomographyPairs(Dataset):
    def __init__(self, images: list[Path], size: tuple[int, int] = (240, 320), seed: int = 0, length: int = 0) -> None:
        if not images:
            raise ValueError("no images for homography pairs")
        self.images, self.size, self.seed = list(images), tuple(size), seed
        self.length = length or len(self.images)
        self.epoch = 0

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        h, w = self.size
        p = homography_pair(read_rgb(self.images[i % len(self.images)]), self.size, rng)
        from ..metrics.matching import warp_points

        pts_a = corners(p["a"])
        pts_b = warp_points(p["H"], pts_a) if len(pts_a) else pts_a
        corr, ok = _corr_from_homography(p["H"], h, w)
        valid_b = cv2.resize(p["seen_b"], (w // 8, h // 8), interpolation=cv2.INTER_AREA) > 0
        return {
            "image_a": normalise(p["a"]),
            "image_b": normalise(p["b"]),
            "kp_a": torch.from_numpy(keypoint_map(pts_a, h, w)),
            "kp_b": torch.from_numpy(keypoint_map(pts_b, h, w)),
            "valid_b": torch.from_numpy(valid_b.astype(np.float32)),
            "corr": torch.from_numpy(corr),
            "corr_valid": torch.from_numpy(ok),
        }


def sequence_correspondence(
    depth_a: np.ndarray,
    depth_b: np.ndarray,
    K: np.ndarray,
    T_b_a: np.ndarray,
    pts_a: np.ndarray,
    static_a: np.ndarray | None = None,
    rel_tol: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels ``pts_a`` (N, 2) of view A in view B using A's depth and the relative pose; valid where
    A has depth, the point lands inside B in front of it, B's depth there agrees (not occluded)
    and (``static_a``) the pixel is not on a moving object."""
    h, w = depth_a.shape
    u = np.clip(np.round(pts_a[:, 0]).astype(int), 0, w - 1)
    v = np.clip(np.round(pts_a[:, 1]).astype(int), 0, h - 1)
    z = depth_a[v, u]
    X = np.stack([(pts_a[:, 0] - K[0, 2]) / K[0, 0] * z, (pts_a[:, 1] - K[1, 2]) / K[1, 1] * z, z], 1)
    Xb = X @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        ub = K[0, 0] * Xb[:, 0] / Xb[:, 2] + K[0, 2]
        vb = K[1, 1] * Xb[:, 1] / Xb[:, 2] + K[1, 2]
    ok = np.isfinite(z) & (z > 0) & (Xb[:, 2] > 0) & (ub >= 0) & (ub <= w - 1) & (vb >= 0) & (vb <= h - 1)
    ui = np.clip(np.round(np.nan_to_num(ub)).astype(int), 0, w - 1)
    vi = np.clip(np.round(np.nan_to_num(vb)).astype(int), 0, h - 1)
    zb = depth_b[vi, ui]
    ok &= np.isfinite(zb) & (np.abs(zb - Xb[:, 2]) <= rel_tol * Xb[:, 2])
    if static_a is not None:
        ok &= static_a[v, u] > 0
    return np.stack([ub, vb], 1), ok


class SequencePairs(Dataset):
    """Frame pairs (t, t + gap) of synthetic sequences, gap drawn from 1..max_gap per item."""

    def __init__(
        self,
        folders: list[Path],
        size: tuple[int, int] = (240, 320),
        seed: int = 0,
        max_gap: int = 3,
        photometric: bool = True,
    ) -> None:
        from ..data.readers.tum import read_tum_trajectory
        from .depth_data import load_synthetic_sequence

        self.size, self.seed, self.max_gap, self.photometric = tuple(size), seed, max_gap, photometric
        self.seqs, self.poses = [], []
        for f in folders:
            s = load_synthetic_sequence(Path(f))
            if not s.depth:
                raise ValueError(f"{f}: no depth maps; sequence pairs need ground-truth depth")
            self.seqs.append(s)
            self.poses.append(read_tum_trajectory(Path(f) / "trajectory_tum.txt")[1])
        self.index = [(k, t) for k, s in enumerate(self.seqs) for t in range(len(s.frames) - 1)]
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.index)

    def pair(self, k: int, t: int, gap: int) -> dict:
        """Frames t and t + gap (clipped to the sequence) of sequence k with depth, K and motion."""
        from perception_nodes.pipelines.depth import scale_K

        from ..data.readers.depth import read_nyu_depth

        s = self.seqs[k]
        t2 = min(len(s.frames) - 1, t + gap)
        h, w = self.size
        K = scale_K(s.K, w / s.size[1], h / s.size[0])
        ims = [cv2.resize(read_rgb(s.frames[j]), (w, h), interpolation=cv2.INTER_AREA) for j in (t, t2)]
        deps = [cv2.resize(read_nyu_depth(s.depth[j]), (w, h), interpolation=cv2.INTER_NEAREST) for j in (t, t2)]
        static = None
        if s.dynamic:
            static = cv2.resize(
                (cv2.imread(str(s.dynamic[t]), cv2.IMREAD_GRAYSCALE) == 0).astype(np.uint8),
                (w, h),
                interpolation=cv2.INTER_NEAREST,
            )
        T_b_a = np.linalg.inv(self.poses[k][t2]) @ self.poses[k][t]
        return {
            "a": ims[0],
            "b": ims[1],
            "depth_a": deps[0],
            "depth_b": deps[1],
            "K": K,
            "T_b_a": T_b_a,
            "static_a": static,
        }

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, i, 7])
        p = self.pair(*self.index[i], int(rng.integers(1, self.max_gap + 1)))
        h, w = self.size
        a, b = (jitter(p["a"], rng, 0.5), jitter(p["b"], rng, 0.5)) if self.photometric else (p["a"], p["b"])
        pb, ok = sequence_correspondence(
            p["depth_a"], p["depth_b"], p["K"], p["T_b_a"], cell_centres(h, w), p["static_a"]
        )
        corr = ((pb - 3.5) / 8.0).reshape(h // 8, w // 8, 2).astype(np.float32)
        return {
            "image_a": normalise(a),
            "image_b": normalise(b),
            "kp_a": torch.from_numpy(keypoint_map(corners(p["a"]), h, w)),
            "kp_b": torch.from_numpy(keypoint_map(corners(p["b"]), h, w)),
            "valid_b": torch.ones(h // 8, w // 8),
            "corr": torch.from_numpy(np.nan_to_num(corr)),
            "corr_valid": torch.from_numpy(ok.reshape(h // 8, w // 8)),
        }
