"""Small assets the project makes itself: a demo ONNX model and a synthetic camera bag.

Until the task models land, ``make demo`` replays :func:`make_demo_bag` through the generic
ONNX node running :func:`make_demo_model`. Tests use both too. Needs ``onnx`` (not torch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..bag_io import BagWriter

DEMO_INPUT = (1, 3, 240, 320)


def make_demo_model(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A 3x3 conv (4 filters: R, G, B pass-through and a Sobel-x edge) + ReLU, then
    ``channel_means`` (1, 4) by global average pooling and ``coarse`` (1, 4, 30, 40) by 8x8
    average pooling. Input ``image`` (1, 3, 240, 320) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((4, 3, 3, 3), dtype=np.float32)
    for c in range(3):
        w[c, c, 1, 1] = 1.0
    sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float32) / 8.0
    w[3] = sobel[None] / 3.0
    b = np.zeros(4, dtype=np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Abs", ["conv"], ["act"]),
        helper.make_node("GlobalAveragePool", ["act"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["channel_means"], axis=1),
        helper.make_node("AveragePool", ["act"], ["coarse"], kernel_shape=[8, 8], strides=[8, 8]),
    ]
    graph = helper.make_graph(
        nodes,
        "perception_demo",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, list(DEMO_INPUT))],
        [
            helper.make_tensor_value_info("channel_means", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("coarse", TensorProto.FLOAT, [1, 4, 30, 40]),
        ],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="perception_nodes.tools.demo_assets"
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    return out


def synthetic_frame(i: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A deterministic moving scene: gradient background, a disc and a bar moving with i."""
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = ((xx + 4 * i) % 256).astype(np.uint8)
    img[..., 1] = ((yy + 2 * i) % 256).astype(np.uint8)
    img[..., 2] = 96
    cx, cy = (50 + 7 * i) % width, height // 2 + int(80 * np.sin(i / 10))
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 40**2
    img[disc] = (250, 240, 30)
    x0 = (width - 1 - 5 * i) % width
    img[:, max(0, x0 - 8) : x0 + 8] = (20, 20, 200)
    return img


def make_demo_bag(
    path: str | os.PathLike[str],
    frames: int = 60,
    width: int = 640,
    height: int = 480,
    hz: float = 30.0,
    frame_id: str = "camera_optical_frame",
    start_ns: int = 1_700_000_000_000_000_000,
) -> Path:
    """A rosbag2 MCAP with ``/camera/image_raw`` (rgb8) and ``/camera/camera_info``."""
    with BagWriter(path) as bag:
        fx = fy = 0.8 * width
        K = np.array([[fx, 0, width / 2], [0, fy, height / 2], [0, 0, 1.0]])
        for i in range(frames):
            t = start_ns + int(i * 1e9 / hz)
            header = bag.header(t, frame_id)
            bag.write("/camera/camera_info", bag.camera_info(header, width, height, K), t)
            bag.write("/camera/image_raw", bag.image(header, synthetic_frame(i, width, height), "rgb8"), t)
    return Path(path)
