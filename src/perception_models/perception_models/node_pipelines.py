"""The nodes' own pipelines over an exported model, for everything here that measures or labels
through them (evaluation, the ground prior of the reference depth, the odometry of footage without
a pose source): one place that knows how a multi-task model serves each of its tasks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def node_pipeline(model: Path | str, task: str, threads: int = 2, **kw: Any):
    """The node's pipeline of ``task`` over ``model`` (a multi-task model: that task's view of it)
    and its card."""
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import ModelCardError, load_card, model_files
    from perception_nodes.pipelines.multitask import task_pipeline

    card = load_card(model)
    if card.task == "multitask":
        if task not in (card.raw.get("tasks") or {}):
            raise ModelCardError(
                f"{model}: the multi-task model serves {list(card.raw.get('tasks') or {})}, not {task}"
            )
    elif not card.serves(task):
        raise ModelCardError(f"{model} is a {card.task} model, not a {task} model")
    backend = OnnxRuntimeBackend(model_files(model)[0], threads=threads)
    pipe = task_pipeline(backend, card, task, **kw)
    return pipe, pipe.card


def ground_segmenter(
    model: Path | str, needed_by: str = "the ground prior", threads: int = 2
) -> Callable[[np.ndarray], np.ndarray]:
    """rgb (H, W, 3) -> the mask of the segmentation (or multi-task) model's ``ground`` class,
    through the nodes' SegmentationPipeline (ONNX Runtime), as the nodes' ``ground_from_labels``
    takes it; a model without one is refused naming ``needed_by``."""
    pipe, _card = node_pipeline(model, "segmentation", threads)
    try:
        k = pipe.ground_class()
    except ValueError as exc:
        raise ValueError(f"{model}: {exc}; {needed_by} needs one") from None
    return lambda rgb: pipe.run(rgb).labels == k
