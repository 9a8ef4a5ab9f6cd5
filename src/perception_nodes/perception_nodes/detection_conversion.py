"""Detections (pipelines.detection) <-> vision_msgs, one layout for every node that finds boxes
(detection node, instance segmentation) and for everything that reads them (eval, tests, probes).

``vision_msgs/Detection2DArray`` (the input's header; each Detection2D repeats it):
- ``bbox``: centre + size in the *input* image's pixels (origin at the top-left pixel corner,
  x right, y down), ``theta`` 0;
- ``results[0].hypothesis``: ``class_id`` = the card's class index as a string, ``score`` in [0, 1];
  the names come on ``~/label_info`` (``vision_msgs/LabelInfo``, transient local);
- ``results[0].pose.pose.position``: where the object stands on a flat ground, metres in the
  header's frame (the camera's optical frame: x right, y down, z forward), from detection_node with
  CameraInfo and the camera's height; NaN when there is none (no CameraInfo, no camera height, or
  the box's bottom looks above the horizon);
- ``id``: the instance index in ``~/instances`` for instance segmentation, else empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def detections_message(
    header: Any, det: Any, ground: tuple[np.ndarray, np.ndarray] | None = None, instance_ids: bool = False
) -> Any:
    """``det`` (boxes x0 y0 x1 y1, class_ids, scores) -> vision_msgs/Detection2DArray; ``ground``
    (points, valid) adds where each detection stands; ``instance_ids``: ``id`` = its index + 1."""
    from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

    out = Detection2DArray()
    out.header = header
    for i, ((x0, y0, x1, y1), cid, score) in enumerate(zip(det.boxes, det.class_ids, det.scores)):
        d = Detection2D()
        d.header = header
        d.bbox.center.position.x, d.bbox.center.position.y = float((x0 + x1) / 2), float((y0 + y1) / 2)
        d.bbox.size_x, d.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = str(int(cid)), float(score)
        p = hyp.pose.pose.position
        if ground is not None and ground[1][i]:
            p.x, p.y, p.z = (float(v) for v in ground[0][i])
        else:
            p.x = p.y = p.z = math.nan
        d.results.append(hyp)
        d.id = str(i + 1) if instance_ids else ""
        out.detections.append(d)
    return out


def label_info_message(header: Any, classes: list[str], threshold: float) -> Any:
    """vision_msgs/LabelInfo: class index -> the card's name, and the score threshold in use."""
    from vision_msgs.msg import LabelInfo, VisionClass

    info = LabelInfo()
    info.header = header
    info.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(classes)]
    info.threshold = float(threshold)
    return info


@dataclass
class Box:
    """One detection read back from a message, whatever its layout."""

    x0: float
    y0: float
    x1: float
    y1: float
    class_name: str
    score: float
    ground: tuple[float, float, float] | None  # metres in the header's frame


def read_detections(msg: Any, names: list[str] | dict[int, str] | None = None) -> list[Box]:
    """A Detection2DArray -> Boxes: vision_msgs (class ids named by ``names``: a list or LabelInfo's
    map; an id without a name keeps the id) or the perception_msgs layout of bags recorded before
    vision_msgs (class_name, centre_x ..., ground_*)."""
    out = []
    lookup = dict(enumerate(names)) if isinstance(names, list) else (names or {})
    for d in msg.detections:
        if hasattr(d, "bbox"):
            cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
            w, h = d.bbox.size_x, d.bbox.size_y
            hyp = d.results[0] if len(d.results) else None
            cid = hyp.hypothesis.class_id if hyp is not None else ""
            name = lookup.get(int(cid), cid) if cid.lstrip("-").isdigit() else cid
            score = float(hyp.hypothesis.score) if hyp is not None else 0.0
            ground = None
            if hyp is not None:
                p = hyp.pose.pose.position
                if all(math.isfinite(v) for v in (p.x, p.y, p.z)):
                    ground = (float(p.x), float(p.y), float(p.z))
        else:  # perception_msgs/Detection2D (older recordings)
            cx, cy, w, h = d.center_x, d.center_y, d.size_x, d.size_y
            name, score = d.class_name, float(d.score)
            ground = (d.ground_x, d.ground_y, d.ground_z) if getattr(d, "ground_valid", False) else None
        out.append(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, str(name), score, ground))
    return out


def label_map(msg: Any) -> dict[int, str]:
    """vision_msgs/LabelInfo -> {class id: name}."""
    return {int(c.class_id): str(c.class_name) for c in msg.class_map}


def xyxy(boxes: list[Box]) -> np.ndarray:
    """Boxes -> (N, 4) corners x0, y0, x1, y1."""
    return np.array([[b.x0, b.y0, b.x1, b.y1] for b in boxes], np.float64).reshape(-1, 4)
