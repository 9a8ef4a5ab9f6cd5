"""Feature matching: the keypoint graph (heatmap, NMS, soft-argmax, grid_sample descriptors), the
losses and both negative miners, the matcher, the metrics, training pairs, export through the node
pipeline, and the sequential / keyframe matcher with its geometry."""

from __future__ import annotations

import json

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from perception_models.metrics.matching import homography_corner_error, mma, pose_auc, relative_pose_error, warp_points
from perception_models.models.matching import MatcherConfig, extract, heatmap, sample_descriptors, soft_argmax_refine
from perception_models.models.matching_losses import descriptor_loss, detector_loss
from perception_models.train.matching_data import HomographyPairs, cell_centres, random_homography
from perception_nodes.pipelines.matching import Features, SequentialMatcher, estimate_geometry, mutual_nn_match

H, W = 64, 96


def _onehot_logits(points):
    """65-class logits with a keypoint at each integer pixel (x, y) and 'none' elsewhere."""
    logits = torch.full((1, 65, H // 8, W // 8), -10.0)
    logits[0, 64] = 10.0
    for x, y in points:
        cx, cy = x // 8, y // 8
        logits[0, 64, cy, cx] = -10.0
        logits[0, (y % 8) * 8 + (x % 8), cy, cx] = 10.0
    return logits


def test_heatmap_places_the_cell_class_at_its_pixel_and_the_loss_agrees():
    logits = _onehot_logits([(13, 21), (50, 40)])
    hm = heatmap(logits)[0, 0]
    assert hm.shape == (H, W)
    ys, xs = torch.nonzero(hm > 0.5, as_tuple=True)
    assert sorted(zip(xs.tolist(), ys.tolist())) == [(13, 21), (50, 40)]
    kp = torch.zeros(1, H, W)
    kp[0, 21, 13] = kp[0, 40, 50] = 1
    assert float(detector_loss(logits, kp)) < 1e-3
    assert float(detector_loss(_onehot_logits([(12, 21)]), kp)) > 0.3  # 2 of 96 cells wrong by ~20 nats


def test_soft_argmax_finds_a_sub_pixel_peak():
    y, x = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    peak = (30.3, 20.8)
    scores = torch.exp(-((x - peak[0]) ** 2 + (y - peak[1]) ** 2) / (2 * 0.7**2))[None, None]
    xy = soft_argmax_refine(scores, torch.tensor([[[30.0, 21.0]]]), radius=2, temperature=1.0)
    assert abs(float(xy[0, 0, 0]) - peak[0]) < 0.15 and abs(float(xy[0, 0, 1]) - peak[1]) < 0.15


def test_descriptors_are_sampled_at_cell_centres_and_extract_keeps_k_fixed():
    desc = torch.nn.functional.normalize(torch.randn(1, 16, H // 8, W // 8), dim=1)
    centres = torch.tensor(cell_centres(H, W), dtype=torch.float32)[None]
    got = sample_descriptors(desc, centres, (H, W))
    np.testing.assert_allclose(got[0].numpy(), desc[0].reshape(16, -1).T.numpy(), atol=1e-5)
    cfg = MatcherConfig(input_size=(H, W), descriptor_dim=16, top_k=20, nms_radius=2)
    kp, sc, de = extract(_onehot_logits([(13, 21), (50, 40)]), desc, cfg)
    assert kp.shape == (1, 20, 2) and sc.shape == (1, 20) and de.shape == (1, 20, 16)
    live = kp[0][sc[0] > 0]
    assert sorted(map(tuple, live.round().int().tolist())) == [(13, 21), (50, 40)]


def _identity_corr(h, w):
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([x, y], -1)[None], torch.ones(1, h, w, dtype=torch.bool)


@pytest.mark.parametrize("loss", ["triplet", "contrastive"])
@pytest.mark.parametrize("mining", ["hard", "spatial"])
def test_descriptor_losses_zero_for_distinct_descriptors_positive_for_random(loss, mining):
    h, w = 6, 8
    corr, valid = _identity_corr(h, w)
    distinct = torch.eye(h * w).reshape(h * w, h, w)[None]  # one-hot per cell: every negative is orthogonal
    assert float(descriptor_loss(distinct, distinct, corr, valid, loss, mining)) < 1e-6
    rand = torch.nn.functional.normalize(torch.randn(1, 8, h, w), dim=1)
    assert (
        float(
            descriptor_loss(
                rand, torch.nn.functional.normalize(torch.randn(1, 8, h, w), dim=1), corr, valid, loss, mining
            )
        )
        > 0.1
    )


def test_spatial_mining_only_sees_negatives_in_its_ring():
    h, w = 6, 12
    corr, valid = _identity_corr(h, w)
    d = torch.eye(h * w).reshape(h * w, h, w)[None].clone()
    # make the cell 10 columns away from cell (0, 0) a perfect confuser: far outside the ring (2..6)
    d[0, :, 0, 10] = d[0, :, 0, 0]
    only = torch.zeros(1, h, w, dtype=torch.bool)
    only[0, 0, 0] = True
    hard = descriptor_loss(d, d, corr, only, "triplet", "hard")
    spatial = descriptor_loss(d, d, corr, only, "triplet", "spatial", ring=(2.0, 6.0))
    assert float(hard) > 0.4 and float(spatial) < 1e-6
    with pytest.raises(ValueError):
        descriptor_loss(d, d, corr, only, "triplet", "random")


def test_mutual_nn_with_ratio_test():
    a = np.eye(4, 8, dtype=np.float32)
    b = a[[2, 0, 3, 1]].copy()
    pairs, sim = mutual_nn_match(a, b, ratio=0.9)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 3), (2, 0), (3, 2)] and np.allclose(sim, 1)
    ambiguous = np.vstack([b, b[1:2]])  # descriptor 0 now has two equally good matches
    pairs2, _ = mutual_nn_match(a, ambiguous, ratio=0.9)
    assert 0 not in pairs2[:, 0]
    assert mutual_nn_match(a[:0], b)[0].shape == (0, 2)


def test_matching_metrics():
    Hm = random_homography(np.random.default_rng(0), 320, 240)
    assert homography_corner_error(Hm, Hm, 320, 240) < 1e-9
    assert homography_corner_error(None, Hm, 320, 240) == math.inf
    assert mma(np.array([0.5, 2.5, 20.0]), (1, 3, 10)) == {1: 1 / 3, 3: 2 / 3, 10: 2 / 3}
    R = cv2.Rodrigues(np.array([0.0, 0.1, 0.0]))[0]
    eR, et = relative_pose_error(R, np.array([0, 0, 1.0]), np.eye(3), np.array([0, 0, -2.0]))
    assert abs(eR - math.degrees(0.1)) < 1e-6 and et < 1e-6  # the direction's sign does not count
    auc = pose_auc([0.0, 0.0, 100.0, 100.0], (5, 10))
    assert abs(auc[5] - 0.5) < 1e-9 and abs(auc[10] - 0.5) < 1e-9
    assert abs(pose_auc([5.0], (10,))[10] - 0.75) < 1e-9  # recall ramps 0 -> 1 over 0..5 deg, then stays 1


def test_homography_pairs_correspondences_point_at_the_same_content(tmp_path):
    img = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    cv2.imwrite(str(tmp_path / "p.png"), img)
    ds = HomographyPairs([tmp_path / "p.png"], (96, 128))
    item = ds[0]
    corr, ok = item["corr"].numpy(), item["corr_valid"].numpy()
    assert ok.mean() > 0.3
    # a cell centre of A and its correspondence in B (cell units) are the same scene point under H
    rng = np.random.default_rng([0, 0, 0])
    from perception_models.train.matching_data import homography_pair

    p = homography_pair(img, (96, 128), rng)
    c = cell_centres(96, 128)[ok.ravel()]
    np.testing.assert_allclose(warp_points(p["H"], c), corr.reshape(-1, 2)[ok.ravel()] * 8 + 3.5, atol=1e-3)
    assert item["kp_a"].sum() > 10


def test_sequential_matcher_recovers_a_homography_and_keeps_keyframes():
    rng = np.random.default_rng(3)
    n = 200
    kp = rng.uniform(20, 300, (n, 2)).astype(np.float32)
    desc = rng.normal(size=(n, 32)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    Hm = random_homography(rng, 320, 240, perspective=0.05)
    kp2 = warp_points(Hm, kp).astype(np.float32)
    kp2[:20] += 40.0  # 10 % outliers
    m = SequentialMatcher(ratio=0.9, geometry="homography", threshold_px=1.0, keyframe_overlap=0.5)
    assert m.step(Features(kp, np.ones(n, np.float32), desc), "f0") is None
    r = m.step(Features(kp2, np.ones(n, np.float32), desc), "f1")
    assert r.reference_id == "f0" and len(r.pairs) == n and r.geometry.model == "homography"
    assert r.geometry.inlier[:20].sum() == 0 and r.geometry.inlier[20:].all()
    np.testing.assert_allclose(r.geometry.matrix / r.geometry.matrix[2, 2], Hm / Hm[2, 2], atol=1e-3)
    assert not r.keyframe_changed  # 90 % of the keyframe's points still match
    r2 = m.step(Features(kp2[:50], np.ones(50, np.float32), desc[:50]), "f2")
    assert r2.reference_id == "f0" and r2.keyframe_changed  # 30 of 200 inliers: a new keyframe
    assert m.reference_id == "f2"
    assert estimate_geometry(kp[:3], kp2[:3], "essential", np.eye(3)).reason.startswith("3 matches")
    assert estimate_geometry(kp, kp2, "essential", None).reason == "no CameraInfo for the essential matrix"


def test_export_runs_through_the_node_pipeline(tmp_path):
    from perception_models.export import export_matching
    from perception_models.train.matching_task import MatchTrainConfig, build_net
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card
    from perception_nodes.pipelines.matching import MatchingPipeline

    torch.manual_seed(0)
    cfg = MatchTrainConfig(input_size=(H, W))
    net = build_net(cfg)
    torch.save({"model": net.state_dict(), "config": {**cfg.__dict__}, "metrics": {"metric": 0.0}}, tmp_path / "m.pt")
    card = export_matching(tmp_path / "m.pt", tmp_path / "matching.onnx", reproduce=False)
    assert card["export"]["onnxruntime_vs_torch"]["keypoint_agreement"] >= 0.99
    pipe = MatchingPipeline(
        OnnxRuntimeBackend(tmp_path / "matching.onnx"), load_card(tmp_path / "matching.onnx", "matching")
    )
    img = np.random.default_rng(0).integers(0, 255, (2 * H, 2 * W, 3), dtype=np.uint8)
    f = pipe.run(img)
    feeds, lb = pipe.preprocess(img)
    raw = pipe.backend.infer(feeds)
    live = raw["scores"][0] > 0
    np.testing.assert_allclose(f.keypoints, (raw["keypoints"][0][live] + 0.5) * 2 - 0.5, atol=1e-4)
    assert f.descriptors.shape == (live.sum(), 64) and np.allclose(np.linalg.norm(f.descriptors, axis=1), 1, atol=1e-4)


def test_training_with_both_pair_sources_both_miners(tmp_path):
    from perception_models.data.synth import SynthConfig, SyntheticSequence
    from perception_models.data.writers import write_sequence
    from perception_models.train.matching_task import MatchTrainConfig, load_matching_checkpoint, train_matching

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(
            str(photos / f"{i}.png"), cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (0, 0), 1.5)
        )
    seq = tmp_path / "seq"
    write_sequence(
        SyntheticSequence(SynthConfig(preset="indoor", seed=5, frames=4, width=160, height=120, randomization=0.0)),
        seq,
        flow=False,
        workers=1,
        progress=False,
    )
    for mining in ("hard", "spatial"):
        cfg = MatchTrainConfig(
            photos=[str(photos)],
            data=[str(seq)],
            val_photos=[str(photos)],
            val=[str(seq)],
            out=str(tmp_path / mining),
            epochs=1,
            batch_size=2,
            input_size=(H, W),
            mining=mining,
            val_pairs=2,
            log_every=1,
        )
        r = train_matching(cfg, progress=False)
        m = r["metrics"]
        assert m["pairs"] == {"homography": 2, "pose": 2} and 0.0 <= m["metric"] <= 1.0
        assert {1, 3, 10} <= set(m["homography_mma"]) and {5, 10, 20} == set(m["pose_auc"])
    # no photos given: homographic pairs still come from somewhere real or synthetic
    from perception_models.train.matching_task import default_photos

    fallback = default_photos([str(seq)])
    assert fallback and all(Path(f).is_dir() for f in fallback)
    net, c, _ = load_matching_checkpoint(tmp_path / "spatial" / "best.pt")
    assert c.mining == "spatial" and c.input_size == (H, W)
    with pytest.raises(ValueError, match="needs --photos"):
        train_matching(MatchTrainConfig(out=str(tmp_path / "x")), progress=False)


def test_a_keypoint_teacher_is_distilled_on_the_training_images(tmp_path):
    """--teacher (XFeat / SuperPoint raw heads): the teacher's cell logits and descriptors, taken
    at its own input size and brought to the student's cell grid, are a loss of their own."""
    from family_graphs import family_graph, imported
    from perception_models.train.matching_task import KeypointTeacher, MatchTrainConfig, train_matching

    logits = np.full((1, 65, 2 * H // 8, 2 * W // 8), -4.0, np.float32)
    logits[0, 10] = 4.0  # a keypoint at in-cell position 10 of every cell
    desc = np.zeros((1, 64, 2 * H // 8, 2 * W // 8), np.float32)
    desc[0, 3] = 2.0
    path = family_graph(
        tmp_path / "xfeat.onnx", {"input": [1, 3, 2 * H, 2 * W]}, {"keypoint_logits": logits, "descriptors": desc}
    )
    card = imported(tmp_path, path)
    teacher = KeypointTeacher(card, threads=1)
    lg, de = teacher(torch.rand(2, 3, H, W))
    assert lg.shape == (2, 65, H // 8, W // 8) and de.shape == (2, 64, H // 8, W // 8)
    assert torch.allclose(lg[:, 10], torch.tensor(4.0)) and torch.allclose(de[:, 3], torch.tensor(1.0))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(photos / f"{i}.png"), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    cfg = MatchTrainConfig(
        photos=[str(photos)], out=str(tmp_path / "run"), epochs=1, batch_size=2, input_size=(H, W), log_every=1,
        teacher=str(card),
    )  # fmt: skip
    train_matching(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(r["teacher"] > 0 for r in rows if r["kind"] == "train")
    end2end = family_graph(
        tmp_path / "e2e.onnx",
        {"image": [1, 3, H, W]},
        {"keypoints": np.zeros((1, 4, 2), np.float32), "scores": np.zeros((1, 4), np.float32),
         "descriptors": np.zeros((1, 4, 8), np.float32)},
    )  # fmt: skip
    with pytest.raises(ValueError, match="cell logits and descriptors"):
        KeypointTeacher(imported(tmp_path, end2end, family="keypoints"))


def test_anchors_come_from_keypoint_cells_when_there_are_enough():
    h, w = 6, 12
    corr, valid = _identity_corr(h, w)
    d = torch.eye(h * w).reshape(h * w, h, w)[None].clone()
    d[0, :, 5, 6:] = d[0, :, 5, :6]  # the bottom row repeats itself: those cells have a far twin
    top = torch.zeros(1, h, w, dtype=torch.bool)
    top[0, :3] = True
    assert float(descriptor_loss(d, d, corr, valid, "triplet", "hard", anchors=1000)) > 0.01
    assert float(descriptor_loss(d, d, corr, valid, "triplet", "hard", anchors=1000, prefer=top)) < 1e-6
    # fewer preferred cells than min_preferred: anchors from every valid cell again
    assert (
        float(descriptor_loss(d, d, corr, valid, "triplet", "hard", anchors=1000, prefer=top, min_preferred=100)) > 0.01
    )
