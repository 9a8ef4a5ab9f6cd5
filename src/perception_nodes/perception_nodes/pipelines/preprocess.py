"""Image preprocessing shared by every pipeline: resize/letterbox, normalise, NCHW."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input: ``net = img * scale + (pad_x, pad_y)``."""

    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """Map network-input pixel coordinates (..., 2) back to original image pixels."""
        out = np.asarray(xy, dtype=np.float64).copy()
        out[..., 0] = (out[..., 0] - self.pad_x) / self.scale_x
        out[..., 1] = (out[..., 1] - self.pad_y) / self.scale_y
        return out


def fit_image(
    rgb: np.ndarray, width: int, height: int, mode: str = "stretch", pad_value: int = 114, anchor: str = "center"
) -> tuple[np.ndarray, Letterbox]:
    """Resize ``rgb`` (H, W, 3) to (height, width, 3); ``letterbox`` keeps the aspect ratio and pads
    evenly on both sides (``anchor`` center, as ultralytics) or right and bottom (top_left, as YOLOX)."""
    h, w = rgb.shape[:2]
    if (w, h) == (width, height):
        return rgb, Letterbox(1.0, 1.0, 0.0, 0.0)
    if mode == "stretch":
        out = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
        return out, Letterbox(width / w, height / h, 0.0, 0.0)
    if mode != "letterbox":
        raise ValueError(f"resize mode '{mode}' must be stretch or letterbox")
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    resized = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    px, py = ((width - nw) // 2, (height - nh) // 2) if anchor == "center" else (0, 0)
    out = np.full((height, width, 3), pad_value, dtype=rgb.dtype)
    out[py : py + nh, px : px + nw] = resized
    return out, Letterbox(nw / w, nh / h, float(px), float(py))


def to_nchw(rgb: np.ndarray, mean: np.ndarray, std: np.ndarray, bgr: bool = False) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, 3, H, W): x/255, minus mean, over std."""
    x = rgb[:, :, ::-1] if bgr else rgb
    x = (x.astype(np.float32) * np.float32(1.0 / 255.0) - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
