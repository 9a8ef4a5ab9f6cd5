"""Monocular visual odometry: frame-to-frame motion estimators and the tracker that chains them.

Estimators (``estimator`` parameter of the odometry node), each returning ``T_prev_cur`` (the
current camera's pose in the previous camera's optical frame):

- ``posenet``: the pose network (two frames -> 6-DoF), metric through the depth model's scale;
- ``pnp``: ORB keypoints of the previous frame lifted to 3D with the *predicted depth*, matched
  into the current frame, ``cv2.solvePnPRansac`` -> metric motion from one image;
- ``pnp_learned``: the same with the learned keypoints and descriptors of the matching model
  (:class:`LearnedMatcher`, mutual nearest neighbours) instead of ORB;
- ``essential`` (the classical OpenCV baseline): ORB + ``findEssentialMat`` (RANSAC) +
  ``recoverPose``; the unit translation gets its length from the same scale source (the predicted
  depth of the matched points against their triangulation);
- ``hybrid`` (the default): the same essential matrix with MAGSAC++ instead of RANSAC, its
  forward-motion ambiguity resolved towards the smoother motion where its rotation jumps
  (:mod:`.ambiguity`), and PnP on the same matches for the frames where it fails (too little
  parallax, too few inliers).

:class:`OdometryTracker` chains motions into ``T_odom_camera`` (odom = the first camera pose with
REP-103 axes: x forward, z up), resets on a large time gap, skips frames whose motion failed
(too few inliers, NaN, implausible speed) with the reason and an inflated covariance, and never
raises on bad input.
"""

from ..ground_scale import GroundScale
from .common import ESTIMATORS, FIRST_FRAME, Motion, sample_depth
from .estimators import (
    EssentialOdometry,
    Estimator,
    FeatureOdometry,
    HybridOdometry,
    PnPOdometry,
    PoseNetOdometry,
    make_estimator,
)
from .matchers import LearnedMatcher, OrbMatcher
from .tracker import OdometryState, OdometryTracker, Skip
from .two_view import TwoViewGeometry, depth_scale, essential_geometry, essential_motion, pnp_motion, triangulate

__all__ = [
    "ESTIMATORS",
    "FIRST_FRAME",
    "EssentialOdometry",
    "Estimator",
    "FeatureOdometry",
    "GroundScale",
    "HybridOdometry",
    "LearnedMatcher",
    "Motion",
    "OdometryState",
    "OdometryTracker",
    "OrbMatcher",
    "PnPOdometry",
    "PoseNetOdometry",
    "Skip",
    "TwoViewGeometry",
    "depth_scale",
    "essential_geometry",
    "essential_motion",
    "make_estimator",
    "pnp_motion",
    "sample_depth",
    "triangulate",
]
