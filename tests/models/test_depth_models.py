"""Monocular depth + pose: the geometry module against OpenCV and the synthetic ground truth, the
Monodepth2 losses, the depth/odometry metrics (against hand-computed values and evo's alignment),
and the trainer on synthetic sequences and on a rosbag with no labels."""

from __future__ import annotations

import hashlib
import json
import math

import cv2
import numpy as np
import pytest
import torch
import yaml

from perception_models.data.synth import SynthConfig, SyntheticSequence
from perception_models.data.writers import write_sequence
from perception_models.metrics.depth import DepthEvaluator, depth_errors
from perception_models.metrics.odometry import trajectory_errors
from perception_models.models.depth import DepthConfig, DepthExport, DepthNet, PoseExport, PoseNet, disp_to_depth
from perception_models.models.depth_losses import photometric_error, reprojection_loss, silog_loss, ssim
from perception_models.models.geometry import (
    axis_angle_to_matrix,
    backproject,
    pose_vec_to_matrix,
    project,
    scale_intrinsics,
    warp,
)
from perception_models.train.depth_data import (
    TripletDataset,
    load_bag_sequence,
    load_synthetic_sequence,
    zoom_triplet,
)
from perception_models.train.depth_task import (
    DepthTrainConfig,
    build_depth_models,
    chain,
    load_depth_checkpoint,
    train_depth,
)

IN = (96, 128)


@pytest.fixture(scope="module")
def seq_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("depthsets")
    out = []
    for name, seed in (("train", 31), ("val", 32)):
        # clean images (no noise / blur / exposure changes) so photometric checks see only geometry
        seq = SyntheticSequence(
            SynthConfig(preset="driving", seed=seed, frames=5, width=160, height=120, randomization=0.0)
        )
        write_sequence(seq, root / name, bag=name == "train", flow=False, workers=1, progress=False)
        out.append(root / name)
    return out


# --- geometry ---------------------------------------------------------------------------------


def test_axis_angle_matches_opencv_rodrigues_and_inverse():
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 3)) * 0.7
    vecs[0] = 0.0  # the identity must not divide by zero
    R = axis_angle_to_matrix(torch.tensor(vecs, dtype=torch.float64)).numpy()
    for v, r in zip(vecs, R):
        np.testing.assert_allclose(r, cv2.Rodrigues(v)[0], atol=1e-9)
    t = torch.tensor(rng.normal(size=(5, 3)))
    T = pose_vec_to_matrix(torch.tensor(vecs), t)
    Ti = pose_vec_to_matrix(torch.tensor(vecs), t, invert=True)
    np.testing.assert_allclose((T @ Ti).numpy(), np.broadcast_to(np.eye(4), (5, 4, 4)), atol=1e-9)


def test_backproject_then_project_returns_the_pixels_and_depth():
    K = torch.tensor([[[100.0, 0, 63.5], [0, 100.0, 47.5], [0, 0, 1]]])
    depth = torch.rand(1, 1, 96, 128) * 10 + 1
    uv, z = project(backproject(depth, K), K, torch.eye(4)[None])
    v, u = np.mgrid[0:96, 0:128]
    np.testing.assert_allclose(uv[0, 0].numpy(), u.reshape(-1), atol=1e-3)
    np.testing.assert_allclose(uv[0, 1].numpy(), v.reshape(-1), atol=1e-3)
    np.testing.assert_allclose(z[0, 0].numpy(), depth.reshape(-1).numpy(), rtol=1e-5)


def test_scaled_intrinsics_project_like_the_resized_image():
    K = torch.tensor([[[300.0, 0, 319.5], [0, 300.0, 239.5], [0, 0, 1]]])
    K2 = scale_intrinsics(K, 0.25, 0.25)
    p = torch.tensor([[[0.5], [-0.2], [2.0]]])  # a point; its pixel at 640x480 maps to the 160x120 pixel grid
    uv, _ = project(p, K, torch.eye(4)[None])
    uv2, _ = project(p, K2, torch.eye(4)[None])
    np.testing.assert_allclose(uv2.numpy(), (uv.numpy() + 0.5) * 0.25 - 0.5, atol=1e-5)


def test_warp_with_ground_truth_depth_and_pose_rebuilds_the_target(seq_dirs):
    """The conventions (T_source_target, K scaling, pixel centres) checked against the renderer:
    warping the previous frame with the true depth and motion explains the target far better than
    not moving it."""
    seq = load_synthetic_sequence(seq_dirs[0])
    from perception_models.data.readers.tum import read_tum_trajectory

    _, poses = read_tum_trajectory(seq_dirs[0] / "trajectory_tum.txt")
    ds = TripletDataset([seq], (120, 160), augment=False)
    item = ds[1]  # frames 1, 2, 3
    color, K = item["color"][None], item["K"][None]
    depth = torch.nan_to_num(item["depth"], nan=1000.0)[None]  # sky: far away
    T_prev_target = torch.tensor(np.linalg.inv(poses[1]) @ poses[2], dtype=torch.float32)[None]
    warped, inside = warp(color[:, 0], depth, T_prev_target, K)
    static = item["static"][None] * inside
    err_warp = (photometric_error(warped, color[:, 1]) * static).sum() / static.sum()
    err_id = (photometric_error(color[:, 0], color[:, 1]) * static).sum() / static.sum()
    assert err_warp < 0.5 * err_id, (float(err_warp), float(err_id))
    # the inverse motion (the other convention) does not explain it
    wrong, _ = warp(color[:, 0], depth, torch.linalg.inv(T_prev_target), K)
    err_wrong = (photometric_error(wrong, color[:, 1]) * static).sum() / static.sum()
    assert err_wrong > 2 * err_warp, (float(err_wrong), float(err_warp))
    assert float(inside.mean()) > 0.8


# --- losses -----------------------------------------------------------------------------------


def test_ssim_and_photometric_error_are_zero_for_identical_images():
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2, 3, 16, 16), atol=1e-5)
    assert float(photometric_error(x, x).max()) < 1e-5
    assert float(photometric_error(x, torch.rand(2, 3, 16, 16)).mean()) > 0.1


def test_automask_ignores_pixels_the_unwarped_source_already_explains():
    target = torch.rand(1, 3, 12, 12)
    static_source = target.clone()  # a camera that did not move: identity explains everything
    bad_warp = torch.rand(1, 3, 12, 12)
    loss, used = reprojection_loss(target, [bad_warp], [static_source], automask=True)
    assert float(used.sum()) == 0 and float(loss) == 0
    loss_no_mask, used2 = reprojection_loss(target, [bad_warp], [static_source], automask=False)
    assert float(used2.mean()) == 1 and float(loss_no_mask) > 0.1
    # a flagged moving object is left out even where the warp is worse
    moving = torch.ones(1, 1, 12, 12)
    moving[..., :6] = 0
    _, used3 = reprojection_loss(target, [bad_warp], [torch.rand(1, 3, 12, 12)], automask=False, static_mask=moving)
    assert float(used3[..., :6].sum()) == 0


def test_silog_is_scale_invariant_with_full_variance_focus_and_ignores_missing_depth():
    gt = torch.rand(1, 1, 8, 8) * 10 + 1
    gt[0, 0, 0, 0] = float("nan")
    pred = gt * torch.exp(torch.randn_like(gt) * 0.1)
    pred = torch.nan_to_num(pred, nan=5.0)
    a = silog_loss(pred, gt, variance_focus=1.0)
    b = silog_loss(pred * 3.0, gt, variance_focus=1.0)
    assert torch.isclose(a, b, atol=1e-3)
    assert float(silog_loss(torch.nan_to_num(gt, nan=1.0), gt)) < 0.01


def test_silog_per_image_counts_a_sparse_frame_as_much_as_a_dense_one():
    torch.manual_seed(0)
    gt = torch.rand(2, 1, 32, 32) * 10 + 1
    sparse = torch.full_like(gt[1], float("nan"))
    sparse[0, ::8, ::8] = gt[1, 0, ::8, ::8]  # 16 known pixels beside 1024
    gt[1] = sparse
    pred = torch.nan_to_num(gt, nan=4.0).clone()
    pred[1] *= torch.exp(torch.randn_like(pred[1]) * 0.3)  # only the sparse frame is wrong
    each = [float(silog_loss(pred[i : i + 1], gt[i : i + 1])) for i in range(2)]
    assert each[0] < 0.01 < each[1]
    per_image = float(silog_loss(pred, gt, per_image=True))
    pooled = float(silog_loss(pred, gt))
    assert abs(per_image - sum(each) / 2) < 1e-4  # the mean of the frames' errors
    assert pooled < 0.3 * per_image  # pooled, the 16 pixels drown in the dense frame's 1024
    # images without ground truth are left out of the mean, not counted as zero error
    none = torch.cat([gt[1:], torch.full_like(gt[:1], float("nan"))])
    assert abs(float(silog_loss(pred[[1, 0]], none, per_image=True)) - each[1]) < 1e-4


# --- metrics ----------------------------------------------------------------------------------


def test_depth_errors_hand_computed_and_median_scaling():
    gt = np.array([[1.0, 2.0], [4.0, np.nan]])
    pred = np.array([[1.1, 2.0], [3.0, 7.0]])
    e = depth_errors(gt, pred, 0.1, 80.0)
    np.testing.assert_allclose(e["abs_rel"], np.mean([0.1, 0.0, 0.25]))
    np.testing.assert_allclose(e["sq_rel"], np.mean([0.01 / 1, 0, 1.0 / 4]))
    np.testing.assert_allclose(e["rmse"], math.sqrt(np.mean([0.01, 0, 1.0])))
    np.testing.assert_allclose(e["a1"], 2 / 3)  # 4/3 = 1.33 > 1.25
    assert e["a2"] == 1.0
    # an up-to-scale prediction: median scaling recovers it exactly
    m = depth_errors(gt, np.where(np.isfinite(gt), gt, 1.0) * 0.2, 0.1, 80.0, median_scaling=True)
    assert m["abs_rel"] < 1e-12 and m["a1"] == 1.0 and abs(m["scale"] - 5.0) < 1e-9
    assert depth_errors(np.full((2, 2), np.nan), pred) is None
    with pytest.raises(ValueError, match="shape"):
        depth_errors(gt, pred[:1])
    ev = DepthEvaluator(0.1, 80.0)
    ev.add(gt, pred)
    ev.add(gt, pred * 2)
    s = ev.summary()
    assert s["images"] == 2 and s["absolute"]["abs_rel"] > s["median_scaled"]["abs_rel"]


def _circle(n=30):
    a = np.linspace(0, math.pi, n)
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, 0, 3], poses[:, 1, 3] = 10 * np.cos(a), 10 * np.sin(a)
    for i, th in enumerate(a):
        poses[i, :3, :3] = cv2.Rodrigues(np.array([0, 0, th]))[0]
    return np.arange(n) * 0.1, poses


def test_trajectory_errors_alignments():
    times, gt = _circle()
    # a rigidly moved copy: SE(3) alignment removes it
    G = np.eye(4)
    G[:3, :3] = cv2.Rodrigues(np.array([0.1, -0.2, 0.3]))[0]
    G[:3, 3] = [5, -3, 1]
    e = trajectory_errors(times, G @ gt, gt, align="se3")
    assert e["ate_rmse_m"] < 1e-6 and e["align"] == "se3"
    assert e["rpe_trans_rmse_m"] < 1e-6 and e["rpe_rot_rmse_deg"] < 1e-4
    # half the scale: only Sim(3) removes it, and reports the scale
    half = gt.copy()
    half[:, :3, 3] *= 0.5
    assert trajectory_errors(times, half, gt, align="se3")["ate_rmse_m"] > 1.0
    s = trajectory_errors(times, half, gt, align="sim3")
    assert s["ate_rmse_m"] < 1e-6 and abs(s["scale"] - 2.0) < 1e-6
    assert abs(s["path_length_m"] - 10 * math.pi) < 0.1
    with pytest.raises(ValueError, match="align"):
        trajectory_errors(times, gt, gt, align="affine")


def test_chain_composes_relative_motions():
    times, gt = _circle(8)
    rel = [np.linalg.inv(a) @ b for a, b in zip(gt[:-1], gt[1:])]
    np.testing.assert_allclose(chain(rel), np.linalg.inv(gt[0]) @ gt, atol=1e-9)


# --- networks, export -------------------------------------------------------------------------


def test_depth_net_scales_and_pose_net_starts_near_identity():
    torch.manual_seed(0)
    net = DepthNet(DepthConfig(input_size=IN)).eval()
    disps = net(torch.randn(2, 3, *IN))
    assert {s: tuple(d.shape) for s, d in disps.items()} == {
        0: (2, 1, 96, 128),
        1: (2, 1, 48, 64),
        2: (2, 1, 24, 32),
        3: (2, 1, 12, 16),
    }
    d = disp_to_depth(torch.tensor([0.0, 1.0]), 0.1, 100.0)
    assert torch.allclose(d, torch.tensor([100.0, 0.1]))
    with torch.no_grad():
        T = PoseNet().eval()(torch.randn(2, 3, *IN), torch.randn(2, 3, *IN))
    assert T.shape == (2, 4, 4) and torch.allclose(T[:, 3], torch.tensor([0.0, 0, 0, 1]))
    assert float((T[:, :3, :3] - torch.eye(3)).abs().max()) < 0.2


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_depth_and_pose_export_run_in_onnxruntime(tmp_path):
    """The legacy (TorchScript) exporter here for speed; perception-models export uses dynamo."""
    import onnxruntime as ort

    torch.manual_seed(0)
    depth = DepthExport(DepthNet(DepthConfig(input_size=IN, scale=2.0))).eval()
    pose = PoseExport(PoseNet(), scale=2.0).eval()
    x, y = torch.randn(1, 3, *IN), torch.randn(1, 3, *IN)
    torch.onnx.export(
        depth, (x,), tmp_path / "d.onnx", input_names=["image"], output_names=["depth"], opset_version=17, dynamo=False
    )
    torch.onnx.export(
        pose,
        (x, y),
        tmp_path / "p.onnx",
        input_names=["previous", "current"],
        output_names=["T_previous_current"],
        opset_version=17,
        dynamo=False,
    )
    d = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.numpy()}
    )[0]
    p = ort.InferenceSession(str(tmp_path / "p.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"previous": x.numpy(), "current": y.numpy()}
    )[0]
    with torch.no_grad():
        np.testing.assert_allclose(d, depth(x).numpy(), rtol=1e-3)
        np.testing.assert_allclose(p, pose(x, y).numpy(), atol=1e-5)
        # the metric scale multiplies translations only
        raw = pose.net(x, y).numpy()
    np.testing.assert_allclose(p[0, :3, 3], 2.0 * raw[0, :3, 3], atol=1e-6)
    np.testing.assert_allclose(p[0, :3, :3], raw[0, :3, :3], atol=1e-6)


def test_canonical_depth_in_torch_matches_the_pipeline(tmp_path):
    """DepthNet.depth(x, K) (training, validation, calibration) and the exported graph followed
    by DepthPipeline.run(rgb, K) (the nodes) convert a canonical camera's depth alike."""
    from perception_nodes.backends import OnnxRuntimeBackend
    from perception_nodes.model_card import load_card
    from perception_nodes.pipelines.depth import DepthPipeline, scale_K

    from perception_models.train.data import MEAN, STD

    torch.manual_seed(0)
    net = DepthNet(DepthConfig(input_size=IN, canonical_focal=100.0)).eval()
    rgb = np.random.default_rng(0).integers(0, 255, (IN[0] * 2, IN[1] * 2, 3), dtype=np.uint8)
    K = np.array([[150.0, 0, IN[1] - 0.5], [0, 170.0, IN[0] - 0.5], [0, 0, 1]])
    x = (
        torch.from_numpy(cv2.resize(rgb, (IN[1], IN[0]), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None].float()
        / 255
        - torch.tensor(MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(STD).view(1, 3, 1, 1)
    K_in = torch.as_tensor(scale_K(K, 0.5, 0.5), dtype=torch.float32)[None]
    with torch.no_grad():
        canonical, seen = net.depth(x), net.depth(x, K_in)
    np.testing.assert_allclose((seen / canonical).numpy(), np.sqrt(75.0 * 85.0) / 100.0, rtol=1e-5)
    path = tmp_path / "depth.onnx"
    torch.onnx.export(
        DepthExport(net), (x,), path, input_names=["image"], output_names=["depth"], opset_version=17, dynamo=False
    )
    card = {
        "task": "depth",
        "classes": [],
        "input": {
            "name": "image",
            "height": IN[0],
            "width": IN[1],
            "mean": [float(v) for v in MEAN],
            "std": [float(v) for v in STD],
            "resize": "stretch",
        },
        "depth": {"min": 0.1, "max": 100.0, "scale_source": "supervised", "canonical_focal": 100.0},
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    (tmp_path / "depth.card.yaml").write_text(yaml.safe_dump(card))
    pipe = DepthPipeline(OnnxRuntimeBackend(path), load_card(path, "depth"))
    res = pipe.run(rgb, K=K)
    np.testing.assert_allclose(res.network_depth, seen[0, 0].numpy(), rtol=0.05)
    assert res.focal_factor == pytest.approx(np.sqrt(75.0 * 85.0) / 100.0)


def test_supervised_loss_of_a_canonical_camera_model_sees_the_cameras_depth():
    """Training with canonical_focal multiplies the network's depth by focal / canonical_focal
    before comparing with the ground truth: a camera of twice the canonical focal length and
    ground truth twice as far gives the loss of the canonical camera itself."""
    from perception_models.train.depth_task import depth_losses

    torch.manual_seed(0)
    net = DepthNet(DepthConfig(input_size=IN)).eval()
    color = torch.rand(2, 3, 3, *IN)
    gt = torch.rand(2, 1, *IN) * 20 + 1
    K = torch.tensor([[80.0, 0, 31.5], [0, 80.0, 31.5], [0, 0, 1]]).expand(2, 3, 3)

    def sup(canonical, K, gt):
        cfg = DepthTrainConfig(input_size=IN, photometric=0.0, canonical_focal=canonical)
        batch = {"color": color, "color_aug": color, "K": K, "depth": gt, "static": torch.ones(2, 1, *IN)}
        with torch.no_grad():
            return float(depth_losses(cfg, net, PoseNet(), batch)["supervised"])

    plain = sup(0.0, K, gt)
    assert sup(80.0, K, gt) == pytest.approx(plain, rel=1e-5)  # the canonical camera itself
    assert sup(40.0, K, gt * 2) == pytest.approx(plain, rel=1e-4)  # twice its focal, twice as far
    assert abs(sup(40.0, K, gt) - plain) > 0.05 * plain  # not if the depth were left as it is


# --- data and training ------------------------------------------------------------------------


def test_triplets_flip_moves_the_principal_point(seq_dirs):
    seq = load_synthetic_sequence(seq_dirs[0])
    plain = TripletDataset([seq], IN, augment=False)
    assert len(plain) == 3  # 5 frames -> targets 1..3
    item = plain[0]
    assert item["color"].shape == (3, 3, *IN) and torch.isfinite(item["depth"]).any()
    flips = [TripletDataset([seq], IN, augment=True, seed=s)[0] for s in range(8)]
    flipped = [f for f in flips if not torch.allclose(f["color"], item["color"])]
    assert flipped, "no flip in 8 seeds"
    f = flipped[0]
    assert torch.allclose(f["color"], item["color"].flip(-1))
    assert abs(float(f["K"][0, 2]) - (IN[1] - 1 - float(item["K"][0, 2]))) < 1e-4
    zoomed = [TripletDataset([seq], IN, augment=True, seed=s, zoom=1.5, p_zoom=1.0)[0] for s in range(4)]
    ratios = [float(z["K"][0, 0] / item["K"][0, 0]) for z in zoomed]
    assert all(1.0 <= r <= 1.5 + 1e-3 for r in ratios) and max(ratios) > 1.05  # every triplet, z in [1, 1.5]
    assert all(z["color"].shape == item["color"].shape and torch.isfinite(z["depth"]).any() for z in zoomed)


def test_zoom_keeps_each_point_where_the_new_intrinsics_project_it():
    """A zoomed triplet is the same scene through a longer lens: a 3-D point projects with the new K
    onto the pixel that shows what it showed before, and a sparse reference keeps its points there."""
    h, w = 96, 128
    K = np.array([[100.0, 0, 63.0], [0, 90.0, 49.0], [0, 0, 1]])
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    frames = np.stack([np.stack([u / w, v / h, np.zeros_like(u)], -1)] * 3)  # colour = pixel position
    rng = np.random.default_rng(0)
    X = np.stack([rng.uniform(-3, 3, 40), rng.uniform(-2, 2, 40), rng.uniform(5, 30, 40)], 1)
    uv = (K @ X.T).T
    uv = uv[:, :2] / uv[:, 2:]
    _, first = np.unique(np.round(uv).astype(int), axis=0, return_index=True)
    X, uv = X[first], uv[first]  # one point per pixel
    depth = np.full((h, w), np.nan, np.float32)  # sparse: the points
    depth[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)] = X[:, 2]
    crop = (20, 12, 84, 60)  # x2
    f2, d2, s2, _, K2 = zoom_triplet(frames, depth, np.ones((h, w), np.float32), None, K, crop)
    assert f2.shape == frames.shape and d2.shape == (h, w) and K2[0, 0] == 200.0 and K2[1, 1] == 180.0
    uv2 = (K2 @ X.T).T
    uv2 = uv2[:, :2] / uv2[:, 2:]
    px = np.round(uv).astype(int)
    inside = (px[:, 0] >= 20) & (px[:, 0] < 84) & (px[:, 1] >= 12) & (px[:, 1] < 60)  # in the window
    assert inside.sum() >= 5 and (~inside).sum() >= 5
    for (a, b), (a2, b2), z in zip(uv[inside], uv2[inside], X[inside, 2]):
        shown = f2[1, int(round(b2)), int(round(a2))]
        assert abs(shown[0] * w - a) < 1.0 and abs(shown[1] * h - b) < 1.0  # the same place of the scene
        near = d2[max(0, int(b2) - 1) : int(b2) + 3, max(0, int(a2) - 1) : int(a2) + 3]
        assert np.nanmin(np.abs(near - z)) < 1e-4  # its depth, unchanged, where K2 projects it
    assert np.isfinite(d2).sum() == np.isfinite(depth[12:60, 20:84]).sum()  # no point lost or invented
    assert (s2 == 1).all()
    with pytest.raises(ValueError, match="zoom"):
        TripletDataset([], IN, zoom=0.5)


def test_bag_sequence_reads_frames_and_camera_info(seq_dirs):
    seq = load_bag_sequence(seq_dirs[0] / "bag", "/camera/image_raw")
    synth = load_synthetic_sequence(seq_dirs[0])
    assert len(seq.frames) == 5 and seq.size == (120, 160)
    np.testing.assert_allclose(seq.K, synth.K, atol=1e-6)
    from perception_models.data.readers import DataFormatError

    with pytest.raises(DataFormatError, match="no topic"):
        load_bag_sequence(seq_dirs[0] / "bag", "/nope/image_raw")


def test_train_supervised_then_self_supervised_from_a_bag(seq_dirs, tmp_path):
    cfg = DepthTrainConfig(
        data=[str(seq_dirs[0])],
        val=[str(seq_dirs[1])],
        out=str(tmp_path / "sup"),
        epochs=2,
        batch_size=2,
        input_size=IN,
        log_every=1,
    )
    r = train_depth(cfg, progress=False)
    m = r["metrics"]
    assert m["images"] == 5 and cfg.metric_name == "abs_rel" and m["metric"] == m["abs_rel"]
    assert {"ate_se3_percent", "ate_sim3_percent"} <= set(m)
    rows = [json.loads(line) for line in (tmp_path / "sup" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["kind"] == "val"] == [0, 1]
    assert all(r["supervised"] > 0 and r["photometric"] > 0 for r in rows if r["kind"] == "train")
    depth_net, pose_net, c, _ = load_depth_checkpoint(tmp_path / "sup" / "best.pt")
    assert c.input_size == IN
    # fine-tune on the robot's bag: no labels, so only the photometric terms train
    cfg2 = DepthTrainConfig(
        bags=[str(seq_dirs[0] / "bag")],
        val=[str(seq_dirs[1])],
        out=str(tmp_path / "bag"),
        epochs=1,
        batch_size=2,
        input_size=IN,
        supervised=0.0,
        init=str(tmp_path / "sup" / "best.pt"),
        log_every=1,
    )
    r2 = train_depth(cfg2, progress=False)
    assert cfg2.metric_name == "abs_rel_median_scaled" and math.isfinite(r2["metric"])
    rows2 = [
        json.loads(line) for line in (tmp_path / "bag" / "log.jsonl").read_text().splitlines() if '"train"' in line
    ]
    assert rows2 and all(r["supervised"] == 0 and r["photometric"] > 0 for r in rows2)
    # resume continues the epoch count
    cfg2.epochs = 2
    r3 = train_depth(cfg2, resume=True, progress=False)
    assert r3["epoch"] == 1


def test_sparse_ground_truth_keeps_its_points_at_the_network_size():
    """Projected lidar or a triangulated reference (data reference-depth) is sparse: every point must
    reach the network-size map (nearest-neighbour sampling would keep about one in ten here), at the
    pixel its position scales to, the nearest where two land on one pixel; dense maps are unchanged."""
    from perception_models.train.depth_data import Sequence, depth_at

    sparse = np.full((370, 1226), np.nan, np.float32)
    rng = np.random.default_rng(0)
    v, u = rng.integers(0, 370, 400), rng.integers(0, 1226, 400)
    sparse[v, u] = rng.uniform(10, 40, 400)
    sparse[100, 500], sparse[100, 501] = 8.0, 30.0  # both scale to pixel (52, 104): the nearer one wins
    seq = Sequence("s", np.eye(3), (370, 1226), frames=[None], depth=[sparse])
    got = depth_at(seq, 0, (192, 256))
    assert got[52, 104] == 8.0
    kept = np.isfinite(got).sum()
    assert kept >= 0.9 * np.isfinite(sparse).sum()  # only pixel collisions merge points
    i, j = np.nonzero(np.isfinite(sparse))
    k = np.argmax(sparse[i, j])  # the farthest point is nobody's nearer neighbour: it keeps its value
    assert np.nanmax(got) == pytest.approx(sparse[i[k], j[k]])
    dense = np.linspace(1, 50, 370 * 1226, dtype=np.float32).reshape(370, 1226)
    seq.depth = [dense]
    np.testing.assert_array_equal(
        depth_at(seq, 0, (192, 256)), cv2.resize(dense, (256, 192), interpolation=cv2.INTER_NEAREST)
    )


def test_a_short_real_bag_repeats_beside_many_renders(seq_dirs):
    """--real-repeat lists each bag's frames again (one copy in memory), so that 31 real frames are
    not drowned by a thousand rendered ones."""
    from perception_models.train.depth_task import load_sequences

    cfg = DepthTrainConfig(data=[str(seq_dirs[0])], bags=[str(seq_dirs[0] / "bag")], real_repeat=3)
    seqs = load_sequences(cfg, cfg.data, with_bags=True)
    assert len(seqs) == 4 and seqs[1] is seqs[2] is seqs[3] and seqs[0] is not seqs[1]
    assert not seqs[1].depth and seqs[0].depth  # the bag has no labels: photometric terms only
    assert len(load_sequences(cfg, cfg.data, with_bags=False)) == 1  # validation never sees the bag


def test_depth_training_keeps_and_resumes_a_weight_average_like_every_task(seq_dirs, tmp_path):
    """The depth task runs in the one training loop: --ema validates and keeps the average of both
    networks (train_depth / train_pose hold the raw weights for --resume), as for detection."""
    cfg = DepthTrainConfig(
        data=[str(seq_dirs[0])], out=str(tmp_path / "ema"), epochs=1, batch_size=2, input_size=IN, ema=0.9
    )
    train_depth(cfg, progress=False)
    ck = torch.load(tmp_path / "ema" / "last.pt", map_location="cpu", weights_only=True)
    assert sorted(ck["modules"]) == ["depth", "pose", "train_depth", "train_pose"]
    differs = [k for k, v in ck["depth"].items() if v.is_floating_point() and not torch.equal(v, ck["train_depth"][k])]
    assert differs, "the kept depth weights are the average, not the last step's"
    depth_net, _, _, _ = load_depth_checkpoint(tmp_path / "ema" / "last.pt")
    assert all(torch.equal(v, ck["depth"][k]) for k, v in depth_net.state_dict().items())
    cfg.epochs = 2
    assert train_depth(cfg, resume=True, progress=False)["epoch"] == 1
    cfg_plain = DepthTrainConfig(data=[str(seq_dirs[0])], out=str(tmp_path / "ema"), epochs=3, input_size=IN)
    with pytest.raises(ValueError, match="--ema"):
        train_depth(cfg_plain, resume=True, progress=False)


def test_train_rejects_bad_configs(tmp_path):
    with pytest.raises(ValueError, match="needs --data"):
        train_depth(DepthTrainConfig(out=str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match="multiples of 32"):
        train_depth(DepthTrainConfig(data=["x"], input_size=(100, 128), out=str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match="both 0"):
        train_depth(DepthTrainConfig(data=["x"], supervised=0.0, photometric=0.0, out=str(tmp_path)), progress=False)
    with pytest.raises(ValueError, match="--depth-zoom must be >= 1"):
        train_depth(DepthTrainConfig(data=["x"], zoom=0.8, out=str(tmp_path)), progress=False)


def test_supervised_only_training_leaves_the_pose_network_as_it_was(seq_dirs, tmp_path):
    """--photometric 0: the depth network learns from the ground truth alone; the pose network,
    which only serves the reprojection, is neither run nor changed."""
    cfg = DepthTrainConfig(
        data=[str(seq_dirs[0])],
        out=str(tmp_path / "sup"),
        epochs=1,
        batch_size=2,
        input_size=IN,
        photometric=0.0,
        log_every=1,
        seed=3,
    )
    torch.manual_seed(3)
    start_depth, start_pose = build_depth_models(cfg)
    train_depth(cfg, progress=False)
    depth_net, pose_net, _, _ = load_depth_checkpoint(tmp_path / "sup" / "last.pt")
    rows = [json.loads(line) for line in (tmp_path / "sup" / "log.jsonl").read_text().splitlines() if '"train"' in line]
    assert rows and all(r["photometric"] == 0 and r["supervised"] > 0 for r in rows)
    for name, t in pose_net.state_dict().items():
        assert torch.equal(t, start_pose.state_dict()[name]), name
    assert any(not torch.equal(t, start_depth.state_dict()[k]) for k, t in depth_net.state_dict().items())


def test_depth_training_starts_from_the_shipped_onnx_pair(seq_dirs, tmp_path):
    """--init models/depth.onnx: both networks read back from the shipped pair (the pose network is
    the file the depth card names); the first epoch at a learning rate of ~0 scores what the shipped
    depth network scores (its metric scale is a constant of the export, so compare median-scaled)."""
    from pathlib import Path

    from perception_models.onnx_weights import load_onnx_weights
    from perception_models.train.depth_task import evaluate_depth

    models = Path(__file__).resolve().parents[2] / "models"
    cfg = DepthTrainConfig(
        data=[str(seq_dirs[0])],
        val=[str(seq_dirs[1])],
        out=str(tmp_path / "ft"),
        epochs=1,
        batch_size=2,
        input_size=(192, 256),
        lr=1e-12,
        scales=(0,),
        augment=False,
        init=str(models / "depth.onnx"),
        log_every=1,
    )
    r = train_depth(cfg, progress=False)
    ref_depth, ref_pose = DepthNet(DepthConfig((192, 256), cfg.min_depth, cfg.max_depth)), PoseNet()
    assert load_onnx_weights(ref_depth, models / "depth.onnx", strict=False)["missing"] == [
        "decoder.heads.3",
        "decoder.heads.2",
        "decoder.heads.1",
    ]
    load_onnx_weights(ref_pose, models / "pose.onnx")
    card = yaml.safe_load((models / "depth.card.yaml").read_text())["depth"]
    assert cfg.canonical_focal == float(card.get("canonical_focal") or 0.0)  # the output keeps its meaning
    ref_depth.cfg.canonical_focal = cfg.canonical_focal
    direct = evaluate_depth(cfg, ref_depth, ref_pose, cfg.val)
    assert r["metrics"]["abs_rel_median_scaled"] == pytest.approx(direct["abs_rel_median_scaled"], abs=0.01)
    with pytest.raises(ValueError, match="not exported from this architecture"):
        load_onnx_weights(PoseNet(), models / "depth.onnx")


def test_cached_inputs_give_the_same_triplets(seq_dirs):
    """--cache-images for depth: frames, depth and moving masks decoded once at the network size
    (in place of their paths) give exactly the items the PNGs give."""
    from perception_models.train.depth_data import cache_inputs

    plain = TripletDataset([load_synthetic_sequence(seq_dirs[0])], IN, augment=True, seed=5)
    seqs = [load_synthetic_sequence(seq_dirs[0])]
    held = cache_inputs(seqs, IN, threads=2)
    cached = TripletDataset(seqs, IN, augment=True, seed=5)
    assert all(isinstance(f, np.ndarray) and f.shape == (*IN, 3) for f in seqs[0].frames)
    assert held == 5 * (IN[0] * IN[1] * (3 + 4 + 1))  # rgb uint8 + depth float32 + mask uint8 per frame
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        for k in a:
            assert torch.equal(torch.nan_to_num(a[k], nan=-1.0), torch.nan_to_num(b[k], nan=-1.0)), k


# --- a relative-depth teacher (scale-and-shift-invariant loss, cached teacher pass) ------------


def test_ssi_loss_ignores_the_teachers_scale_and_shift_but_not_its_structure():
    from perception_models.models.depth_losses import ssi_loss

    torch.manual_seed(0)
    target = torch.rand(2, 1, 12, 16) + 0.1
    assert ssi_loss(3.0 * target + 0.5, target) < 1e-5, "any positive affine map of the teacher costs nothing"
    assert ssi_loss(target.flip(-1), target) > 0.3, "another structure does"
    holes = target.clone()
    holes[0, 0, :4] = float("nan")  # pixels the teacher has no value for are left out
    assert ssi_loss(2.0 * target, holes) < 1e-5
    pred = torch.rand(2, 1, 12, 16, requires_grad=True)
    ssi_loss(pred, target).backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    assert ssi_loss(pred, torch.full_like(target, float("nan"))) == 0  # no teacher values: no loss


def _relative_teacher(tmp_path, seq_dir):
    """A stand-in for Depth Anything: an ONNX relative-depth model (card family relative-depth)
    that gives 2 / depth + 0.3 of the sequence's first frame (affine in inverse depth)."""
    from family_graphs import family_graph, imported
    from perception_models.data.readers.depth import read_nyu_depth

    gt = read_nyu_depth(sorted((seq_dir / "depth").glob("*.png"))[0])
    gt = cv2.resize(gt, (IN[1], IN[0]), interpolation=cv2.INTER_NEAREST)
    rel = (2.0 / np.clip(gt, 0.5, 100.0) + 0.3).astype(np.float32)
    path = family_graph(tmp_path / "teacher.onnx", {"image": [1, 3, *IN]}, {"depth": rel[None]})
    return imported(tmp_path, path, family="relative-depth"), rel


def test_the_teacher_runs_once_and_its_cache_feeds_the_student_every_epoch(seq_dirs, tmp_path):
    from perception_models.train.depth_data import load_synthetic_sequence
    from perception_models.train.relative_teacher import cache_teacher

    teacher, rel = _relative_teacher(tmp_path, seq_dirs[0])
    seqs = [load_synthetic_sequence(seq_dirs[0])]
    folder = tmp_path / "cache"
    assert cache_teacher(teacher, seqs, IN, folder, progress=False) == {"frames_run": 5, "frames_cached": 0}
    np.testing.assert_allclose(seqs[0].relative[2], rel, rtol=2e-3)  # float16 on disk
    again = [load_synthetic_sequence(seq_dirs[0])]
    assert cache_teacher(teacher, again, IN, folder, progress=False) == {"frames_run": 0, "frames_cached": 5}
    with pytest.raises(ValueError, match="another teacher, size or sequence"):
        cache_teacher(teacher, [load_synthetic_sequence(seq_dirs[0])], (64, 96), folder, progress=False)
    # the triplets carry the teacher's map, flipped with the frames
    ds = TripletDataset(again, IN, augment=True, seed=0)
    for i in range(len(ds)):
        item = ds[i]
        flipped = not torch.equal(item["color"][1], TripletDataset(again, IN, augment=False)[i]["color"][1])
        want = rel[:, ::-1] if flipped else rel
        np.testing.assert_allclose(item["relative"][0].numpy(), want, rtol=2e-3)
    cfg = DepthTrainConfig(
        data=[str(seq_dirs[0])], out=str(tmp_path / "run"), epochs=1, batch_size=2, input_size=IN,
        photometric=0.0, supervised=0.0, relative_teacher=str(teacher), relative_weight=1.0, log_every=1,
    )  # fmt: skip
    train_depth(cfg, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [r["relative"] for r in rows if r["kind"] == "train"]
    assert losses and all(0 < v < 3 for v in losses), "the scale-and-shift-invariant loss is what it trains on"
    assert (tmp_path / "run" / "relative_teacher" / "0000_train.npy").is_file()


def test_a_metric_depth_model_is_not_taken_as_a_relative_teacher(tmp_path, seq_dirs):
    from perception_models.train.depth_data import load_synthetic_sequence
    from perception_models.train.relative_teacher import cache_teacher

    shipped = __import__("pathlib").Path(__file__).resolve().parents[2] / "models" / "depth.onnx"
    with pytest.raises(ValueError, match="must be a relative-depth model"):
        cache_teacher(shipped, [load_synthetic_sequence(seq_dirs[0])], IN, tmp_path / "c", progress=False)
