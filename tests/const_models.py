"""Tiny ONNX models with known outputs (and their cards), for pipeline and node tests."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from perception_nodes.model_card import card_path, load_card

H, W = 384, 512
CLASSES = ["person", "car", "cone"]


def const_model(path, outputs: dict[str, np.ndarray]):
    """image (1, 3, H, W) -> the given constant outputs (plus a use of the input, so it is wired)."""
    nodes, outs = [], []
    for name, value in outputs.items():
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_v")))
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        outs.append(helper.make_tensor_value_info(name, dtype, list(value.shape)))
    nodes.append(helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0))
    outs.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, []))
    graph = helper.make_graph(
        nodes, "const", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])], outs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def write_card(path, task, classes=CLASSES, **extra):
    card = {
        "task": task,
        "classes": classes,
        "input": {
            "name": "image",
            "height": H,
            "width": W,
            "mean": [0.5] * 3,
            "std": [0.25] * 3,
            "resize": "letterbox",
            "pad_value": 114,
        },
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **extra,
    }
    card_path(path).write_text(yaml.safe_dump(card))
    return load_card(path, task)


def const_detector(tmp_path, boxes, scores, labels):
    """A detector (our export's layout: boxes, scores, labels at the network input) that always
    outputs these rows, with its card (classes CLASSES); returns (model path, card)."""
    path = const_model(
        tmp_path / "det.onnx",
        {
            "boxes": np.asarray(boxes, np.float32).reshape(1, -1, 4),
            "scores": np.asarray(scores, np.float32).reshape(1, -1),
            "labels": np.asarray(labels, np.int32).reshape(1, -1),
        },
    )
    return path, write_card(path, "detection")
