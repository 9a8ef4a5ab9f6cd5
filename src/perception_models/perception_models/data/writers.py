"""Write synthetic sequences as training sets on disk and as rosbag2 MCAP bags.

Training set layout (one folder per sequence)::

    manifest.json            generator version, config (seed...), classes, counts, file layout
    camera_info.yaml         ROS camera_info format (camera_calibration_parsers)
    trajectory_tum.txt       TUM format: t tx ty tz qx qy qz qw, camera_optical_frame -> odom
    annotations_coco.json    COCO detection + instance masks (uncompressed RLE), things only
    rgb/NNNNNN.png           uint8 RGB (camera effects applied)
    depth/NNNNNN.png         uint16 millimetres, 0 = no depth (sky or > 65.535 m)   [--depth png]
    depth/NNNNNN.npy         float32 metres, inf = sky                              [--depth npy]
    labels/NNNNNN.png        uint8 class ids (synth.CLASSES)
    instances/NNNNNN.png     uint16 instance ids, 0 = none
    dynamic/NNNNNN.png       uint8 255 on objects that move on their own
    flow/NNNNNN.png          flow to frame N+1, KITTI format (uint16 u, v = flow·64 + 2^15, valid)
    flow_status/NNNNNN.png   uint8: 0 visible in N+1, 1 occluded, 2 out of view, 3 no depth

Bag topics: /camera/image_raw (rgb8), /camera/camera_info, /ground_truth/depth (32FC1, +inf = sky),
/ground_truth/labels (mono8), /ground_truth/detections (vision_msgs/Detection2DArray, laid out as
detection_node's: perception_nodes/detection_conversion.py) with /ground_truth/label_info (LabelInfo),
/ground_truth/odometry (nav_msgs/Odometry, odom -> camera_link), /tf (odom -> camera_link) and
/tf_static (camera_link -> camera_optical_frame).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
import yaml

from .readers.tum import tum_line
from .synth.correspondence import VISIBLE
from .synth.geometry import R_BODY_OPTICAL, matrix_to_quaternion
from .synth.scene import CLASSES, THING_CLASSES
from .synth.sequence import GENERATOR_VERSION, Frame, SyntheticSequence

START_NS = 1_700_000_000_000_000_000  # stamps of synthetic frames start here (deterministic)
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1]
ODOM_FRAME, BODY_FRAME, OPTICAL_FRAME = "odom", "camera_link", "camera_optical_frame"


def stamp_ns(frame: Frame) -> int:
    return START_NS + int(round(frame.time * 1e9))


def coco_category_id(class_name: str) -> int:
    return THING_CLASSES.index(class_name) + 1


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE (column-major run lengths starting with zeros)."""
    flat = np.asarray(mask, dtype=np.uint8).reshape(-1, order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]]))
    counts = runs.tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def encode_flow_kitti(flow: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """KITTI flow PNG (H, W, 3) uint16 in RGB order: u, v as value·64 + 2^15, valid flag."""
    out = np.zeros(flow.shape[:2] + (3,), np.uint16)
    f = np.nan_to_num(flow, nan=0.0)
    out[..., 0] = np.clip(np.rint(f[..., 0] * 64.0 + 32768.0), 0, 65535).astype(np.uint16)
    out[..., 1] = np.clip(np.rint(f[..., 1] * 64.0 + 32768.0), 0, 65535).astype(np.uint16)
    out[..., 2] = valid.astype(np.uint16)
    return out


def decode_flow_kitti(png: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of encode_flow_kitti (RGB order): flow (H, W, 2) float32 and valid (H, W) bool."""
    flow = (png[..., :2].astype(np.float32) - 32768.0) / 64.0
    return flow, png[..., 2] > 0


def depth_to_png_mm(depth: np.ndarray) -> np.ndarray:
    mm = np.where(np.isfinite(depth), np.round(depth * 1000.0), 0)
    return np.where(mm > 65535, 0, mm).astype(np.uint16)


def encode_frame_files(frame: Frame, depth_format: str = "png") -> None:
    """Encode a frame's per-frame files into ``frame.encoded`` (runs in the render workers)."""

    def png(a: np.ndarray) -> bytes:
        ok, buf = cv2.imencode(".png", a, PNG_FAST)
        assert ok
        return buf.tobytes()

    enc = frame.encoded
    enc["rgb"] = png(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    if depth_format == "png":
        enc["depth"] = png(depth_to_png_mm(frame.depth))
    enc["labels"] = png(frame.semantic)
    enc["instances"] = png(frame.instance)
    enc["dynamic"] = png(frame.dynamic.astype(np.uint8) * 255)


def _bottom_point(depth: np.ndarray, K: np.ndarray, box: Any) -> tuple[float, float, float]:
    """Ground truth for where a detection stands: the 3D point (optical frame) of the box's
    bottom-centre pixel from the rendered depth — where the object meets the ground; NaN where the
    depth is unknown (as detection_node says "no ground position")."""
    u, v = int(round((box.x0 + box.x1) / 2)), int(box.y1)
    z = float(depth[v, u]) if 0 <= v < depth.shape[0] and 0 <= u < depth.shape[1] else float("nan")
    if not (np.isfinite(z) and z > 0):
        return (float("nan"),) * 3
    x, y, _ = np.linalg.inv(np.asarray(K, np.float64)) @ np.array([u, v, 1.0]) * z
    return float(x), float(y), z


def vision_detection(T: Any, header: Any, box: Any, class_id: int, ground: tuple[float, float, float]) -> Any:
    """One ground-truth box as vision_msgs/Detection2D (rosbags types), the layout detection_node uses."""
    x, y, z = ground
    pose = T["geometry_msgs/msg/PoseWithCovariance"](
        pose=T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=x, y=y, z=z),
            orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    hyp = T["vision_msgs/msg/ObjectHypothesisWithPose"](
        hypothesis=T["vision_msgs/msg/ObjectHypothesis"](class_id=str(class_id), score=1.0), pose=pose
    )
    center = T["vision_msgs/msg/Pose2D"](
        position=T["vision_msgs/msg/Point2D"](x=(box.x0 + box.x1 + 1) / 2.0, y=(box.y0 + box.y1 + 1) / 2.0), theta=0.0
    )
    return T["vision_msgs/msg/Detection2D"](
        header=header,
        results=[hyp],
        bbox=T["vision_msgs/msg/BoundingBox2D"](
            center=center, size_x=float(box.x1 - box.x0 + 1), size_y=float(box.y1 - box.y0 + 1)
        ),
        id=str(box.instance),
    )


class DatasetWriter:
    """Writes one sequence folder; call :meth:`add` per frame in order, then :meth:`close`."""

    def __init__(
        self, seq: SyntheticSequence, out: Path, depth_format: str = "png", flow: bool = True, min_box_pixels: int = 16
    ) -> None:
        if depth_format not in ("png", "npy"):
            raise ValueError(f"depth_format '{depth_format}' must be 'png' (uint16 mm) or 'npy' (float32 m)")
        self.seq, self.out, self.depth_format, self.flow = seq, Path(out), depth_format, flow
        self.min_box_pixels = min_box_pixels
        dirs = ["rgb", "depth", "labels", "instances", "dynamic"] + (["flow", "flow_status"] if flow else [])
        for d in dirs:
            (self.out / d).mkdir(parents=True, exist_ok=True)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.trajectory: list[str] = []
        self._prev: Frame | None = None

    def _name(self, i: int, ext: str) -> str:
        return f"{i:06d}.{ext}"

    def add(self, frame: Frame) -> None:
        i, o = frame.index, self.out
        if "rgb" not in frame.encoded:
            encode_frame_files(frame, self.depth_format)
        for key, data in frame.encoded.items():
            (o / key / self._name(i, "png")).write_bytes(data)
        if self.depth_format == "npy":
            np.save(o / "depth" / self._name(i, "npy"), frame.depth)
        h, w = frame.depth.shape
        self.images.append(
            {"id": i, "file_name": f"rgb/{self._name(i, 'png')}", "width": w, "height": h, "stamp_ns": stamp_ns(frame)}
        )
        for b in frame.boxes:
            if b.class_name not in THING_CLASSES or b.pixels < self.min_box_pixels:
                continue
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": i,
                    "category_id": coco_category_id(b.class_name),
                    "bbox": b.xywh,
                    "area": b.pixels,
                    "iscrowd": 0,
                    "instance_id": b.instance,
                    "truncated": b.truncated,
                    "segmentation": rle_encode(frame.instance == b.instance),
                }
            )
        self.trajectory.append(tum_line(stamp_ns(frame) / 1e9, frame.T_world_cam))
        if self.flow and self._prev is not None:
            self._write_flow(self._prev, frame)
        self._prev = frame

    def _write_flow(self, a: Frame, b: Frame) -> None:
        flow, status = self.seq.correspondence(a, b)
        png = encode_flow_kitti(flow, status == VISIBLE)
        cv2.imwrite(str(self.out / "flow" / self._name(a.index, "png")), cv2.cvtColor(png, cv2.COLOR_RGB2BGR), PNG_FAST)
        cv2.imwrite(str(self.out / "flow_status" / self._name(a.index, "png")), status, PNG_FAST)

    def close(self) -> dict:
        o, c = self.out, self.seq.config
        (o / "camera_info.yaml").write_text(yaml.safe_dump(self.seq.camera_info(), sort_keys=False))
        (o / "trajectory_tum.txt").write_text(
            "# timestamp tx ty tz qx qy qz qw  (camera_optical_frame -> odom; REP-103 odom: x forward, z up)\n"
            + "\n".join(self.trajectory)
            + "\n"
        )
        coco = {
            "info": {
                "description": f"perception_models synthetic {c.preset} seed {c.seed}",
                "version": GENERATOR_VERSION,
            },
            "images": self.images,
            "annotations": self.annotations,
            "categories": [{"id": coco_category_id(n), "name": n, "supercategory": "thing"} for n in THING_CLASSES],
        }
        (o / "annotations_coco.json").write_text(json.dumps(coco))
        manifest = {
            "generator": "perception_models.data.synth",
            "generator_version": GENERATOR_VERSION,
            "config": c.to_json(),
            "frames": len(self.images),
            "classes": list(CLASSES),
            "thing_classes": list(THING_CLASSES),
            "depth_format": self.depth_format,
            "flow": self.flow,
            "annotations": len(self.annotations),
            "frames_convention": {
                "world": ODOM_FRAME,
                "camera": OPTICAL_FRAME,
                "pose": "T_world_camera_optical (camera-to-world)",
                "depth": "optical-frame z in metres",
                "pixels": "OpenCV, centre of (u, v) at (u, v)",
            },
            "flow_status": {"0": "visible", "1": "occluded", "2": "out_of_view", "3": "no_depth"},
            "stamp_start_ns": START_NS,
        }
        (o / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return manifest


class BagSequenceWriter:
    """Writes a sequence as a rosbag2 MCAP bag with camera and ground-truth topics."""

    def __init__(self, seq: SyntheticSequence, path: Path) -> None:
        from perception_nodes.bag_io import BagWriter

        self.seq = seq
        self.bag = BagWriter(path)
        self.T = self.bag.store.types
        self._static_done = False
        self.K = seq.K  # constant per sequence

    def _header(self, frame: Frame, frame_id: str) -> Any:
        return self.bag.header(stamp_ns(frame), frame_id)

    def _transform(self, header: Any, child: str, R: np.ndarray, t: np.ndarray) -> Any:
        T = self.T
        q = matrix_to_quaternion(R)
        return T["geometry_msgs/msg/TransformStamped"](
            header=header,
            child_frame_id=child,
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=float(t[0]), y=float(t[1]), z=float(t[2])),
                rotation=T["geometry_msgs/msg/Quaternion"](x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
            ),
        )

    def add(self, frame: Frame) -> None:
        T, t = self.T, stamp_ns(frame)
        cam = self._header(frame, OPTICAL_FRAME)
        if not self._static_done:
            static = self._transform(self._header(frame, BODY_FRAME), OPTICAL_FRAME, R_BODY_OPTICAL, np.zeros(3))
            self.bag.write("/tf_static", T["tf2_msgs/msg/TFMessage"](transforms=[static]), t)
            classes = [T["vision_msgs/msg/VisionClass"](class_id=i, class_name=n) for i, n in enumerate(THING_CLASSES)]
            info = T["vision_msgs/msg/LabelInfo"](header=cam, class_map=classes, threshold=0.0)
            self.bag.write("/ground_truth/label_info", info, t)
            self._static_done = True
        h, w = frame.rgb.shape[:2]
        self.bag.write("/camera/camera_info", self.bag.camera_info(cam, w, h, self.K), t)
        self.bag.write("/camera/image_raw", self.bag.image(cam, frame.rgb, "rgb8"), t)
        self.bag.write("/ground_truth/depth", self.bag.image(cam, frame.depth.astype(np.float32), "32FC1"), t)
        self.bag.write("/ground_truth/labels", self.bag.image(cam, frame.semantic, "mono8"), t)
        dets = [
            vision_detection(T, cam, b, THING_CLASSES.index(b.class_name), _bottom_point(frame.depth, self.K, b))
            for b in frame.boxes
            if b.class_name in THING_CLASSES
        ]
        array = T["vision_msgs/msg/Detection2DArray"](header=cam, detections=dets)
        self.bag.write("/ground_truth/detections", array, t)
        body = frame.T_world_body
        odom_header = self._header(frame, ODOM_FRAME)
        q = matrix_to_quaternion(body[:3, :3])
        pose = T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](
                position=T["geometry_msgs/msg/Point"](x=float(body[0, 3]), y=float(body[1, 3]), z=float(body[2, 3])),
                orientation=T["geometry_msgs/msg/Quaternion"](
                    x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])
                ),
            ),
            covariance=np.zeros(36),
        )
        twist = T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](
                linear=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
            ),
            covariance=np.full(36, 0.0),
        )
        self.bag.write(
            "/ground_truth/odometry",
            T["nav_msgs/msg/Odometry"](header=odom_header, child_frame_id=BODY_FRAME, pose=pose, twist=twist),
            t,
        )
        self.bag.write(
            "/tf",
            T["tf2_msgs/msg/TFMessage"](
                transforms=[self._transform(odom_header, BODY_FRAME, body[:3, :3], body[:3, 3])]
            ),
            t,
        )

    def close(self) -> None:
        self.bag.close()


def write_sequence(
    seq: SyntheticSequence,
    out: Path,
    *,
    dataset: bool = True,
    bag: bool = False,
    depth_format: str = "png",
    flow: bool = True,
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Render ``seq`` once and write the training set and/or the bag under ``out``."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = DatasetWriter(seq, out, depth_format, flow) if dataset else None
    bw = BagSequenceWriter(seq, out / "bag") if bag else None
    post = partial(encode_frame_files, depth_format=depth_format) if dataset else None
    frames: Iterable[Frame] = seq.frames(workers=workers, postprocess=post)
    bar = tqdm(
        frames, total=len(seq), desc=f"{seq.config.preset} seed {seq.config.seed}", unit="frame", disable=not progress
    )
    try:
        for frame in bar:
            if ds is not None:
                ds.add(frame)
            if bw is not None:
                bw.add(frame)
    finally:
        if bw is not None:
            bw.close()
    summary = ds.close() if ds is not None else {"config": seq.config.to_json(), "frames": len(seq)}
    if bw is not None:
        summary["bag"] = os.fspath(out / "bag")
    return summary
