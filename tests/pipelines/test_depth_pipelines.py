"""Depth / odometry pipelines without ROS: the depth pipeline's resize and NaN handling, point
clouds against the pinhole model, metric scale from a ground plane and from a reference depth,
and the odometry estimators + tracker against the synthetic ground truth (true depth in, so the
numbers test the geometry, not a network)."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from const_models import const_model, write_card
from perception_nodes.backends import OnnxRuntimeBackend
from perception_nodes.pipelines.depth import DepthPipeline, colorize_depth, depth_to_points, scale_K
from perception_nodes.pipelines.metric_scale import ScaleEstimator, fit_ground_plane
from perception_nodes.pipelines.odometry import EssentialOdometry, HybridOdometry, Motion, OdometryTracker, PnPOdometry
from perception_nodes.transforms import R_BODY_OPTICAL, ground_normal_in_optical

H, W = 384, 512
K640 = np.array([[300.0, 0, 319.5], [0, 300.0, 239.5], [0, 0, 1]])


def _depth_model(tmp_path, value: np.ndarray, resize="stretch", **depth):
    path = const_model(tmp_path / "depth.onnx", {"depth": value.astype(np.float32).reshape(1, 1, H, W)})
    card = write_card(
        path, "depth", classes=[], depth={"min": 0.1, "max": 100.0, "scale_source": "supervised", **depth}
    )
    card.resize = resize
    return DepthPipeline(OnnxRuntimeBackend(path), card)


def test_depth_pipeline_resizes_to_the_input_and_marks_bad_pixels(tmp_path):
    net = np.tile(np.linspace(1.0, 10.0, W, dtype=np.float32), (H, 1))
    net[:8, :8] = np.nan
    net[-4:, -4:] = -1.0
    pipe = _depth_model(tmp_path, net)
    res = pipe.run(np.zeros((480, 640, 3), np.uint8))
    assert res.depth.shape == (480, 640) and res.depth.dtype == np.float32
    assert res.invalid_pixels == 64 + 16
    assert np.isnan(res.depth[0, 0]) and np.isnan(res.depth[-1, -1])
    row = res.depth[240]
    assert np.all(np.diff(row[20:-20]) >= 0) and abs(row[320] - 5.5) < 0.05  # the ramp, stretched


def test_canonical_camera_depth_is_converted_with_the_cameras_focal_length(tmp_path):
    """A canonical-camera model (card depth.canonical_focal, pixels at its input) predicts depth
    for that focal length; the pipeline multiplies by the camera's own focal at the network's
    input over it: a lens of twice the focal length sees the same picture twice as far away."""
    from perception_nodes.model_card import ModelCardError
    from perception_nodes.pipelines.depth import network_focal

    pipe = _depth_model(tmp_path, np.full((H, W), 4.0), canonical_focal=200.0)
    img = np.zeros((480, 640, 3), np.uint8)
    # 640x480 stretched to 512x384: fx 300 -> 240 at the input, fy 300 -> 240
    assert network_focal(K640, (480, 640), (H, W)) == pytest.approx(240.0)
    res = pipe.run(img, K=K640)
    assert res.focal_factor == pytest.approx(1.2)
    np.testing.assert_allclose(res.depth, 4.8, rtol=1e-5)
    np.testing.assert_allclose(res.network_depth, 4.8, rtol=1e-5)
    tele = K640.copy()
    tele[0, 0] = tele[1, 1] = 600.0
    assert pipe.run(img, K=tele).depth[240, 320] == pytest.approx(9.6, rel=1e-5)
    # anisotropic pixels: the geometric mean of the two scaled focal lengths
    assert network_focal(np.diag([400.0, 100.0, 1.0]), (480, 640), (H, W)) == pytest.approx(np.sqrt(320.0 * 80.0))
    # no intrinsics: the canonical camera's depth, and the result says so
    res = pipe.run(img)
    assert res.focal_factor is None and res.depth[240, 320] == pytest.approx(4.0)
    # a model without it is left as it is, with or without K
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad").mkdir()
    plain = _depth_model(tmp_path / "plain", np.full((H, W), 4.0))
    assert plain.run(img, K=tele).depth[240, 320] == pytest.approx(4.0) and plain.canonical_focal == 0.0
    with pytest.raises(ModelCardError, match="canonical_focal"):
        _depth_model(tmp_path / "bad", np.full((H, W), 4.0), canonical_focal=-1.0)


def test_depth_pipeline_refuses_a_letterbox_card(tmp_path):
    with pytest.raises(ValueError, match="stretch"):
        _depth_model(tmp_path, np.ones((H, W)), resize="letterbox")


def test_points_follow_the_pinhole_model_and_skip_invalid_depth():
    depth = np.full((480, 640), 4.0, np.float32)
    depth[0, 0] = np.nan
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 1] = 200
    xyz, col = depth_to_points(depth, K640, 4, rgb)
    assert len(xyz) == 120 * 160 - 1 and (col[:, 1] == 200).all()
    # pixel (4, 8): x = (4 - 319.5) / 300 * 4
    i = 2 - 1  # third point of the first row (u = 8); the NaN at u = 0 is skipped
    np.testing.assert_allclose(xyz[i], [(8 - 319.5) / 300 * 4, (0 - 239.5) / 300 * 4, 4.0], rtol=1e-5)
    far = depth_to_points(depth, K640, 4, max_depth=3.0)[0]
    assert len(far) == 0
    with pytest.raises(ValueError):
        depth_to_points(depth, K640, 0)


def test_scale_K_matches_resizing():
    K2 = scale_K(K640, 0.5, 0.5)
    assert K2[0, 0] == 150 and abs(K2[0, 2] - 159.5) < 1e-9


def test_colorize_depth_is_black_where_unknown():
    d = np.array([[1.0, np.nan], [10.0, 40.0]], np.float32)
    c = colorize_depth(d)
    assert c.shape == (2, 2, 3) and (c[0, 1] == 0).all() and not (c[0, 0] == c[1, 1]).all()


def test_depth_colours_adapt_to_the_scene_unless_the_range_is_fixed():
    """A room (0.5-4 m) and a road (5-80 m) each use the whole colour map (a fixed 0.5-50 m scale
    painted the road almost uniformly blue); a fixed range is honoured."""
    room = np.linspace(0.5, 4.0, 400, dtype=np.float32).reshape(20, 20)
    road = np.linspace(5.0, 80.0, 400, dtype=np.float32).reshape(20, 20)
    spread = {}
    for name, d in (("room", room), ("road", road)):
        c = colorize_depth(d).reshape(-1, 3).astype(int)
        near, far = c[:10].mean(0), c[-10:].mean(0)
        assert near[0] > near[2] and far[2] > far[0], name  # near red, far blue
        spread[name] = len({tuple(x) for x in c})
    assert spread["road"] > 100, "the road's depths get distinct colours"
    fixed = colorize_depth(road, 0.5, 50.0).reshape(-1, 3).astype(int)
    assert len({tuple(x) for x in fixed[-150:]}) == 1, "past 50 m everything is the far colour"


def _ground_depth(height=1.5, scale=1.0):
    """Depth of a flat ground ``height`` below a level camera (sky = NaN), times ``scale``."""
    v = np.arange(480, dtype=np.float64)[:, None] * np.ones((1, 640))
    with np.errstate(divide="ignore"):
        z = np.where(v > 239.5 + 5, height * 300.0 / (v - 239.5), np.nan)
    return (z * scale).astype(np.float32)


def test_ground_plane_gives_the_scale_from_the_camera_height():
    d = _ground_depth(1.5, scale=0.25)  # a network that is 4x too small
    fit = fit_ground_plane(d, K640)
    assert fit is not None and abs(fit.distance - 0.375) < 0.01 and fit.normal[1] < -0.99
    est = ScaleEstimator("camera_height", camera_height=1.5, smoothing=1.0)
    assert abs(est.update_from_ground(d, K640) - 4.0) < 0.1
    # a frame without ground keeps the last scale and says why
    assert abs(est.update_from_ground(np.full((480, 640), np.nan, np.float32), K640) - 4.0) < 0.1
    assert "no ground plane" in est.status


def _ransac_one_at_a_time(pts, threshold, max_tilt_deg=30.0, iterations=100, seed=0):
    """The plane RANSAC as first written (a loop over hypotheses): the reference for the batched one."""
    rng = np.random.default_rng(seed)
    up, cos_max = np.array([0.0, -1.0, 0.0]), np.cos(np.radians(max_tilt_deg))
    best = None
    for _ in range(iterations):
        a, b, c = pts[rng.choice(len(pts), 3, replace=False)]
        n = np.cross(b - a, c - a)
        if np.linalg.norm(n) < 1e-12:
            continue
        n = n / np.linalg.norm(n)
        n = -n if n @ up < 0 else n
        if n @ up < cos_max:
            continue
        d = -float(n @ a)
        count = int((np.abs(pts @ n + d) < threshold).sum())
        if best is None or count > best[0]:
            best = (count, n, d)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_plane_ransac_batched_picks_the_plane_the_loop_picked(seed):
    """All hypotheses scored in one product: the same draws, the same winner (the first of the
    best), so the refined plane is the loop's to the last bit."""
    from perception_nodes.pipelines.metric_scale import fit_plane_ransac

    rng = np.random.default_rng(10 + seed)
    ground = np.column_stack([rng.uniform(-5, 5, 600), 1.5 + rng.normal(0, 0.02, 600), rng.uniform(2, 20, 600)])
    wall = np.column_stack([rng.uniform(-5, 5, 300), rng.uniform(-2, 1.5, 300), np.full(300, 12.0)])
    clutter = rng.uniform([-5, -2, 2], [5, 1.5, 20], (200, 3))
    pts = np.vstack([ground, wall, clutter])
    ref = _ransac_one_at_a_time(pts, 0.05, seed=seed)
    fit = fit_plane_ransac(pts, 0.05, seed=seed)
    inl = pts[np.abs(pts @ ref[1] + ref[2]) < 0.05]
    centre = inl.mean(axis=0)
    n = np.linalg.svd(inl - centre, full_matrices=False)[2][-1]
    n = n if n @ np.array([0.0, -1.0, 0.0]) > 0 else -n
    assert fit is not None and fit.inliers == len(inl) and fit.inliers >= 550
    np.testing.assert_array_equal(fit.normal, n)
    assert fit.distance == abs(float(n @ centre)) and abs(fit.distance - 1.5) < 0.02


def test_scale_from_a_reference_depth_and_parameter_checks():
    d = _ground_depth(1.5)
    est = ScaleEstimator("depth_topic", smoothing=1.0)
    assert est.scale is None
    assert abs(est.update_from_reference(d, 3.0 * d) - 3.0) < 1e-6
    est2 = ScaleEstimator("depth_topic", smoothing=0.5)
    est2.update_from_reference(d, 2.0 * d)
    est2.update_from_reference(d, 8.0 * d)
    assert abs(est2.scale - 4.0) < 1e-6  # geometric mean of 2 and 8
    assert ScaleEstimator("model").scale == 1.0
    with pytest.raises(ValueError, match="camera_height"):
        ScaleEstimator("camera_height")
    with pytest.raises(ValueError, match="scale_source"):
        ScaleEstimator("lidar")


@pytest.fixture(scope="module")
def driving(tmp_path_factory):
    from perception_models.data.synth import SynthConfig, SyntheticSequence
    from perception_models.data.writers import write_sequence
    from perception_models.data.readers.tum import read_tum_trajectory
    from perception_models.train.depth_data import load_synthetic_sequence

    root = tmp_path_factory.mktemp("vo") / "driving"
    write_sequence(
        SyntheticSequence(SynthConfig(preset="driving", seed=77, frames=12, width=320, height=240, randomization=0.3)),
        root,
        flow=False,
        workers=1,
        progress=False,
    )
    seq = load_synthetic_sequence(root)
    times, poses = read_tum_trajectory(root / "trajectory_tum.txt")
    return seq, times, poses


def _run(est, seq, times, use_depth=True):
    from perception_models.data.readers.common import read_rgb
    from perception_models.data.readers.depth import read_nyu_depth

    tracker = OdometryTracker(T_odom_camera0=np.eye(4))
    for i in range(len(seq.frames)):
        depth = read_nyu_depth(seq.depth[i]) if use_depth else None
        st = tracker.update(int(times[i] * 1e9), est.estimate(read_rgb(seq.frames[i]), depth, seq.K))
    return tracker, np.stack([T for _s, T in st.path])


@pytest.mark.parametrize(
    "estimator,max_ate,max_length_error",
    [(PnPOdometry, 3.0, 0.08), (EssentialOdometry, 8.0, 0.25), (HybridOdometry, 8.0, 0.25)],
)
def test_odometry_with_true_depth_tracks_the_ground_truth(driving, estimator, max_ate, max_length_error):
    """12 frames, 9.4 m of driving; measured: PnP 1.5 % ATE (SE(3)), essential 4.2 % (its
    translation length comes from triangulated points, which is noisier)."""
    from perception_models.metrics.odometry import trajectory_errors

    seq, times, poses = driving
    tracker, est = _run(estimator(), seq, times)
    gt = np.linalg.inv(poses[0]) @ poses
    e = trajectory_errors(times, est, gt, align="se3")
    assert tracker.state.skipped == 0, tracker.state.status
    # metric without any alignment of scale: the depth gives it
    assert e["ate_percent_of_path"] < max_ate, e
    assert abs(np.linalg.norm(est[-1, :3, 3]) / np.linalg.norm(gt[-1, :3, 3]) - 1) < max_length_error


def test_hybrid_takes_its_length_from_the_ground_when_the_camera_height_is_known(driving):
    """scale_source camera_height: the essential motion's length comes from aligning the ground
    of consecutive frames (GroundScale), so a depth map at half the true scale does not halve
    the trajectory as it does without the height."""
    from perception_models.metrics.odometry import trajectory_errors

    seq, times, poses = driving
    gt = np.linalg.inv(poses[0]) @ poses
    height = float(poses[0][2, 3])

    class HalfDepth(HybridOdometry):
        def estimate(self, rgb, depth, K):
            m = super().estimate(rgb, depth * 0.5, K)
            self.methods.append(m.method)
            return m

    lengths = {}
    for h in (0.0, height):
        est = HalfDepth(camera_height=h)
        est.methods = []
        tracker, traj = _run(est, seq, times)
        assert tracker.state.skipped == 0, tracker.state.status
        lengths[h] = np.linalg.norm(traj[-1, :3, 3]) / np.linalg.norm(gt[-1, :3, 3])
        if h:
            assert sum("ground scale" in m for m in est.methods) >= len(seq.frames) - 3, est.methods
            e = trajectory_errors(times, traj, gt, align="se3")
    assert abs(lengths[0.0] - 0.5) < 0.15, lengths  # the depth's scale, wrong by 2x
    assert abs(lengths[height] - 1.0) < 0.1, lengths
    assert e["ate_percent_of_path"] < 8.0, e


def _ground_frames(step_m, height=1.5, size=(240, 320), seed=0):
    """Two frames of a textured flat ground under a grey sky, the camera ``height`` above it
    moving ``step_m`` forward, and the first frame's depth (NaN in the sky)."""
    import cv2

    H, W = size
    K = np.array([[250.0, 0, (W - 1) / 2], [0, 250.0, (H - 1) / 2], [0, 0, 1]])
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (H, W)).astype(np.float32), (0, 0), 1.5)
    tex = np.clip((tex - tex.mean()) * 4 + 128, 0, 255)
    v = np.arange(H)[:, None] * np.ones((1, W))
    y = (v - K[1, 2]) / K[1, 1]
    ground = y > 0.05
    prev = np.where(ground, tex, 170.0).astype(np.uint8)
    depth = np.where(ground, height / np.maximum(y, 1e-6), np.nan).astype(np.float32)
    n, t = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])  # x_cur = x_prev + step * t
    Hpix = K @ (np.eye(3) + step_m / height * np.outer(t, n)) @ np.linalg.inv(K)
    cur = cv2.warpPerspective(prev, Hpix, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return np.dstack([prev] * 3), np.dstack([cur] * 3), depth, K, t


@pytest.mark.parametrize("step_m", [0.3, 1.1])
def test_ground_scale_measures_the_step_from_the_ground_alone(step_m):
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    prev, cur, depth, K, t = _ground_frames(step_m)
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)
    gs = GroundScale(1.5, smoothing=1.0)
    gs.step(prev)
    gs.step(cur)
    s = gs.scale(g, K, depth * 3.0)  # the depth's own scale does not matter, only its plane
    assert s is not None and abs(s / step_m - 1) < 0.03, (s, gs.status)
    assert gs.status.startswith("ground:"), gs.status


def test_ground_scale_takes_the_ground_from_a_segmenter_without_the_depth():
    """A segmenter's ground (here at half the image's size) and the mounting's normal give the
    length with no depth at all; without the mounting the depth's plane still gives the normal."""
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    prev, cur, depth, K, t = _ground_frames(0.8)
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)
    labels = np.isfinite(depth)[::2, ::2]  # what the segmenter calls ground, at its own size
    nothing = np.full_like(depth, np.nan)

    def length(depth_map, ground, normal):
        gs = GroundScale(1.5, smoothing=1.0, normal=normal)
        gs.step(prev)
        gs.step(cur)
        return gs.scale(g, K, depth_map, ground=ground), gs.status

    down = np.array([0.0, 1.0, 0.0])
    s, status = length(nothing, labels, down)
    assert s is not None and abs(s / 0.8 - 1) < 0.03, (s, status)
    s, status = length(nothing, None, down)  # the depth's plane: none without depth
    assert s is None and status == "no ground plane in the depth", status
    s, status = length(depth, labels, None)  # no mounting: the depth's plane gives the normal
    assert s is not None and abs(s / 0.8 - 1) < 0.03, (s, status)
    s, status = length(nothing, labels, None)
    assert s is None and status == "no ground plane in the depth", status
    s, status = length(nothing, np.zeros_like(labels), down)
    assert s is None and status.startswith("too little ground (0 px"), status
    # the segmenter's ground above the horizon (a mislabelled sky) is not ground
    s, status = length(nothing, np.ones_like(labels), down)
    assert s is not None and abs(s / 0.8 - 1) < 0.03, (s, status)


def _road_with_pavements(step_m, height=1.5, kerb=0.25, half_road=2.5, size=(240, 320)):
    """Two frames of a camera ``height`` above a road ``2 half_road`` wide between pavements
    ``kerb`` higher, textured by one random pattern in world coordinates (the asphalt at a tenth of
    the paving stones' contrast, as on KITTI), the camera moving ``step_m`` forward; and what a
    segmenter calls ground (road and pavements, below the horizon)."""
    import cv2

    H, W = size
    K = np.array([[160.0, 0, (W - 1) / 2], [0, 160.0, (H - 1) / 2], [0, 0, 1]])  # 90° wide, as KITTI's
    rng = np.random.default_rng(3)
    tex = cv2.GaussianBlur(rng.uniform(0, 255, (2000, 800)).astype(np.float32), (0, 0), 2.0)
    tex = np.clip((tex - tex.mean()) * 5 + 128, 0, 255).astype(np.float32)  # 2.5 cm per texel
    x = (np.arange(W)[None, :] - K[0, 2]) / K[0, 0] * np.ones((H, 1))
    y = (np.arange(H)[:, None] - K[1, 2]) / K[1, 1] * np.ones((1, W))
    below = y > 0.03
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.where(np.abs(x * (height - kerb) / y) > half_road, height - kerb, height)  # the plane each ray hits
        Z = dist / y
    X = x * Z

    def frame(z0):
        mx = ((X + 10.0) / 0.025).astype(np.float32)
        my = ((Z + z0) / 0.025).astype(np.float32)
        img = cv2.remap(tex, np.where(below, mx, 0), np.where(below, my, 0), cv2.INTER_LINEAR)
        img = np.where(dist < height, img, 128 + (img - 128) / 10)
        return np.dstack([np.where(below, img, 170.0).astype(np.uint8)] * 3)

    return frame(0.0), frame(step_m), below, K


def test_ground_scale_aligns_the_road_ahead_not_the_raised_pavements_beside_it():
    """Pavements 0.25 m above the road that the segmenter calls ground too make the steps
    1.5 / 1.25 = 1.2x too long when all the ground is aligned; the 2 m corridor ahead is road."""
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    prev, cur, ground, K = _road_with_pavements(0.8)
    g = TwoViewGeometry(np.eye(3), np.array([0.0, 0.0, -1.0]), np.zeros((0, 2)), np.zeros((0, 2)), 0)
    nothing = np.full(ground.shape, np.nan, np.float32)
    lengths = {}
    for corridor in (0.0, 2.0):
        gs = GroundScale(1.5, smoothing=1.0, normal=np.array([0.0, 1.0, 0.0]), corridor=corridor)
        gs.step(prev)
        gs.step(cur)
        lengths[corridor] = gs.scale(g, K, nothing, ground=ground)
    assert lengths[2.0] is not None and abs(lengths[2.0] / 0.8 - 1) < 0.03, lengths
    print(f"steps / true: all the ground {lengths[0.0] / 0.8:.3f}, the 2 m corridor {lengths[2.0] / 0.8:.3f}")
    assert lengths[0.0] is not None and lengths[0.0] / 0.8 > 1.06, lengths
    with pytest.raises(ValueError, match="corridor"):
        GroundScale(1.5, corridor=-1.0)


def test_hybrid_takes_the_previous_frames_ground_labels_over_a_wrong_depth(driving):
    """With the camera's height and mounting known and the renderer's ground labels passed each
    frame, the hybrid's lengths do not depend on the depth model: a constant depth map (the
    shipped network on an unfamiliar camera is little better) gives the true path length."""
    seq, times, poses = driving
    gt = np.linalg.inv(poses[0]) @ poses
    height, normal = float(poses[0][2, 3]), ground_normal_in_optical(poses[0])
    labels = sorted((seq.frames[0].parent.parent / "labels").glob("*.png"))
    assert len(labels) == len(seq.frames)
    ground_id = 1  # the renderer's CLASSES: sky, ground, ...

    def run(with_labels):
        from perception_models.data.readers.common import read_rgb

        est = HybridOdometry(camera_height=height, ground_normal=normal)
        tracker, methods = OdometryTracker(T_odom_camera0=np.eye(4)), []
        for i in range(len(seq.frames)):
            rgb = read_rgb(seq.frames[i])
            flat = np.full(rgb.shape[:2], 5.0, np.float32)
            mask = cv2.imread(str(labels[i]), cv2.IMREAD_UNCHANGED) == ground_id if with_labels else None
            m = est.estimate(rgb, flat, seq.K, ground_mask=mask)
            methods.append(m.method)
            st = tracker.update(int(times[i] * 1e9), m)
        traj = np.stack([T for _s, T in st.path])
        return np.linalg.norm(traj[-1, :3, 3]) / np.linalg.norm(gt[-1, :3, 3]), methods

    length, methods = run(True)
    assert sum("ground scale" in m for m in methods) >= len(seq.frames) - 3, methods
    assert abs(length - 1.0) < 0.1, length
    flat_length, _ = run(False)  # the constant depth's plane (if any) and its scale
    print(f"path length / true: ground labels {length:.3f}, constant depth's plane {flat_length:.3f}")
    assert abs(flat_length - 1.0) > 2 * abs(length - 1.0), (flat_length, length)


def test_ground_scale_takes_the_normal_from_the_mounting_over_the_depths_plane():
    """A depth network's ground plane a few degrees off biases the length; the camera's mounting
    (the normal a rigidly mounted camera sees the ground under) does not."""
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    prev, cur, depth, K, t = _ground_frames(0.8)
    H, W = depth.shape
    y = (np.arange(H)[:, None] * np.ones((1, W)) - K[1, 2]) / K[1, 1]
    a = np.radians(4.0)
    yn = y * np.cos(a) + np.sin(a)  # rays . normal tilted 4 degrees down
    tilted = np.where(np.isfinite(depth) & (yn > 0.02), 1.5 / np.maximum(yn, 1e-6), np.nan).astype(np.float32)
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)
    lengths = {}
    for name, normal in (("depth", None), ("mounting", np.array([0.0, 1.0, 0.0]))):
        gs = GroundScale(1.5, smoothing=1.0, normal=normal)
        gs.step(prev)
        gs.step(cur)
        lengths[name] = gs.scale(g, K, tilted) / 0.8
    assert abs(lengths["mounting"] - 1) < 0.03 and abs(lengths["depth"] - 1) > 0.1, lengths
    with pytest.raises(ValueError, match="point down"):
        GroundScale(1.5, normal=np.array([0.0, 0.0, 1.0]))


def test_the_camera_height_scale_hands_its_ground_plane_to_the_ground_scale():
    """The camera_height scale fits the ground plane of every depth map; the hybrid's GroundScale
    takes that fit (in the scaled depth's units) instead of fitting the same plane again."""
    from perception_nodes.pipelines.metric_scale import PlaneFit
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    prev, cur, depth, K, t = _ground_frames(0.8)
    raw = depth * 0.25  # a network 4x too small
    scale = ScaleEstimator("camera_height", camera_height=1.5, smoothing=1.0)
    s = scale.update_from_ground(raw, K)
    plane = scale.ground_plane(s)
    assert plane is not None and abs(plane.distance - 1.5) < 0.02 and plane.normal[1] < -0.99
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)

    def length(given):
        gs = GroundScale(1.5, smoothing=1.0)
        gs.step(prev)
        gs.step(cur)
        return gs.scale(g, K, raw * np.float32(s), given), gs.status

    (own, _), (shared, _) = length(None), length(plane)
    assert own is not None and shared is not None and abs(shared / own - 1) < 0.01, (own, shared)
    # the plane given is the one used: at twice the ground's distance no pixel lies on it
    wrong, status = length(PlaneFit(plane.normal, plane.distance * 2, plane.inliers))
    assert wrong is None and "too little ground" in status, status
    # a frame without ground has no plane to hand on (not the last frame's)
    scale.update_from_ground(np.full_like(raw, np.nan), K)
    assert scale.ground_plane(s) is None
    assert ScaleEstimator("model").ground_plane(1.0) is None


def test_the_ground_scales_refinement_never_makes_a_nan_length():
    """The fine search's parabola: its vertex between the samples, and no offset where a cost next
    to the least is infinite (the warped ground left the picture); KITTI frames with little ground
    once gave a NaN length here, and the smoothed length stayed NaN from then on."""
    from perception_nodes.pipelines.ground_scale import parabola_offset

    assert parabola_offset(2.0, 1.0, 2.0) == 0.0
    assert 0 < parabola_offset(3.0, 1.0, 2.0) <= 0.5 and parabola_offset(2.0, 1.0, 3.0) < 0
    assert parabola_offset(np.inf, 1.0, 2.0) == 0.0 and parabola_offset(2.0, 1.0, np.inf) == 0.0
    assert parabola_offset(1.0, 1.0, 1.0) == 0.0  # flat: no vertex


def test_ground_scale_validates_gates_and_holds_the_last_length():
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    with pytest.raises(ValueError, match="camera_height"):
        GroundScale(0.0)
    with pytest.raises(ValueError, match="smoothing"):
        GroundScale(1.5, smoothing=0.0)
    with pytest.raises(ValueError, match="min_step"):
        GroundScale(1.5, min_step=2.0, max_step=1.0)
    prev, cur, depth, K, t = _ground_frames(0.5)
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)
    gs = GroundScale(1.5, smoothing=1.0, hold=2)
    gs.step(prev)
    gs.step(cur)
    assert abs(gs.scale(g, K, depth) - 0.5) < 0.02, gs.status
    # a step 2.2x the running one is an outlier twice, then the new speed
    prev2, cur2, depth2, _, _ = _ground_frames(1.1, seed=1)
    for i in range(3):
        gs.step(prev2)
        gs.step(cur2)
        s = gs.scale(g, K, depth2)
        if i < 2:
            assert abs(s - 0.5) < 0.02 and gs.measured is None and "rejected" in gs.status, gs.status
    assert abs(s - 1.1) < 0.04, gs.status
    # no ground in the depth (a wall ahead): the last length is held for `hold` frames
    wall = np.full_like(depth, 4.0)
    for _ in range(2):
        gs.step(prev)
        gs.step(cur)
        assert abs(gs.scale(g, K, wall) - s) < 1e-9 and "no ground plane" in gs.status, gs.status
    gs.step(prev)
    assert gs.scale(g, K, wall) is None


def test_ground_scale_starts_over_from_a_new_speed_only_when_three_recent_lengths_agree():
    """A wrong first length (the alignment locked onto a repeated pattern) is left for the true
    one as soon as three recent lengths agree on it, at their median rather than smoothed slowly
    towards it; rejected lengths that disagree with each other, or come too far apart, are
    outliers and the running length stays."""
    from perception_nodes.pipelines.odometry import GroundScale, TwoViewGeometry

    with pytest.raises(ValueError, match="switch_frames"):
        GroundScale(1.5, switch_frames=2)
    frames = {m: _ground_frames(m, seed=i) for i, m in enumerate((0.3, 0.6, 1.1))}
    K, t = frames[0.3][3], frames[0.3][4]
    g = TwoViewGeometry(np.eye(3), t, np.zeros((0, 2)), np.zeros((0, 2)), 0)

    def measure(gs, m):
        prev, cur, depth = frames[m][:3]
        gs.step(prev)
        gs.step(cur)
        return gs.scale(g, K, depth)

    gs = GroundScale(1.5)  # smoothing 0.3
    assert abs(measure(gs, 0.3) - 0.3) < 0.02, gs.status
    lengths = [measure(gs, 1.1) for _ in range(3)]
    assert all(abs(s - 0.3) < 0.02 for s in lengths[:2]), lengths  # outliers twice: the running length holds
    assert abs(lengths[2] - 1.1) < 0.04 and gs.status.startswith("ground: new speed"), (lengths, gs.status)
    # three outliers that disagree (0.3, 0.6 m against 1.1 m running: 0.69 apart in log) do not switch
    for m in (0.3, 0.6, 0.3):
        s = measure(gs, m)
        assert abs(s - 1.1) < 0.04 and "rejected" in gs.status, gs.status
    # nor do three agreeing ones spread over more than switch_frames frames (each measurement
    # here steps two frames, so three span five)
    gs = GroundScale(1.5, switch_frames=4)
    measure(gs, 1.1)
    for _ in range(3):
        s = measure(gs, 0.3)
        assert abs(s - 1.1) < 0.04 and "rejected" in gs.status, gs.status


def test_tracker_skips_resets_and_inflates_covariance():
    tr = OdometryTracker(max_gap_s=0.5, max_speed=10.0)
    s = tr.update(0, None)
    assert s.status == "initialised"
    np.testing.assert_allclose(s.T_odom_camera[:3, :3], R_BODY_OPTICAL)  # odom: x forward, z up
    step = np.eye(4)
    step[2, 3] = 0.5  # 0.5 m forward along the optical axis in 0.1 s
    s = tr.update(100_000_000, Motion(step))
    assert s.ok and abs(s.T_odom_camera[0, 3] - 0.5) < 1e-12  # forward = odom x
    assert abs(s.twist[2] - 5.0) < 1e-9
    cov_ok = s.pose_covariance.copy()
    bad = step.copy()
    bad[0, 3] = np.nan
    s = tr.update(200_000_000, Motion(bad))
    assert not s.ok and "NaN" in s.status and s.pose_covariance[0, 0] > 50 * cov_ok[0, 0]
    s = tr.update(300_000_000, Motion(step * 0 + np.eye(4) + np.diag([0, 0, 0, 0]) + _translation(5.0)))
    assert not s.ok and "implausible" in s.status
    assert tr.needs_reset(2_000_000_000).startswith("time gap")
    s = tr.update(2_000_000_000, Motion(step))
    assert not s.ok and s.resets == 1 and s.frames == 5
    s = tr.update(1_000_000_000, Motion(step))
    assert not s.ok and "stamp" in s.status
    s = tr.update(2_100_000_000, Motion(None, reason="PnP RANSAC: 3 inliers < 20"))
    assert not s.ok and "PnP" in s.status
    assert abs(tr.state.T_odom_camera[0, 3] - 0.5) < 1e-12  # none of the failures moved it


def _translation(z):
    T = np.zeros((4, 4))
    T[2, 3] = z
    return T


def test_hybrid_falls_back_to_pnp_where_the_essential_matrix_has_no_parallax():
    """A camera that did not move: no baseline for the essential matrix (its scale needs parallax),
    PnP on the same matches finds the identity."""
    tex = cv2.resize(
        np.random.default_rng(3).integers(0, 256, (60, 80, 3), dtype=np.uint8),
        (320, 240),
        interpolation=cv2.INTER_NEAREST,
    )
    depth = np.full((240, 320), 6.0, np.float32)
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    est = HybridOdometry()
    assert est.estimate(tex, depth, K).reason == "first frame"
    essential_alone = EssentialOdometry()
    essential_alone.estimate(tex, depth, K)
    assert essential_alone.estimate(tex, depth, K).T_prev_cur is None  # what the baseline does here
    m = est.estimate(tex, depth, K)
    assert m.method == "hybrid (pnp)" and m.inliers >= 20
    np.testing.assert_allclose(m.T_prev_cur, np.eye(4), atol=1e-3)


def test_pnp_reports_too_few_matches_on_a_blank_image():
    est = PnPOdometry()
    blank = np.full((240, 320, 3), 90, np.uint8)
    depth = np.full((240, 320), 5.0, np.float32)
    assert est.estimate(blank, depth, K640).reason == "first frame"
    m = est.estimate(blank, depth, K640)
    assert m.T_prev_cur is None and m.reason


def test_learned_matcher_feeds_pnp_with_the_matching_models_keypoints(driving):
    """pnp_learned: PnP on the matching model's keypoints. A stand-in 'model' that returns each
    frame's true corners (Shi-Tomasi) with descriptors that identify the same scene point, so the
    test checks the plumbing (keypoints in image pixels, mutual-NN pairs, PnP) on real geometry."""
    from perception_models.data.readers.common import read_rgb
    from perception_models.data.readers.depth import read_nyu_depth
    from perception_models.metrics.odometry import trajectory_errors
    from perception_nodes.pipelines.matching import Features
    from perception_nodes.pipelines.odometry import LearnedMatcher

    seq, times, poses = driving
    sift = __import__("cv2").SIFT_create(500)

    class SiftAsModel:  # descriptors from SIFT, normalised: a 'model' with real, repeatable features
        def run(self, rgb):
            kp, d = sift.detectAndCompute(__import__("cv2").cvtColor(rgb, __import__("cv2").COLOR_RGB2GRAY), None)
            d = d / np.linalg.norm(d, axis=1, keepdims=True)
            return Features(
                np.array([k.pt for k in kp], np.float32), np.ones(len(kp), np.float32), d.astype(np.float32)
            )

    est = PnPOdometry(matcher=LearnedMatcher(SiftAsModel(), ratio=0.8))
    assert est.method == "pnp_learned"
    tracker = OdometryTracker(T_odom_camera0=np.eye(4))
    for i in range(len(seq.frames)):
        st = tracker.update(
            int(times[i] * 1e9), est.estimate(read_rgb(seq.frames[i]), read_nyu_depth(seq.depth[i]), seq.K)
        )
    est_poses = np.stack([T for _s, T in st.path])
    e = trajectory_errors(times, est_poses, np.linalg.inv(poses[0]) @ poses, align="se3")
    assert st.skipped == 0 and e["ate_percent_of_path"] < 3.0, e


def test_ground_normal_from_the_camera_mount():
    """A level camera sees the ground straight down its optical y; pitched down by p, the normal
    tilts towards its optical z (the same normal the node builds from camera_pitch_deg)."""
    from perception_nodes.transforms import pose_from_xyzrpy
    from perception_nodes.transforms import T_BODY_OPTICAL, ground_normal_in_optical

    assert np.allclose(ground_normal_in_optical(T_BODY_OPTICAL), [0.0, 1.0, 0.0])
    p = np.radians(7.0)
    mount = pose_from_xyzrpy([0.3, 0.0, 1.2, 0.0, p, 0.0]) @ T_BODY_OPTICAL
    assert np.allclose(ground_normal_in_optical(mount), [0.0, np.cos(p), np.sin(p)])


def test_the_trackers_history_is_bounded_for_a_node_that_runs_for_days():
    """OdometryTracker kept every pose (~360 B a frame, ~0.9 GB a day at 30 Hz)."""

    tr = OdometryTracker(T_odom_camera0=np.eye(4), history=5)
    step = np.eye(4)
    step[2, 3] = 0.1
    for i in range(1000):
        st = tr.update(i * 33_000_000, Motion(step, 50))
    assert len(st.path) == 5 and st.frames == 1000
    assert st.path[-1][0] == 999 * 33_000_000 and np.isclose(st.T_odom_camera[2, 3], 99.9)
    assert len(OdometryTracker(T_odom_camera0=np.eye(4)).update(0, None).path) == 1  # None: keep all
    with pytest.raises(ValueError, match="history"):
        OdometryTracker(history=0)


def test_the_tracker_says_why_it_skipped_a_frame_with_an_enum():
    """Skip kinds are values to branch on (resets counted by kind), not words matched by substring."""
    from perception_nodes.pipelines.odometry import FIRST_FRAME, Skip

    tr = OdometryTracker(max_gap_s=0.5, max_speed=10.0, T_odom_camera0=np.eye(4))
    step = np.eye(4)
    step[2, 3] = 0.1
    ms = 1_000_000
    assert tr.update(0, None).skip is Skip.INITIALISED
    assert tr.update(100 * ms, Motion(None, reason=FIRST_FRAME)).skip is Skip.FIRST_FRAME
    assert tr.update(200 * ms, Motion(None, 3, "3 matches < 20")).skip is Skip.NO_MOTION
    assert tr.update(300 * ms, Motion(step, 50)).skip is Skip.NONE
    nan = step.copy()
    nan[0, 3] = np.nan
    assert tr.update(400 * ms, Motion(nan, 50)).skip is Skip.NONFINITE
    fast = step.copy()
    fast[2, 3] = 5.0  # 5 m in 0.1 s > 10 m/s
    assert tr.update(500 * ms, Motion(fast, 50)).skip is Skip.IMPLAUSIBLE
    assert tr.state.resets == 0
    assert tr.update(2000 * ms, Motion(step, 50)).skip is Skip.TIME_GAP
    assert tr.update(1900 * ms, Motion(step, 50)).skip is Skip.STAMP_ORDER
    assert tr.state.resets == 2 and tr.state.skipped == 6  # every update after the first but the good one
