"""segmentation_node: Image in; ``~/labels`` mono8 class ids at the input's size, ``~/label_info``
(vision_msgs/LabelInfo, latched: what each label id means) and ``~/overlay`` rgb8 colour blend
(colours and names from the model card).

An instance model (YOLO-seg, card family ``yolo-segment``) also publishes ``~/instances`` (mono16:
instance i + 1 where the i-th detection's mask is, 0 = none) and ``~/detections``
(vision_msgs/Detection2DArray in the same order, ``id`` = its instance value; class ids are the
card's indices, as detection_node's) from the same inference; its ``~/labels`` hold class + 1 of the
model's classes, 0 = none (``~/label_info`` says so: id 0 is "background")."""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from ..detection_conversion import detections_message, label_info_message
from ..image_conversion import numpy_to_image
from ..node_base import run_node
from ..pipelines.segmentation import Segmentation, SegmentationPipeline
from ..qos import latched_qos, output_qos
from .model_node import ModelNode


class SegmentationOutputs:
    """Segmentation's publishers and per-frame publishing, for any node whose inference gives a
    class map (this node; multitask_node). The host node supplies ``params``."""

    def create_segmentation_outputs(self: Any, params: dict[str, Any], pipeline: SegmentationPipeline) -> None:
        from std_msgs.msg import Header
        from vision_msgs.msg import Detection2DArray, LabelInfo

        self.seg_pipeline = pipeline
        self.seg_label_info_pub = self.create_publisher(LabelInfo, "~/label_info", latched_qos())
        header = Header(stamp=self.get_clock().now().to_msg())
        names = pipeline.label_names  # instance models: "background" first
        self.seg_label_info_pub.publish(label_info_message(header, names, params.get("score_threshold", 0.0)))
        self.labels_pub = self.create_publisher(Image, "~/labels", output_qos())
        self.instances_pub = self.instance_det_pub = None
        if pipeline.detector is not None:
            self.instances_pub = self.create_publisher(Image, "~/instances", output_qos())
            self.instance_det_pub = self.create_publisher(Detection2DArray, "~/detections", output_qos())
        self.overlay_pub = (
            self.create_publisher(Image, "~/overlay", output_qos(2)) if params["publish_overlay"] else None
        )
        self.alpha = float(params["overlay_alpha"])

    def publish_segmentation(self: Any, msg: Any, rgb: np.ndarray, seg: Segmentation) -> None:
        self.labels_pub.publish(numpy_to_image(seg.labels, "mono8", msg.header))
        if self.instances_pub is not None and seg.instances is not None:
            self.instances_pub.publish(numpy_to_image(seg.instances, "mono16", msg.header))
            self.instance_det_pub.publish(detections_message(msg.header, seg.detections, instance_ids=True))
        if self.overlay_pub is not None and self.overlay_pub.get_subscription_count() > 0:
            self.overlay_pub.publish(
                numpy_to_image(self.seg_pipeline.overlay(rgb, seg.labels, self.alpha), "rgb8", msg.header)
            )


class SegmentationNode(SegmentationOutputs, ModelNode):
    schema_name = "segmentation_node"
    task = "segmentation"

    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | {"overlay_alpha", "score_threshold", "max_instances"}

    def apply_live(self, changed: dict[str, Any]) -> None:
        self.alpha = float(self.params["overlay_alpha"])
        det = self.pipeline.detector
        if det is not None:
            det.score_threshold = float(self.params["score_threshold"])
            det.max_detections = int(self.params["max_instances"])

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> SegmentationPipeline:
        return SegmentationPipeline(backend, card, params["score_threshold"], params["max_instances"])

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.create_segmentation_outputs(params, self.pipeline)

    def publish_result(self, msg: Any, rgb: np.ndarray, seg: Segmentation) -> None:
        self.publish_segmentation(msg, rgb, seg)


def main(args: list[str] | None = None) -> None:
    run_node(SegmentationNode, "segmentation_node", args)


if __name__ == "__main__":
    main()
