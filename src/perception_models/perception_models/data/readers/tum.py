"""TUM RGB-D sequences (rgb.txt, depth.txt, groundtruth.txt) and TUM trajectory files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import DataFormatError

TUM_FR3_INTRINSICS = np.array([[535.4, 0.0, 320.1], [0.0, 539.2, 247.6], [0.0, 0.0, 1.0]])  # fr3, undistorted


def _rows(path: Path, min_cols: int) -> list[list[str]]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read ({exc.strerror})") from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cols = line.replace(",", " ").split()
        if len(cols) < min_cols:
            raise DataFormatError(f"{path}:{n}: expected {min_cols} columns, got {len(cols)}")
        rows.append(cols)
    return rows


def read_tum_trajectory(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """TUM trajectory ``t tx ty tz qx qy qz qw`` -> times (N,) and poses (N, 4, 4) (sensor -> world)."""
    from ..synth.geometry import make_pose, quaternion_to_matrix

    rows = _rows(Path(path), 8)
    try:
        vals = np.array([[float(c) for c in r[:8]] for r in rows])
    except ValueError as exc:
        raise DataFormatError(f"{path}: non-numeric value ({exc})") from None
    poses = np.array([make_pose(quaternion_to_matrix(v[4:8]), v[1:4]) for v in vals]).reshape(-1, 4, 4)
    return vals[:, 0], poses


def tum_line(t: float, T: np.ndarray) -> str:
    """One line of a TUM trajectory (what ``read_tum_trajectory`` reads back): ``t tx ty tz qx qy qz
    qw`` of the pose ``T`` (4x4, sensor -> world), 9 decimals."""
    from perception_nodes.transforms import matrix_to_quaternion

    return " ".join(f"{v:.9f}" for v in (t, *T[:3, 3], *matrix_to_quaternion(T[:3, :3])))


def read_file_list(path: Path | str) -> tuple[np.ndarray, list[str]]:
    """``timestamp filename`` lists (rgb.txt, depth.txt)."""
    rows = _rows(Path(path), 2)
    return np.array([float(r[0]) for r in rows]), [r[1] for r in rows]


def associate(a: np.ndarray, b: np.ndarray, max_dt: float = 0.02) -> list[tuple[int, int]]:
    """Greedy one-to-one association of two timestamp lists, closest pairs first (TUM's tool)."""
    if len(a) == 0 or len(b) == 0:
        return []
    idx = np.searchsorted(b, a)
    cands = []
    for i, j in enumerate(idx):
        for k in (j - 1, j):
            if 0 <= k < len(b) and abs(a[i] - b[k]) <= max_dt:
                cands.append((abs(a[i] - b[k]), i, k))
    used_a, used_b, pairs = set(), set(), []
    for _, i, k in sorted(cands):
        if i not in used_a and k not in used_b:
            used_a.add(i)
            used_b.add(k)
            pairs.append((i, k))
    return sorted(pairs)


@dataclass
class RGBDFrame:
    time: float
    rgb_path: Path
    depth_path: Path | None
    pose: np.ndarray | None  # camera -> world (4x4), interpolated-free: nearest ground truth


def load_tum_rgbd(root: Path | str, max_dt: float = 0.02) -> list[RGBDFrame]:
    """Frames of a TUM RGB-D sequence folder; depth and ground truth associated by timestamp
    when the files are there (missing depth.txt / groundtruth.txt leave them None)."""
    root = Path(root)
    if not (root / "rgb.txt").is_file():
        raise DataFormatError(f"{root}: no rgb.txt (is this a TUM RGB-D sequence folder?)")
    t_rgb, f_rgb = read_file_list(root / "rgb.txt")
    depth_of: dict[int, Path] = {}
    if (root / "depth.txt").is_file():
        t_d, f_d = read_file_list(root / "depth.txt")
        depth_of = {i: root / f_d[k] for i, k in associate(t_rgb, t_d, max_dt)}
    pose_of: dict[int, np.ndarray] = {}
    if (root / "groundtruth.txt").is_file():
        t_gt, poses = read_tum_trajectory(root / "groundtruth.txt")
        pose_of = {i: poses[k] for i, k in associate(t_rgb, t_gt, max_dt)}
    return [
        RGBDFrame(float(t), root / f, depth_of.get(i), pose_of.get(i)) for i, (t, f) in enumerate(zip(t_rgb, f_rgb))
    ]


def frames_from_image_folder(folder: Path | str) -> list[RGBDFrame]:
    """A folder of images named by TUM timestamp (e.g. ``1341847980.722988.png``), no depth/GT."""
    files = sorted(Path(folder).glob("*.png"), key=lambda p: float(p.stem))
    if not files:
        raise DataFormatError(f"{folder}: no <timestamp>.png images")
    return [RGBDFrame(float(p.stem), p, None, None) for p in files]
