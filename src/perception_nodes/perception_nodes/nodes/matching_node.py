"""matching_node: learned keypoints + descriptors on every frame (``~/keypoints``; this project's
model or a SuperPoint/XFeat-style one, see families.keypoints), matched by mutual nearest neighbours
or a LightGlue-style model (``glue_model_path``) against
the previous frame / a keyframe (``mode: sequential``) or between two synchronized cameras
(``mode: stereo``: ``image`` is the reference, ``image1`` the other), the relative geometry with
its inliers (``~/matches``, perception_msgs/Matches) and a side-by-side picture (``~/matches_image``).
A frame without texture gives zero keypoints and an empty match set, not an error."""

from __future__ import annotations

from typing import Any

import numpy as np
from perception_msgs.msg import Keypoints, Matches
from sensor_msgs.msg import Image

from ..image_conversion import image_to_rgb, numpy_to_image
from ..node_base import run_node
from ..pipelines.matching import Features, MatchingPipeline, MatchResult, SequentialMatcher, draw_matches
from ..qos import output_qos
from ..sync import ApproximateTimeSynchronizer
from .model_node import ModelNode


class _Pair:
    """Two synchronized images travelling through the node's queue as one frame."""

    def __init__(self, ref: Any, cur: Any) -> None:
        self.ref, self.cur = ref, cur
        self.header = ref.header


class MatchingOutputs:
    """The sequential matcher, its publishers and per-frame publishing, for any node whose
    inference gives keypoints (this node; multitask_node). The host node supplies ``params``,
    ``counters`` and ``get_logger``."""

    MATCHING_LIVE = {"ratio", "geometry", "ransac_threshold", "keyframe_overlap", "publish_descriptors",
                     "max_drawn_matches"}  # fmt: skip

    def make_matcher(self: Any, params: dict[str, Any], glue: Any = None) -> None:
        self.matcher = SequentialMatcher(
            params["ratio"], params["geometry"], params["ransac_threshold"], params["keyframe_overlap"], glue
        )
        self.ref_rgb: np.ndarray | None = None

    def apply_matching_live(self: Any) -> None:
        m, p = self.matcher, self.params
        m.ratio, m.geometry, m.threshold = p["ratio"], p["geometry"], p["ransac_threshold"]
        m.keyframe_overlap = p["keyframe_overlap"]

    def create_matching_outputs(self: Any, params: dict[str, Any]) -> None:
        self.kp_pub = self.create_publisher(Keypoints, "~/keypoints", output_qos())
        self.match_pub = self.create_publisher(Matches, "~/matches", output_qos())
        self.image_pub = (
            self.create_publisher(Image, "~/matches_image", output_qos(2)) if params["publish_image"] else None
        )

    def match_sequential(self: Any, msg: Any, rgb: np.ndarray, feats: Features) -> None:
        """Match a frame's features against the reference frame (previous or keyframe) and publish
        its keypoints, the matches and the picture."""
        with self.timer.stage("match"):
            result = self.matcher.step(feats, msg.header, self.K_for(rgb.shape[:2]))
        self.publish_keypoints(msg.header, feats)
        ref_rgb = self.ref_rgb  # the reference frame's image, before this frame may replace it
        if result is None or result.keyframe_changed:
            self.ref_rgb = rgb
        self.publish_matches(msg, rgb, result, ref_rgb)

    def publish_keypoints(self: Any, header: Any, f: Features) -> None:
        out = Keypoints()
        out.header = header
        out.x = f.keypoints[:, 0].astype(np.float32).tolist()
        out.y = f.keypoints[:, 1].astype(np.float32).tolist()
        out.scores = f.scores.astype(np.float32).tolist()
        if self.params["publish_descriptors"]:
            out.descriptor_dim = int(f.descriptors.shape[1]) if f.descriptors.ndim == 2 else 0
            out.descriptors = f.descriptors.astype(np.float32).ravel().tolist()
        self.kp_pub.publish(out)

    def publish_matches(self: Any, msg: Any, rgb: np.ndarray, result: MatchResult | None, ref_rgb: Any) -> None:
        out = Matches()
        out.header = msg.header
        if result is None:  # the first frame: nothing to match yet
            out.model = "none"
            out.reference_stamp = msg.header.stamp
            out.reference_frame_id = msg.header.frame_id
            self.match_pub.publish(out)
            return
        ref_header = result.reference_id
        out.reference_stamp = ref_header.stamp
        out.reference_frame_id = ref_header.frame_id
        out.reference_index = result.pairs[:, 0].astype(np.uint32).tolist()
        out.current_index = result.pairs[:, 1].astype(np.uint32).tolist()
        out.scores = result.scores.astype(np.float32).tolist()
        g = result.geometry
        out.inlier = [bool(v) for v in g.inlier]
        out.model = g.model
        out.matrix = [float(v) for v in g.matrix.ravel()]
        out.rotation = [float(v) for v in g.rotation.ravel()]
        out.translation = [float(v) for v in g.translation.ravel()]
        out.inlier_count = int(g.inlier.sum())
        if g.model == "none" and g.reason and self.params["geometry"] != "none":
            self.get_logger().warn(f"no {self.params['geometry']} estimate: {g.reason}", throttle_duration_sec=5.0)
        self.counters["last_matches"] = f"{len(result.pairs)} matches, {out.inlier_count} inliers ({g.model})"
        self.match_pub.publish(out)
        if self.image_pub is not None and ref_rgb is not None and self.image_pub.get_subscription_count() > 0:
            self.image_pub.publish(
                numpy_to_image(draw_matches(ref_rgb, rgb, result, self.params["max_drawn_matches"]), "rgb8", msg.header)
            )


class MatchingNode(MatchingOutputs, ModelNode):
    schema_name = "matching_node"
    task = "matching"

    LIVE_PARAMETERS = ModelNode.LIVE_PARAMETERS | MatchingOutputs.MATCHING_LIVE

    def apply_live(self, changed: dict[str, Any]) -> None:
        self.apply_matching_live()

    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> MatchingPipeline:
        self.glue = None
        if params["glue_model_path"]:
            from ..families.lightglue import LightGlueMatcher

            glue_backend, glue_card = self.load_model(params, "glue_model_path", "matcher")
            try:
                self.glue = LightGlueMatcher(glue_backend, glue_card)
            except Exception:
                glue_backend.close()
                raise
        self.make_matcher(params, self.glue)
        return MatchingPipeline(backend, card)

    def teardown(self) -> None:
        if getattr(self, "glue", None) is not None:
            self.glue.backend.close()
            self.glue = None
        super().teardown()

    def create_outputs(self, params: dict[str, Any]) -> None:
        self.create_matching_outputs(params)

    def subscribe_inputs(self, qos: Any) -> list[Any]:
        subs = [self.subscribe_camera_info(qos)]
        if self.params["mode"] == "stereo":
            self.sync = ApproximateTimeSynchronizer(
                2, lambda a, b: self.enqueue(_Pair(a, b)), slop=self.params["sync_slop"]
            )
            subs.append(self.create_subscription(*self.image_input("image"), lambda m: self.sync.add(0, m), qos))
            subs.append(self.create_subscription(*self.image_input("image1"), lambda m: self.sync.add(1, m), qos))
            return subs
        return subs + super().subscribe_inputs(qos)

    def _features(self, msg: Any) -> tuple[np.ndarray, Features]:
        with self.timer.stage("convert"):
            rgb = image_to_rgb(msg, self.params["accept_raw_encodings"])
        return rgb, self.pipeline.run(rgb, self.timer)

    def process(self, msg: Any) -> None:
        if isinstance(msg, _Pair):
            ref_rgb, ref = self._features(msg.ref)
            rgb, cur = self._features(msg.cur)
            with self.timer.stage("match"):
                result: MatchResult | None = self.matcher.match(ref, cur, msg.ref.header, self.K_for(rgb.shape[:2]))
            self.publish_keypoints(msg.cur.header, cur)
            self.publish_result(msg.cur, rgb, (result, ref_rgb))
            return
        rgb, feats = self._features(msg)
        self.match_sequential(msg, rgb, feats)

    def publish_result(self, msg: Any, rgb: np.ndarray, result_and_ref: Any) -> None:
        self.publish_matches(msg, rgb, *result_and_ref)


def main(args: list[str] | None = None) -> None:
    run_node(MatchingNode, "matching_node", args)


if __name__ == "__main__":
    main()
