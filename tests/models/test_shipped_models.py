"""The shipped default models (models/*.onnx) still score what their cards say, on a small set
anyone can regenerate bit for bit (perception_models.evaluate.reproduction_sets), through the
same ONNX Runtime pipeline the nodes run; and they stay small."""

from __future__ import annotations

from pathlib import Path

import pytest

from perception_models.evaluate import evaluate_detection, evaluate_segmentation, reproduction_sets
from perception_nodes.model_card import load_card

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.fixture(scope="module")
def repro():
    return reproduction_sets()  # the per-machine copy every export measures on (its test: test_data_io.py)


@pytest.mark.parametrize("name,task,key", [("detection", "detection", "mAP"), ("segmentation", "segmentation", "mIoU")])
def test_shipped_model_reproduces_its_card(name, task, key, repro):
    path = MODELS / f"{name}.onnx"
    assert path.is_file(), f"{path} is the shipped default {task} model; it is missing"
    assert path.stat().st_size < 10e6, "shipped models stay under ~10 MB"
    card = load_card(path, task)  # also checks the card belongs to this file (sha256)
    rep = card.raw["reproduction"]
    got = (evaluate_detection if task == "detection" else evaluate_segmentation)(path, repro)
    assert abs(got[key] - rep[key]) <= rep["tolerance"], (got[key], rep[key])
    assert "metrics" in card.raw and card.raw["metrics"][key] > 0


def test_shipped_depth_and_pose_models_reproduce_their_card(repro):
    from perception_models.evaluate import evaluate_depth

    depth, pose = MODELS / "depth.onnx", MODELS / "pose.onnx"
    assert depth.is_file() and pose.is_file(), (
        "models/depth.onnx and models/pose.onnx are the shipped depth + pose models"
    )
    assert depth.stat().st_size < 10e6 and pose.stat().st_size < 10e6
    card = load_card(depth, "depth")
    load_card(pose, "pose")
    assert card.raw["depth"]["pose_model"] == "pose.onnx"
    rep = card.raw["reproduction"]
    got = evaluate_depth(depth, repro, pose, estimators=("pnp",))
    tol = rep["tolerance"]
    assert abs(got["depth"]["absolute"]["abs_rel"] - rep["abs_rel"]) <= tol["abs_rel"]
    assert abs(got["depth"]["absolute"]["a1"] - rep["a1"]) <= tol["a1"]
    assert abs(got["odometry"]["pnp"]["ate_se3_percent"] - rep["pnp_ate_se3_percent"]) <= tol["pnp_ate_se3_percent"]


def test_shipped_matcher_reproduces_its_card(repro):
    from perception_models.evaluate import evaluate_matching

    path = MODELS / "matching.onnx"
    assert path.is_file(), "models/matching.onnx is the shipped keypoint model"
    assert path.stat().st_size < 10e6
    rep = load_card(path, "matching").raw["reproduction"]
    got = evaluate_matching(path, [str(d / "rgb") for d in repro], [str(d) for d in repro], pairs=12)
    assert abs(got["homography_mma"][3] - rep["homography_mma3"]) <= rep["tolerance"]
    assert abs(got["pose_auc"][10] - rep["pose_auc10"]) <= rep["tolerance"]


def test_shipped_multitask_model_reproduces_its_card(repro):
    """models/multitask.onnx (multitask_node, profile multitask): one graph, each task scored as its
    single-task model is, on the same regenerated scenes."""
    from perception_models.evaluate import evaluate_multitask

    path = MODELS / "multitask.onnx"
    assert path.is_file(), "models/multitask.onnx is the multi-task profile's model"
    assert path.stat().st_size < 15e6, "the multi-task model stays under ~15 MB"
    card = load_card(path, "multitask")
    assert set(card.raw["tasks"]) == {"detection", "segmentation", "depth", "matching"}
    rep = card.raw["reproduction"]
    got = evaluate_multitask(path, [str(d) for d in repro], matching=False)
    tol = rep["tolerance"]
    assert abs(got["detection"]["mAP"] - rep["mAP"]) <= tol["mAP"]
    assert abs(got["segmentation"]["mIoU"] - rep["mIoU"]) <= tol["mIoU"]
    assert abs(got["depth"]["absolute"]["abs_rel"] - rep["abs_rel"]) <= tol["abs_rel"]
