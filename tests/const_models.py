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


SEG_CLASSES = ["sky", "ground", "wall"]


def const_multitask(
    tmp_path, depth=None, canonical_focal=0.0, tasks=("detection", "segmentation", "depth", "matching")
):
    """A multi-task model (MultiTaskExport's output names) with known outputs and its card:
    one person box at (100, 80)-(200, 280) network pixels, class id = row index // 128 of the
    network input (sky / ground / wall bands), ``depth`` (default: 2 m + 1 m per 100 network
    columns) and 3 keypoints with 8-D descriptors. Returns (path, card)."""
    rows = np.arange(H)[:, None] // 128 * np.ones((1, W), np.int64)
    if depth is None:
        depth = 2.0 + np.arange(W)[None, :] / 100.0 * np.ones((H, 1))
    kp = np.zeros((1, 4, 2), np.float32)
    kp[0, :3] = [[64, 100], [256, 192], [400, 300]]
    desc = np.zeros((1, 4, 8), np.float32)
    desc[0, :3, :3] = np.eye(3)
    outputs = {
        "boxes": np.array([[[100, 80, 200, 280], [0, 0, 0, 0]]], np.float32),
        "scores": np.array([[0.9, 0.0]], np.float32),
        "labels": np.array([[0, -1]], np.int32),
        "seg_labels": rows.astype(np.int32)[None],
        "seg_confidence": np.ones((1, H, W), np.float32),
        "depth": np.asarray(depth, np.float32).reshape(1, 1, H, W),
        "keypoints": kp,
        "keypoint_scores": np.array([[0.9, 0.8, 0.7, 0.0]], np.float32),
        "descriptors": desc,
    }
    path = const_model(tmp_path / "multitask.onnx", outputs)
    sections = {
        "detection": {"classes": CLASSES, "outputs": {"boxes": "boxes", "scores": "scores", "labels": "labels"}},
        "segmentation": {"classes": SEG_CLASSES, "outputs": {"labels": "seg_labels", "confidence": "seg_confidence"}},
        "depth": {
            "outputs": {"depth": "depth"},
            "min": 0.1,
            "max": 100.0,
            "scale_source": "supervised",
            "canonical_focal": canonical_focal,
        },
        "matching": {"outputs": {"keypoints": "keypoints", "scores": "keypoint_scores", "descriptors": "descriptors"}},
    }
    return path, write_card(path, "multitask", classes=[], tasks={t: sections[t] for t in tasks})
