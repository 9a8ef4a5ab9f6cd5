"""Task metrics: COCO-style detection AP (agrees with pycocotools) and segmentation mIoU."""

from .detection import DetectionEvaluator, box_iou
from .segmentation import ConfusionMatrix

__all__ = ["DetectionEvaluator", "box_iou", "ConfusionMatrix"]
