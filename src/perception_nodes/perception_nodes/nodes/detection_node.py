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


class DetectionNode(ModelNode):
    schema_name = "detection_node"
    task = "detection"

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> DetectionPipeline:
        return DetectionPipeline(
            backend, card, params["score_threshold"], list(params["class_filter"]) or None, params["max_detections"]
        )

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.det_pub = self.create_publisher(Detection2DArray, "~/detections", output_qos())
        self.annotated_pub = (
            self.create_publisher(Image, "~/image_annotated", output_qos(2)) if params["publish_annotated"] else None
        )
        self.markers_pub = (
            self.create_publisher(MarkerArray, "~/markers", output_qos(2))
            if params["publish_markers"] and params["use_camera_info"]
            else None
        )
        self.colors = class_colors(self.card.classes, self.card.colors)
        self.label_info_pub = self.create_publisher(LabelInfo, "~/label_info", latched_qos())
        self.publish_label_info()

    def publish_label_info(self) -> None:
        from std_msgs.msg import Header

        header = Header(stamp=self.get_clock().now().to_msg())
        self.label_info_pub.publish(label_info_message(header, self.card.classes, self.params["score_threshold"]))

    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | {
        "score_threshold",
        "class_filter",
        "max_detections",
        "camera_height",
        "camera_pitch_deg",
        "max_ground_range",
    }

    def check_parameters(self, values: dict[str, Any]) -> None:
        unknown = sorted(set(values.get("class_filter") or []) - set(self.card.classes))
        if unknown:
            raise ParameterError(f"class_filter names {unknown}; the model's classes are {self.card.classes}")

    def apply_live(self, changed: dict[str, Any]) -> None:
        p = self.pipeline
        p.score_threshold, p.max_detections = float(self.params["score_threshold"]), int(self.params["max_detections"])
        names = list(self.params["class_filter"])
        p.allowed = None if not names else np.array([self.card.classes.index(c) for c in names])
        if "score_threshold" in changed:
            self.publish_label_info()

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        subs = super().subscribe_inputs(qos)
        if self.params["use_camera_info"]:
            subs.append(self.subscribe_camera_info(qos))
        return subs

    def _ground(self, rgb: np.ndarray, det: Detections) -> tuple[np.ndarray, np.ndarray] | None:
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

    def publish_result(self, msg: Any, rgb: np.ndarray, det: Detections) -> None:
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


def main(args: list[str] | None = None) -> None:
    run_node(DetectionNode, "detection_node", args)


if __name__ == "__main__":
    main()
