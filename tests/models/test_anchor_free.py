"""The anchor-free student detector (models/anchor_free.py): centre-sampling assignment by level,
the teacher's uncertain boxes left out of the classification loss, GIoU and centre-ness, a few
steps that learn one object, and an export that ONNX Runtime runs with torch's numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_models.models.anchor_free import (
    CENTRE_RADIUS,
    AnchorFreeDetector,
    assign,
    cell_centres,
    centreness,
    giou_loss,
)
from perception_models.models.detection import DetectorConfig, DetectorWithPostprocess

H, W = 384, 512


def _levels(strides: torch.Tensor, mask: torch.Tensor) -> set[int]:
    return {int(s) for s in strides[mask].unique()}


def test_cells_are_assigned_on_the_level_of_the_box_size_near_its_centre():
    centres, strides = cell_centres((H, W))
    assert len(centres) == 48 * 64 + 24 * 32 + 12 * 16
    boxes = torch.tensor([[100.0, 100.0, 140.0, 150.0], [50.0, 40.0, 350.0, 300.0]])
    idx, dist = assign(centres, strides, boxes)
    small, large = idx == 0, idx == 1
    assert _levels(strides, small) == {8} and _levels(strides, large) == {32}
    for g, mask in ((0, small), (1, large)):
        c = centres[mask]
        centre = (boxes[g, :2] + boxes[g, 2:]) / 2
        assert ((c - centre).abs() < CENTRE_RADIUS * strides[mask, None]).all()
        assert ((c > boxes[g, :2]) & (c < boxes[g, 2:])).all()
        # the distances are to the assigned box's sides
        np.testing.assert_allclose(
            torch.cat([c - dist[mask, :2], c + dist[mask, 2:]], 1).numpy(), boxes[g].expand(len(c), 4).numpy()
        )
    assert (dist[idx < 0] == 0).all()


def test_a_box_smaller_than_a_cell_gets_the_nearest_cell_and_overlaps_go_to_the_smaller_box():
    centres, strides = cell_centres((H, W))
    tiny = torch.tensor([[201.0, 201.0, 204.0, 204.0]])  # between cell centres of every level
    idx, _ = assign(centres, strides, tiny)
    assert int((idx == 0).sum()) == 1 and int(strides[idx == 0]) == 8
    outer_inner = torch.tensor([[96.0, 96.0, 176.0, 176.0], [112.0, 112.0, 140.0, 140.0]])
    idx, _ = assign(centres, strides, outer_inner)
    x, y = centres[:, 0], centres[:, 1]
    both = (x > 114) & (x < 138) & (y > 114) & (y < 138) & (strides == 8)  # near both centres
    assert both.any() and (idx[both] == 1).all()
    assert (idx == 0).any()
    concentric = torch.tensor([[100.0, 100.0, 152.0, 152.0], [112.0, 112.0, 140.0, 140.0]])
    idx, _ = assign(centres, strides, concentric)  # the inner box takes every central cell
    assert int((idx == 0).sum()) == 1 and (idx == 1).sum() > 1
    assert assign(centres, strides, torch.zeros(0, 4))[0].eq(-1).all()


def test_giou_and_centreness():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    loss = giou_loss(a, b)
    assert float(loss[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(loss[1]) == pytest.approx(1 + (300 - 200) / 300)  # no overlap, hull 30x10
    c = centreness(torch.tensor([[5.0, 5.0, 5.0, 5.0], [1.0, 4.0, 9.0, 4.0]]))
    assert float(c[0]) == pytest.approx(1.0) and float(c[1]) == pytest.approx((1 / 9) ** 0.5)


def test_uncertain_boxes_are_neither_positives_nor_background():
    torch.manual_seed(0)
    det = AnchorFreeDetector(DetectorConfig(num_classes=3, input_size=(H, W)))
    cls, box = det(torch.rand(1, 3, H, W))
    sure = {"boxes": torch.tensor([[40.0, 40.0, 120.0, 120.0]]), "labels": torch.tensor([1])}
    unsure = {**sure, "uncertain": torch.tensor([[200.0, 200.0, 330.0, 330.0]])}
    x, y = det.centres[:, 0], det.centres[:, 1]
    inside = (x > 200) & (x < 330) & (y > 200) & (y < 330)
    louder = cls.detach().clone()
    louder[0, inside] += 5.0  # confident foreground inside the uncertain box
    with torch.no_grad():
        base = det.loss(cls, box, [unsure])["classification"]
        assert float(det.loss(louder, box, [unsure])["classification"]) == pytest.approx(float(base))
        # without the uncertain box those cells are background, and confident ones cost
        assert float(det.loss(louder, box, [sure])["classification"]) > float(base) + 1.0


def test_a_few_steps_learn_one_object_and_export_runs_the_same_in_onnxruntime(tmp_path):
    torch.manual_seed(0)
    h, w = 128, 160
    det = AnchorFreeDetector(DetectorConfig(num_classes=3, input_size=(h, w), score_threshold=0.05))
    img = torch.zeros(2, 3, h, w)
    img[:, :, 40:90, 30:100] = 1.0
    targets = [{"boxes": torch.tensor([[30.0, 40.0, 100.0, 90.0]]), "labels": torch.tensor([2])}] * 2
    opt = torch.optim.Adam(det.parameters(), 3e-3)
    first = None
    for _ in range(40):
        losses = det.loss(*det(img), targets)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        first = first if first is not None else float(losses["total"].detach())
    assert float(losses["total"].detach()) < 0.5 * first
    from perception_models.models.anchors import box_iou

    with torch.no_grad():  # BatchNorm on the batch's statistics, as in the steps: the top box is the object
        boxes, _, labels = det.detect(img)
    assert int(labels[0, 0]) == 2 and float(box_iou(boxes[0, :1], targets[0]["boxes"])) > 0.8
    model = DetectorWithPostprocess(det).eval()
    with torch.no_grad():
        boxes, scores, labels = model(img[:1])
    assert boxes.shape == (1, 100, 4) and labels.dtype == torch.int32 and (scores > 0.05).sum() > 0
    path = tmp_path / "af.onnx"
    torch.onnx.export(
        model, (img[:1],), str(path), input_names=["image"], output_names=["boxes", "scores", "labels"], dynamo=True
    )
    import onnxruntime as ort

    ob, os_, ol = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"image": img[:1].numpy()}
    )

    def rows(b, s, lab):  # rows with equal scores may come in either order
        table = np.concatenate([np.round(s[0, :, None], 5), lab[0, :, None], b[0]], axis=1)
        return table[np.lexsort(table.T[::-1])]

    theirs, ours = rows(ob, os_, ol), rows(boxes.numpy(), scores.numpy(), labels.numpy())
    np.testing.assert_allclose(theirs[:, 0], ours[:, 0], atol=1e-4)  # the same 100 scores
    # Many background anchors can share the lowest kept score: which of them fill the last places
    # is a tie that float summation order (this CPU's kernels) decides, so only the boxes above it
    # must agree one to one.
    above = ours[ours[:, 0] > ours[:, 0].min() + 1e-4]
    assert len(above) > 0
    free = list(range(len(theirs)))  # one to one with a tolerance: rounding may reorder near-equal scores
    for row in above:
        hit = next((j for j in free if np.allclose(theirs[j], row, atol=1e-3)), None)
        assert hit is not None, f"torch's detection {row} is not among ONNX Runtime's"
        free.remove(hit)
