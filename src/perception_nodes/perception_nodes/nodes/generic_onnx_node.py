"""generic_onnx_node: Image in, the model's raw outputs out (perception_msgs/InferenceResult).

Subscribes ``image`` (sensor_msgs/Image); publishes ``~/result`` with the input's header.
"""

from __future__ import annotations

import os
from typing import Any

from perception_msgs.msg import InferenceResult, Tensor

from ..backends import create_backend
from ..image_conversion import image_to_rgb
from ..node_base import PerceptionNode, run_node
from ..pipelines.generic import GenericPipeline
from ..qos import output_qos
from ..workspace import resolve_path


def make_backend(node: PerceptionNode, params: dict[str, Any], warmup_shapes: dict[str, tuple[int, ...]] | None = None):
    """The backend a node's common parameters ask for (shared by every inference node);
    ``warmup_shapes``: the size of each dynamic input for the warm-up (from the model card)."""
    if not params["model_path"]:
        raise FileNotFoundError("parameter 'model_path' is empty; set it to an ONNX file")
    model = resolve_path(params["model_path"])
    backend = create_backend(
        params["backend"],
        model,
        providers=params["onnxruntime_providers"],
        threads=params["onnxruntime_threads"],
        engine_cache_dir=params["engine_cache_dir"],
        precision=params["precision"],
        calibration_cache=params["int8_calibration_cache"] or None,
        log_fn=lambda m: node.get_logger().info(m),
    )
    if params["warmup_iterations"]:
        ms = backend.warmup(params["warmup_iterations"], warmup_shapes)
        node.get_logger().info(f"warm-up: last inference {ms:.1f} ms")
    return backend


class GenericOnnxNode(PerceptionNode):
    schema_name = "generic_onnx_node"

    def setup(self, params: dict[str, Any]) -> None:
        backend = make_backend(self, params)
        self.pipeline = GenericPipeline(
            backend,
            input_size=params["input_size"],
            mean=params["mean"],
            std=params["std"],
            channel_order=params["channel_order"],
        )
        self.model_name = os.path.basename(params["model_path"])
        self.backend_description = backend.describe()
        self.result_pub = self.create_publisher(InferenceResult, "~/result", output_qos())

    def process(self, msg: Any) -> None:
        with self.timer.stage("convert"):
            rgb = image_to_rgb(msg, self.params["accept_raw_encodings"])
        outputs = self.pipeline.run(rgb, self.timer)
        self.check_finite(outputs)
        with self.timer.stage("publish"):
            out = InferenceResult()
            out.header = msg.header
            out.model = self.model_name
            for name, arr in outputs.items():
                t = Tensor(name=name, shape=[int(d) for d in arr.shape])
                t.data = _float_array(arr)  # one memcpy; a list would be checked element by element
                out.outputs.append(t)
            self.result_pub.publish(out)


def _float_array(arr):
    import array

    a = array.array("f")
    a.frombytes(arr.astype("float32").tobytes())
    return a


def main(args: list[str] | None = None) -> None:
    run_node(GenericOnnxNode, "generic_onnx_node", args)


if __name__ == "__main__":
    main()
