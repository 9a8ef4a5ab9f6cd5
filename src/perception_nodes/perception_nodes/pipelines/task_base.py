"""What the task pipelines share: a backend checked against the model card, letterboxing to the
card's input, and the preprocess -> infer -> postprocess run with stage timings."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import nullcontext
from typing import Any

import numpy as np

from ..backends import Backend, BackendError
from ..model_card import ModelCard
from .preprocess import Letterbox, fit_image, to_nchw


class CardPipeline(ABC):
    task = ""
    #: the resize mode the task's models are trained with ("" = whatever the card says)
    required_resize = ""

    def __init__(self, backend: Backend, card: ModelCard, required_outputs: tuple[str, ...]) -> None:
        names = {s.name: s for s in backend.inputs}
        if card.input_name not in names:
            raise BackendError(
                f"model input '{card.input_name}' (from its card) is not in the model; it has {sorted(names)}"
            )
        shape = names[card.input_name].shape
        if (
            len(shape) != 4
            or (shape[2] > 0 and shape[2] != card.input_height)
            or (shape[3] > 0 and shape[3] != card.input_width)
        ):
            raise BackendError(
                f"model input shape {shape} does not match its card ({card.input_height}x{card.input_width})"
            )
        missing = set(required_outputs) - {s.name for s in backend.outputs}
        if missing:
            raise BackendError(
                f"{self.task} model must output {list(required_outputs)}; missing {sorted(missing)} "
                f"(has {[s.name for s in backend.outputs]}) - is it a {self.task} model?"
            )
        if self.required_resize and card.resize != self.required_resize:
            raise ValueError(
                f"{self.task} model card says resize '{card.resize}'; {self.task} models are trained on "
                f"{self.required_resize} frames"
            )
        self.backend, self.card = backend, card
        self.mean = np.asarray(card.mean, np.float32)
        self.std = np.asarray(card.std, np.float32)

    def preprocess(self, rgb: np.ndarray) -> tuple[dict[str, np.ndarray], Letterbox]:
        c = self.card
        net, lb = fit_image(rgb, c.input_width, c.input_height, c.resize, c.pad_value, c.pad_anchor)
        return {c.input_name: to_nchw(net, self.mean, self.std, bgr=c.channel_order == "BGR")}, lb

    @abstractmethod
    def postprocess(self, outputs: dict[str, np.ndarray], lb: Letterbox, shape: tuple[int, int]) -> Any:
        """Network outputs -> the task's result in the input image's pixels (``shape`` = its H, W)."""

    def run(self, rgb: np.ndarray, timer: Any = None) -> Any:
        stage = timer.stage if timer is not None else (lambda _n: nullcontext())
        with stage("preprocess"):
            feeds, lb = self.preprocess(rgb)
        self.letterbox = lb  # this frame's fit into the input (a depth model's focal length in its pixels)
        with stage("infer"):
            outputs = self.backend.infer(feeds)
        with stage("postprocess"):
            return self.postprocess(outputs, lb, rgb.shape[:2])
