"""Trajectory accuracy through ``evo`` (Grupp 2017): absolute trajectory error (ATE, RMSE of the
translation after alignment) and relative pose error (RPE over ``delta`` frames).

Alignment: ``"se3"`` (rotation + translation, Umeyama without scale) for metric estimates,
``"sim3"`` (with scale) for up-to-scale ones, ``"none"``; the report states which."""

from __future__ import annotations

import numpy as np


def _trajectory(times: np.ndarray, poses: np.ndarray):
    from evo.core.trajectory import PoseTrajectory3D

    return PoseTrajectory3D(
        poses_se3=[np.asarray(p, np.float64) for p in poses], timestamps=np.asarray(times, np.float64)
    )


def path_length(poses: np.ndarray) -> float:
    t = np.asarray(poses)[:, :3, 3]
    return float(np.linalg.norm(np.diff(t, axis=0), axis=1).sum())


def trajectory_errors(
    times: np.ndarray,
    estimate: np.ndarray,
    ground_truth: np.ndarray,
    align: str = "se3",
    delta: int = 1,
    positions: bool = False,
) -> dict:
    """``estimate`` and ``ground_truth``: (N, 4, 4) poses (sensor -> world) at the same ``times``.
    Returns ATE RMSE/mean/max (m), ATE as % of the ground-truth path length, RPE translation RMSE
    (m per ``delta`` frames) and rotation RMSE (deg), and the alignment's scale; with
    ``positions``, also the aligned estimate's and the ground truth's positions and the ATE of
    each frame (for plots)."""
    import copy

    from evo.core import metrics

    if align not in ("se3", "sim3", "none"):
        raise ValueError(f"align '{align}' must be se3, sim3 or none")
    if len(estimate) != len(ground_truth) or len(estimate) < 3:
        raise ValueError(
            f"need the same number (>= 3) of estimated and ground-truth poses, got {len(estimate)} and "
            f"{len(ground_truth)}"
        )
    ref = _trajectory(times, ground_truth)
    est = _trajectory(times, estimate)
    scale = 1.0
    if align != "none":
        from evo.core.geometry import GeometryException

        est = copy.deepcopy(est)
        try:
            _r, _t, s = est.align(ref, correct_scale=align == "sim3")
        except GeometryException as exc:  # e.g. an estimate that never moved
            raise ValueError(f"{align} alignment impossible: {exc}") from None
        scale = float(s)
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, est))
    stats = ape.get_all_statistics()
    rpe_t = metrics.RPE(
        metrics.PoseRelation.translation_part, delta=delta, delta_unit=metrics.Unit.frames, all_pairs=False
    )
    rpe_t.process_data((ref, est))
    rpe_r = metrics.RPE(
        metrics.PoseRelation.rotation_angle_deg, delta=delta, delta_unit=metrics.Unit.frames, all_pairs=False
    )
    rpe_r.process_data((ref, est))
    length = path_length(ground_truth)
    extra = (
        {
            "positions": {
                "estimate": est.positions_xyz.tolist(),
                "reference": ref.positions_xyz.tolist(),
                "ate_m": np.asarray(ape.error).tolist(),
            }
        }
        if positions
        else {}
    )
    return {
        **extra,
        "align": align,
        "scale": scale,
        "frames": len(times),
        "path_length_m": length,
        "ate_rmse_m": float(stats["rmse"]),
        "ate_mean_m": float(stats["mean"]),
        "ate_max_m": float(stats["max"]),
        "ate_percent_of_path": float(100.0 * stats["rmse"] / length) if length > 0 else float("nan"),
        "rpe_delta_frames": delta,
        "rpe_trans_rmse_m": float(rpe_t.get_statistic(metrics.StatisticsType.rmse)),
        "rpe_rot_rmse_deg": float(rpe_r.get_statistic(metrics.StatisticsType.rmse)),
    }
