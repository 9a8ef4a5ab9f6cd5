"""A picture of one frame of a written training set: RGB with boxes, depth, labels, flow.

perception-models data preview out/synth/driving_0000 --frame 10 --out preview.png
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from .readers.depth import read_nyu_depth
from .synth.scene import PALETTE


def colour_depth(depth: np.ndarray, max_depth: float = 80.0) -> np.ndarray:
    """Inverse depth through a colour map (near = bright); no depth = black. RGB uint8."""
    inv = np.where(np.isfinite(depth) & (depth > 0), 1.0 / np.maximum(depth, 1e-3), 0.0)
    lo = 1.0 / max_depth
    hi = max(float(np.nanpercentile(inv[inv > 0], 99)) if (inv > 0).any() else 1.0, lo * 2)
    norm = np.clip((inv - lo) / (hi - lo), 0, 1)
    img = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_MAGMA)
    img[inv == 0] = 0
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def colour_flow(flow: np.ndarray, valid: np.ndarray, max_flow: float | None = None) -> np.ndarray:
    """Flow as hue (direction) and brightness (magnitude); invalid = black. RGB uint8."""
    mag = np.linalg.norm(flow, axis=-1)
    ang = np.arctan2(flow[..., 1], flow[..., 0])
    m = max_flow or max(float(np.percentile(mag[valid], 99)) if valid.any() else 1.0, 1e-3)
    hsv = np.zeros(flow.shape[:2] + (3,), np.uint8)
    hsv[..., 0] = ((ang + np.pi) / (2 * np.pi) * 179).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = (np.clip(mag / m, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    rgb[~valid] = 0
    return rgb


def draw_boxes(rgb: np.ndarray, boxes: list[tuple[float, float, float, float, str]]) -> np.ndarray:
    out = rgb.copy()
    for x0, y0, x1, y1, name in boxes:
        cv2.rectangle(out, (int(x0), int(y0)), (int(x1) - 1, int(y1) - 1), (255, 255, 0), 1)
        cv2.putText(out, name, (int(x0), max(int(y0) - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 0), 1)
    return out


def preview_frame(dataset: Path | str, index: int = 0) -> np.ndarray:
    """A 2x2 mosaic (RGB uint8): image + boxes | depth ; labels | flow to the next frame."""
    from .readers.coco import load_coco
    from .writers import decode_flow_kitti

    root = Path(dataset)
    name = f"{index:06d}.png"
    rgb_path = root / "rgb" / name
    if not rgb_path.is_file():
        raise FileNotFoundError(f"{rgb_path} does not exist (frames: {len(list((root / 'rgb').glob('*.png')))})")
    rgb = cv2.cvtColor(cv2.imread(str(rgb_path)), cv2.COLOR_BGR2RGB)
    samples, _ = load_coco(root / "annotations_coco.json")
    boxes = [(*b, label) for s in samples if s.image_id == index for b, label in zip(s.boxes.tolist(), s.labels)]
    manifest = json.loads((root / "manifest.json").read_text())
    if manifest.get("depth_format") == "npy":
        depth = np.load(root / "depth" / f"{index:06d}.npy")
    else:
        depth = read_nyu_depth(root / "depth" / name)
    labels = cv2.imread(str(root / "labels" / name), cv2.IMREAD_UNCHANGED)
    label_rgb = (0.5 * PALETTE[np.minimum(labels, len(PALETTE) - 1)] + 0.5 * rgb).astype(np.uint8)
    flow_path = root / "flow" / name
    if flow_path.is_file():
        flow, valid = decode_flow_kitti(
            cv2.cvtColor(cv2.imread(str(flow_path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        )
        flow_rgb = colour_flow(flow, valid)
    else:
        flow_rgb = np.zeros_like(rgb)
    top = np.hstack([draw_boxes(rgb, boxes), colour_depth(depth)])
    bottom = np.hstack([label_rgb, flow_rgb])
    return np.vstack([top, bottom])
