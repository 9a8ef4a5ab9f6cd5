"""What the task nodes share: model card + backend + pipeline at configure, the card's task
checked, image conversion (any supported encoding, mono included, becomes RGB) and release at
cleanup. A task node only says which pipeline it builds and what it publishes."""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any

import numpy as np

from ..camera_info import camera_info_problem
from ..image_conversion import image_to_rgb
from ..model_card import load_card, model_files
from ..node_base import FrameError, PerceptionNode
from ..workspace import resolve_path
from .generic_onnx_node import make_backend


class ModelNode(PerceptionNode):
    task = ""

    @abstractmethod
    def build_pipeline(self, backend: Any, card: Any, params: dict[str, Any]) -> Any:
        """The task's pipeline over ``backend`` (the card is already checked for the task)."""

    @abstractmethod
    def create_outputs(self, params: dict[str, Any]) -> None:
        """Create the task's publishers."""

    @abstractmethod
    def publish_result(self, msg: Any, rgb: np.ndarray, result: Any) -> None:
        """Publish one frame's result with the input's header."""

    def subscribe_camera_info(self, qos: Any) -> Any:
        """Keep the latest valid sensor_msgs/CameraInfo of the ``camera_info`` topic for :meth:`K_for`
        (nodes that need intrinsics add this to their input subscriptions)."""
        from sensor_msgs.msg import CameraInfo

        def on_info(msg: Any) -> None:
            problem = camera_info_problem(msg)
            if problem:
                self.counters["camera_info_rejected"] = self.counters.get("camera_info_rejected", 0) + 1
                self.warn_input(
                    f"CameraInfo rejected ({problem}); "
                    + (
                        "keeping the last good one"
                        if getattr(self, "_camera", None)
                        else "no intrinsics until a valid one arrives"
                    )
                )
                return
            self._camera = (np.array(msg.k, np.float64).reshape(3, 3), (int(msg.height), int(msg.width)))

        return self.create_subscription(CameraInfo, "camera_info", on_info, qos)

    def K_for(self, shape: tuple[int, int]) -> np.ndarray | None:
        """The latest CameraInfo's K for an image of ``shape`` (scaled when the image was resized;
        a CameraInfo without a size is taken as is); None before the first one."""
        camera = getattr(self, "_camera", None)
        if camera is None:
            return None
        K, size = camera
        if size == tuple(shape) or 0 in size:
            return K
        if abs(shape[1] / shape[0] - size[1] / size[0]) > 0.02 * size[1] / size[0]:
            self.warn_input(
                f"CameraInfo is for {size[1]}x{size[0]} images but this one is {shape[1]}x{shape[0]} "
                "(another aspect ratio): no intrinsics for it"
            )
            return None
        from ..pipelines.depth import scale_K

        return scale_K(K, shape[1] / size[1], shape[0] / size[0])

    def load_model(self, params: dict[str, Any], key: str, task: str) -> tuple[Any, Any]:
        """Backend and card of the model named by parameter ``key``, checked to be a ``task`` model
        (the card first: a wrong model fails fast and clearly, before any engine build)."""
        if not params[key]:
            raise FileNotFoundError(f"parameter '{key}' is empty; set it to an ONNX file with its card")
        model = resolve_path(params[key])
        if not model.is_file():
            raise FileNotFoundError(f"model '{model}' does not exist (parameter {key})")
        card = load_card(model, task, allow_unverified=bool(params.get("allow_unverified_model")))
        onnx = model_files(model)[0]
        if not onnx.is_file():
            raise FileNotFoundError(f"model '{onnx}' (named by card {model}) does not exist (parameter {key})")
        if card.task == "matcher":  # keypoint sets: warm up with a few
            shapes = {n: (1, 16, 2) for n in card.decode.get("keypoints", [])}
            shapes.update({n: (1, 16, 64) for n in card.decode.get("descriptors", [])})
        else:
            shapes = {card.input_name: (1, 3, card.input_height, card.input_width)}
        return make_backend(self, {**params, "model_path": str(onnx)}, shapes), card

    def setup(self, params: dict[str, Any]) -> None:
        self._camera = None  # intrinsics are forgotten at configure
        backend, card = self.load_model(params, "model_path", self.task)
        try:
            self.pipeline = self.build_pipeline(backend, card, params)
        except Exception:
            backend.close()
            raise
        self.card = card
        self.model_name = os.path.basename(params["model_path"])
        self.backend_description = f"{backend.describe()} model={self.model_name}"
        self.create_outputs(params)

    def process(self, msg: Any) -> None:
        with self.timer.stage("convert"):
            rgb = image_to_rgb(msg, self.params["accept_raw_encodings"])
        result = self.pipeline.run(rgb, self.timer)
        dropped = getattr(result, "dropped_nonfinite", 0)
        if dropped:
            self.counters["nonfinite_dropped"] = self.counters.get("nonfinite_dropped", 0) + dropped
            self.get_logger().warn(f"{dropped} detections with NaN/inf dropped", throttle_duration_sec=5.0)
        invalid = getattr(result, "invalid_pixels", 0)
        if invalid:
            raise FrameError(
                f"model output has {invalid} pixels with class ids outside the card's {self.card.num_classes} classes"
            )
        with self.timer.stage("publish"):
            self.publish_result(msg, rgb, result)
