"""COCO-style detection AP, written to give pycocotools' COCOeval numbers (bbox, area 'all',
100 detections per image) without its JSON round trip, and to be read.

Boxes are (x0, y0, x1, y1) in pixels. Per image and class: detections sorted by score (top
``max_dets`` kept), matched greedily to the best-IoU unmatched ground truth at each IoU threshold;
crowd (or ``ignore``) ground truths absorb detections without counting as misses or hits (IoU
with a crowd box = intersection / detection area). Per class: precision/recall over all images,
precision made monotone, sampled at 101 recall points; AP = mean. mAP = mean over classes that
have ground truth.

COCO's object sizes are scored too (``summary()["by_size"]``): small (area < 32^2 px), medium
(< 96^2), large. For one size, the other sizes' ground truth is ignored like a crowd box (it absorbs
detections) and an unmatched detection of another size is neither hit nor miss, as COCOeval does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
# COCOeval's areaRng (pixels^2, both ends inclusive); "all" is the headline number
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


def box_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes; where ``crowd[j]``, intersection / area(a_i)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area_a[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class _ClassRecords:
    scores: list[np.ndarray] = field(default_factory=list)
    matched: list[np.ndarray] = field(default_factory=list)  # (T, D) True = true positive
    ignored: list[np.ndarray] = field(default_factory=list)  # (T, D) True = matched a crowd/ignored gt
    n_gt: int = 0


class DetectionEvaluator:
    """Accumulate images with :meth:`add`, then :meth:`summary`."""

    def __init__(
        self,
        num_classes: int,
        class_names: list[str] | None = None,
        max_dets: int = 100,
        iou_thresholds: np.ndarray = IOU_THRESHOLDS,
    ) -> None:
        self.num_classes = num_classes
        self.class_names = class_names or [str(i) for i in range(num_classes)]
        self.max_dets = max_dets
        self.iou_thresholds = np.asarray(iou_thresholds, np.float64)
        self._by_size = {r: [_ClassRecords() for _ in range(num_classes)] for r in AREA_RANGES}
        self._records = self._by_size["all"]
        self.images = 0

    def add(
        self,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_labels: np.ndarray,
        gt_crowd: np.ndarray | None = None,
    ) -> None:
        """One image: ground truth (xyxy, class ids, crowd flags) and detections (xyxy, scores, ids)."""
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        gt_labels = np.asarray(gt_labels, np.int64).reshape(-1)
        crowd = np.zeros(len(gt_boxes), bool) if gt_crowd is None else np.asarray(gt_crowd, bool).reshape(-1)
        det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
        det_scores = np.asarray(det_scores, np.float64).reshape(-1)
        det_labels = np.asarray(det_labels, np.int64).reshape(-1)
        if not (len(gt_boxes) == len(gt_labels) == len(crowd)) or not (
            len(det_boxes) == len(det_scores) == len(det_labels)
        ):
            raise ValueError("boxes, labels, scores and crowd flags of one image must have the same length")
        self.images += 1
        T = len(self.iou_thresholds)
        for c in np.union1d(np.unique(gt_labels), np.unique(det_labels)):
            if not 0 <= c < self.num_classes:
                raise ValueError(f"class id {c} outside 0..{self.num_classes - 1}")
            g = gt_labels == c
            gb, gc = gt_boxes[g], crowd[g]
            d = np.nonzero(det_labels == c)[0]
            d = d[np.argsort(-det_scores[d], kind="stable")][: self.max_dets]
            db = det_boxes[d]
            iou = box_iou(db, gb, gc)
            g_area = (gb[:, 2] - gb[:, 0]) * (gb[:, 3] - gb[:, 1])
            d_area = (db[:, 2] - db[:, 0]) * (db[:, 3] - db[:, 1])
            for size, (lo, hi) in AREA_RANGES.items():
                rec = self._by_size[size][c]
                ig = gc | (g_area < lo) | (g_area > hi)
                order_g = np.argsort(ig, kind="stable")  # non-ignored ground truth first, as COCOeval sorts them
                rec.n_gt += int((~ig).sum())
                matched, ignored = self._match(iou[:, order_g], ig[order_g], gc[order_g], T)
                # an unmatched detection of another size is neither hit nor miss for this size
                ignored |= ~matched & ((d_area < lo) | (d_area > hi))[None, :]
                rec.scores.append(det_scores[d])
                rec.matched.append(matched)
                rec.ignored.append(ignored)

    def _match(self, iou: np.ndarray, gig: np.ndarray, crowd: np.ndarray, T: int) -> tuple[np.ndarray, np.ndarray]:
        """Greedy COCO matching of score-sorted detections to ground truth (ignored ones last; a
        crowd box takes any number of detections, any other box one): (T, D) true positives and
        (T, D) detections that matched an ignored ground truth."""
        nd, ng = iou.shape
        matched = np.zeros((T, nd), bool)
        ignored = np.zeros((T, nd), bool)
        if not nd or not ng:
            return matched, ignored
        for t, thr in enumerate(self.iou_thresholds):
            taken = np.zeros(ng, bool)
            for i in range(nd):
                best, best_iou = -1, min(thr, 1 - 1e-10)
                for j in range(ng):
                    if taken[j] and not crowd[j]:
                        continue
                    if best > -1 and not gig[best] and gig[j]:
                        break  # already matched a real gt; ignored ones come after
                    if iou[i, j] < best_iou:
                        continue
                    best_iou, best = iou[i, j], j
                if best == -1:
                    continue
                taken[best] = True
                ignored[t, i] = gig[best]
                matched[t, i] = not gig[best]
        return matched, ignored

    def _precision(self, rec: _ClassRecords) -> np.ndarray | None:
        """(T, 101) interpolated precision; None when the class has no ground truth."""
        if rec.n_gt == 0:
            return None
        T = len(self.iou_thresholds)
        if not rec.scores or sum(len(s) for s in rec.scores) == 0:
            return np.zeros((T, len(RECALL_POINTS)))
        scores = np.concatenate(rec.scores)
        order = np.argsort(-scores, kind="mergesort")
        tp = np.concatenate(rec.matched, axis=1)[:, order]
        ig = np.concatenate(rec.ignored, axis=1)[:, order]
        fp = ~tp & ~ig
        tp_c = np.cumsum(tp, axis=1, dtype=np.float64)
        fp_c = np.cumsum(fp, axis=1, dtype=np.float64)
        out = np.zeros((T, len(RECALL_POINTS)))
        for t in range(T):
            recall = tp_c[t] / rec.n_gt
            precision = tp_c[t] / (tp_c[t] + fp_c[t] + np.spacing(1))
            precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone from the right
            idx = np.searchsorted(recall, RECALL_POINTS, side="left")
            valid = idx < len(precision)
            out[t, valid] = precision[idx[valid]]
        return out

    def pr_curves(self, iou: float = 0.5) -> dict[str, dict[str, list[float]]]:
        """Per class with ground truth: the interpolated precision at the 101 COCO recall points at
        IoU ``iou`` (the curve whose mean is that class's AP at that IoU)."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou)))
        out = {}
        for c, rec in enumerate(self._records):
            p = self._precision(rec)
            if p is not None:
                out[self.class_names[c]] = {"recall": RECALL_POINTS.tolist(), "precision": p[t].tolist()}
        return out

    def summary(self) -> dict:
        """mAP@[.5:.95], mAP@0.5, mAP@0.75 and per-class AP (classes without ground truth: None);
        ``by_size``: the same for COCO's small, medium and large objects."""
        out = self._summary(self._records)
        out["by_size"] = {size: self._summary(self._by_size[size]) for size in AREA_RANGES if size != "all"}
        return out

    def _summary(self, records: list[_ClassRecords]) -> dict:
        per_class: dict[str, dict[str, float] | None] = {}
        aps, ap50s, ap75s = [], [], []
        i50 = int(np.argmin(np.abs(self.iou_thresholds - 0.5)))
        i75 = int(np.argmin(np.abs(self.iou_thresholds - 0.75)))
        for c, rec in enumerate(records):
            p = self._precision(rec)
            if p is None:
                per_class[self.class_names[c]] = None
                continue
            ap, ap50, ap75 = float(p.mean()), float(p[i50].mean()), float(p[i75].mean())
            per_class[self.class_names[c]] = {"AP": ap, "AP50": ap50, "AP75": ap75, "ground_truth": rec.n_gt}
            aps.append(ap)
            ap50s.append(ap50)
            ap75s.append(ap75)

        def mean(v: list[float]) -> float:
            return float(np.mean(v)) if v else float("nan")

        return {
            "mAP": mean(aps),
            "mAP50": mean(ap50s),
            "mAP75": mean(ap75s),
            "per_class": per_class,
            "images": self.images,
        }
