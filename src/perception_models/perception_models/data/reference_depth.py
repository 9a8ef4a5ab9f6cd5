"""Sparse reference depth for real footage whose camera poses are known (KITTI's ground-truth
poses, a motion-capture or lidar-SLAM trajectory): corners of each frame tracked through its
neighbours and triangulated from those poses, so that a depth network can be measured on real frames
that have no depth sensor (``perception-models data reference-depth``).

Per frame i: Shi-Tomasi corners, tracked frame to frame up to ``window`` frames forwards and
backwards with pyramidal Lucas-Kanade (a track ends where the forward-backward error exceeds
``max_fb_px``); the neighbours' rotations re-fitted to the tracks (``refine_rotations``: KITTI's
GPS/INS rotations are 0.1-0.4 degrees off, a pixel or more; the translations stay as given and carry
the metric scale); each point triangulated by linear least squares (DLT) over every view that holds
it, and kept only where

- every view sees it in front of the camera and reprojects it within ``max_reproj_px``,
- the widest angle between two of its rays is at least ``min_parallax_deg`` (depth error about
  ``sigma_px / (f * angle)`` of the depth: below 1 % at 3 degrees, f = 700 px, 0.3 px),
- at least ``min_views`` views hold it.

What it cannot see: objects that move along the epipolar lines (a car ahead driving the same way)
triangulate consistently at a wrong depth; textureless regions get no points; points close to the
focus of expansion of a forward-moving camera have too little parallax and are left out. The
``ground_height`` check (a RANSAC plane through the points below the camera) measures the
reference's metric scale against a camera's known mounting height. Against rendered depth
(``benchmarks/reference_depth.py``, 6 validation scenes) the reference is within AbsRel 0.045
(driving; median 0.014) and 0.018 (indoor), the same with 0.15-degree rotation noise once re-fitted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass
class ReferenceDepth:
    depth: np.ndarray  # (H, W) float32 metres, NaN where no point
    points: np.ndarray  # (n, 3) triangulated points in the frame's optical frame
    reprojection_px: np.ndarray  # (n,) worst reprojection error over the point's views
    parallax_deg: np.ndarray  # (n,) widest angle between two of its rays
    tracked: int  # corners tracked into at least one other view


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _track(
    frames: dict[int, np.ndarray], i: int, pts: np.ndarray, window: int, max_fb_px: float
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Chained LK from frame i: {j: (positions (n, 2), alive (n,))} for the ``frames`` (grey, by
    index) within ``window``."""
    lk = {"winSize": (21, 21), "maxLevel": 4, "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)}
    out = {}
    for step in (1, -1):
        prev, cur, alive = frames[i], pts.astype(np.float32), np.ones(len(pts), bool)
        for k in range(1, window + 1):
            j = i + step * k
            if j not in frames or not alive.any():
                break
            nxt, st, _ = cv2.calcOpticalFlowPyrLK(prev, frames[j], cur, None, **lk)
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(frames[j], prev, nxt, None, **lk)
            fb = np.linalg.norm(back - cur, axis=1)
            h, w = frames[j].shape[:2]
            inside = (nxt[:, 0] >= 0) & (nxt[:, 0] <= w - 1) & (nxt[:, 1] >= 0) & (nxt[:, 1] <= h - 1)
            alive &= (st[:, 0] == 1) & (st_b[:, 0] == 1) & (fb < max_fb_px) & inside
            out[j] = (nxt.copy(), alive.copy())
            prev, cur = frames[j], nxt
    return out


def triangulate(
    uv: np.ndarray, seen: np.ndarray, K: np.ndarray, T_view_ref: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points (n, 3) in the reference camera from their pixels ``uv`` (V, n, 2) in V views whose
    poses ``T_view_ref`` (V, 4, 4) map reference-camera points into each view; ``seen`` (V, n)
    says which views hold which point. Linear least squares on normalised coordinates (DLT), then
    the worst reprojection error (px) over the seen views and the widest ray angle (degrees)."""
    V, n = seen.shape
    Kinv = np.linalg.inv(K)
    xn = np.einsum("ij,vnj->vni", Kinv, np.concatenate([uv, np.ones((V, n, 1))], axis=2))
    P = T_view_ref[:, :3, :]  # (V, 3, 4)
    rows_x = xn[..., 0:1] * P[:, None, 2, :] - P[:, None, 0, :]  # (V, n, 4)
    rows_y = xn[..., 1:2] * P[:, None, 2, :] - P[:, None, 1, :]
    w = seen[..., None].astype(np.float64)
    A = np.concatenate([rows_x * w, rows_y * w], axis=0).transpose(1, 0, 2)  # (n, 2V, 4)
    _u, _s, vh = np.linalg.svd(A)
    Xh = vh[:, -1, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:4]
    Xv = np.einsum("vij,nj->vni", P, np.concatenate([X, np.ones((n, 1))], axis=1))  # (V, n, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        proj = np.einsum("ij,vnj->vni", K, Xv / Xv[..., 2:3])[..., :2]
        err = np.linalg.norm(proj - uv, axis=2)
    err = np.where(seen & (Xv[..., 2] > 0), err, np.where(seen, np.inf, 0.0))
    centres = np.stack([-T[:3, :3].T @ T[:3, 3] for T in T_view_ref])  # (V, 3) in the reference camera
    rays = X[None] - centres[:, None]  # (V, n, 3)
    rays /= np.linalg.norm(rays, axis=2, keepdims=True)
    cos = np.einsum("vni,uni->nvu", rays, rays)
    both = seen.T[:, :, None] & seen.T[:, None, :]
    angle = np.degrees(np.arccos(np.clip(np.where(both, cos, 1.0), -1.0, 1.0))).max(axis=(1, 2))
    return X, np.nan_to_num(err.max(axis=0), nan=np.inf), angle


def rotation_matrices(w: np.ndarray) -> np.ndarray:
    """Rotation matrices (m, 3, 3) of rotation vectors (m, 3) (Rodrigues)."""
    theta = np.linalg.norm(w, axis=1)[:, None, None]
    k = w / np.maximum(theta[:, :, 0], 1e-12)
    Kx = np.zeros((len(w), 3, 3))
    Kx[:, 0, 1], Kx[:, 0, 2], Kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    Kx -= Kx.transpose(0, 2, 1)
    return np.eye(3) + np.sin(theta) * Kx + (1 - np.cos(theta)) * Kx @ Kx


def refine_rotations(
    uv: np.ndarray,
    seen: np.ndarray,
    K: np.ndarray,
    T_view_ref: np.ndarray,
    huber_px: float = 1.0,
    max_nfev: int = 200,
    translations: bool = False,
) -> np.ndarray:
    """The neighbours' rotations re-fitted to the images: robust (Huber) least squares of the
    reprojection errors over the views' rotations and the points' inverse depths along their rays in
    the reference view (sparse trust-region, scipy), the translations kept as given: they carry the
    metric scale, and GPS/INS gives them to centimetres while its rotations are off by a tenth of a
    degree here and there, a pixel at f = 700 px. View 0 is the reference and stays put. Returns the
    refined ``T_view_ref``. ``translations``: the translations are re-fitted too and only the sum of
    their lengths kept (poses from visual odometry: the scale from the ground, right on average, but
    each step's length a few percent and its direction a few degrees off).
    """
    from scipy.optimize import least_squares
    from scipy.sparse import csr_matrix

    V, n = seen.shape
    m = V - 1
    X0, err, _angle = triangulate(uv, seen, K, T_view_ref)
    ok = np.isfinite(err) & (err < 8 * huber_px) & (X0[:, 2] > 0)
    views, pts = np.nonzero(seen[1:] & ok)
    if m == 0 or len(views) < 20:
        return T_view_ref.copy()
    views = views + 1
    obs = uv[views, pts]
    rays = np.c_[(uv[0] - K[:2, 2]) / K[[0, 1], [0, 1]], np.ones(n)]  # reference pixels at z = 1
    R0, t0 = T_view_ref[1:, :3, :3], T_view_ref[1:, :3, 3]
    k = 6 if translations else 3  # parameters per view: rotation (+ the translation)
    length = np.linalg.norm(t0, axis=1)

    def poses(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = x[: k * m].reshape(m, k)
        R = rotation_matrices(p[:, :3]) @ R0
        if not translations:
            return R, t0
        # the translations move freely (in units of their own length); the overall scale, which the
        # images cannot see, is put back afterwards: the given lengths' sum
        return R, t0 + length[:, None] * p[:, 3:]

    def residuals(x: np.ndarray) -> np.ndarray:
        R, t = poses(x)
        Xc = np.einsum("oij,oj->oi", R[views - 1], rays[pts] / x[k * m + pts, None]) + t[views - 1]
        return (Xc[:, :2] / Xc[:, 2:3] * K[[0, 1], [0, 1]] + K[:2, 2] - obs).ravel()

    rows = np.repeat(np.arange(2 * len(views)), k + 1)
    cols = np.stack([*(k * (views - 1) + c for c in range(k)), k * m + pts], axis=1)
    cols = np.repeat(cols, 2, axis=0).ravel()
    sparsity = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(2 * len(views), k * m + n))
    x0 = np.r_[np.zeros(k * m), np.where(ok, 1.0 / np.where(ok, X0[:, 2], 1.0), 0.1)]
    # radians and inverse metres differ in size: scaled by hand (the Jacobian's own scale stalls it)
    scale = np.r_[np.tile([1e-3] * 3 + [3e-2] * (k - 3), m), np.full(n, 1e-2)]  # translations: of their length
    fit = least_squares(
        residuals, x0, jac_sparsity=sparsity, loss="huber", f_scale=huber_px, x_scale=scale, max_nfev=max_nfev
    )
    T = T_view_ref.copy()
    R, t = poses(fit.x)
    if translations:
        t = t * (length.sum() / max(float(np.linalg.norm(t, axis=1).sum()), 1e-12))
    T[1:, :3, :3], T[1:, :3, 3] = R, t
    return T


def reference_depth(
    frames: Sequence[np.ndarray],
    K: np.ndarray,
    T_world_cam: np.ndarray,
    i: int,
    window: int = 4,
    min_views: int = 3,
    max_reproj_px: float = 0.7,
    min_parallax_deg: float = 3.0,
    max_fb_px: float = 0.5,
    max_corners: int = 4000,
    refine: bool = True,
    refine_translations: bool = False,
) -> ReferenceDepth:
    """Frame i's sparse depth from its neighbours' pixels and the known poses ``T_world_cam``
    (N, 4, 4, optical frames: x right, y down, z forward; any world, metres). ``refine``: re-fit
    the neighbours' rotations first (``refine_rotations``), the given translations keeping the scale
    (``refine_translations``: re-fitted too, only the sum of their lengths kept)."""
    gray = {j: _gray(frames[j]) for j in range(max(0, i - window), min(len(frames), i + window + 1))}
    h, w = gray[i].shape[:2]
    corners = cv2.goodFeaturesToTrack(gray[i], max_corners, 0.005, 4, blockSize=7)
    empty = ReferenceDepth(np.full((h, w), np.nan, np.float32), np.zeros((0, 3)), np.zeros(0), np.zeros(0), 0)
    if corners is None:
        return empty
    crit = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    pts = cv2.cornerSubPix(gray[i], corners.astype(np.float32), (5, 5), (-1, -1), crit).reshape(-1, 2)
    tracks = _track(gray, i, pts, window, max_fb_px)
    views = [i, *sorted(tracks)]
    uv = np.stack([pts, *(tracks[j][0] for j in views[1:])]).astype(np.float64)
    seen = np.stack([np.ones(len(pts), bool), *(tracks[j][1] for j in views[1:])])
    tracked = int((seen[1:].sum(axis=0) > 0).sum())
    keep = seen.sum(axis=0) >= min_views
    if not keep.any():
        return empty
    uv, seen, pts = uv[:, keep], seen[:, keep], pts[keep]
    T_view_ref = np.stack([np.linalg.inv(T_world_cam[j]) @ T_world_cam[i] for j in views])
    if refine:
        T_view_ref = refine_rotations(uv, seen, K, T_view_ref, translations=refine_translations)
    X, err, angle = triangulate(uv, seen, K, T_view_ref)
    good = (err <= max_reproj_px) & (angle >= min_parallax_deg) & (X[:, 2] > 0)
    X, err, angle, px = X[good], err[good], angle[good], pts[good]
    depth = np.full((h, w), np.nan, np.float32)
    c = np.clip(np.round(px).astype(int), 0, [w - 1, h - 1])
    depth[c[:, 1], c[:, 0]] = X[:, 2]
    return ReferenceDepth(depth, X, err, angle, tracked)


def ground_height(
    points: np.ndarray, min_below: float = 0.5, threshold: float = 0.05, max_tilt_deg: float = 15.0
) -> tuple[float, int]:
    """Distance (m) from the camera to the level plane (normal within ``max_tilt_deg`` of the
    camera's up) that most of the points at least ``min_below`` metres below it lie on (the nodes'
    RANSAC ``fit_plane_ransac``, ``threshold`` m), and how many do; (nan, 0) without one."""
    from perception_nodes.pipelines.metric_scale import fit_plane_ransac

    fit = fit_plane_ransac(points[points[:, 1] > min_below], threshold, max_tilt_deg, 500, 10)
    return (float("nan"), 0) if fit is None else (fit.distance, fit.inliers)


def _grid(shape: tuple[int, ...], stride: int) -> np.ndarray:
    """The pixels (H, W) at the centre of each ``stride`` x ``stride`` cell."""
    grid = np.zeros(shape[:2], bool)
    grid[stride // 2 :: stride, stride // 2 :: stride] = True
    return grid


def ground_prior_depth(
    ground: np.ndarray,
    K: np.ndarray,
    up: np.ndarray,
    height: float,
    max_depth: float = 20.0,
    stride: int = 16,
    erode_px: int = 5,
) -> np.ndarray:
    """Depth (H, W; NaN elsewhere) of the pixels of the mask ``ground`` (a segmenter's ground class)
    on the plane ``height`` metres below the camera whose unit normal ``up`` (optical frame) points
    from the plane to the camera: a pixel's ray r (z = 1) meets it at z = -height / (up . r).
    Sampled every ``stride`` pixels (so the plane does not outweigh the triangulated points in a
    loss), ``erode_px`` away from the mask's edges (object bases, mislabelled rims) and no further
    than ``max_depth``: a 0.5-degree error in the normal is 0.5 % of the depth at 1 m height and
    z / 115 m of it further out (9 % at 20 m with the camera 1.65 m up)."""
    h, w = ground.shape
    mask = ground.astype(np.uint8)
    if erode_px > 0:
        mask = cv2.erode(mask, np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8))
    v, u = np.nonzero(_grid(ground.shape, stride) & (mask > 0))
    depth = np.full((h, w), np.nan, np.float32)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(len(u))], axis=1)
    down = -(rays @ np.asarray(up, np.float64))  # > 0 for rays below the horizon
    with np.errstate(divide="ignore"):
        z = np.where(down > 1e-6, height / down, np.inf)
    ok = z <= max_depth
    depth[v[ok], u[ok]] = z[ok]
    return depth


def write_sequence_reference(
    root: Path | str,
    out: Path | str | None = None,
    window: int = 4,
    max_reproj_px: float = 0.7,
    min_parallax_deg: float = 3.0,
    camera_height: float | None = None,
    progress: bool = True,
    ground_segmenter: Path | str | None = None,
    ground_max_depth: float = 20.0,
    ground_stride: int = 16,
    refine_translations: bool = False,
) -> dict:
    """Reference depth for every frame of a sequence folder (``rgb/``, ``camera_info.yaml``,
    ``trajectory_tum.txt`` of the optical frame, e.g. from ``data kitti-odometry``), written as
    millimetre PNGs (0 = none) to ``out`` (default ``root/depth``: what ``evaluate --task depth``
    reads). Returns the statistics, also written among them as ``reference_depth.json``;
    the ground check compares the plane under the camera with its mounting height, ``camera_height``
    (m; default the first pose's height: this project's sequence folders put the ground at z = 0).

    ``ground_segmenter`` (a segmentation model with a ``ground`` class): training targets, not a
    reference to measure against. The road has no corners to triangulate, so a depth network taught
    the points alone learns the lower rows from the renders, whose camera is not this one (and the
    camera-height scale, which fits the ground there, then fails); these maps add the segmented
    ground's pixels at their depth on the plane ``camera_height`` below the camera, its normal the
    trajectory's up (``ground_prior_depth``; where a road slopes under a gravity-aligned trajectory
    the plane tilts with it). Triangulated points win where both exist; the statistics give the
    median ratio of the triangulated corners that the segmenter calls ground to the plane's depth
    there (kerbs, verges and hedge bottoms sit above the road: on KITTI 0.83), and the json marks the
    maps so that ``evaluate`` warns."""
    import json

    from tqdm import tqdm

    from perception_nodes.transforms import ground_normal_in_optical

    from ..node_pipelines import ground_segmenter as segmenter
    from ..train.depth_data import load_synthetic_sequence
    from .readers.common import read_rgb
    from .readers.tum import read_tum_trajectory
    from .writers import depth_to_png_mm

    root = Path(root)
    seq = load_synthetic_sequence(root)
    traj = root / "trajectory_tum.txt"
    if not traj.is_file():
        raise FileNotFoundError(f"{root}: no trajectory_tum.txt (the reference needs the camera's poses)")
    _times, poses = read_tum_trajectory(traj)
    if len(poses) < len(seq.frames):
        raise ValueError(f"{root}: {len(seq.frames)} frames but {len(poses)} poses")
    out = Path(out) if out else root / "depth"
    if any(out.glob("*.png")) and not (out / "reference_depth.json").is_file():
        raise FileExistsError(f"{out} holds depth maps that are no reference of this command: give another --out")
    if camera_height is None:
        camera_height = float(poses[0][2, 3])
    if ground_segmenter and not camera_height > 0:
        raise ValueError(
            f"the ground prior needs the camera's height above the ground (got {camera_height:g} m, the first "
            "pose's z): give --camera-height"
        )
    segment = segmenter(ground_segmenter) if ground_segmenter else None
    out.mkdir(parents=True, exist_ok=True)
    frames, grounds = [], []  # each image read once: grey for the tracks, the segmenter's ground mask
    for f in seq.frames:
        rgb = read_rgb(f)
        frames.append(_gray(rgb))
        if segment is not None:
            grounds.append(segment(rgb))
    rows = []
    for i in tqdm(range(len(frames)), desc="reference depth", unit="frame", disable=not progress):
        r = reference_depth(
            frames,
            seq.K,
            poses,
            i,
            window,
            max_reproj_px=max_reproj_px,
            min_parallax_deg=min_parallax_deg,
            refine_translations=refine_translations,
        )
        depth = r.depth
        row = {"frame": Path(seq.frames[i]).name, "points": int(np.isfinite(r.depth).sum()), "tracked": r.tracked}
        if len(r.points):
            row["depth_m_p10_p50_p90"] = [float(v) for v in np.percentile(r.points[:, 2], [10, 50, 90])]
            row["reprojection_px_median"] = float(np.median(r.reprojection_px))
            row["ground_height_m"], row["ground_points"] = ground_height(r.points)
        if segment is not None:
            # the trajectory's up, not a plane fitted to the points: on the renders a few dozen points
            # tilted it by 2-3 degrees, on KITTI it settled on kerbs, hedges and verges above the road
            up = -ground_normal_in_optical(poses[i])
            # every ground pixel on the plane; the prior is its grid, the check all its corners
            flat = ground_prior_depth(grounds[i], seq.K, up, camera_height, ground_max_depth, stride=1)
            added = np.isfinite(flat) & _grid(flat.shape, ground_stride) & ~np.isfinite(r.depth)
            depth = np.where(added, flat, r.depth).astype(np.float32)
            row["ground_prior"] = {"points": int(added.sum())}
            # the triangulated corners the segmenter calls ground, against the plane
            both = np.isfinite(r.depth) & np.isfinite(flat)
            if both.any():
                row["ground_prior"]["reference_over_plane"] = float(np.median(r.depth[both] / flat[both]))
                row["ground_prior"]["reference_points_on_it"] = int(both.sum())
        cv2.imwrite(str(out / f"{Path(seq.frames[i]).stem}.png"), depth_to_png_mm(depth))
        rows.append(row)
    points = [r["points"] for r in rows]
    stats = {
        "sequence": str(root),
        "frames": len(rows),
        "frames_with_points": int(sum(p > 0 for p in points)),
        "points_per_frame_median": float(np.median(points)),
        "settings": {
            "window": window,
            "max_reproj_px": max_reproj_px,
            "min_parallax_deg": min_parallax_deg,
            "refine_translations": refine_translations,
        },
        "per_frame": rows,
    }
    if segment is not None:
        ratios = [
            r["ground_prior"]["reference_over_plane"] for r in rows if "reference_over_plane" in r["ground_prior"]
        ]
        stats["ground_prior"] = {
            "segmenter": str(ground_segmenter),
            "camera_height_m": camera_height,
            "max_depth_m": ground_max_depth,
            "stride_px": ground_stride,
            "points_per_frame_median": float(np.median([r["ground_prior"]["points"] for r in rows])),
            "reference_over_plane_median": float(np.median(ratios)) if ratios else None,
            "note": "training targets: the segmented ground's pixels on a plane; do not evaluate against them",
        }
    heights = [r["ground_height_m"] for r in rows if r.get("ground_points", 0) >= 20]
    if heights:
        stats["ground_check"] = {
            "camera_height_m": camera_height,
            "measured_median_m": float(np.median(heights)),
            "frames": len(heights),
        }
    (out / "reference_depth.json").write_text(json.dumps(stats, indent=1))
    return stats
