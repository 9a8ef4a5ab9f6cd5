"""COCO detection JSON (``instances_*.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .common import DataFormatError, DetectionSample


def load_coco(
    annotation_file: Path | str, image_root: Path | str | None = None, include_crowd: bool = True
) -> tuple[list[DetectionSample], list[str]]:
    """Samples (boxes as x0, y0, x1, y1) and the category names ordered by category id.

    ``image_root``: folder the ``file_name`` entries are relative to (default: the JSON's folder).
    Crowd boxes are kept with ``difficult`` = True unless ``include_crowd`` is False.
    """
    path = Path(annotation_file)
    try:
        data = json.loads(path.read_text())
        images, anns, cats = data["images"], data.get("annotations", []), data["categories"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataFormatError(f"{path}: not a COCO annotation file ({type(exc).__name__}: {exc})") from None
    root = Path(image_root) if image_root is not None else path.parent
    cats = sorted(cats, key=lambda c: c["id"])
    name_of = {c["id"]: c["name"] for c in cats}
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        if a.get("iscrowd", 0) and not include_crowd:
            continue
        if a["category_id"] not in name_of:
            raise DataFormatError(f"{path}: annotation {a.get('id')} has unknown category_id {a['category_id']}")
        by_image.setdefault(a["image_id"], []).append(a)
    samples = []
    for im in images:
        rows = by_image.get(im["id"], [])
        boxes = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in rows],
            np.float32,
        ).reshape(-1, 4)
        samples.append(
            DetectionSample(
                root / im["file_name"],
                int(im["width"]),
                int(im["height"]),
                boxes,
                [name_of[a["category_id"]] for a in rows],
                np.array([bool(a.get("iscrowd", 0)) for a in rows], bool),
                im["id"],
                np.array([float(a.get("area", np.nan)) for a in rows], np.float64),
            )
        )
    return samples, [c["name"] for c in cats]
