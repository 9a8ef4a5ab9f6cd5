"""What people look at: per-class colours, the annotated image and 3D markers of detections.

- :func:`class_colors`: the card's ``colors`` when it has them, else a fixed, well-separated
  palette (golden-ratio hues), so a class keeps its colour across frames, nodes and runs;
- :func:`draw_detections`: boxes in their class colour, labels placed so they do not run into each
  other (a label that would overlap one already drawn moves down, then inside its box);
- :func:`ground_markers`: ``visualization_msgs/MarkerArray`` of where detections stand (a cylinder
  and a text per object, in the camera's optical frame), for RViz and Foxglove; every array starts
  with DELETEALL so objects of the previous frame disappear.
"""

from __future__ import annotations

import colorsys
from typing import Any

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.45


def class_colors(classes: list[str], card_colors: list[list[int]] | None = None) -> np.ndarray:
    """(len(classes), 3) uint8 RGB, one per class."""
    if card_colors and len(card_colors) == len(classes):
        return np.asarray(card_colors, np.uint8).reshape(-1, 3)
    hues = (np.arange(len(classes)) * 0.618033988749895) % 1.0
    return np.array([[round(255 * c) for c in colorsys.hsv_to_rgb(h, 0.85, 1.0)] for h in hues], np.uint8).reshape(
        -1, 3
    )


def _overlaps(a: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    return any(a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for b in placed)


def label_rects(boxes: np.ndarray, texts: list[str], image_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Where each box's label goes (x0, y0, x1, y1 of its background): above the box, or moved down
    in steps of its own height until it overlaps no label placed before (higher scores first: the
    caller's order), kept inside the image."""
    h_img, w_img = image_size
    placed: list[tuple[int, int, int, int]] = []
    for (x0, y0, _x1, y1), text in zip(boxes, texts):
        (tw, th), base = cv2.getTextSize(text, FONT, FONT_SCALE, 1)
        lh = th + base + 2
        left = int(min(max(0, round(x0)), max(0, w_img - tw - 2)))
        top = int(round(y0)) - lh
        if top < 0:
            top = int(round(y0))
        rect = (left, top, left + tw + 2, top + lh)
        for _ in range(int(h_img // max(lh, 1)) + 1):
            if not _overlaps(rect, placed) or rect[3] >= h_img:
                break
            rect = (rect[0], rect[1] + lh, rect[2], rect[3] + lh)
        placed.append(rect)
    return placed


def draw_detections(rgb: np.ndarray, det: Any, colors: np.ndarray) -> np.ndarray:
    """Boxes and ``name score`` labels in each class's colour (the label on a filled tag)."""
    out = rgb.copy()
    texts = [f"{n} {s:.2f}" for n, s in zip(det.class_names, det.scores)]
    for (x0, y0, x1, y1), cid, text, rect in zip(
        det.boxes, det.class_ids, texts, label_rects(np.asarray(det.boxes).reshape(-1, 4), texts, rgb.shape[:2])
    ):
        color = tuple(int(c) for c in colors[int(cid) % len(colors)])
        cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x1)) - 1, int(round(y1)) - 1), color, 2)
        cv2.rectangle(out, rect[:2], (rect[2], rect[3]), color, -1)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(out, text, (rect[0] + 1, rect[3] - 3), FONT, FONT_SCALE, ink, 1, cv2.LINE_AA)
    return out


def ground_markers(
    header: Any, det: Any, ground: tuple[np.ndarray, np.ndarray] | None, colors: np.ndarray, ns: str = "detections"
) -> Any:
    """MarkerArray: DELETEALL, then per detection with a ground position a cylinder standing on the
    ground (0.5 m across, 1.7 m tall for a person else 1 m; the optical frame's y points down, so it
    rises along -y) and its class name and distance above it."""
    from visualization_msgs.msg import Marker, MarkerArray

    out = MarkerArray()
    clear = Marker()
    clear.header, clear.ns, clear.action = header, ns, Marker.DELETEALL
    out.markers.append(clear)
    if ground is None:
        return out
    points, valid = ground
    for i, (cid, name) in enumerate(zip(det.class_ids, det.class_names)):
        if not valid[i]:
            continue
        x, y, z = (float(v) for v in points[i])
        r, g, b = (float(c) / 255.0 for c in colors[int(cid) % len(colors)])
        height = 1.7 if name == "person" else 1.0
        body = Marker()
        body.header, body.ns, body.id, body.type, body.action = header, ns, 2 * i, Marker.CYLINDER, Marker.ADD
        # the cylinder's axis is its z: turn it onto the optical frame's -y (up), centred half its height up
        body.pose.position.x, body.pose.position.y, body.pose.position.z = x, y - height / 2, z
        body.pose.orientation.x, body.pose.orientation.w = float(np.sqrt(0.5)), float(np.sqrt(0.5))
        body.scale.x = body.scale.y = 0.5
        body.scale.z = height
        body.color.r, body.color.g, body.color.b, body.color.a = r, g, b, 0.6
        text = Marker()
        text.header, text.ns, text.id = header, ns, 2 * i + 1
        text.type, text.action = Marker.TEXT_VIEW_FACING, Marker.ADD
        text.pose.position.x, text.pose.position.y, text.pose.position.z = x, y - height - 0.3, z
        text.pose.orientation.w = 1.0
        text.scale.z = 0.4
        text.color.r, text.color.g, text.color.b, text.color.a = r, g, b, 1.0
        text.text = f"{name} {float(np.hypot(x, z)):.1f} m"
        out.markers += [body, text]
    return out
