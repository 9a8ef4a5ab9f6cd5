"""Readers for the real data formats users have. Each returns plain numpy / dataclasses:

- detection: :func:`coco.load_coco`, :func:`voc.load_voc` -> list[DetectionSample]
- segmentation labels: :func:`labels.read_label_png` (CamVid / Cityscapes-style, ignore label)
- depth: :func:`depth.read_kitti_depth` (value/256 m), :func:`depth.read_nyu_depth` (value/1000 m),
  :func:`depth.read_tum_depth` (value/5000 m)
- sequences: :func:`tum.load_tum_rgbd` (timestamp association), :func:`euroc.load_euroc` (mav0)
- matching: :func:`hpatches.load_hpatches_sequence` (images + homographies)
- bags: :func:`rosbag.read_images` (images + CameraInfo from any rosbag2 topic)
"""

from .common import DataFormatError, DetectionSample

__all__ = ["DataFormatError", "DetectionSample"]
