"""detection_node: Image (+ optional CameraInfo) in; vision_msgs/Detection2DArray on
``~/detections`` (boxes in the input image's pixels, the input's header; layout in
``detection_conversion.py``), vision_msgs/LabelInfo on ``~/label_info`` (latched: the card's class
names) and an annotated image on ``~/image_annotated`` (per-class colours). With ``use_camera_info``
and ``camera_height``, each detection also says where it stands on a flat ground (metres, optical
frame: the distance to a person or a cone), and ``~/markers`` (visualization_msgs/MarkerArray)
shows those positions in 3D."""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from ..detection_conversion import detections_message, label_info_message
from ..image_conversion import numpy_to_image
from ..node_base import run_node
from ..params import ParameterError
from ..pipelines.detection import DetectionPipeline, Detections, ground_points
from ..qos import latched_qos, output_qos
from ..visualization import class_colors, draw_detections, ground_markers
from .model_node import ModelNode


class DetectionOutputs:
    """Detection's publishers and per-frame publishing, for any node whose inference gives
    detections (this node; multitask_node with a multi-task network). The host node supplies
    ``params``, ``counters``, ``K_for`` and ``warn_input``."""

    det_card: Any

    def create_detection_outputs(self: Any, params: dict[str, Any], card: Any) -> None:
        self.det_card = card
        self.det_pub = self.create_publisher(Detection2DArray, "~/detections", output_qos())
        self.annotated_pub = (
            self.create_publisher(Image, "~/image_annotated", output_qos(2)) if params["publish_annotated"] else None
        )
        self.markers_pub = (
            self.create_publisher(MarkerArray, "~/markers", output_qos(2))
            if params["publish_markers"] and params["use_camera_info"]
            else None
        )
        self.colors = class_colors(card.classes, card.colors)
        self.det_label_info_pub = self.create_publisher(LabelInfo, "~/label_info", latched_qos())
        self.publish_detection_label_info()

    def publish_detection_label_info(self: Any) -> None:
        from std_msgs.msg import Header

        header = Header(stamp=self.get_clock().now().to_msg())
        self.det_label_info_pub.publish(
            label_info_message(header, self.det_card.classes, self.params["score_threshold"])
        )

    DETECTION_LIVE = {"score_threshold", "class_filter", "max_detections", "camera_height", "camera_pitch_deg",
                      "max_ground_range"}  # fmt: skip

    def check_class_filter(self, values: dict[str, Any]) -> None:
        unknown = sorted(set(values.get("class_filter") or []) - set(self.det_card.classes))
        if unknown:
            raise ParameterError(f"class_filter names {unknown}; the model's classes are {self.det_card.classes}")

    def apply_detection_live(self: Any, pipeline: DetectionPipeline, changed: dict[str, Any]) -> None:
        p = pipeline
        p.score_threshold, p.max_detections = float(self.params["score_threshold"]), int(self.params["max_detections"])
        names = list(self.params["class_filter"])
        p.allowed = None if not names else np.array([self.det_card.classes.index(c) for c in names])
        if "score_threshold" in changed:
            self.publish_detection_label_info()

    def _ground(self: Any, rgb: np.ndarray, det: Detections) -> tuple[np.ndarray, np.ndarray] | None:
        if not (self.params["use_camera_info"] and self.params["camera_height"] > 0 and len(det.boxes)):
            return None
        K = self.K_for(rgb.shape[:2])
        if K is None:
            self.counters["ground_positions"] = "waiting for CameraInfo on 'camera_info'"
            return None
        self.counters["ground_positions"] = (
            f"camera {self.params['camera_height']:.2f} m above the ground, "
            f"pitch {self.params['camera_pitch_deg']:.1f} deg"
        )
        return ground_points(
            det.boxes, K, self.params["camera_height"], self.params["camera_pitch_deg"], self.params["max_ground_range"]
        )

    def publish_detections(self: Any, msg: Any, rgb: np.ndarray, det: Detections) -> None:
        try:
            ground = self._ground(rgb, det)
        except Exception as exc:  # optional geometry: never costs the frame its detections
            ground = None
            self.warn_input(f"ground positions: {type(exc).__name__}: {exc}")
        self.det_pub.publish(detections_message(msg.header, det, ground))
        if self.markers_pub is not None and self.markers_pub.get_subscription_count() > 0:
            self.markers_pub.publish(ground_markers(msg.header, det, ground, self.colors))
        if self.annotated_pub is not None and self.annotated_pub.get_subscription_count() > 0:
            self.annotated_pub.publish(numpy_to_image(draw_detections(rgb, det, self.colors), "rgb8", msg.header))


class DetectionNode(DetectionOutputs, ModelNode):
    schema_name = "detection_node"
    task = "detection"

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> DetectionPipeline:
        return DetectionPipeline(
            backend, card, params["score_threshold"], list(params["class_filter"]) or None, params["max_detections"]
        )

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.create_detection_outputs(params, self.card)

    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | DetectionOutputs.DETECTION_LIVE

    def check_parameters(self, values: dict[str, Any]) -> None:
        self.check_class_filter(values)

    def apply_live(self, changed: dict[str, Any]) -> None:
        self.apply_detection_live(self.pipeline, changed)

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        subs = super().subscribe_inputs(qos)
        if self.params["use_camera_info"]:
            subs.append(self.subscribe_camera_info(qos))
        return subs

    def publish_result(self, msg: Any, rgb: np.ndarray, det: Detections) -> None:
        self.publish_detections(msg, rgb, det)


def main(args: list[str] | None = None) -> None:
    run_node(DetectionNode, "detection_node", args)


if __name__ == "__main__":
    main()
