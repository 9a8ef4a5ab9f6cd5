"""Task metrics: COCO-style detection AP (agrees with pycocotools), segmentation mIoU, depth
(KITTI conventions, absolute and median-scaled) and trajectory ATE/RPE (through evo; import
``metrics.odometry`` directly)."""

from .detection import DetectionEvaluator, box_iou
from .depth import DepthEvaluator, depth_errors
from .segmentation import ConfusionMatrix

__all__ = ["DetectionEvaluator", "box_iou", "ConfusionMatrix", "DepthEvaluator", "depth_errors"]
