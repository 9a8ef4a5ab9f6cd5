"""EuRoC MAV (ASL) layout: ``mav0/cam0/{data.csv, data/, sensor.yaml}`` and
``mav0/state_groundtruth_estimate0/data.csv``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from .common import DataFormatError
from .tum import associate


@dataclass
class EurocCamera:
    K: np.ndarray  # 3x3
    distortion: np.ndarray  # radial-tangential k1 k2 p1 p2
    T_body_cam: np.ndarray  # 4x4 (sensor -> body)
    resolution: tuple[int, int]  # width, height


@dataclass
class EurocFrame:
    time_ns: int
    image_path: Path
    T_world_body: np.ndarray | None  # ground truth (body = IMU frame), nearest within max_dt


def _csv(path: Path, cols: int) -> list[list[str]]:
    if not path.is_file():
        raise DataFormatError(f"{path}: missing (EuRoC layout: mav0/cam0/data.csv)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        r = [c.strip() for c in line.split(",")]
        if len(r) < cols:
            raise DataFormatError(f"{path}:{n}: expected {cols} columns, got {len(r)}")
        rows.append(r)
    return rows


def load_euroc_camera(cam_dir: Path | str) -> EurocCamera:
    path = Path(cam_dir) / "sensor.yaml"
    try:
        y = yaml.safe_load(path.read_text())
        fu, fv, cu, cv = y["intrinsics"]
        T = np.array(y["T_BS"]["data"], float).reshape(4, 4)
        return EurocCamera(
            np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1.0]]),
            np.array(y.get("distortion_coefficients", [0, 0, 0, 0]), float),
            T,
            tuple(y["resolution"]),
        )  # type: ignore[arg-type]
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a EuRoC sensor.yaml ({type(exc).__name__}: {exc})") from None


def load_euroc(mav0: Path | str, camera: str = "cam0", max_dt_s: float = 0.005) -> tuple[list[EurocFrame], EurocCamera]:
    """Frames of one EuRoC camera with the ground-truth body pose associated by timestamp."""
    from ..synth.geometry import make_pose, quaternion_to_matrix

    root = Path(mav0)
    cam_dir = root / camera
    rows = _csv(cam_dir / "data.csv", 2)
    times = np.array([int(r[0]) for r in rows], np.int64)
    gt_path = root / "state_groundtruth_estimate0" / "data.csv"
    pose_of: dict[int, np.ndarray] = {}
    if gt_path.is_file():
        gt = _csv(gt_path, 8)
        t_gt = np.array([int(r[0]) for r in gt], np.int64)
        vals = np.array([[float(c) for c in r[1:8]] for r in gt])
        for i, k in associate(times / 1e9, t_gt / 1e9, max_dt_s):
            p, (qw, qx, qy, qz) = vals[k, :3], vals[k, 3:7]
            pose_of[i] = make_pose(quaternion_to_matrix(np.array([qx, qy, qz, qw])), p)
    frames = [EurocFrame(int(t), cam_dir / "data" / r[1], pose_of.get(i)) for i, (t, r) in enumerate(zip(times, rows))]
    return frames, load_euroc_camera(cam_dir)
