"""Small ONNX graphs with a third-party family's exact input/output names, shapes and metadata and
known outputs, and their cards (perception-models card), for the family tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from perception_nodes.model_import import build_card, write_card


def family_graph(path, inputs: dict[str, list], outputs: dict[str, np.ndarray], metadata=None, dynamic=None):
    """Inputs of the given shapes -> constant outputs of exactly the given names (each made to
    depend on the first input, times 0, so the graph is wired as a real one)."""
    first = next(iter(inputs))
    nodes = [
        helper.make_node("ReduceMean", [first], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
    ]
    inits = [numpy_helper.from_array(np.float32(0.0), "zero")]
    outs = []
    for name, value in outputs.items():
        const = name + "_c"
        inits.append(numpy_helper.from_array(value, const))
        if value.dtype == np.float32:
            nodes.append(helper.make_node("Add", [const, "z"], [name]))
        else:  # integer outputs: the input only feeds a Cast'ed zero
            nodes.append(helper.make_node("Cast", ["z"], ["zi"], to=helper.np_dtype_to_tensor_dtype(value.dtype)))
            nodes.append(helper.make_node("Add", [const, "zi"], [name]))
        outs.append(
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
        )
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs.items()]
    graph = helper.make_graph(nodes, "family", ins, outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.save(model, str(path))
    return path


def imported(tmp_path, onnx_path, **kw):
    card = build_card(onnx_path, **kw)
    out = write_card(card, onnx_path, tmp_path / "cards" / (Path(onnx_path).stem + ".card.yaml"))
    return out


YOLO_META = {"task": "detect", "names": "{0: 'person', 1: 'car', 2: 'chair'}", "imgsz": "[64, 64]", "stride": "32"}


def yolo_head(rows: list[list[float]], nc: int = 3, nm: int = 0) -> np.ndarray:
    """[1, 4+nc+nm, N] from rows (cx, cy, w, h, class scores..., mask coefficients...)."""
    a = np.zeros((len(rows), 4 + nc + nm), np.float32)
    for i, r in enumerate(rows):
        a[i, : len(r)] = r
    return np.ascontiguousarray(a.T[None])
