"""Detections (pipelines.detection) -> perception_msgs/Detection2DArray with the input's header:
one message layout for every node that finds boxes (detection node, instance segmentation)."""

from __future__ import annotations

from typing import Any

import numpy as np


def detections_message(header: Any, det: Any, ground: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """Boxes as centre + size in the input image's pixels; ``ground`` (points, valid) adds where each
    detection stands on the ground (metres, optical frame)."""
    from perception_msgs.msg import Detection2D, Detection2DArray

    out = Detection2DArray()
    out.header = header
    for i, ((x0, y0, x1, y1), cid, name, score) in enumerate(
        zip(det.boxes, det.class_ids, det.class_names, det.scores)
    ):
        d = Detection2D()
        d.class_id, d.class_name, d.score = int(cid), name, float(score)
        d.center_x, d.center_y = float((x0 + x1) / 2), float((y0 + y1) / 2)
        d.size_x, d.size_y = float(x1 - x0), float(y1 - y0)
        if ground is not None and ground[1][i]:
            d.ground_valid = True
            d.ground_x, d.ground_y, d.ground_z = (float(v) for v in ground[0][i])
        out.detections.append(d)
    return out
