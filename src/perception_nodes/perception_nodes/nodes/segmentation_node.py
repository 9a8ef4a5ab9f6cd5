"""segmentation_node: Image in; ``~/labels`` mono8 class ids at the input's size and
``~/overlay`` rgb8 colour blend (colours and names from the model card)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sensor_msgs.msg import Image

from ..image_conversion import numpy_to_image
from ..node_base import run_node
from ..pipelines.segmentation import Segmentation, SegmentationPipeline
from ..qos import output_qos
from .model_node import ModelNode


class SegmentationNode(ModelNode):
    schema_name = "segmentation_node"
    task = "segmentation"

    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | {"overlay_alpha"}

    def apply_live(self, changed: dict[str, Any]) -> None:
        self.alpha = float(self.params["overlay_alpha"])

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> SegmentationPipeline:
        return SegmentationPipeline(backend, card)

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.labels_pub = self.create_publisher(Image, "~/labels", output_qos())
        self.overlay_pub = (
            self.create_publisher(Image, "~/overlay", output_qos(2)) if params["publish_overlay"] else None
        )
        self.alpha = float(params["overlay_alpha"])

    def publish_result(self, msg: Any, rgb: np.ndarray, seg: Segmentation) -> None:
        self.labels_pub.publish(numpy_to_image(seg.labels, "mono8", msg.header))
        if self.overlay_pub is not None and self.overlay_pub.get_subscription_count() > 0:
            self.overlay_pub.publish(
                numpy_to_image(self.pipeline.overlay(rgb, seg.labels, self.alpha), "rgb8", msg.header)
            )


def main(args: list[str] | None = None) -> None:
    run_node(SegmentationNode, "segmentation_node", args)


if __name__ == "__main__":
    main()
