"""Pascal VOC XML annotations (``Annotations/*.xml`` + ``JPEGImages/``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from .common import DataFormatError, DetectionSample

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)


def load_voc_xml(xml_path: Path | str, image_dir: Path | str | None = None) -> DetectionSample:
    """One VOC XML. VOC boxes are 1-based inclusive pixels: returned as 0-based (x0, y0, x1, y1)
    with exclusive max, i.e. (xmin - 1, ymin - 1, xmax, ymax)."""
    path = Path(xml_path)
    try:
        root = ET.parse(path).getroot()
        filename = root.findtext("filename")
        size = root.find("size")
        w, h = int(size.findtext("width")), int(size.findtext("height"))  # type: ignore[union-attr, arg-type]
        boxes, labels, difficult = [], [], []
        for obj in root.iter("object"):
            bb = obj.find("bndbox")
            x0, y0, x1, y1 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr, arg-type]
            boxes.append([x0 - 1, y0 - 1, x1, y1])
            labels.append(str(obj.findtext("name")).strip())
            difficult.append(obj.findtext("difficult", "0").strip() == "1")
    except (OSError, ET.ParseError, AttributeError, TypeError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a Pascal VOC annotation ({type(exc).__name__}: {exc})") from None
    folder = Path(image_dir) if image_dir is not None else path.parent.parent / "JPEGImages"
    return DetectionSample(
        folder / str(filename),
        w,
        h,
        np.array(boxes, np.float32).reshape(-1, 4),
        labels,
        np.array(difficult, bool),
        path.stem,
    )


def load_voc(annotation_dir: Path | str, image_dir: Path | str | None = None) -> list[DetectionSample]:
    files = sorted(Path(annotation_dir).glob("*.xml"))
    if not files:
        raise DataFormatError(f"{annotation_dir}: no *.xml annotations")
    return [load_voc_xml(f, image_dir) for f in files]
