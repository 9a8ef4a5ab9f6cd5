"""Depth PNGs of the common data sets, as float32 metres with NaN where there is no measurement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import read_png16


def _scaled(path: Path | str, units_per_metre: float) -> np.ndarray:
    raw = read_png16(path)
    depth = raw.astype(np.float32) / np.float32(units_per_metre)
    depth[raw == 0] = np.nan
    return depth


def read_kitti_depth(path: Path | str) -> np.ndarray:
    """KITTI depth (annotated / velodyne projected): uint16, metres = value / 256, 0 = none."""
    return _scaled(path, 256.0)


def read_nyu_depth(path: Path | str) -> np.ndarray:
    """NYU-style (and this project's synthetic sets): uint16 millimetres, 0 = none."""
    return _scaled(path, 1000.0)


def read_tum_depth(path: Path | str) -> np.ndarray:
    """TUM RGB-D: uint16, metres = value / 5000, 0 = none."""
    return _scaled(path, 5000.0)
