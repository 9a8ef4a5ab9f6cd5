"""What people look at: class colours stay put, labels do not run into each other, markers stand
where the detections stand (the node test checks them over DDS)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from perception_nodes.visualization import class_colors, draw_detections, label_rects


def _overlap(a, b):
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_class_colours_come_from_the_card_else_a_fixed_distinct_palette():
    card = [[255, 0, 0], [0, 255, 0]]
    assert class_colors(["a", "b"], card).tolist() == card
    colours = class_colors([f"c{i}" for i in range(20)])
    assert len({tuple(c) for c in colours.tolist()}) == 20  # distinct
    assert np.array_equal(colours, class_colors([f"c{i}" for i in range(20)]))  # and the same every time


def test_labels_of_boxes_side_by_side_do_not_overlap_and_stay_in_the_image():
    # three boxes whose top-left corners nearly coincide: their labels would be drawn on top of each other
    boxes = np.array([[100, 50, 200, 150], [104, 52, 220, 160], [108, 54, 180, 140]], float)
    texts = ["person 0.91", "person 0.88", "chair 0.52"]
    rects = label_rects(boxes, texts, (240, 320))
    for i in range(len(rects)):
        for j in range(i):
            assert not _overlap(rects[i], rects[j]), (rects[i], rects[j])
    assert all(0 <= r[0] and r[2] <= 320 and 0 <= r[1] for r in rects)
    # a box at the top edge gets its label inside the image, not above it
    (top,) = label_rects(np.array([[10, 0, 60, 40]], float), ["car 0.7"], (240, 320))
    assert top[1] >= 0


def test_annotated_boxes_take_their_class_colour():
    colours = class_colors(["person", "car"], [[255, 0, 0], [0, 0, 255]])
    det = SimpleNamespace(
        boxes=np.array([[10, 40, 60, 100], [100, 40, 150, 100]], float),
        class_ids=[0, 1],
        class_names=["person", "car"],
        scores=[0.9, 0.8],
    )
    out = draw_detections(np.zeros((120, 200, 3), np.uint8), det, colours)
    assert out[70, 10].tolist() == [255, 0, 0] and out[70, 100].tolist() == [0, 0, 255]  # left edges
