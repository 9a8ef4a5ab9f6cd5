"""MultiTaskPipeline: one inference of a multi-task model, each task's result exactly as its
single-task pipeline gives it (the letterbox undone for boxes, class maps, depth and keypoints),
a canonical-camera depth converted with the camera's focal length in network pixels, a card
without the sections it needs refused, and the evaluation's single-task view of it."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.model_card import ModelCardError, card_path, load_card, task_card
from perception_nodes.pipelines.multitask import MultiTaskPipeline, TaskView, task_pipeline

from const_models import CLASSES, SEG_CLASSES, const_multitask

pytestmark = pytest.mark.unit


def _pipe(path, card, **kw):
    return MultiTaskPipeline(OnnxRuntimeBackend(path, threads=1), card, **kw)


def test_every_task_from_one_inference_with_the_letterbox_undone(tmp_path):
    path, card = const_multitask(tmp_path)
    pipe = _pipe(path, card)
    calls = []
    infer = pipe.backend.infer
    pipe.backend.infer = lambda feeds: calls.append(1) or infer(feeds)
    # 640x360 (16:9) into 512x384: scale 0.8, 48 px of padding above and below
    rgb = np.zeros((360, 640, 3), np.uint8)
    r = pipe.run(rgb)
    assert len(calls) == 1, "one inference for all four tasks"
    assert r.detections.class_names == ["person"]
    np.testing.assert_allclose(r.detections.boxes[0], [125, 40, 250, 290])  # (100, 80 - 48) / 0.8 ...
    labels = r.segmentation.labels
    assert labels.shape == (360, 640)
    # network rows 48..335 hold the image: bands at rows 128 and 256 -> image rows 100 and 260
    assert labels[0, 0] == 0 and labels[99, 0] == 0 and labels[101, 0] == 1 and labels[261, 0] == 2
    assert r.depth.depth.shape == (360, 640)
    # depth grows 1 m per 100 network columns: image column 320 is network column 256 -> 4.56 m
    assert abs(float(r.depth.depth[180, 320]) - (2.0 + 256 / 100)) < 0.02
    # the hybrid odometry's ground: what the segmentation head calls 'ground' (SEG_CLASSES[1])
    ground = r.ground_mask(pipe.segmentation.ground_class())
    assert pipe.segmentation.ground_class() == 1 and np.array_equal(ground, labels == 1) and ground[180, 0]
    assert r.ground_mask(None) is None
    pipe.segmentation.label_names = ["sky", "road", "wall"]
    with pytest.raises(ValueError, match=r"no 'ground' class among \['sky', 'road', 'wall'\]"):
        pipe.segmentation.ground_class()
    kp = r.features.keypoints
    assert len(kp) == 3  # the empty slot is dropped
    np.testing.assert_allclose(kp[1], [(256.5) / 0.8 - 0.5, (192 - 48 + 0.5) / 0.8 - 0.5], atol=1e-4)
    assert r.features.descriptors.shape == (3, 8)


def test_canonical_depth_takes_the_cameras_focal_length_in_network_pixels(tmp_path):
    path, card = const_multitask(tmp_path, depth=np.full((384, 512), 4.0), canonical_focal=300.0)
    pipe = _pipe(path, card)
    K = np.array([[600.0, 0, 319.5], [0, 600.0, 179.5], [0, 0, 1]])
    r = pipe.run(np.zeros((360, 640, 3), np.uint8), K=K)
    # 600 px at 640 wide is 480 px in the 0.8-scaled network input: depth x 480 / 300
    assert abs(r.depth.focal_factor - 1.6) < 1e-6
    assert np.allclose(r.depth.depth, 6.4, atol=1e-4)
    assert pipe.run(np.zeros((360, 640, 3), np.uint8)).depth.focal_factor is None  # no CameraInfo


def test_a_subset_of_tasks_and_the_evaluation_view(tmp_path):
    path, card = const_multitask(tmp_path, tasks=("detection", "segmentation"))
    pipe = _pipe(path, card)
    assert pipe.tasks == ("detection", "segmentation") and pipe.depth is None and pipe.matching is None
    with pytest.raises(ValueError, match="serves"):
        _pipe(path, card, tasks=("depth",))
    view = task_pipeline(OnnxRuntimeBackend(path, threads=1), card, "detection", score_threshold=0.5)
    assert isinstance(view, TaskView) and view.card.classes == CLASSES
    det = view.run(np.zeros((384, 512, 3), np.uint8))
    assert det.class_names == ["person"] and view.score_threshold == 0.5
    seg_card = task_card(card, "segmentation")
    assert seg_card.task == "segmentation" and seg_card.classes == SEG_CLASSES
    assert seg_card.raw["graph_outputs"] == {"labels": "seg_labels", "confidence": "seg_confidence"}


def test_a_multitask_card_without_its_sections_is_refused(tmp_path):
    path, _card = const_multitask(tmp_path)
    d = yaml.safe_load(card_path(path).read_text())
    d["tasks"]["detection"].pop("classes")
    d["tasks"]["flying"] = {"outputs": {}}
    card_path(path).write_text(yaml.safe_dump(d))
    with pytest.raises(ModelCardError) as err:
        load_card(path)
    assert "tasks.detection needs its class names" in str(err.value)
    assert "task 'flying' is not one a multi-task network serves" in str(err.value)
    d.pop("tasks")
    card_path(path).write_text(yaml.safe_dump(d))
    with pytest.raises(ModelCardError, match="needs 'tasks:'"):
        load_card(path)


def test_a_model_missing_an_output_its_card_names_is_refused(tmp_path):
    path, card = const_multitask(tmp_path)
    card.raw["tasks"]["depth"]["outputs"] = {"depth": "metric_depth"}
    from perception_nodes.backends import BackendError

    with pytest.raises(BackendError, match="metric_depth"):
        _pipe(path, card)
