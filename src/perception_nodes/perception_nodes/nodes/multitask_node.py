"""multitask_node: one multi-task network (card task ``multitask``; perception_models/models/
multitask.py), one inference per frame, and everything the four task nodes publish, under the
same names and types:

    detector/detections       vision_msgs/Detection2DArray  (+ label_info, image_annotated, markers)
    segmenter/labels          mono8 class ids              (+ label_info, overlay)
    odometry/depth            32FC1 metres                 (+ depth_colored, points)
    odometry/odometry, path   nav_msgs Odometry / Path     (+ TF)
    matcher/keypoints         perception_msgs/Keypoints
    matcher/matches           perception_msgs/Matches      (+ matches_image)

The names are relative to the node's namespace (not ``~/``), so a profile that swaps this node in
for detector, segmenter, odometry and matcher (config/profiles/multitask.yaml) gives RViz, the
recorder, ``perception eval`` and downstream nodes the topics they already read. Why one node and
not four sharing an inference: one process holds one model, one engine and one input queue, the
frame's result for every task comes out of one ``FrameStatus``, and there is no inter-process
hand-over of feature maps (a 384x512 feature pyramid per frame) to pay for.

Only the tasks the card serves get publishers; odometry needs depth. The publishing code is the
task nodes' own (DetectionOutputs, SegmentationOutputs, MatchingOutputs; depth and odometry from
OdometryNode), so the messages cannot drift apart. One thing the shared inference gives that four
nodes do not: the hybrid odometry's ground scale aligns what the segmentation head calls ground
(``ground_from_labels``) rather than the pixels on the depth head's plane.

After the one inference the tasks' outputs are independent (each branch touches only its own
state: publishers, tracker, matcher), so depth + odometry and matching run in two worker threads
while detections and labels are published on the node's thread: four task nodes overlap that work
across processes, and one node serialising it would answer later than the four (OpenCV, NumPy and
rclpy's publish release the GIL for most of it). The frame's ``FrameStatus`` goes out after every
branch has finished; an error in any branch rejects the frame as it would in the task node.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from ..image_conversion import image_to_rgb
from ..node_base import FrameError, run_node
from ..pipelines.multitask import MultiTaskPipeline, MultiTaskResult
from ..tasks import MULTITASK_NAMESPACES
from .detection_node import DetectionOutputs
from .matching_node import MatchingOutputs
from .odometry_node import OdometryNode
from .segmentation_node import SegmentationOutputs


class MultiTaskNode(DetectionOutputs, SegmentationOutputs, MatchingOutputs, OdometryNode):
    schema_name = "multitask_node"
    task = "multitask"
    labels_from_topic = False  # ground_from_labels: this network's own segmentation head

    LIVE_PARAMETERS = (
        OdometryNode.LIVE_PARAMETERS
        | DetectionOutputs.DETECTION_LIVE
        | MatchingOutputs.MATCHING_LIVE
        | {"overlay_alpha"}
    )

    def create_publisher(self, *args: Any, **kwargs: Any) -> Any:
        """``~/x`` of the task whose outputs are being created -> ``<its namespace>/x``."""
        prefix = getattr(self, "_outputs_of", "")
        if prefix and len(args) > 1 and isinstance(args[1], str) and args[1].startswith("~/"):
            args = (args[0], f"{prefix}/{args[1][2:]}", *args[2:])
        return super().create_publisher(*args, **kwargs)

    _workers: ThreadPoolExecutor | None = None

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> MultiTaskPipeline:
        pipe = MultiTaskPipeline(
            backend, card, params["score_threshold"], list(params["class_filter"]) or None, params["max_detections"]
        )
        self.ground_id: int | None = None
        if pipe.depth is not None:
            self.setup_depth(pipe.depth, params)
            self.setup_odometry(params)
            if self.uses_ground_labels(params) and pipe.segmentation is not None:
                try:
                    self.ground_id = pipe.segmentation.ground_class()
                except ValueError as exc:
                    self.get_logger().warn(f"ground_from_labels: {exc}; the hybrid's ground is the depth's plane")
        else:
            self.estimator = None
        if pipe.matching is not None:
            self.make_matcher(params)
        if pipe.detection is not None:
            self.det_card = pipe.cards["detection"]
        return pipe

    def create_outputs(self, params: dict[str, Any]) -> None:
        pipe: MultiTaskPipeline = self.pipeline
        try:
            if pipe.detection is not None:
                self._outputs_of = MULTITASK_NAMESPACES["detection"]
                self.create_detection_outputs(params, pipe.cards["detection"])
            if pipe.segmentation is not None:
                self._outputs_of = MULTITASK_NAMESPACES["segmentation"]
                self.create_segmentation_outputs(params, pipe.segmentation)
            if pipe.depth is not None:
                self._outputs_of = MULTITASK_NAMESPACES["depth"]
                OdometryNode.create_outputs(self, params)  # depth, colour, points, odometry, path, TF
            if pipe.matching is not None:
                self._outputs_of = MULTITASK_NAMESPACES["matching"]
                self.create_matching_outputs(params)
        finally:
            self._outputs_of = ""

    def teardown(self) -> None:
        if self._workers is not None:
            self._workers.shutdown(wait=True)
            self._workers = None
        super().teardown()

    def _branch(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        if self._workers is None:
            self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="multitask_outputs")
        return self._workers.submit(fn, *args)

    def check_parameters(self, values: dict[str, Any]) -> None:
        if getattr(self, "det_card", None) is not None:
            self.check_class_filter(values)

    def apply_live(self, changed: dict[str, Any]) -> None:
        pipe: MultiTaskPipeline = self.pipeline
        if pipe.detection is not None:
            self.apply_detection_live(pipe.detection, changed)
        if pipe.matching is not None:
            self.apply_matching_live()
        self.alpha = float(self.params["overlay_alpha"])

    def process(self, msg: Any) -> None:
        with self.timer.stage("convert"):
            rgb = image_to_rgb(msg, self.params["accept_raw_encodings"])
        result: MultiTaskResult = self.pipeline.run(rgb, self.timer, K=self.K_for(rgb.shape[:2]))
        if result.dropped_nonfinite:
            self.counters["nonfinite_dropped"] = self.counters.get("nonfinite_dropped", 0) + result.dropped_nonfinite
            self.get_logger().warn(
                f"{result.dropped_nonfinite} detections with NaN/inf dropped", throttle_duration_sec=5.0
            )
        if result.invalid_pixels:
            raise FrameError(
                f"model output has {result.invalid_pixels} pixels with class ids outside the segmentation classes"
            )
        if result.depth is not None:
            self.check_depth(result.depth)
        branches = []
        if result.depth is not None:  # OdometryNode: scale, depth outputs, odometry
            # the hybrid's ground scale aligns what the segmentation head calls ground (None: the depth's plane)
            ground = result.ground_mask(self.ground_id)
            branches.append(self._branch(self.publish_result, msg, rgb, result.depth, ground))
        if result.features is not None:
            branches.append(self._branch(self.match_sequential, msg, rgb, result.features))
        try:
            with self.timer.stage("publish_detections"):
                if result.detections is not None:
                    self.publish_detections(msg, rgb, result.detections)
                if result.segmentation is not None:
                    self.publish_segmentation(msg, rgb, result.segmentation)
        finally:
            for branch in branches:  # every branch finishes before the frame's status
                branch.exception()
        for branch in branches:
            branch.result()  # re-raises a branch's FrameError (or any error) here


def main(args: list[str] | None = None) -> None:
    run_node(MultiTaskNode, "multitask_node", args)


if __name__ == "__main__":
    main()
