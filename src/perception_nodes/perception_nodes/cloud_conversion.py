"""sensor_msgs/PointCloud2 <-> numpy without sensor_msgs_py: xyz float32 + rgb packed in a float32
(the layout RViz's "RGB8" colour transformer and PCL's PointXYZRGB read)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .image_conversion import new_message

CLOUD_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])


def points_to_cloud2(xyz: np.ndarray, rgb: np.ndarray | None, header: Any) -> Any:
    from sensor_msgs.msg import PointCloud2, PointField

    n = len(xyz)
    arr = np.empty(n, CLOUD_DTYPE)
    arr["x"], arr["y"], arr["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if rgb is not None:
        c = np.asarray(rgb, np.uint32)
        arr["rgb"] = (c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]
    else:
        arr["rgb"] = 0xFFFFFF
    msg = new_message(PointCloud2)
    msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = [
        PointField(name=name, offset=off, datatype=PointField.FLOAT32, count=1)
        for name, off in (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))
    ]
    msg.is_bigendian = False
    msg.point_step, msg.row_step = CLOUD_DTYPE.itemsize, CLOUD_DTYPE.itemsize * n
    msg.is_dense = True
    from array import array

    data = array("B")
    data.frombytes(arr.tobytes())
    msg.data = data
    return msg


def cloud2_to_points(msg: Any) -> tuple[np.ndarray, np.ndarray]:
    """xyz (N, 3) float32 and rgb (N, 3) uint8 of a cloud written by :func:`points_to_cloud2`."""
    names = [f.name for f in msg.fields]
    if names[:4] != ["x", "y", "z", "rgb"] or msg.point_step != CLOUD_DTYPE.itemsize:
        raise ValueError(f"unsupported PointCloud2 layout: fields {names}, point_step {msg.point_step}")
    arr = np.frombuffer(bytes(msg.data), CLOUD_DTYPE, count=msg.width * msg.height)
    xyz = np.stack([arr["x"], arr["y"], arr["z"]], axis=1)
    c = arr["rgb"]
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=1).astype(np.uint8)
    return xyz, rgb
