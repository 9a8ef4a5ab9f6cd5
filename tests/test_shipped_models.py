"""The shipped default models (models/*.onnx) still score what their cards say, on a small set
anyone can regenerate bit for bit (perception_models.evaluate.reproduction_sets), through the
same ONNX Runtime pipeline the nodes run; and they stay small."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception_models.evaluate import evaluate_detection, evaluate_segmentation, reproduction_sets
from perception_nodes.model_card import load_card

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    return reproduction_sets(tmp_path_factory.mktemp("repro"))


@pytest.mark.parametrize("name,task,key", [("detector", "detection", "mAP"), ("segmenter", "segmentation", "mIoU")])
def test_shipped_model_reproduces_its_card(name, task, key, repro):
    path = MODELS / f"{name}.onnx"
    assert path.is_file(), f"{path} is the shipped default {task} model; it is missing"
    assert path.stat().st_size < 10e6, "shipped models stay under ~10 MB"
    card = load_card(path, task)  # also checks the card belongs to this file (sha256)
    rep = card.raw["reproduction"]
    got = (evaluate_detection if task == "detection" else evaluate_segmentation)(path, repro)
    assert abs(got[key] - rep[key]) <= rep["tolerance"], (got[key], rep[key])
    assert "metrics" in card.raw and card.raw["metrics"][key] > 0
