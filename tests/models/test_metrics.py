"""Detection AP agrees with pycocotools; mIoU from the confusion matrix."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from perception_models.metrics import ConfusionMatrix, DetectionEvaluator, box_iou

ROOT = Path(__file__).resolve().parents[2]
VOC = (ROOT / ".." / "shared" / "data" / "voc_det100").resolve()


def _cocoeval(images, num_classes):
    """pycocotools' COCOeval, evaluated and accumulated, for the same images."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    dets = []
    for img_id, (gb, gl, gc, db, ds, dl) in enumerate(images, 1):
        gt["images"].append({"id": img_id, "width": 1000, "height": 1000})
        for b, label, c in zip(gb, gl, gc):
            w, h = b[2] - b[0], b[3] - b[1]
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": img_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(b[0]), float(b[1]), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": int(c),
                }
            )
        for b, s, label in zip(db, ds, dl):
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(label) + 1,
                    "score": float(s),
                    "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        cdt = coco.loadRes(dets) if dets else COCO()
        ev = COCOeval(coco, cdt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _pycocotools(images, num_classes):
    """(mAP, mAP50, per-class AP) from pycocotools for the same images."""
    ev = _cocoeval(images, num_classes)
    prec = ev.eval["precision"][:, :, :, 0, 2]  # T, R, K, area all, maxDets 100
    per_class = [
        float(np.mean(prec[:, :, k][prec[:, :, k] > -1])) if (prec[:, :, k] > -1).any() else None
        for k in range(num_classes)
    ]
    return ev.stats[0], ev.stats[1], per_class


def _ours(images, num_classes):
    ev = DetectionEvaluator(num_classes)
    for gb, gl, gc, db, ds, dl in images:
        ev.add(gb, gl, db, ds, dl, gc)
    s = ev.summary()
    return s["mAP"], s["mAP50"], [None if v is None else v["AP"] for v in s["per_class"].values()]


def _random_images(rng, n_images, num_classes, crowd_p=0.1):
    images = []
    for _ in range(n_images):
        n = rng.integers(0, 8)
        xy = rng.uniform(0, 800, (n, 2))
        wh = rng.uniform(5, 200, (n, 2))
        gb = np.hstack([xy, xy + wh])
        gl = rng.integers(0, num_classes, n)
        gc = rng.random(n) < crowd_p
        # detections: jittered copies (some), duplicates, and false positives, integer-ish scores with ties
        keep = rng.random(n) < 0.8
        db = gb[keep] + rng.normal(0, 8, (keep.sum(), 4))
        dl = np.where(rng.random(keep.sum()) < 0.9, gl[keep], rng.integers(0, num_classes, keep.sum()))
        k = int(rng.integers(0, len(db) + 1))
        dup = db[:k] + rng.normal(0, 3, (k, 4))
        fpn = rng.integers(0, 4)
        fxy = rng.uniform(0, 800, (fpn, 2))
        fb = np.hstack([fxy, fxy + rng.uniform(5, 100, (fpn, 2))])
        db = np.vstack([db, dup, fb])
        dl = np.concatenate([dl, dl[: len(dup)], rng.integers(0, num_classes, fpn)])
        ds = np.round(rng.random(len(db)), 2)
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        images.append((gb, gl, gc, db, ds, dl))
    return images


@pytest.mark.parametrize("seed", range(6))
def test_ap_agrees_with_pycocotools_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    images = _random_images(rng, 25, 4)
    ours, ref = _ours(images, 4), _pycocotools(images, 4)
    assert abs(ours[0] - ref[0]) < 1e-4 and abs(ours[1] - ref[1]) < 1e-4, (ours, ref)
    for a, b in zip(ours[2], ref[2]):
        assert (a is None) == (b is None) and (a is None or abs(a - b) < 1e-4)


def test_ap_edge_cases():
    box = np.array([[10, 10, 50, 50]], float)
    ev = DetectionEvaluator(2)
    ev.add(box, [0], box, [0.9], [0])
    s = ev.summary()
    assert s["mAP"] == pytest.approx(1.0) and s["per_class"]["1"] is None
    ev = DetectionEvaluator(1)
    ev.add(box, [0], np.zeros((0, 4)), [], [])
    assert ev.summary()["mAP"] == 0.0
    ev = DetectionEvaluator(1)  # a detection on a crowd region is neither hit nor miss
    ev.add(
        np.vstack([box, [[100, 100, 300, 300]]]),
        [0, 0],
        np.vstack([box, [[120, 120, 140, 140]]]),
        [0.5, 0.9],
        [0, 0],
        gt_crowd=[False, True],
    )
    assert ev.summary()["mAP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="class id 3"):
        DetectionEvaluator(2).add(box, [3], box, [1.0], [0])


def test_box_iou():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0, 1]])
    np.testing.assert_allclose(box_iou(a, np.array([[0, 0, 100, 100]], float), crowd=[True]), [[1.0]])


def test_ap_agrees_with_pycocotools_on_voc_with_perturbed_ground_truth():
    if not VOC.is_dir():
        pytest.skip(f"{VOC} not present (real data lives in ../shared/data on dev machines only)")
    data = json.loads((VOC / "gts" / "coco_format_v2" / "instances_v2.json").read_text())
    cats = sorted(c["id"] for c in data["categories"])
    cat_index = {c: i for i, c in enumerate(cats)}
    rng = np.random.default_rng(0)
    images = []
    for im in sorted(data["images"], key=lambda i: i["id"]):
        anns = [a for a in data["annotations"] if a["image_id"] == im["id"]]
        gb = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns],
            float,
        ).reshape(-1, 4)
        gl = np.array([cat_index[a["category_id"]] for a in anns], int)
        gc = np.array([bool(a.get("iscrowd", 0)) for a in anns])
        size = np.maximum(gb[:, 2:] - gb[:, :2], 1)
        db = gb + rng.normal(0, 0.08, gb.shape) * np.hstack([size, size])
        keep = rng.random(len(gb)) < 0.85
        db, dl = db[keep], gl[keep]
        ds = rng.random(len(db))
        images.append((gb, gl, gc, db, ds, dl))
    ours, ref = _ours(images, len(cats)), _pycocotools(images, len(cats))
    assert abs(ours[0] - ref[0]) < 1e-4 and abs(ours[1] - ref[1]) < 1e-4, (ours[:2], ref[:2])
    assert 0.2 < ref[0] < 0.95


def test_confusion_matrix_miou():
    cm = ConfusionMatrix(3, ["a", "b", "c"], ignore_index=255)
    t = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    p = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    cm.add(t, p)
    s = cm.summary()
    # a: tp1, fp1 (row c predicted a), fn1 -> 1/3 ; b: tp3, fp1, fn0 -> 3/4 ; c: tp1, fn1 -> 1/2
    assert s["per_class_iou"] == pytest.approx({"a": 1 / 3, "b": 3 / 4, "c": 1 / 2})
    assert s["mIoU"] == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert s["pixel_accuracy"] == pytest.approx(5 / 7)
    empty = ConfusionMatrix(4)
    empty.add(np.array([0, 1]), np.array([0, 1]))
    assert empty.summary()["per_class_iou"]["3"] is None and empty.summary()["mIoU"] == 1.0
    with pytest.raises(ValueError, match="outside"):
        cm.add(np.array([5]), np.array([0]))


def _pycocotools_by_size(images, num_classes):
    """COCOeval's AP small / medium / large (stats 3-5; -1 where a size has no ground truth)."""
    stats = _cocoeval(images, num_classes).stats
    return stats[3], stats[4], stats[5]


@pytest.mark.parametrize("seed", range(4))
def test_ap_by_object_size_agrees_with_pycocotools(seed):
    """Small / medium / large AP: other sizes' ground truth absorbs detections, other sizes'
    unmatched detections are no false positives (the random boxes span all three sizes)."""
    rng = np.random.default_rng(100 + seed)
    images = _random_images(rng, 30, 3)
    ev = DetectionEvaluator(3)
    for gb, gl, gc, db, ds, dl in images:
        ev.add(gb, gl, db, ds, dl, gc)
    s = ev.summary()
    ref = _pycocotools_by_size(images, 3)
    for size, r in zip(("small", "medium", "large"), ref):
        ours = s["by_size"][size]["mAP"]
        assert (r == -1 and np.isnan(ours)) or abs(ours - r) < 1e-4, (size, ours, r)
    assert s["mAP"] == pytest.approx(_pycocotools(images, 3)[0], abs=1e-4)
    # the sizes split the ground truth between them
    n_gt = [v["ground_truth"] for v in s["per_class"].values() if v]
    by_size = [
        sum(v["ground_truth"] for v in s["by_size"][z]["per_class"].values() if v) for z in ("small", "medium", "large")
    ]
    assert sum(by_size) == sum(n_gt) and min(by_size) > 0
