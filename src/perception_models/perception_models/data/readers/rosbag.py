"""Images and CameraInfo from any rosbag2 (MCAP or sqlite3) topic, via the foundation's reader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .common import DataFormatError


@dataclass
class BagImage:
    stamp_ns: int  # header stamp
    frame_id: str
    rgb: np.ndarray  # (H, W, 3) uint8 (or (H, W) float32 for depth encodings)
    encoding: str
    K: np.ndarray | None  # 3x3 from the latest CameraInfo at or before this image
    distortion: np.ndarray | None


def _camera_info_topic(image_topic: str) -> str:
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


def read_images(
    bag: Path | str, topic: str = "/camera/image_raw", camera_info_topic: str | None = None, keep_encoding: bool = False
) -> Iterator[BagImage]:
    """Decode sensor_msgs/Image or CompressedImage messages of ``topic``; colour images come back
    as RGB unless ``keep_encoding`` (depth / float images always keep theirs)."""
    from perception_nodes.bag_io import BagError, bag_info, read_messages, typestore
    from perception_nodes.image_conversion import (
        ImageConversionError,
        compressed_to_numpy,
        image_to_numpy,
        image_to_rgb,
    )

    info_topic = camera_info_topic or _camera_info_topic(topic)
    K = D = None
    found = False
    store = typestore(bag)
    try:
        topics = bag_info(bag).topics
        if topic not in topics:
            raise DataFormatError(f"{bag}: no topic '{topic}'; it has {sorted(topics)}")
        wanted = [topic] + ([info_topic] if info_topic in topics else [])
        for msg_topic, msgtype, _t, raw in read_messages(bag, wanted):
            msg = store.deserialize_cdr(raw, msgtype)
            if msg_topic == info_topic:
                K = np.array(msg.k, float).reshape(3, 3)
                D = np.array(msg.d, float)
                continue
            found = True
            try:
                if msgtype.endswith("CompressedImage"):
                    img, enc = compressed_to_numpy(msg, "rgb8"), "rgb8"
                elif keep_encoding or msg.encoding in ("32FC1", "16UC1", "mono16"):
                    img, enc = np.array(image_to_numpy(msg)), msg.encoding
                else:
                    img, enc = image_to_rgb(msg), "rgb8"
            except ImageConversionError as exc:
                raise DataFormatError(f"{bag} {topic}: {exc}") from None
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            yield BagImage(int(stamp), msg.header.frame_id, img, enc, K, D)
    except BagError as exc:
        raise DataFormatError(str(exc)) from None
    if not found:
        raise DataFormatError(f"{bag}: no messages on topic '{topic}'")
