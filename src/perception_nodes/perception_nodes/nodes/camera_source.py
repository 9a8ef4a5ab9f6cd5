"""camera_source: a V4L2 device, a video file or an image folder -> ``image_raw`` + ``camera_info``.

Frames are stamped when they are read from the source (before colour conversion and publishing),
so latency measured downstream starts at capture. ``camera_info_url`` takes what
camera_info_manager takes: ``file:///abs/cam.yaml``, ``package://<pkg>/<path>`` or a path.
``qos``: ``reliable`` (default: recorders and lockstep consumers get every frame) or
``sensor_data`` (best effort, as camera drivers publish)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import rclpy
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..camera_info import load_camera_info, resolve_camera_info_url
from ..dds_profile import SEGMENT_ENV, segment_limit
from ..image_conversion import IMAGE_SUFFIXES, list_images, numpy_to_image
from ..params import ParameterError, declare_from_schema, load_schema, read_parameters
from ..qos import input_qos, output_qos
from ..workspace import resolve_path


class FrameSource:
    """BGR frames from a device, a video file or an image folder (no ROS)."""

    def __init__(self, source: str, loop: bool = True, width: int = 0, height: int = 0) -> None:
        self.loop = loop
        path = Path(source)
        self.files: list[Path] = []
        self.cap: Any = None
        if path.is_dir():
            self.files = list_images(path)
            if not self.files:
                raise ValueError(f"image folder '{source}' has no {sorted(IMAGE_SUFFIXES)} files")
        else:
            target: Any = int(source) if source.isdigit() else source
            if isinstance(target, str) and not source.startswith("/dev/") and not path.is_file():
                raise ValueError(f"source '{source}' is neither a device, a video file nor an image folder")
            self.cap = cv2.VideoCapture(target)
            if width and height:
                self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
                self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
            if not self.cap.isOpened():
                raise ValueError(f"cannot open '{source}' (no camera there, or an unreadable video)")
        self._iter = self._frames()

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            if self.files:
                for f in self.files:
                    img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                    if img is not None:
                        yield img
            else:
                while True:
                    ok, img = self.cap.read()
                    if not ok:
                        break
                    yield img
                if self.loop:
                    self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            if not self.loop:
                return

    def read(self) -> np.ndarray | None:
        return next(self._iter, None)


class CameraSource(Node):
    def __init__(self, name: str = "camera_source") -> None:
        super().__init__(name)
        schema = load_schema("camera_source")
        declare_from_schema(self, schema)
        p = self.params = read_parameters(self, schema)
        src = (
            p["source"] if p["source"].startswith("/dev/") or p["source"].isdigit() else str(resolve_path(p["source"]))
        )
        self.source = FrameSource(src, p["loop"], p["width"], p["height"])
        self.info = load_camera_info(resolve_camera_info_url(p["camera_info_url"])) if p["camera_info_url"] else None
        qos = input_qos("sensor_data", "realtime", 5) if p["qos"] == "sensor_data" else output_qos(5)
        self.image_pub = self.create_publisher(Image, "image_raw", qos)
        self.info_pub = self.create_publisher(CameraInfo, "camera_info", qos)
        self.count = 0
        self.oversize = 0
        self.segment = segment_limit()
        self.create_timer(1.0 / p["rate"] if p["rate"] > 0 else 0.0, self.tick)

    def tick(self) -> None:
        bgr = self.source.read()
        stamp = self.get_clock().now().to_msg()  # capture time: before conversion and publishing
        if bgr is None:
            self.get_logger().info(f"source ended after {self.count} frames")
            rclpy.try_shutdown()
            return
        enc = self.params["encoding"]
        arr = (
            cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if enc == "rgb8"
            else (cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY) if enc == "mono8" else bgr)
        )
        msg = numpy_to_image(arr, enc)
        msg.header.stamp = stamp
        msg.header.frame_id = self.params["frame_id"]
        if self.info is not None:
            self.info.header = msg.header
            self.info_pub.publish(self.info)
        size = len(msg.data) + 64  # the serialised header and fields
        if size > self.segment:
            self.oversize += 1
            self.get_logger().warn(
                f"a {msg.width}x{msg.height} {enc} frame ({size} bytes) is larger than the {self.segment} byte "
                f"shared-memory segment ({SEGMENT_ENV}; perception run sizes it from this node's width/height): "
                f"best-effort subscribers on this host may lose it ({self.oversize} frames so far)",
                throttle_duration_sec=5.0,
            )
        self.image_pub.publish(msg)
        self.count += 1


def main(args: list[str] | None = None) -> None:
    from ..node_base import run_plain_node

    run_plain_node(CameraSource, "camera_source", (ValueError, ParameterError), args)


if __name__ == "__main__":
    main()
