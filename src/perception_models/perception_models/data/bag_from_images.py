"""A rosbag2 MCAP from a folder of images or a video file, so users can replay their own footage
through the stack (``perception replay --bag ...``)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from perception_nodes.image_conversion import IMAGE_SUFFIXES, list_images

START_NS = 1_700_000_000_000_000_000


def _frames(source: Path, max_frames: int):
    if source.is_dir():
        files = list_images(source)
        if not files:
            raise ValueError(f"image folder '{source}' has no {sorted(IMAGE_SUFFIXES)} files")
        for n, f in enumerate(files):
            if max_frames and n >= max_frames:
                return
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"'{f}' is not a readable image")
            yield img
        return
    if not source.is_file():
        raise FileNotFoundError(f"'{source}' is neither an image folder nor a video file")
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ValueError(f"'{source}' is not a video OpenCV can read")
    n = 0
    try:
        while not max_frames or n < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            n += 1
            yield img
    finally:
        cap.release()
    if n == 0:
        raise ValueError(f"video '{source}' has no frames")


def bag_from_images(
    source: Path,
    out: Path,
    fps: float = 10.0,
    topic: str = "/camera/image_raw",
    frame_id: str = "camera_optical_frame",
    camera_info: Path | None = None,
    encoding: str = "rgb8",
    max_frames: int = 0,
) -> int:
    """Write ``source`` frames at ``fps`` as sensor_msgs/Image (+ CameraInfo if a ROS camera_info
    YAML is given, on ``<topic dir>/camera_info``). Returns the number of frames."""
    import yaml
    from perception_nodes.bag_io import BagWriter

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if Path(out).exists():
        raise FileExistsError(f"output bag '{out}' already exists; choose another path")
    info = None
    if camera_info is not None:
        try:
            info = yaml.safe_load(Path(camera_info).read_text())
            K = np.array(info["camera_matrix"]["data"], float)
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ValueError(f"camera_info '{camera_info}' is not a ROS camera_info YAML ({exc})") from None
    info_topic = topic.rsplit("/", 1)[0] + "/camera_info"
    count = 0
    with BagWriter(out) as bag:
        for img in _frames(Path(source), max_frames):
            t = START_NS + int(round(count * 1e9 / fps))
            header = bag.header(t, frame_id)
            if encoding == "rgb8":
                arr = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            elif encoding == "mono8":
                arr = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            else:
                arr = img
            h, w = arr.shape[:2]
            if info is not None:
                if (info.get("image_width"), info.get("image_height")) not in ((w, h), (None, None)):
                    raise ValueError(
                        f"camera_info is for {info.get('image_width')}x{info.get('image_height')}, frames are {w}x{h}"
                    )
                data = {
                    k: (info.get(k) or {}).get("data")
                    for k in ("distortion_coefficients", "rectification_matrix", "projection_matrix")
                }
                bag.write(
                    info_topic,
                    bag.camera_info(
                        header,
                        w,
                        h,
                        K,
                        D=data["distortion_coefficients"],
                        R=data["rectification_matrix"],
                        P=data["projection_matrix"],
                        distortion_model=info.get("distortion_model", "plumb_bob"),
                    ),
                    t,
                )
            bag.write(topic, bag.image(header, arr, encoding), t)
            count += 1
    return count
