"""KITTI odometry sequences (``image_0/`` or ``image_l/`` frames, ``poses.txt`` rows of the 3x4
T_world_cam with the world = the first camera, ``calib.txt`` P0, ``times.txt``), and their
conversion into this project's sequence-folder layout so that ``perception-models evaluate --task
depth`` runs the odometry estimators on them against the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import DataFormatError, read_rgb
from .tum import tum_line


def read_kitti_odometry(root: Path | str) -> tuple[list[Path], np.ndarray, np.ndarray, np.ndarray]:
    """Frames, K (3x3), T_world_cam (N, 4, 4) and times (N,) of a KITTI odometry folder."""
    root = Path(root)
    folder = next((root / d for d in ("image_0", "image_l", "image_2") if (root / d).is_dir()), None)
    if folder is None or not (root / "poses.txt").is_file() or not (root / "calib.txt").is_file():
        raise DataFormatError(f"{root}: not a KITTI odometry folder (image_0/ or image_l/, poses.txt, calib.txt)")
    frames = sorted(folder.glob("*.png"))
    rows = [line.split() for line in (root / "calib.txt").read_text().splitlines() if line.strip()]
    P0 = np.array([float(v) for v in (rows[0][1:] if rows[0][0].startswith("P") else rows[0])]).reshape(3, 4)
    poses = np.loadtxt(root / "poses.txt").reshape(-1, 3, 4)
    T = np.tile(np.eye(4), (len(poses), 1, 1))
    T[:, :3] = poses
    times = np.loadtxt(root / "times.txt").reshape(-1) if (root / "times.txt").is_file() else np.arange(len(T)) * 0.1
    n = min(len(frames), len(T), len(times))
    if n < 3:
        raise DataFormatError(f"{root}: {len(frames)} frames, {len(T)} poses: need 3 or more of each")
    return frames[:n], P0[:, :3], T[:n], times[:n]


def kitti_to_sequence(
    root: Path | str, out: Path | str, camera_height: float = 1.65, limit: int = 0, start: int = 0
) -> Path:
    """A sequence folder (``rgb/``, ``camera_info.yaml``, ``trajectory_tum.txt``) from a KITTI
    odometry folder: its frames from ``start`` on (at most ``limit``; 0 = all), e.g. the later part
    of a drive held out from a student trained on the earlier part. The trajectory is the camera's
    optical frame in a z-up world whose ground is z = 0 (the camera ``camera_height`` above it:
    1.65 m on KITTI's car) at the first taken frame, as the synthetic sets give it, so the
    camera-height scale and the ground normal come from it the same way."""
    import cv2
    import yaml

    from perception_nodes.transforms import T_BODY_OPTICAL

    from ..camera_info import camera_info_dict

    frames, K, T, times = read_kitti_odometry(root)
    end = start + limit if limit else len(frames)
    if not 0 <= start < len(frames) - 2:
        raise DataFormatError(f"{root}: start {start} leaves fewer than 3 of its {len(frames)} frames")
    frames, T, times = frames[start:end], T[start:end], times[start:end]
    T = np.linalg.inv(T[0]) @ T  # the world is the first taken camera's: the ground under it is z = 0
    out = Path(out)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        rgb = read_rgb(f)
        cv2.imwrite(str(out / "rgb" / f"{i:06d}.png"), rgb[:, :, ::-1])
        if i == 0:
            h, w = rgb.shape[:2]
    info = camera_info_dict(K, w, h, f"kitti_{Path(root).name}")
    (out / "camera_info.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    T_up_world = T_BODY_OPTICAL.copy()  # KITTI's world is the first camera's optical frame (REP-103 axes)
    T_up_world[2, 3] = camera_height
    lines = [tum_line(t, T_up_world @ Ti) for t, Ti in zip(times, T)]
    (out / "trajectory_tum.txt").write_text("\n".join(lines) + "\n")
    return out
