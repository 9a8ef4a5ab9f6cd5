"""GenericPipeline: any single-image ONNX model; returns its raw outputs.

The first end-to-end slice of the stack (before task models), and a template for task
pipelines: ``run(rgb, timer)`` = preprocess -> backend.infer -> postprocess.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Sequence

import numpy as np

from ..backends import Backend, BackendError
from .preprocess import fit_image, to_nchw


class GenericPipeline:
    def __init__(
        self,
        backend: Backend,
        *,
        input_size: Sequence[int] = (0, 0),
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        channel_order: str = "rgb",
    ) -> None:
        image_inputs = [s for s in backend.inputs if len(s.shape) == 4]
        if len(backend.inputs) != 1 or not image_inputs or image_inputs[0].shape[1] not in (3, -1):
            raise BackendError(
                f"generic pipeline needs a model with one NCHW 3-channel image input; this one has "
                f"{[(s.name, s.shape) for s in backend.inputs]}"
            )
        self.backend = backend
        self.input = image_inputs[0]
        _, _, mh, mw = self.input.shape
        w, h = int(input_size[0]), int(input_size[1])
        self.size = (w if w > 0 else (mw if mw > 0 else 0), h if h > 0 else (mh if mh > 0 else 0))
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.bgr = channel_order == "bgr"

    def preprocess(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        w, h = self.size
        if w and h:
            rgb, _ = fit_image(rgb, w, h)
        return {self.input.name: to_nchw(rgb, self.mean, self.std, self.bgr)}

    def postprocess(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=np.float32) for k, v in outputs.items()}

    def run(self, rgb: np.ndarray, timer: Any = None) -> dict[str, np.ndarray]:
        stage = timer.stage if timer is not None else (lambda _n: nullcontext())
        with stage("preprocess"):
            feeds = self.preprocess(rgb)
        with stage("infer"):
            outputs = self.backend.infer(feeds)
        with stage("postprocess"):
            return self.postprocess(outputs)
