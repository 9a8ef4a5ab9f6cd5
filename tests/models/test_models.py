"""Model building blocks: anchors and box coding, focal loss vs hard negative mining, graph NMS,
detector and segmenter shapes, a few optimisation steps, and ONNX export that ONNX Runtime runs
with the same numbers as torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from perception_models.models.anchors import AnchorGenerator, decode, encode, match
from perception_models.models.detection import Detector, DetectorConfig, DetectorWithPostprocess
from perception_models.models.losses import ohem_bce_loss, pixel_cross_entropy, sigmoid_focal_loss
from perception_models.models.nms import fast_nms, nms_reference
from perception_models.models.segmentation import Segmenter, SegmenterConfig, SegmenterWithPostprocess

H, W = 128, 160


def test_anchor_count_order_and_coding_round_trip():
    gen = AnchorGenerator((8, 16, 32), (24.0, 64.0, 160.0))
    a = gen((H, W))
    assert a.shape == (sum(math.ceil(H / s) * math.ceil(W / s) for s in (8, 16, 32)) * 6, 4)
    # first level, first location: centred on (4, 4), six shapes
    assert torch.allclose((a[:6, :2] + a[:6, 2:]) / 2, torch.tensor([4.0, 4.0]).expand(6, 2))
    boxes = torch.tensor([[10.0, 20.0, 50.0, 90.0]]).expand(len(a), 4)
    assert torch.allclose(decode(a, encode(a, boxes)), boxes, atol=1e-3)


def test_matching_ignores_between_thresholds():
    anchors = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 4.5], [0, 0, 10, 3], [50, 50, 60, 60]], dtype=torch.float32)
    gt = torch.tensor([[0, 0, 10, 10], [48, 48, 70, 70]], dtype=torch.float32)
    m = match(anchors, gt)
    assert m.tolist()[:3] == [0, -2, -1]  # IoU 1.0, 0.45 (ignored), 0.3 (background)
    assert m[3] == 1  # IoU 0.2, but it is the best anchor of gt 1
    far = match(anchors, torch.tensor([[0, 0, 10, 10], [200, 200, 210, 210]], dtype=torch.float32))
    assert far[0] == 0 and (far != 1).all()  # a gt overlapping nothing steals no anchor
    assert (match(anchors, torch.zeros(0, 4)) == -1).all()


def test_focal_loss_matches_its_formula():
    logits = torch.tensor([[2.0, -1.0], [0.5, -3.0]])
    targets = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    pt = torch.where(targets > 0, p, 1 - p)
    at = torch.where(targets > 0, 0.25, 0.75)
    expect = (-at * (1 - pt) ** 2 * torch.log(pt)).sum()
    assert torch.allclose(sigmoid_focal_loss(logits, targets), expect, atol=1e-6)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="sum")
    assert torch.allclose(sigmoid_focal_loss(logits, targets, alpha=0.5, gamma=0.0), 0.5 * bce)


def test_ohem_keeps_positives_and_only_the_hardest_negatives():
    torch.manual_seed(0)
    logits = torch.randn(100, 3)
    targets = torch.zeros(100, 3)
    targets[0, 1] = targets[5, 2] = 1.0
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    negs = ce[targets == 0].sort(descending=True).values
    expect = ce[targets == 1].sum() + negs[:16].sum()  # max(3 * 2, min_negatives=16)
    assert torch.allclose(ohem_bce_loss(logits, targets), expect)
    assert torch.allclose(ohem_bce_loss(logits, targets, min_negatives=0), ce[targets == 1].sum() + negs[:6].sum())


def test_fast_nms_equals_greedy_on_separated_clusters_and_keeps_classes_apart():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1000, (12, 2))
    centres = centres[np.argsort(centres[:, 0])] + np.arange(12)[:, None] * 300  # far apart
    boxes, scores = [], []
    for c in centres:
        for _ in range(4):  # a cluster of overlapping boxes per object
            xy = c + rng.normal(0, 3, 2)
            boxes.append([*xy, *(xy + 50)])
            scores.append(rng.uniform(0.1, 1.0))
    boxes_t, scores_t = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32)
    order = torch.argsort(scores_t, descending=True)
    b, s, lab = fast_nms(boxes_t[order], scores_t[order], torch.zeros(len(order), dtype=torch.long), 0.5, 20)
    kept = sorted(s[s > 0].tolist())
    greedy = sorted(scores_t[nms_reference(boxes_t, scores_t, 0.5)].tolist())
    assert kept == pytest.approx(greedy) and len(kept) == 12
    assert b.shape == (20, 4) and (lab[s == 0] == -1).all()
    two = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=torch.float32)
    _, s2, l2 = fast_nms(two, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5, 5)
    assert (s2 > 0).sum() == 2 and sorted(l2[:2].tolist()) == [0, 1]


def test_detector_shapes_loss_and_a_few_steps_learn(tmp_path):
    torch.manual_seed(0)
    cfg = DetectorConfig(num_classes=3, input_size=(H, W))
    det = Detector(cfg)
    cls, box = det(torch.rand(2, 3, H, W))
    assert cls.shape == (2, len(det.anchors), 3) and box.shape == (2, len(det.anchors), 4)
    img = torch.zeros(1, 3, H, W)
    img[:, :, 40:90, 30:100] = 1.0  # one bright object
    targets = [{"boxes": torch.tensor([[30.0, 40.0, 100.0, 90.0]]), "labels": torch.tensor([2])}]
    for loss in ("focal", "ohem"):
        torch.manual_seed(0)
        det = Detector(DetectorConfig(num_classes=3, input_size=(H, W), loss=loss))
        opt = torch.optim.Adam(det.parameters(), 1e-3)
        first = None
        for _ in range(15):
            losses = det.loss(*det(img), targets)
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
            first = first if first is not None else float(losses["total"].detach())
        last = float(losses["total"].detach())
        assert last < 0.5 * first, (loss, first, last)


def _ort(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


def test_detector_exports_with_postprocessing_that_onnxruntime_runs_the_same(tmp_path):
    torch.manual_seed(0)
    det = Detector(DetectorConfig(num_classes=3, input_size=(H, W), score_threshold=0.3, max_detections=20))
    torch.nn.init.normal_(det.head.cls_out.weight, std=0.3)  # distinct scores, so the order is stable
    torch.nn.init.zeros_(det.head.cls_out.bias)
    model = DetectorWithPostprocess(det).eval()
    x = torch.rand(1, 3, H, W)
    with torch.no_grad():
        boxes, scores, labels = model(x)
    assert boxes.shape == (1, 20, 4) and scores.shape == (1, 20) and labels.dtype == torch.int32
    assert (scores > 0).sum() > 3, "test needs some detections above the threshold"
    path = tmp_path / "det.onnx"
    torch.onnx.export(
        model, (x,), str(path), input_names=["image"], output_names=["boxes", "scores", "labels"], dynamo=True
    )
    import onnx

    onnx.checker.check_model(str(path))
    ob, os_, ol = _ort(path, {"image": x.numpy()})
    np.testing.assert_allclose(os_, scores.numpy(), atol=1e-5)
    np.testing.assert_allclose(ob, boxes.numpy(), atol=1e-3)
    assert (ol == labels.numpy()).all()


def test_segmenter_shapes_loss_and_export(tmp_path):
    torch.manual_seed(0)
    seg = Segmenter(SegmenterConfig(num_classes=5, input_size=(H, W)))
    x = torch.rand(2, 3, H, W)
    logits = seg(x)
    assert logits.shape == (2, 5, H, W)
    labels = torch.randint(0, 5, (2, H, W))
    labels[:, :10] = 255
    loss = pixel_cross_entropy(logits, labels)
    manual = F.cross_entropy(logits.permute(0, 2, 3, 1)[labels != 255], labels[labels != 255])
    assert torch.allclose(loss, manual, atol=1e-6)
    model = SegmenterWithPostprocess(seg).eval()
    with torch.no_grad():
        ids, conf = model(x[:1])
    path = tmp_path / "seg.onnx"
    torch.onnx.export(
        model, (x[:1],), str(path), input_names=["image"], output_names=["labels", "confidence"], dynamo=True
    )
    oi, oc = _ort(path, {"image": x[:1].numpy()})
    assert oi.dtype == np.int32 and (oi == ids.numpy()).mean() > 0.999
    np.testing.assert_allclose(oc, conf.numpy(), atol=1e-4)
