"""Teacher distillation on a robot's own footage (detection; segmentation from an instance teacher,
:func:`teacher_pass_segmentation`): a strong-but-heavy pretrained teacher
(any detection card the nodes run: YOLOv8/YOLO11, YOLOX, ...; perception-models card) labels real
frames, and this project's small student learns from those pseudo-labels next to the synthetic
ground truth.

1. Teacher pass (:func:`teacher_pass`): every frame of the image folders / bag topic through the
   teacher's node pipeline, once. Its classes are mapped to the student's with a class-map file
   (``student: [teacher classes]``, printed at start); boxes scoring at least ``high`` become
   labels, boxes between ``low`` and ``high`` become *uncertain* regions (COCO ``iscrowd``): the
   student's loss neither rewards nor punishes it there (models/detection.py), so a teacher's doubt is
   not taught as background. The frames (JPEG) and the teacher's answers are cached in the run
   folder (``teacher/``: a resumable JSON-lines cache, then a COCO file like a synthetic set's),
   so the pass runs once and can stop and resume; training then reads it for many epochs.
2. Training: ``perception-models train`` on the teacher set (repeated ``real_repeat`` times, so that
   a few hundred real frames are not drowned by thousands of renders) plus the synthetic sets;
   validation on synthetic held-out scenes (choosing ``best.pt`` never looks at the real
   evaluation sets: VOC-100 and CamVid val stay held out).
3. ``distillation.json`` in the run folder says what the student learned from; ``perception-models
   export`` copies it into the card.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm")


def read_student_map(path: Path | str) -> dict[str, list[str]]:
    """``student class: teacher class`` (or a list of them), YAML."""
    import yaml

    d = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(d, dict) or not d:
        raise ValueError(f"{path}: a class map is a mapping 'student class: teacher class(es)'")
    return {str(k): [str(v)] if isinstance(v, str) else [str(x) for x in v] for k, v in d.items()}


def teacher_to_student(class_map: dict[str, list[str]], teacher: list[str], student: list[str]) -> dict[str, str]:
    """teacher class name -> student class name; refuses names neither model has."""
    bad_s = sorted(set(class_map) - set(student))
    bad_t = sorted({t for ts in class_map.values() for t in ts} - set(teacher))
    if bad_s or bad_t:
        raise ValueError(
            f"class map names student classes {bad_s} / teacher classes {bad_t} the models do not have "
            f"(student: {student}; teacher: {teacher[:10]}...)"
        )
    out: dict[str, str] = {}
    for s, ts in class_map.items():
        for t in ts:
            if t in out:
                raise ValueError(f"teacher class '{t}' is mapped to both '{out[t]}' and '{s}'")
            out[t] = s
    return out


@dataclass
class Frame:
    name: str  # unique, file-name safe
    rgb: np.ndarray | None = None
    path: Path | None = None  # read lazily (image folders)

    def image(self) -> np.ndarray:
        if self.rgb is None:
            from .data.readers.common import read_rgb

            assert self.path is not None
            return read_rgb(self.path)
        return self.rgb


def frames_from(images: list[str], bags: list[str], topic: str, every: int = 1) -> Iterator[Frame]:
    """Frames of image folders (sorted by name; grey images become RGB) and of bag topics, every
    ``every``-th."""
    k = 0
    for folder in images:
        root = Path(folder)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        tag = root.name
        for p in files:
            if k % every == 0:
                yield Frame(f"{tag}_{p.stem}", path=p)
            k += 1
    for bag in bags:
        from .data.readers.rosbag import read_images

        for im in read_images(bag, topic):
            if k % every == 0:
                yield Frame(f"{Path(bag).name}_{im.stamp_ns}", rgb=im.rgb)
            k += 1


@dataclass
class TeacherSet:
    folder: Path
    frames: int
    labels: int  # boxes at or above ``high``
    uncertain: int  # boxes in [low, high)
    per_class: dict[str, int] = field(default_factory=dict)


def _check_thresholds(low: float, high: float) -> None:
    if not 0 < low <= high <= 1:
        raise ValueError(f"need 0 < low ({low}) <= high ({high}) <= 1")


def _new_frames(
    frames: Iterator[Frame], done: Any, total: int | None, progress: bool
) -> Iterator[tuple[Frame, np.ndarray]]:
    """The frames a teacher pass has not labelled yet (``done(frame)``: already in its cache), as
    RGB (grey images repeated), with the pass's progress bar."""
    from tqdm import tqdm

    for f in tqdm(frames, total=total, desc="teacher", unit="frame", disable=not progress):
        if done(f):
            continue
        rgb = f.image()
        yield f, (np.repeat(rgb[:, :, None], 3, axis=2) if rgb.ndim == 2 else rgb)


def teacher_pass(
    teacher_card: Path | str,
    frames: Iterator[Frame],
    class_map: dict[str, list[str]],
    student_classes: list[str],
    out: Path | str,
    high: float = 0.5,
    low: float = 0.2,
    threads: int = 2,
    progress: bool = True,
    total: int | None = None,
) -> TeacherSet:
    """Run the teacher over ``frames`` (resuming a cache left in ``out``), write ``out/images/*.jpg``
    and ``out/annotations_coco.json`` (student classes; uncertain boxes as crowd)."""
    import cv2

    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card, model_files
    from perception_nodes.pipelines.detection import DetectionPipeline

    _check_thresholds(low, high)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    card = load_card(teacher_card, "detection")
    mapping = teacher_to_student(class_map, card.classes, student_classes)
    pipe = DetectionPipeline(
        OnnxRuntimeBackend(model_files(teacher_card)[0], threads=threads), card, low, sorted(mapping), 300
    )
    cache = out / "teacher_cache.jsonl"
    done = set()
    if cache.is_file():
        for line in cache.read_text().splitlines():
            try:
                done.add(json.loads(line)["name"])
            except (ValueError, KeyError):
                continue  # a line cut by an interrupted run: that frame is labelled again
    with open(cache, "a") as log:
        for f, rgb in _new_frames(frames, lambda f: f.name in done, total, progress):
            det = pipe.run(rgb)
            rows = [
                [*(round(float(v), 2) for v in b), round(float(s), 4), mapping[n]]
                for b, s, n in zip(det.boxes, det.scores, det.class_names)
            ]
            cv2.imwrite(str(out / "images" / f"{f.name}.jpg"), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 93])
            log.write(json.dumps({"name": f.name, "w": rgb.shape[1], "h": rgb.shape[0], "boxes": rows}) + "\n")
            log.flush()
            done.add(f.name)
    return write_coco(out, student_classes, high)


def write_coco(out: Path, student_classes: list[str], high: float) -> TeacherSet:
    """The COCO file of a teacher cache (boxes below ``high`` as crowd = uncertain)."""
    images, anns, per_class = [], [], {c: 0 for c in student_classes}
    uncertain = 0
    seen = set()
    for line in (out / "teacher_cache.jsonl").read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if r["name"] in seen or not (out / "images" / f"{r['name']}.jpg").is_file():
            continue
        seen.add(r["name"])
        iid = len(images) + 1
        images.append({"id": iid, "file_name": f"images/{r['name']}.jpg", "width": r["w"], "height": r["h"]})
        for x0, y0, x1, y1, score, name in r["boxes"]:
            crowd = int(score < high)
            uncertain += crowd
            per_class[name] += 1 - crowd
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": iid,
                    "category_id": student_classes.index(name) + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "iscrowd": crowd,
                    "score": score,
                }
            )
    cats = [{"id": i + 1, "name": n, "supercategory": "thing"} for i, n in enumerate(student_classes)]
    (out / "annotations_coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return TeacherSet(out, len(images), len(anns) - uncertain, uncertain, per_class)


def distillation_record(
    teacher_card: Path | str, sources: list[str], ts: TeacherSet, class_map: dict[str, list[str]], **extra: Any
) -> dict[str, Any]:
    from perception_nodes.model_card import load_card

    card = load_card(teacher_card, "detection")
    return {
        "teacher": {
            "card": str(teacher_card),
            "family": card.family,
            "sha256": card.sha256,
            "provenance": card.raw.get("provenance", {}),
        },
        "footage": sources,
        "frames": ts.frames,
        "pseudo_labels": ts.labels,
        "uncertain_boxes": ts.uncertain,
        "labels_per_class": ts.per_class,
        "class_map": class_map,
        **extra,
    }


def teacher_pass_segmentation(
    teacher_card: Path | str,
    frames: Iterator[Frame],
    class_map: dict[str, list[str]],
    student_classes: list[str],
    out: Path | str,
    high: float = 0.5,
    low: float = 0.2,
    threads: int = 2,
    progress: bool = True,
    total: int | None = None,
) -> TeacherSet:
    """An instance-segmentation teacher (YOLO-seg, card family ``yolo-segment``) over ``frames``:
    ``out/rgb/<frame>.png`` and ``out/labels/<frame>.png`` (a synthetic set's layout) where the
    pixels of each instance scoring at least ``high`` whose class the map names get the student's
    class id, and every other pixel is 255 (ignored by the loss): the teacher's masks say where its
    things are, nothing about sky, ground or walls, and an instance it doubts ([low, high)) or a
    class the student lacks teaches nothing. A frame whose label PNG is there is not run again
    (the label is written last, under a temporary name, then renamed)."""
    import cv2

    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card, model_files
    from perception_nodes.pipelines.segmentation import SegmentationPipeline

    _check_thresholds(low, high)
    card = load_card(teacher_card, "segmentation")
    if card.family != "yolo-segment":
        raise ValueError(
            f"{teacher_card}: a {card.family} model; the segmentation teacher gives instances (yolo-segment)"
        )
    mapping = teacher_to_student(class_map, card.classes, student_classes)
    pipe = SegmentationPipeline(OnnxRuntimeBackend(model_files(teacher_card)[0], threads=threads), card, low, 100)
    out = Path(out)
    (out / "rgb").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for f, rgb in _new_frames(frames, lambda f: (out / "labels" / f"{f.name}.png").is_file(), total, progress):
        seg = pipe.run(rgb)
        labels = np.full(rgb.shape[:2], 255, np.uint8)
        det = seg.detections
        for k, (name, score) in enumerate(zip(det.class_names, det.scores)):
            if score >= high and name in mapping:
                labels[seg.instances == k + 1] = student_classes.index(mapping[name])
        cv2.imwrite(str(out / "rgb" / f"{f.name}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(out / "labels" / f"{f.name}.tmp.png"), labels)
        (out / "labels" / f"{f.name}.tmp.png").rename(out / "labels" / f"{f.name}.png")
    per_class = {c: 0 for c in student_classes}
    names = sorted(p.stem for p in (out / "labels").glob("*.png") if not p.stem.endswith(".tmp"))
    for n in names:
        ids = np.unique(cv2.imread(str(out / "labels" / f"{n}.png"), cv2.IMREAD_UNCHANGED))
        for i in ids[ids < len(student_classes)]:
            per_class[student_classes[int(i)]] += 1  # frames in which the class is labelled
    return TeacherSet(out, len(names), sum(per_class.values()), 0, per_class)
