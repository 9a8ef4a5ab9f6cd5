"""Types shared by the readers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np


class DataFormatError(ValueError):
    """A file that does not follow its format; the text names the file and what is wrong."""


@dataclass
class DetectionSample:
    """One image with its boxes: (x0, y0, x1, y1) in pixels, corners of the box (exclusive max)."""

    image_path: Path
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32
    labels: list[str]  # class name per box
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # VOC difficult / COCO iscrowd
    image_id: int | str = 0
    areas: np.ndarray | None = None  # (N,) COCO 'area' (visible pixels for our sets); None = unknown

    def read_rgb(self) -> np.ndarray:
        return read_rgb(self.image_path)


def read_rgb(path: Path | str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_png16(path: Path | str) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataFormatError(f"{path}: not a readable image")
    if img.dtype != np.uint16 or img.ndim != 2:
        raise DataFormatError(f"{path}: expected a single-channel 16-bit PNG, got {img.dtype} {img.shape}")
    return img
