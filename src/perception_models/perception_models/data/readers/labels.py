"""Semantic label PNGs: class-index images (CamVid 11-class, Cityscapes ``*_labelIds``) or
colour-coded ones, mapped to training ids with an ignore label."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .common import DataFormatError

IGNORE = 255
CAMVID11 = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)  # label 11 = unlabelled -> ignore
# Cityscapes labelIds -> trainIds (19 classes); everything else -> ignore
CITYSCAPES_TRAIN_IDS = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}


def make_lut(mapping: dict[int, int], ignore_index: int = IGNORE) -> np.ndarray:
    lut = np.full(256, ignore_index, np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut


CAMVID_LUT = make_lut({i: i for i in range(11)})
CITYSCAPES_LUT = make_lut(CITYSCAPES_TRAIN_IDS)


def read_label_png(
    path: Path | str, lut: np.ndarray | None = None, palette: np.ndarray | None = None, ignore_index: int = IGNORE
) -> np.ndarray:
    """(H, W) uint8 training ids. Index PNGs go through ``lut`` (256 entries; default identity);
    colour PNGs need ``palette`` (K, 3) RGB, colour k -> id k, other colours -> ``ignore_index``."""
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataFormatError(f"{path}: not a readable label image")
    if img.ndim == 3:
        if palette is None:
            raise DataFormatError(f"{path}: colour label image; pass the dataset's palette (K x 3 RGB)")
        rgb = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB).astype(np.int32)
        code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        pal = np.asarray(palette, np.int32)
        keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
        out = np.full(code.shape, ignore_index, np.uint8)
        for k, key in enumerate(keys):
            out[code == key] = k
        return out
    if img.dtype != np.uint8:
        raise DataFormatError(f"{path}: label PNG must be 8-bit, got {img.dtype}")
    return img if lut is None else lut[img]
