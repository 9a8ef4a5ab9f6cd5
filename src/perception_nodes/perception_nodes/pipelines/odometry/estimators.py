"""The odometry estimators behind one interface (:class:`Estimator`): posenet, pnp, pnp_learned,
essential, hybrid; :func:`make_estimator` builds one by name (the node's ``estimator``)."""

from __future__ import annotations

from typing import Any, Protocol

import cv2
import numpy as np

from ...backends import Backend
from ...model_card import ModelCard
from ..metric_scale import PlaneFit
from ..preprocess import fit_image, to_nchw
from ..ground_scale import GroundScale
from .ambiguity import resolve_ambiguity
from .common import ESTIMATORS, FIRST_FRAME, Motion, _pose
from .matchers import LearnedMatcher, OrbMatcher
from .two_view import depth_scale, essential_geometry, essential_motion, pnp_motion


class Estimator(Protocol):
    """What every estimator offers: ``method`` (its name in each Motion and in the logs),
    ``reset()`` (forget the previous frame: a time gap, a reset of the tracker) and ``close()``
    (release the inference backends it holds, at the node's cleanup). ``estimate`` takes
    what the method needs: two frames for the pose network (``rgb, scale``); this frame's metric
    depth and intrinsics for the geometric ones (``rgb, depth, K, ground_plane``); it returns a
    :class:`Motion`, failed with a reason rather than raising."""

    method: str

    def reset(self) -> None: ...

    def close(self) -> None: ...


class PoseNetOdometry:
    """``previous``/``current`` inputs from the pose model's card; its output is T_previous_current."""

    method = "posenet"

    def __init__(self, backend: Backend, card: ModelCard) -> None:
        names = {s.name for s in backend.inputs}
        if not {"previous", "current"} <= names:
            raise ValueError(f"pose model needs inputs 'previous' and 'current'; it has {sorted(names)}")
        if [s.name for s in backend.outputs] != ["T_previous_current"]:
            raise ValueError(f"pose model must output 'T_previous_current'; it has {[s.name for s in backend.outputs]}")
        self.backend, self.card = backend, card
        self.mean, self.std = np.asarray(card.mean, np.float32), np.asarray(card.std, np.float32)
        self._prev: np.ndarray | None = None

    def reset(self) -> None:
        self._prev = None

    def close(self) -> None:
        self.backend.close()

    def estimate(self, rgb: np.ndarray, scale: float = 1.0) -> Motion:
        x = to_nchw(fit_image(rgb, self.card.input_width, self.card.input_height, "stretch")[0], self.mean, self.std)
        prev, self._prev = self._prev, x
        if prev is None:
            return Motion(None, reason=FIRST_FRAME, method=self.method)
        T = np.asarray(self.backend.infer({"previous": prev, "current": x})["T_previous_current"], np.float64).reshape(
            4, 4
        )
        if not np.isfinite(T).all():
            return Motion(None, reason="pose network returned NaN/inf", method=self.method)
        T = T.copy()
        T[:3, 3] *= scale
        return Motion(T, method=self.method)


class FeatureOdometry:
    """What the feature-based estimators share: a matcher between consecutive frames and the
    previous frame's depth (the metric scale of the motion between it and the current one).

    Their ``estimate(rgb, depth, K, ground_plane=None, ground_mask=None)`` all take
    ``ground_plane``: the ground plane of ``depth`` in its units when the caller has fitted it
    already (the ``camera_height`` scale does, :meth:`.metric_scale.ScaleEstimator.ground_plane`);
    the hybrid's :class:`GroundScale` then uses it for the next frame instead of fitting it again;
    and ``ground_mask``: this frame's ground pixels from a segmenter (boolean, the image's aspect),
    which the hybrid's :class:`GroundScale` uses on the next frame instead of the depth's plane
    (the others ignore it)."""

    method = ""

    def __init__(self, matcher: OrbMatcher | LearnedMatcher, min_inliers: int) -> None:
        self.matcher, self.min_inliers = matcher, min_inliers
        self._prev_depth: np.ndarray | None = None
        self._prev_plane: PlaneFit | None = None

    def reset(self) -> None:
        self.matcher.reset()
        self._prev_depth = None
        self._prev_plane = None

    def close(self) -> None:
        self.matcher.close()

    def _advance(
        self, rgb: np.ndarray, depth: np.ndarray | None, plane: PlaneFit | None = None
    ) -> tuple[tuple[np.ndarray, np.ndarray] | None, np.ndarray | None, PlaneFit | None]:
        """Matches previous -> this frame (None on the first), the previous frame's depth and its
        ground plane (None when the caller gave none)."""
        pairs = self.matcher.step(rgb)
        prev_depth, self._prev_depth = self._prev_depth, depth
        prev_plane, self._prev_plane = self._prev_plane, plane
        return pairs, prev_depth, prev_plane


class PnPOdometry(FeatureOdometry):
    method = "pnp"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        reprojection_px: float = 2.0,
        max_width: int = 640,
        matcher: LearnedMatcher | None = None,
    ) -> None:
        super().__init__(matcher or OrbMatcher(features, max_width=max_width), min_inliers)
        if matcher is not None:
            self.method = "pnp_learned"
        self.reprojection_px = reprojection_px

    def estimate(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,
        ground_plane: PlaneFit | None = None,
        ground_mask: np.ndarray | None = None,
    ) -> Motion:
        """``depth``: this frame's metric depth at ``rgb``'s size (used for the next frame)."""
        pairs, prev_depth, _ = self._advance(rgb, depth, ground_plane)
        if pairs is None or prev_depth is None:
            return Motion(None, reason=FIRST_FRAME if prev_depth is None else "no features", method=self.method)
        a, b = pairs
        if len(a) < self.min_inliers:
            return Motion(None, len(a), f"{len(a)} matches < {self.min_inliers}", self.method)
        return pnp_motion(
            a,
            b,
            prev_depth,
            np.asarray(K, np.float64).reshape(3, 3),
            self.min_inliers,
            self.reprojection_px,
            self.method,
        )


class EssentialOdometry(FeatureOdometry):
    """The classical baseline: 2D-2D essential matrix; translation length from the depth source."""

    method = "essential"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        threshold_px: float = 1.0,
        min_parallax_deg: float = 1.0,
        max_width: int = 640,
    ) -> None:
        super().__init__(OrbMatcher(features, max_width=max_width), min_inliers)
        self.threshold_px, self.min_parallax_deg = threshold_px, min_parallax_deg

    def estimate(
        self,
        rgb: np.ndarray,
        depth: np.ndarray | None,
        K: np.ndarray,
        ground_plane: PlaneFit | None = None,
        ground_mask: np.ndarray | None = None,
    ) -> Motion:
        pairs, prev_depth, _ = self._advance(rgb, depth, ground_plane)
        if pairs is None:
            return Motion(None, reason=FIRST_FRAME, method=self.method)
        a, b = pairs
        return essential_motion(
            a,
            b,
            prev_depth,
            np.asarray(K, np.float64).reshape(3, 3),
            self.min_inliers,
            self.threshold_px,
            self.min_parallax_deg,
            self.method,
        )


class HybridOdometry(FeatureOdometry):
    """Essential matrix first (MAGSAC++; rotation and direction from 2D-2D geometry, which does not
    inherit the depth network's per-pixel errors), and PnP on the same matches where that fails
    (little parallax, a near pure rotation, too few inliers), so no frame is skipped that either
    could solve. The essential motion's length comes from the ground's motion between the frames
    (:class:`GroundScale`) when ``camera_height`` is given (and ``ground_normal``, the camera's
    mounting, where known; the ground is the depth's plane or, where the caller passes
    ``ground_mask``, what a segmenter calls ground), else (and while it has no length) from the depth.
    Where the essential matrix's rotation jumps by more than ``rotation_jump_deg`` from the last
    frame's, the forward-motion ambiguity is resolved towards the smoother motion
    (:func:`~.ambiguity.resolve_ambiguity`; 0 turns that off)."""

    method = "hybrid"

    def __init__(
        self,
        min_inliers: int = 20,
        features: int = 1000,
        threshold_px: float = 1.0,
        min_parallax_deg: float = 1.0,
        reprojection_px: float = 2.0,
        max_width: int = 640,
        camera_height: float = 0.0,
        ground_normal: np.ndarray | None = None,
        ground_corridor: float = 2.0,
        rotation_jump_deg: float = 2.0,
    ) -> None:
        super().__init__(OrbMatcher(features, max_width=max_width), min_inliers)
        self.threshold_px, self.min_parallax_deg, self.reprojection_px = threshold_px, min_parallax_deg, reprojection_px
        self.ground = (
            GroundScale(camera_height, normal=ground_normal, corridor=ground_corridor) if camera_height > 0 else None
        )
        self.rotation_jump_deg = rotation_jump_deg
        self._prev_mask: np.ndarray | None = None
        self._last_motion: tuple[np.ndarray, np.ndarray] | None = None  # R, unit t of x_cur = R x_prev + t
        self.resolved = ""  # what resolve_ambiguity did in the last frame ("" when nothing)

    def reset(self) -> None:
        super().reset()
        self._prev_mask = None
        self._last_motion = None
        if self.ground is not None:
            self.ground.reset()

    def previous_ground(self, mask: np.ndarray | None) -> None:
        """The previous frame's ground pixels when they arrive after that frame was estimated (a
        segmentation node's labels on a topic): they replace what :meth:`estimate` was given."""
        self._prev_mask = mask

    def estimate(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,
        ground_plane: PlaneFit | None = None,
        ground_mask: np.ndarray | None = None,
    ) -> Motion:
        m = self._estimate(rgb, depth, K, ground_plane, ground_mask)
        if m.T_prev_cur is not None:
            T = np.linalg.inv(m.T_prev_cur)
            n = float(np.linalg.norm(T[:3, 3]))
            self._last_motion = (T[:3, :3], T[:3, 3] / n) if n > 1e-9 else None
        return m

    def _estimate(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray,
        ground_plane: PlaneFit | None,
        ground_mask: np.ndarray | None,
    ) -> Motion:
        self.resolved = ""
        pairs, prev_depth, prev_plane = self._advance(rgb, depth, ground_plane)
        prev_mask, self._prev_mask = self._prev_mask, ground_mask
        if self.ground is not None:
            self.ground.step(rgb)
        if pairs is None or prev_depth is None:
            return Motion(None, reason=FIRST_FRAME if prev_depth is None else "no features", method=self.method)
        a, b = pairs
        K = np.asarray(K, np.float64).reshape(3, 3)
        g = essential_geometry(a, b, K, self.min_inliers, self.threshold_px, "hybrid (essential)", cv2.USAC_MAGSAC)
        if not isinstance(g, Motion):
            g, self.resolved = resolve_ambiguity(
                g, a, b, K, self._last_motion, self.rotation_jump_deg, threshold_px=self.threshold_px
            )
            scale = None if self.ground is None else self.ground.scale(g, K, prev_depth, prev_plane, prev_mask)
            method = "hybrid (essential, ground scale)"
            why = ""
            if scale is None:
                scale, why = depth_scale(g, prev_depth, K, self.min_parallax_deg)
                method = "hybrid (essential)"
            if scale is not None:
                return Motion(np.linalg.inv(_pose(g.R, g.t * scale)), g.inliers, method=method)
            m = Motion(None, g.inliers, why, "hybrid (essential)")
        else:
            m = g
            if self.ground is not None:
                self.ground.skip(f"no essential motion to scale: {g.reason}")
        if len(a) < self.min_inliers:
            return m
        p = pnp_motion(a, b, prev_depth, K, self.min_inliers, self.reprojection_px, "hybrid (pnp)")
        return p if p.T_prev_cur is not None else Motion(None, p.inliers, f"{m.reason}; then {p.reason}", self.method)


def make_estimator(
    name: str,
    min_inliers: int = 20,
    pose: tuple[Backend, ModelCard] | None = None,
    matcher: Any = None,
    camera_height: float = 0.0,
    ground_normal: np.ndarray | None = None,
    match_fn: Any = None,
    ground_corridor: float = 2.0,
    rotation_jump_deg: float = 2.0,
) -> Any:
    """One of ``ESTIMATORS`` by name, as the node, the evaluation and the benchmarks build them:
    ``posenet`` needs ``pose`` (the pose network's backend and card), ``pnp_learned`` ``matcher``
    (a ``MatchingPipeline``; ``match_fn`` a learned matcher instead of mutual NN); ``hybrid`` takes its
    length from the ground with ``camera_height`` > 0 (``ground_normal``: the camera's mounting, see
    :class:`GroundScale`; ``ground_corridor`` its half-width; ``rotation_jump_deg`` the jump above which
    it resolves the forward-motion ambiguity, 0: never)."""
    if name == "posenet":
        if pose is None:
            raise ValueError("estimator posenet needs the pose network (pose_model_path)")
        return PoseNetOdometry(*pose)
    if name == "pnp":
        return PnPOdometry(min_inliers)
    if name == "pnp_learned":
        if matcher is None:
            raise ValueError("estimator pnp_learned needs the keypoint model (matcher_model_path)")
        return PnPOdometry(min_inliers, matcher=LearnedMatcher(matcher, match_fn=match_fn))
    if name == "hybrid":
        return HybridOdometry(
            min_inliers,
            camera_height=camera_height,
            ground_normal=ground_normal,
            ground_corridor=ground_corridor,
            rotation_jump_deg=rotation_jump_deg,
        )
    if name == "essential":
        return EssentialOdometry(min_inliers)
    raise ValueError(f"estimator '{name}' must be one of {ESTIMATORS}")
