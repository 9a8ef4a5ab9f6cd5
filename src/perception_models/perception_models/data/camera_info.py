"""The ROS camera_info YAML (camera_calibration_parsers' layout) that sequence folders carry."""

from __future__ import annotations

import numpy as np


def camera_info_dict(K: np.ndarray, width: int, height: int, name: str) -> dict:
    """camera_info YAML content for a pinhole camera ``K`` without distortion."""
    K = np.asarray(K, np.float64).reshape(3, 3)
    P = np.hstack([K, np.zeros((3, 1))])
    return {
        "image_width": int(width),
        "image_height": int(height),
        "camera_name": name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [float(x) for x in K.reshape(-1)]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [float(x) for x in np.eye(3).reshape(-1)]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [float(x) for x in P.reshape(-1)]},
    }
