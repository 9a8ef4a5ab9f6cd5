"""depth_node: monocular metric depth, one inference per frame (odometry_node.py adds odometry on it).

Inputs: ``image`` (any supported encoding), ``camera_info`` (sensor_msgs/CameraInfo next to it:
needed for the point cloud, PnP odometry and the ground-plane scale), ``depth_reference``
(32FC1/16UC1 metric depth, only with ``scale_source: depth_topic``).

Outputs (input's header): ``~/depth`` 32FC1 metres at the input's size, ``~/depth_colored`` rgb8,
``~/points`` PointCloud2 xyz + rgb in the camera optical frame. Diagnostics say which scale source
is used and its state.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from sensor_msgs.msg import Image, PointCloud2

from ..cloud_conversion import points_to_cloud2
from ..image_conversion import image_to_numpy, image_to_rgb, numpy_to_image
from ..node_base import FrameError, run_node
from ..families.relative_depth import RelativeDepthScaler
from ..pipelines.depth import DepthPipeline, DepthResult, colorize_depth, colorize_relative, depth_to_points
from ..pipelines.metric_scale import ScaleEstimator
from ..sync import stamp_to_ns
from ..transforms import T_BODY_OPTICAL, ground_normal_in_optical, pose_from_xyzrpy
from ..qos import output_qos
from .model_node import ModelNode


def camera_mount(params: dict[str, Any]) -> np.ndarray:
    """The camera's optical frame in a z-up frame (REP-105): ``base_to_camera`` when ``base_frame``
    is set, else a level camera pitched ``camera_pitch_deg`` down. Its rotation gives the ground's
    normal in the camera (the ground-plane scales and the hybrid odometry's ground)."""
    if params["base_frame"]:
        return pose_from_xyzrpy(params["base_to_camera"]) @ T_BODY_OPTICAL
    return pose_from_xyzrpy([0.0, 0.0, 0.0, 0.0, np.radians(params["camera_pitch_deg"]), 0.0]) @ T_BODY_OPTICAL


class DepthNode(ModelNode):
    schema_name = "depth_node"
    task = "depth"
    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | {"color_min_depth", "color_max_depth"}  # read per frame

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> DepthPipeline:
        pipe = DepthPipeline(backend, card)
        self.setup_depth(pipe, params)
        return pipe

    def setup_depth(self, pipe: DepthPipeline, params: dict[str, Any]) -> None:
        """The scale source (and a relative model's scale + shift fit) for ``pipe``'s depth."""
        self.depth_pipeline = pipe
        self.scale = ScaleEstimator(params["scale_source"], params["camera_height"], params["scale_smoothing"])
        self.relative_scaler: RelativeDepthScaler | None = None
        if pipe.relative:
            self.relative_scaler = RelativeDepthScaler(
                params["scale_source"],
                params["camera_height"],
                ground_normal_in_optical(camera_mount(params)),
                min_depth=pipe.min_depth,
                max_depth=pipe.max_depth,
            )
            if not self.relative_scaler.available:
                self.get_logger().warn(
                    "relative-depth model (up to scale and shift) and no metric source: publishing only "
                    "~/depth_colored (normalised); set scale_source camera_height (with camera_height) or "
                    "depth_topic for metric depth, points and odometry"
                )
        elif params["scale_source"] == "model" and pipe.scale_source != "supervised":
            self.get_logger().warn(
                f"scale_source 'model' but the depth model's card says scale_source "
                f"'{pipe.scale_source}': depth may be up to scale (use camera_height or depth_topic)"
            )
        self.reference: deque = deque(maxlen=10)
        self.warned_no_info = False

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.depth_pub = self.create_publisher(Image, "~/depth", output_qos()) if params["publish_depth"] else None
        self.colored_pub = (
            self.create_publisher(Image, "~/depth_colored", output_qos(2)) if params["publish_colored"] else None
        )
        self.points_pub = (
            self.create_publisher(PointCloud2, "~/points", output_qos(2)) if params["publish_points"] else None
        )

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        subs = super().subscribe_inputs(qos)
        subs.append(self.subscribe_camera_info(qos))
        if self.params["scale_source"] == "depth_topic":
            subs.append(self.create_subscription(Image, "depth_reference", self._on_reference, qos))
        return subs

    def _on_reference(self, msg: Any) -> None:
        try:
            ref = np.asarray(image_to_numpy(msg), np.float32)
        except Exception as exc:  # a bad reference image must not stop depth
            self.get_logger().warn(f"depth_reference rejected: {exc}", throttle_duration_sec=10.0)
            return
        if msg.encoding in ("16UC1", "mono16"):
            ref = ref / 1000.0  # REP-118: 16-bit depth in millimetres
            ref[ref == 0] = np.nan
        self.reference.append((stamp_to_ns(msg.header.stamp), ref))

    def process(self, msg: Any) -> None:
        with self.timer.stage("convert"):
            rgb = image_to_rgb(msg, self.params["accept_raw_encodings"])
        result: DepthResult = self.pipeline.run(rgb, self.timer, K=self.K_for(rgb.shape[:2]))
        self.check_depth(result)
        self.publish_result(msg, rgb, result)

    def check_depth(self, result: DepthResult) -> None:
        """Diagnostics for one frame's depth; raises FrameError when none of it is valid."""
        if result.focal_factor is None:
            self.counters["focal"] = (
                f"no CameraInfo: depth is for the model's canonical focal length "
                f"({self.depth_pipeline.canonical_focal:.1f} px at its input), not this camera's"
            )
            self.get_logger().warn(self.counters["focal"], throttle_duration_sec=5.0)
        elif self.depth_pipeline.canonical_focal > 0:
            self.counters["focal"] = f"camera focal / canonical focal {result.focal_factor:.3f}"
        if result.invalid_pixels:
            self.counters["invalid_depth_pixels"] = self.counters.get("invalid_depth_pixels", 0) + result.invalid_pixels
            self.get_logger().warn(
                f"{result.invalid_pixels} depth pixels NaN/inf/<= 0 (published as NaN)", throttle_duration_sec=5.0
            )
            if result.invalid_pixels == result.network_depth.size:
                raise FrameError("depth model output is NaN/inf everywhere")

    def publish_result(
        self, msg: Any, rgb: np.ndarray, result: DepthResult
    ) -> tuple[np.ndarray, np.ndarray | None, int, float] | None:
        """Scale, then depth / colour / cloud; returns (metric depth, K, stamp, scale) for what
        comes after depth (odometry_node), None when there is no metric depth to publish."""
        K = self.K_for(rgb.shape[:2])
        if K is None and not self.warned_no_info:
            self.get_logger().warn(
                "no CameraInfo on 'camera_info' yet: no point cloud, no PnP/essential odometry, "
                "no ground-plane scale until it arrives"
            )
            self.warned_no_info = True
        stamp = stamp_to_ns(msg.header.stamp)
        if self.relative_scaler is not None:
            with self.timer.stage("scale"):
                metric = self._relative_to_metric(result, K, stamp)
            if metric is None:  # nothing metric to publish: the normalised picture only
                if self.colored_pub is not None and self.colored_pub.get_subscription_count() > 0:
                    self.colored_pub.publish(numpy_to_image(colorize_relative(result.relative), "rgb8", msg.header))
                return None
            result.depth, s = metric, 1.0
        else:
            with self.timer.stage("scale"):
                self._update_scale(result.depth, K, stamp)
            s = self.scale.scale
            self.counters["scale"] = (
                f"{s:.4f}" if s is not None else "unknown (publishing unscaled)"
            ) + f" [{self.scale.source}: {self.scale.status}]"
        depth = result.depth * np.float32(s if s is not None else 1.0)
        with self.timer.stage("publish"):
            if self.depth_pub is not None:
                self.depth_pub.publish(numpy_to_image(depth, "32FC1", msg.header))
            if self.colored_pub is not None and self.colored_pub.get_subscription_count() > 0:
                self.colored_pub.publish(
                    numpy_to_image(
                        colorize_depth(depth, self.params["color_min_depth"], self.params["color_max_depth"]),
                        "rgb8",
                        msg.header,
                    )
                )
            if self.points_pub is not None and K is not None:
                xyz, colours = depth_to_points(
                    depth, K, self.params["point_decimation"], rgb, self.params["max_point_depth"]
                )
                self.points_pub.publish(points_to_cloud2(xyz, colours, msg.header))
        return depth, K, stamp, s if s is not None else 1.0

    def _relative_to_metric(self, result: DepthResult, K: np.ndarray | None, stamp: int) -> np.ndarray | None:
        """A relative-depth model's metric depth from this frame's scale + shift fit (None: no metric
        source, or none yet); the source and its state go to /diagnostics."""
        rs = self.relative_scaler
        assert rs is not None and result.relative is not None
        if not rs.available:
            rs.status = "relative depth, no metric source (scale_source model): normalised view only"
        elif rs.source == "camera_height":
            if K is None:
                rs.status = "ground plane: waiting for CameraInfo"
            else:
                rs.from_ground(result.relative, K)
        else:
            ref = self._reference_at(stamp)
            if ref is None:
                rs.status = "no depth_reference within 50 ms of this frame" + ("; using the last fit" if rs.fit else "")
            else:
                rs.from_reference(result.relative, ref)
        self.counters["scale"] = f"relative depth, scale + shift [{rs.source}: {rs.status}]"
        if rs.fit is None or not rs.available:
            return None
        return rs.fit.to_depth(result.relative, rs.min_depth, rs.max_depth)

    def _update_scale(self, depth: np.ndarray, K: np.ndarray | None, stamp: int) -> None:
        if self.scale.source == "camera_height":
            if K is None:
                self.scale.status = "waiting for CameraInfo"
            else:
                self.scale.update_from_ground(depth, K)
        elif self.scale.source == "depth_topic":
            ref = self._reference_at(stamp)
            if ref is None:
                self.scale.status = "no depth_reference within 50 ms of this frame; keeping the last scale"
            else:
                self.scale.update_from_reference(depth, ref)

    def _reference_at(self, stamp: int) -> np.ndarray | None:
        """The latest metric depth_reference within 50 ms of ``stamp`` (None: none)."""
        # a copy: the subscription appends from the executor's thread while frames run in the worker
        match = [r for t, r in tuple(self.reference) if abs(t - stamp) <= 50_000_000]
        return match[-1] if match else None


def main(args: list[str] | None = None) -> None:
    run_node(DepthNode, "depth_node", args)


if __name__ == "__main__":
    main()
