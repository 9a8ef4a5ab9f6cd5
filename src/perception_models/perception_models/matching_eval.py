"""The matching benchmark shared by training validation, the model card and the side-by-side with
OpenCV SIFT and ORB: the same pairs, the same robust estimators, the same metrics.

- homographic pairs: a photo and a random homography of it (fixed seeds), independent photometric
  jitter; exact ground truth everywhere;
- pose pairs: two frames of a held-out synthetic sequence, ground-truth depth and relative pose.

Every method maps (image A, image B) -> matched pixel coordinates; then ``cv2.findHomography``
(RANSAC, 3 px) or ``cv2.findEssentialMat`` (RANSAC, 1 px, p = 0.999) + ``recoverPose`` for all of them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from perception_nodes.pipelines.cv_geometry import find_essential, find_homography

from .metrics.matching import homography_corner_error, mma, pose_auc, relative_pose_error, warp_points
from .train.matching_data import SequencePairs, homography_pair, sequence_correspondence

Method = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def homography_eval_pairs(
    images: list[Path], n: int, size: tuple[int, int] = (240, 320), seed: int = 1000
) -> list[dict]:
    from .data.readers.common import read_rgb

    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        out.append(homography_pair(read_rgb(images[i % len(images)]), size, rng))
    return out


def pose_eval_pairs(
    folders: list[Path], per_sequence: int = 8, size: tuple[int, int] = (240, 320), gap: int = 2, seed: int = 2000
) -> list[dict]:
    ds = SequencePairs([Path(f) for f in folders], size, seed, max_gap=gap, photometric=False)
    out = []
    for k, s in enumerate(ds.seqs):
        ts = np.linspace(0, len(s.frames) - 1 - gap, min(per_sequence, len(s.frames) - gap)).astype(int)
        out += [ds.pair(k, int(t), gap) for t in ts]
    return out


def kitti_pose_pairs(root: Path | str, n: int = 20, gap: int = 2) -> list[dict]:
    """Real pose pairs from a KITTI odometry folder (:func:`.data.readers.kitti.read_kitti_odometry`):
    frames t and t + ``gap`` at full resolution, with K and the ground-truth T_b_a (no depth: pose
    AUC only)."""
    from .data.readers.common import read_rgb
    from .data.readers.kitti import read_kitti_odometry

    frames, K, T, _times = read_kitti_odometry(root)
    count = len(frames) - gap
    out = []
    for t in np.linspace(0, count - 1, min(n, count)).astype(int):
        a, b = int(t), int(t) + gap
        out.append({"a": read_rgb(frames[a]), "b": read_rgb(frames[b]), "K": K, "T_b_a": np.linalg.inv(T[b]) @ T[a]})
    return out


def _ratio_matches(kp_a, des_a, kp_b, des_b, norm: int, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    if des_a is None or des_b is None or len(kp_a) < 2 or len(kp_b) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    bf = cv2.BFMatcher(norm)
    ab = bf.knnMatch(des_a, des_b, k=2)
    ba = {m.queryIdx: m.trainIdx for m in bf.match(des_b, des_a)}
    good = [
        m
        for m, n in (p for p in ab if len(p) == 2)
        if m.distance < ratio * n.distance and ba.get(m.trainIdx) == m.queryIdx
    ]
    a = np.array([kp_a[m.queryIdx].pt for m in good], np.float64).reshape(-1, 2)
    b = np.array([kp_b[m.trainIdx].pt for m in good], np.float64).reshape(-1, 2)
    return a, b


def _opencv_method(detector: Any, norm: int, ratio: float) -> Method:
    def run(a: np.ndarray, b: np.ndarray):
        ka, da = detector.detectAndCompute(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None)
        kb, db = detector.detectAndCompute(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None)
        return _ratio_matches(ka, da, kb, db, norm, ratio)

    return run


def sift_method(features: int = 2000, ratio: float = 0.8) -> Method:
    return _opencv_method(cv2.SIFT_create(nfeatures=features), cv2.NORM_L2, ratio)


def orb_method(features: int = 2000, ratio: float = 0.8) -> Method:
    return _opencv_method(cv2.ORB_create(nfeatures=features), cv2.NORM_HAMMING, ratio)


def network_method(extract: Callable[[np.ndarray], object], ratio: float = 0.9, match_fn: Any = None) -> Method:
    """``extract(rgb)`` -> Features (keypoints in the image's pixels, unit descriptors), matched by
    mutual NN + ratio or by ``match_fn(features_a, features_b) -> (pairs, scores)`` (LightGlue-style)."""
    from perception_nodes.pipelines.matching import mutual_nn_match

    def run(a: np.ndarray, b: np.ndarray):
        fa, fb = extract(a), extract(b)
        if match_fn is not None:
            idx, _ = match_fn(fa, fb)
        else:
            idx, _ = mutual_nn_match(fa.descriptors, fb.descriptors, ratio)
        return fa.keypoints[idx[:, 0]].astype(np.float64), fb.keypoints[idx[:, 1]].astype(np.float64)

    return run


def _mean_mma(per_pair: list[np.ndarray]) -> dict[int, float]:
    """MMA per pair (a pair without matches scores 0), averaged over pairs (D2-Net / HPatches)."""
    rows = [mma(e) for e in per_pair]
    return {t: float(np.mean([r[t] for r in rows])) for t in rows[0]} if rows else {}


def evaluate_method(method: Method, hpairs: list[dict], ppairs: list[dict]) -> dict:
    errs_h, corner, times, n_matches = [], [], [], []
    for p in hpairs:
        t0 = time.perf_counter()
        a, b = method(p["a"], p["b"])
        times.append(time.perf_counter() - t0)
        n_matches.append(len(a))
        errs_h.append(np.linalg.norm(warp_points(p["H"], a) - b, axis=1) if len(a) else np.zeros(0))
        est_h = find_homography(a, b, 3.0) if len(a) >= 4 else None
        H_est = est_h.value if est_h is not None and est_h.ok else None
        h, w = p["a"].shape[:2]
        corner.append(homography_corner_error(H_est, p["H"], w, h))
    errs_p, pose_err = [], []
    for p in ppairs:
        t0 = time.perf_counter()
        a, b = method(p["a"], p["b"])
        times.append(time.perf_counter() - t0)
        n_matches.append(len(a))
        if "depth_a" not in p:  # real pairs without depth: pose only
            pass
        elif len(a):
            pb, ok = sequence_correspondence(p["depth_a"], p["depth_b"], p["K"], p["T_b_a"], a)
            errs_p.append(np.linalg.norm(pb[ok] - b[ok], axis=1))
        else:
            errs_p.append(np.zeros(0))
        err = 180.0
        if len(a) >= 8:
            est = find_essential(a, b, p["K"], cv2.RANSAC, 1.0)
            if est.ok:
                eR, et = relative_pose_error(est.extra["R"], est.extra["t"], p["T_b_a"][:3, :3], p["T_b_a"][:3, 3])
                err = max(eR, et)
        pose_err.append(err)
    corner_arr = np.array(corner) if corner else np.zeros(0)
    out = {
        "pairs": {"homography": len(hpairs), "pose": len(ppairs)},
        "matches_per_pair": float(np.mean(n_matches)) if n_matches else 0.0,
        "ms_per_pair": 1e3 * float(np.median(times)) if times else float("nan"),
    }
    if hpairs:
        out["homography_mma"] = _mean_mma(errs_h)
        out["homography_accuracy"] = {t: float(np.mean(corner_arr <= t)) for t in (1, 3, 5)}
    if ppairs:
        out["pose_mma"] = _mean_mma(errs_p) if errs_p else {1: float("nan"), 3: float("nan"), 5: float("nan")}
        out["pose_auc"] = pose_auc(pose_err)
    return out
