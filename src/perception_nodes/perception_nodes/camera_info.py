"""ROS camera_info YAML (camera_calibration_parsers format) -> sensor_msgs/CameraInfo."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_camera_info(path: str | Path) -> Any:
    from sensor_msgs.msg import CameraInfo

    data = yaml.safe_load(Path(path).read_text())
    try:
        msg = CameraInfo()
        msg.width, msg.height = int(data["image_width"]), int(data["image_height"])
        msg.distortion_model = str(data.get("distortion_model", "plumb_bob"))
        msg.k = [float(x) for x in data["camera_matrix"]["data"]]
        msg.d = [float(x) for x in data.get("distortion_coefficients", {}).get("data", [])]
        msg.r = [float(x) for x in data.get("rectification_matrix", {}).get("data", [1, 0, 0, 0, 1, 0, 0, 0, 1])]
        p = data.get("projection_matrix", {}).get("data")
        msg.p = [float(x) for x in p] if p else [*msg.k[0:3], 0.0, *msg.k[3:6], 0.0, *msg.k[6:9], 0.0]
    except (KeyError, TypeError, ValueError, AssertionError) as exc:
        raise ValueError(f"camera_info file '{path}' is not in the ROS camera_info YAML format "
                         f"(image_width, image_height, camera_matrix.data, ...): {exc!r}") from None
    if len(msg.k) != 9:
        raise ValueError(f"camera_info file '{path}': camera_matrix needs 9 values")
    return msg
