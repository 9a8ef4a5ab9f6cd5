"""odometry_node: monocular visual odometry on the depth node's inference (one per frame).

Everything depth_node publishes (``~/depth``, ``~/depth_colored``, ``~/points``), and from the same
metric depth the camera's motion: ``~/odometry`` nav_msgs/Odometry (``odom_frame`` ->
``base_frame`` or the camera frame, REP-105), ``~/path`` nav_msgs/Path and TF when tf2_ros is
installed. The frame-to-frame estimator (``estimator``: posenet, pnp, pnp_learned, essential,
hybrid; ``pipelines/odometry/estimators.py``) and the tracker that chains its motions and decides
what to skip (``pipelines/odometry/tracker.py``) belong to this node; the messages are built in
``odometry_conversion.py``. Diagnostics say why the last odometry frame was skipped.

With ``ground_from_labels`` the hybrid estimator's ground scale aligns what a segmentation node
labels ``ground`` (inputs ``ground_labels``, mono8 with the image's header, and the latched
``ground_label_info``) instead of the pixels on the depth map's plane: the ground of frame N is
needed only when frame N+1 comes, so the segmenter's labels may arrive after this node's depth.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from nav_msgs.msg import Odometry, Path

from ..detection_conversion import label_map
from ..image_conversion import image_to_numpy
from ..node_base import run_node
from ..odometry_conversion import odometry_message, pose_stamped, transform_stamped
from ..pipelines.depth import DepthPipeline, DepthResult
from ..pipelines.odometry import HybridOdometry, Motion, OdometryTracker, PoseNetOdometry, Skip, make_estimator
from ..pipelines.segmentation import GROUND
from ..qos import latched_qos, output_qos
from ..sync import stamp_to_ns
from ..transforms import T_BODY_OPTICAL, ground_normal_in_optical, pose_from_xyzrpy
from .depth_node import DepthNode, camera_mount


class OdometryNode(DepthNode):
    schema_name = "odometry_node"
    # ground_from_labels: the labels come from a segmentation node's topic (multitask_node: its own head)
    labels_from_topic = True

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> DepthPipeline:
        pipe = super().build_pipeline(backend, card, params)
        self.setup_odometry(params)
        return pipe

    def setup_odometry(self, params: dict[str, Any]) -> None:
        """The frame-to-frame estimator and the tracker (after :meth:`setup_depth`)."""
        self.T_base_optical = T_BODY_OPTICAL
        if params["base_frame"]:
            self.T_base_optical = pose_from_xyzrpy(params["base_to_camera"]) @ T_BODY_OPTICAL
        name = params["estimator"]
        pose = self.load_model(params, "pose_model_path", "pose") if name == "posenet" else None
        matcher = glue = None
        if name == "pnp_learned":
            from ..pipelines.matching import MatchingPipeline

            matcher = MatchingPipeline(*self.load_model(params, "matcher_model_path", "matching"))
            if params["glue_model_path"]:
                from ..families.lightglue import LightGlueMatcher

                glue = LightGlueMatcher(*self.load_model(params, "glue_model_path", "matcher"))
        # hybrid: with the camera's height known, its essential motion takes its length from the
        # ground's motion between frames (GroundScale), not from the depth network; the
        # mounting gives the ground's normal: base_to_camera (base z up, REP-105), else the pitch
        height = params["camera_height"] if params["scale_source"] == "camera_height" else 0.0
        self.estimator: Any = make_estimator(
            name,
            params["min_inliers"],
            pose,
            matcher,
            height,
            ground_normal_in_optical(camera_mount(params)),
            glue,
            ground_corridor=params["ground_corridor"],
            rotation_jump_deg=params["rotation_jump"],
        )
        self.tracker = OdometryTracker(
            params["max_gap"], params["max_speed"], T_odom_camera0=self.T_base_optical, history=1
        )  # ~/path keeps its own path_length poses
        # ground_from_labels over topics: the segmenter's recent label images by stamp, its ground class id
        self.ground_labels: deque = deque(maxlen=8)
        self.ground_id = None
        self._prev_stamp: int | None = None
        self.refitted_frames = 0  # frames whose essential motion the hybrid refitted (on /diagnostics)

    def uses_ground_labels(self, params: dict[str, Any]) -> bool:
        """``ground_from_labels`` and an estimator that has a ground scale (hybrid with scale_source
        camera_height): only then are the labels used, so only then are they taken."""
        return (
            bool(params["ground_from_labels"])
            and isinstance(self.estimator, HybridOdometry)
            and self.estimator.ground is not None
        )

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        subs = super().subscribe_inputs(qos)
        if self.labels_from_topic and self.uses_ground_labels(self.params):
            from sensor_msgs.msg import Image
            from vision_msgs.msg import LabelInfo

            subs.append(self.create_subscription(Image, "ground_labels", self._on_ground_labels, qos))
            subs.append(self.create_subscription(LabelInfo, "ground_label_info", self._on_label_info, latched_qos()))
        return subs

    def _on_label_info(self, msg: Any) -> None:
        names = label_map(msg)
        ids = [i for i, name in names.items() if name == GROUND]
        self.ground_id = ids[0] if ids else None
        if self.ground_id is None:
            self.get_logger().warn(
                f"ground_from_labels: no '{GROUND}' class in ground_label_info ({sorted(names.values())}); "
                "the hybrid's ground stays the depth's plane"
            )

    def _on_ground_labels(self, msg: Any) -> None:
        try:
            if msg.encoding != "mono8":
                raise ValueError(f"must be mono8 class ids, got '{msg.encoding}'")
            labels = image_to_numpy(msg)
        except ValueError as exc:  # a bad label image must not stop the odometry: this frame uses the plane
            self.warn_input(f"ground_labels rejected: {exc}")
            return
        self.ground_labels.append((stamp_to_ns(msg.header.stamp), labels))

    def _ground_at(self, stamp: int | None) -> np.ndarray | None:
        """The ground pixels of the segmenter's labels of the frame stamped ``stamp`` (None: none yet)."""
        if stamp is None or self.ground_id is None:
            return None
        # a copy: the subscription appends from the executor's thread while frames run in the worker
        match = [labels for t, labels in tuple(self.ground_labels) if t == stamp]
        return match[-1] == self.ground_id if match else None

    def teardown(self) -> None:
        if getattr(self, "estimator", None) is not None:
            self.estimator.close()  # the pose network's or keypoint model's backends
        self.estimator = None
        super().teardown()

    def create_outputs(self, params: dict[str, Any]) -> None:
        super().create_outputs(params)
        self.odom_pub = self.create_publisher(Odometry, "~/odometry", output_qos())
        self.path_pub = self.create_publisher(Path, "~/path", output_qos(2))
        self.path = Path()
        self.path_poses: deque = deque(maxlen=params["path_length"])
        self.tf = None
        if params["publish_tf"]:
            try:
                from tf2_ros import TransformBroadcaster

                self.tf = TransformBroadcaster(self)
            except ImportError:
                self.get_logger().info(
                    "tf2_ros is not installed: no TF broadcast; ~/odometry and ~/path carry "
                    "the same poses (the bag recorder writes /tf through rosbags)"
                )

    def publish_result(self, msg: Any, rgb: np.ndarray, result: DepthResult, ground: np.ndarray | None = None) -> Any:
        """Depth as depth_node, then the motion from the same metric depth (``ground``: this
        frame's ground pixels from a segmenter, for the hybrid's ground scale; multitask_node)."""
        published = super().publish_result(msg, rgb, result)
        if published is not None:
            depth, K, stamp, scale = published
            with self.timer.stage("odometry"):
                self._odometry(msg, rgb, depth, K, stamp, scale, ground)
        return published

    def _odometry(
        self,
        msg: Any,
        rgb: np.ndarray,
        depth: np.ndarray,
        K: np.ndarray | None,
        stamp: int,
        scale: float,
        ground: np.ndarray | None = None,
    ) -> None:
        reset = self.tracker.needs_reset(stamp)
        if reset:
            self.estimator.reset()
            self.get_logger().warn(f"odometry: {reset}; estimators reset", throttle_duration_sec=2.0)
        motion: Motion | None
        if isinstance(self.estimator, PoseNetOdometry):
            motion = self.estimator.estimate(rgb, scale)
        elif K is None:
            motion = Motion(None, reason="no CameraInfo")
        else:
            if ground is None and self.labels_from_topic and self.uses_ground_labels(self.params):
                # the segmenter's labels of the previous frame (they may arrive after it was estimated)
                self.estimator.previous_ground(self._ground_at(self._prev_stamp))
            # the ground plane the camera_height scale fitted on this depth: the hybrid's ground scale reuses it
            motion = self.estimator.estimate(
                rgb, depth, K, ground_plane=self.scale.ground_plane(scale), ground_mask=ground
            )
            ground = getattr(self.estimator, "ground", None)
            if ground is not None:
                self.counters["odometry_scale"] = f"{motion.method or 'none'}; {ground.status}"
            resolved = getattr(self.estimator, "resolved", "")
            if resolved:  # the hybrid's forward-motion ambiguity (rotation_jump): how often, and the last
                self.refitted_frames += 1
                self.counters["odometry_refitted"] = f"{self.refitted_frames} frames (last: {resolved})"
                self.get_logger().info(f"odometry: {resolved}", throttle_duration_sec=2.0)
        self._prev_stamp = stamp
        state = self.tracker.update(stamp, motion)
        if not state.ok and state.skip is not Skip.FIRST_FRAME:
            self.get_logger().warn(f"odometry frame skipped: {state.status}", throttle_duration_sec=2.0)
        self.counters["odometry"] = (
            f"{'ok' if state.ok else 'skipped: ' + state.status} (frames {state.frames}, skipped "
            f"{state.skipped}, resets {state.resets})"
        )
        child = self.params["base_frame"] or msg.header.frame_id
        odom = odometry_message(
            state,
            msg.header,
            self.params["odom_frame"],
            child,
            self.T_base_optical if self.params["base_frame"] else None,
        )
        self.odom_pub.publish(odom)
        self.path_poses.append(pose_stamped(odom))
        self.path.header = odom.header
        self.path.poses = list(self.path_poses)
        self.path_pub.publish(self.path)
        if self.tf is not None:
            self.tf.sendTransform(transform_stamped(odom))


def main(args: list[str] | None = None) -> None:
    run_node(OdometryNode, "odometry_node", args)


if __name__ == "__main__":
    main()
