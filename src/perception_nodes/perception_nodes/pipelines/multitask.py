"""MultiTaskPipeline: one preprocessing and one inference of a multi-task network (card task
``multitask``, perception_models/models/multitask.py), then each task's own postprocessing.

    image -> letterbox + normalise (once) -> backend.infer (once) -> outputs
          -> detection:    DetectionPipeline.postprocess      (boxes, scores, labels)
          -> segmentation: SegmentationPipeline.postprocess   (seg_labels)
          -> depth:        DepthPipeline.postprocess          (depth, letterbox padding cut away)
          -> matching:     MatchingPipeline.postprocess       (keypoints, keypoint_scores, descriptors)

The card has one section per task (``tasks:``): its classes, colours and settings, and which of
the graph's outputs are the task's (``outputs: {labels: seg_labels, ...}``). Each task pipeline is
built from that section's card (``model_card.task_card``) over a view of the backend whose outputs
carry the task's names, so the checks and decoding are exactly the single-task ones. Nothing
here imports ROS (multitask_node.py publishes the results)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import Backend, BackendError
from ..backends.base import TensorSpec
from ..model_card import ModelCard, task_card
from .depth import DepthPipeline, DepthResult
from .detection import DetectionPipeline, Detections
from .matching import Features, MatchingPipeline
from .preprocess import Letterbox
from .segmentation import Segmentation, SegmentationPipeline
from .task_base import CardPipeline


class OutputView(Backend):
    """A backend seen by one task: the graph's outputs under the task's names (inference is the
    multi-task pipeline's; a view never runs the network)."""

    def __init__(self, backend: Backend, names: dict[str, str]) -> None:
        self.backend, self.names = backend, names  # task name -> graph name
        self.name = backend.name

    @property
    def inputs(self) -> list[TensorSpec]:
        return self.backend.inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        graph = {s.name: s for s in self.backend.outputs}
        return [TensorSpec(k, graph[v].shape, graph[v].dtype) for k, v in self.names.items() if v in graph]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise BackendError("a task's view of a multi-task model does not run it; MultiTaskPipeline does")

    def select(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: outputs[v] for k, v in self.names.items()}


class _SharedDepth(DepthPipeline):
    """Depth from the letterboxed multi-task input: the padding is cut away before the map is
    resized to the image (a single-task depth model is stretched instead)."""

    required_resize = ""

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> DepthResult:
        net = np.asarray(outputs["depth"], np.float32).reshape(self.card.input_height, self.card.input_width)
        x0, y0 = int(round(lb.pad_x)), int(round(lb.pad_y))
        x1, y1 = x0 + int(round(shape[1] * lb.scale_x)), y0 + int(round(shape[0] * lb.scale_y))
        return super().postprocess({"depth": np.ascontiguousarray(net[y0:y1, x0:x1])}, lb, shape)


class _SharedMatching(MatchingPipeline):
    """Keypoints of the letterboxed multi-task input (``Letterbox.to_image`` maps them back)."""

    required_resize = ""


@dataclass
class MultiTaskResult:
    detections: Detections | None
    segmentation: Segmentation | None
    depth: DepthResult | None
    features: Features | None

    @property
    def dropped_nonfinite(self) -> int:
        return self.detections.dropped_nonfinite if self.detections is not None else 0

    @property
    def invalid_pixels(self) -> int:
        return self.segmentation.invalid_pixels if self.segmentation is not None else 0

    def ground_mask(self, ground_class: int | None) -> np.ndarray | None:
        """The pixels the segmentation head labels ``ground_class``
        (:meth:`SegmentationPipeline.ground_class`): the hybrid odometry's ground; None without
        labels or a class."""
        if ground_class is None or self.segmentation is None:
            return None
        return self.segmentation.labels == ground_class


class MultiTaskPipeline(CardPipeline):
    task = "multitask"

    def __init__(
        self,
        backend: Backend,
        card: ModelCard,
        score_threshold: float = 0.3,
        class_filter: list[str] | None = None,
        max_detections: int = 100,
        tasks: tuple[str, ...] | None = None,
    ) -> None:
        sections: dict[str, Any] = card.raw.get("tasks") or {}
        wanted = tuple(sections) if tasks is None else tasks
        missing = [t for t in wanted if t not in sections]
        if missing:
            raise ValueError(f"the multi-task model serves {list(sections)}; not {missing}")
        graph_names = tuple(str(v) for t in wanted for v in sections[t]["outputs"].values())
        super().__init__(backend, card, graph_names)
        self.views: dict[str, OutputView] = {}
        self.cards: dict[str, ModelCard] = {}
        for t in wanted:
            self.cards[t] = task_card(card, t)
            self.views[t] = OutputView(backend, self.cards[t].raw["graph_outputs"])
        self.detection = (
            DetectionPipeline(
                self.views["detection"], self.cards["detection"], score_threshold, class_filter, max_detections
            )
            if "detection" in wanted
            else None
        )
        self.segmentation = (
            SegmentationPipeline(self.views["segmentation"], self.cards["segmentation"])
            if "segmentation" in wanted
            else None
        )
        self.depth = _SharedDepth(self.views["depth"], self.cards["depth"]) if "depth" in wanted else None
        self.matching = (
            _SharedMatching(self.views["matching"], self.cards["matching"]) if "matching" in wanted else None
        )

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.cards)

    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> MultiTaskResult:
        v = self.views
        return MultiTaskResult(
            self.detection.postprocess(v["detection"].select(outputs), lb, shape) if self.detection else None,
            self.segmentation.postprocess(v["segmentation"].select(outputs), lb, shape) if self.segmentation else None,
            self.depth.postprocess(v["depth"].select(outputs), lb, shape) if self.depth else None,
            self.matching.postprocess(v["matching"].select(outputs), lb, shape) if self.matching else None,
        )

    def run(self, rgb: np.ndarray, timer: Any = None, K: np.ndarray | None = None) -> MultiTaskResult:
        """Every task's result for ``rgb`` from one inference; ``K`` (its intrinsics) converts a
        canonical-camera depth to this camera's (DepthPipeline.to_camera, through the letterbox)."""
        result: MultiTaskResult = super().run(rgb, timer)
        if result.depth is not None and self.depth is not None:
            self.depth.to_camera(result.depth, K, rgb.shape[:2], self.letterbox)
        return result


class TaskView:
    """One task of a multi-task network behind that task's pipeline interface: ``run`` returns
    the task's result, other attributes are its pipeline's (so the evaluation scores a multi-task
    model exactly where it scores a single-task one)."""

    FIELDS = {"detection": "detections", "segmentation": "segmentation", "depth": "depth", "matching": "features"}

    def __init__(self, pipe: MultiTaskPipeline, task: str) -> None:
        if task not in pipe.tasks:
            raise ValueError(f"the multi-task model serves {list(pipe.tasks)}; not {task}")
        self.pipe, self.task = pipe, task
        self.inner = getattr(pipe, task)
        self.card = pipe.cards[task]

    def run(self, rgb: np.ndarray, timer: Any = None, K: np.ndarray | None = None) -> Any:
        return getattr(self.pipe.run(rgb, timer, K), self.FIELDS[self.task])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def task_pipeline(backend: Backend, card: ModelCard, task: str, **kw: Any) -> Any:
    """The pipeline of ``task`` over a model: its own pipeline for a single-task card, a
    :class:`TaskView` of a multi-task one (``kw``: DetectionPipeline's options for detection)."""
    if card.task == "multitask":
        return TaskView(MultiTaskPipeline(backend, card, tasks=(task,), **kw), task)
    if task == "detection":
        return DetectionPipeline(backend, card, **kw)
    if task == "segmentation":
        return SegmentationPipeline(backend, card)
    if task == "depth":
        return DepthPipeline(backend, card)
    if task == "matching":
        return MatchingPipeline(backend, card)
    raise ValueError(f"no pipeline for task '{task}'")
