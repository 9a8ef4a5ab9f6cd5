"""ROS camera_info YAML (camera_calibration_parsers format) -> sensor_msgs/CameraInfo, and the
checks a CameraInfo must pass before its K is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: focal lengths above this (pixels) are not a camera (1e300 froze the odometry)
MAX_FOCAL_PX = 1e6


def camera_info_problem(msg: Any) -> str:
    """'' when a sensor_msgs/CameraInfo can be used, else why not: K finite with 9 values,
    positive focal lengths below MAX_FOCAL_PX, non-singular, principal point inside the image
    (when the size is given), finite distortion."""
    from .pipelines.cv_geometry import check_intrinsics

    k = np.asarray(list(msg.k), np.float64)
    if k.size != 9:
        return f"k has {k.size} values, not 9"
    if not np.isfinite(k).all():
        return f"k is not finite: {k.tolist()}"
    K = k.reshape(3, 3)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if not (0 < fx < MAX_FOCAL_PX and 0 < fy < MAX_FOCAL_PX):
        return f"focal lengths fx={fx:g}, fy={fy:g} must be positive and below {MAX_FOCAL_PX:g} px"
    if not np.allclose(K[2], [0, 0, 1]):
        return f"the last row of k must be [0, 0, 1], got {K[2].tolist()}"
    why = check_intrinsics(K)
    if why:
        return why
    w, h = int(msg.width), int(msg.height)
    if (w == 0) != (h == 0):
        return f"size {w}x{h}: give both width and height, or neither"
    if w and h and not (0 <= cx <= w and 0 <= cy <= h):
        return f"principal point ({cx:g}, {cy:g}) is outside the {w}x{h} image"
    d = np.asarray(list(msg.d), np.float64)
    if d.size and not np.isfinite(d).all():
        return "distortion coefficients d are not finite"
    return ""


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
        raise ValueError(
            f"camera_info file '{path}' is not in the ROS camera_info YAML format "
            f"(image_width, image_height, camera_matrix.data, ...): {exc!r}"
        ) from None
    problem = camera_info_problem(msg)
    if problem:
        raise ValueError(f"camera_info file '{path}': {problem}")
    return msg


def resolve_camera_info_url(url: str) -> Path:
    """A camera_info_manager URL -> the YAML file: ``file:///abs/path.yaml``, ``package://pkg/rel.yaml``
    (``pkg``'s share folder, found through AMENT_PREFIX_PATH; this package also in a checkout), or a
    plain path (relative: against the checkout, then the installed share). ValueError names what is
    missing."""
    import os

    from .workspace import resolve_path, search_roots

    if url.startswith("file://"):
        path = Path(url[len("file://") :]).expanduser()
    elif url.startswith("package://"):
        pkg, _, rel = url[len("package://") :].partition("/")
        if not pkg or not rel:
            raise ValueError(f"camera_info_url '{url}': expected package://<package>/<path>")
        shares = [Path(p) / "share" / pkg for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if pkg == "perception_nodes":
            shares = [*search_roots(), *shares]
        found = next((s / rel for s in shares if (s / rel).is_file()), None)
        if found is None:
            raise ValueError(f"camera_info_url '{url}': no {rel} in the share folder of '{pkg}' (is it installed?)")
        path = found
    elif "://" in url:
        raise ValueError(f"camera_info_url '{url}': only file:// and package:// URLs (or a path) are supported")
    else:
        path = resolve_path(url)
    if not path.is_file():
        raise ValueError(f"camera_info_url '{url}': {path} is not a file")
    return path
