"""HPatches sequences: ``<seq>/1.ppm .. 6.ppm`` and ``H_1_2 .. H_1_6`` (3x3 homographies mapping
pixels of image 1 to image k). Folder names start with ``i_`` (illumination) or ``v_`` (viewpoint)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import DataFormatError, read_rgb


@dataclass
class HomographyPair:
    name: str
    image0: Path
    image1: Path
    H_0_1: np.ndarray  # maps pixel coordinates of image0 to image1

    def warp_points(self, pts: np.ndarray) -> np.ndarray:
        p = np.hstack([pts, np.ones((len(pts), 1))]) @ self.H_0_1.T
        return p[:, :2] / p[:, 2:3]


def _image(folder: Path, k: int) -> Path:
    for ext in (".ppm", ".png", ".jpg"):
        p = folder / f"{k}{ext}"
        if p.is_file():
            return p
    raise DataFormatError(f"{folder}: image {k}.ppm missing")


def load_hpatches_sequence(folder: Path | str) -> list[HomographyPair]:
    folder = Path(folder)
    pairs = []
    for k in range(2, 7):
        hfile = folder / f"H_1_{k}"
        if not hfile.is_file():
            continue
        try:
            H = np.loadtxt(hfile).reshape(3, 3)
        except ValueError as exc:
            raise DataFormatError(f"{hfile}: not a 3x3 homography ({exc})") from None
        pairs.append(HomographyPair(f"{folder.name}/1-{k}", _image(folder, 1), _image(folder, k), H))
    if not pairs:
        raise DataFormatError(f"{folder}: no H_1_k homography files (HPatches layout)")
    return pairs


def load_hpatches(root: Path | str, kind: str = "all") -> list[HomographyPair]:
    """All sequences under ``root``; kind: 'all', 'illumination' (i_*) or 'viewpoint' (v_*)."""
    prefix = {"all": "", "illumination": "i_", "viewpoint": "v_"}[kind]
    seqs = sorted(p for p in Path(root).iterdir() if p.is_dir() and p.name.startswith(prefix))
    return [pair for s in seqs for pair in load_hpatches_sequence(s)]


__all__ = ["HomographyPair", "load_hpatches_sequence", "load_hpatches", "read_rgb"]
