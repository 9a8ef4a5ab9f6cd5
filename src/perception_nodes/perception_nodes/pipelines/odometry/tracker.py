"""Chaining per-frame motions into ``T_odom_camera``: resets on time gaps, skipped frames with a
reason and an inflated covariance, a bounded history."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import cv2
import numpy as np

from ...transforms import T_BODY_OPTICAL
from .common import FIRST_FRAME, Motion


class Skip(str, Enum):
    """Why the tracker did not use a frame's motion (``OdometryState.skip``; ``status`` has the
    words). Callers branch on these, never on the text."""

    NONE = ""
    INITIALISED = "initialised"  # the first frame: the pose starts here
    STAMP_ORDER = "stamp_order"  # not after the previous frame: estimators reset
    TIME_GAP = "time_gap"  # longer than max_gap since the previous frame: estimators reset
    FIRST_FRAME = "first_frame"  # the estimator has no previous frame yet (after a start or reset)
    NO_MOTION = "no_motion"  # the estimator failed (too few matches/inliers, no CameraInfo ...)
    NONFINITE = "nonfinite"  # the motion has NaN/inf
    IMPLAUSIBLE = "implausible"  # faster than max_speed

    @property
    def resets(self) -> bool:
        return self in (Skip.STAMP_ORDER, Skip.TIME_GAP)


@dataclass
class OdometryState:
    T_odom_camera: np.ndarray
    stamp_ns: int
    ok: bool  # this frame's motion was used
    status: str  # "" or why it was skipped / reset
    pose_covariance: np.ndarray  # 6x6 (x y z roll pitch yaw) of T_odom_camera
    twist: np.ndarray  # (6,) linear m/s, angular rad/s in the camera frame
    twist_covariance: np.ndarray
    frames: int = 0
    resets: int = 0
    skipped: int = 0
    path: deque = field(default_factory=deque)  # (stamp_ns, T_odom_camera), the last ``history``
    skip: Skip = Skip.NONE  # why this frame's motion was not used (NONE when ok)


class OdometryTracker:
    def __init__(
        self,
        max_gap_s: float = 1.0,
        max_speed: float = 50.0,
        step_sigma_t: float = 0.02,
        step_sigma_r: float = 0.005,
        failure_inflation: float = 100.0,
        T_odom_camera0: np.ndarray | None = None,
        history: int | None = None,
    ) -> None:
        """``history``: how many (stamp, pose) pairs ``state.path`` keeps (None: all, for
        evaluating a whole sequence; a node that runs for days keeps a few: ~360 B a pose)."""
        if max_gap_s <= 0 or max_speed <= 0:
            raise ValueError("max_gap_s and max_speed must be > 0")
        if history is not None and history < 1:
            raise ValueError("history must be >= 1 (or None to keep every pose)")
        self.history = history
        self.max_gap_s, self.max_speed = max_gap_s, max_speed
        self.step_cov = np.diag([step_sigma_t**2] * 3 + [step_sigma_r**2] * 3)
        self.inflation = failure_inflation
        self.T0 = T_BODY_OPTICAL.copy() if T_odom_camera0 is None else np.asarray(T_odom_camera0, np.float64)
        self.state: OdometryState | None = None

    def needs_reset(self, stamp_ns: int) -> str:
        """Non-empty when the estimators should forget their previous frame before this one."""
        return self._reset(stamp_ns)[1]

    def _reset(self, stamp_ns: int) -> tuple[Skip, str]:
        if self.state is None:
            return Skip.NONE, ""
        dt = (stamp_ns - self.state.stamp_ns) * 1e-9
        if dt <= 0:
            return Skip.STAMP_ORDER, f"stamp not after the previous one (dt {dt:.3f} s)"
        if dt > self.max_gap_s:
            return Skip.TIME_GAP, f"time gap {dt:.2f} s > max_gap {self.max_gap_s:.2f} s"
        return Skip.NONE, ""

    def update(self, stamp_ns: int, motion: Motion | None) -> OdometryState:
        s = self.state
        if s is None:
            self.state = OdometryState(
                self.T0.copy(),
                stamp_ns,
                True,
                "initialised",
                np.zeros((6, 6)),
                np.zeros(6),
                self.step_cov.copy(),
                frames=1,
                path=deque([(stamp_ns, self.T0.copy())], maxlen=self.history),
                skip=Skip.INITIALISED,
            )
            return self.state
        dt = (stamp_ns - s.stamp_ns) * 1e-9
        skip, reason = self._reset(stamp_ns)
        T = None if motion is None else motion.T_prev_cur
        if skip is Skip.NONE:
            if T is None:
                reason = motion.reason if motion is not None and motion.reason else "no motion estimate"
                skip = Skip.FIRST_FRAME if reason == FIRST_FRAME else Skip.NO_MOTION
            elif not np.isfinite(T).all():
                skip, reason = Skip.NONFINITE, "motion has NaN/inf"
            elif np.linalg.norm(T[:3, 3]) > self.max_speed * dt:
                skip, reason = (
                    Skip.IMPLAUSIBLE,
                    (
                        f"implausible motion {np.linalg.norm(T[:3, 3]):.2f} m in {dt:.3f} s "
                        f"(max_speed {self.max_speed} m/s)"
                    ),
                )
        s.frames += 1
        s.skip = skip
        if skip is not Skip.NONE:
            if skip.resets:
                s.resets += 1
            s.skipped += 1
            s.ok, s.status = False, reason
            s.pose_covariance = s.pose_covariance + self.inflation * self.step_cov
            s.twist, s.twist_covariance = np.zeros(6), self.inflation * self.step_cov
        else:
            assert T is not None
            s.T_odom_camera = s.T_odom_camera @ T
            s.ok, s.status = True, ""
            s.pose_covariance = s.pose_covariance + self.step_cov
            rvec = cv2.Rodrigues(T[:3, :3])[0].ravel()
            s.twist = np.concatenate([T[:3, 3], rvec]) / dt
            s.twist_covariance = self.step_cov / dt**2
        if dt > 0:
            s.stamp_ns = stamp_ns
        s.path.append((stamp_ns, s.T_odom_camera.copy()))
        return s
