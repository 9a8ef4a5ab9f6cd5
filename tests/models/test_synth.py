"""The synthetic scene generator: geometry is exact, ground truth agrees with itself, seeds are
reproducible. Small images keep this fast; the renderer has no resolution-specific code."""

from __future__ import annotations

import numpy as np
import pytest

from perception_models.data.synth import CLASSES, THING_CLASSES, SynthConfig, SyntheticSequence
from perception_models.data.synth.correspondence import NO_DEPTH, VISIBLE
from perception_models.data.synth.geometry import (
    R_BODY_OPTICAL,
    body_to_optical_pose,
    intrinsics,
    invert_pose,
    make_pose,
    matrix_to_quaternion,
    pixel_rays,
    project,
    quaternion_to_matrix,
    rpy_to_matrix,
)
from perception_models.data.synth.render import Renderer
from perception_models.data.synth.scene import CLASS_ID, Lighting, Part, Scene, SceneObject, Trajectory
from perception_models.data.synth.sequence import boxes_from_instances

W, H = 192, 144


@pytest.fixture(scope="module", params=["driving", "indoor"])
def sequence(request):
    seq = SyntheticSequence(SynthConfig(preset=request.param, seed=11, frames=8, width=W, height=H))
    frames = list(seq.frames())
    return seq, frames


def _back_to_source(seq, a, b, uv_b, depth_b, inst_b):
    """World points seen at uv_b in frame b, carried to frame a's time and projected into a."""
    rays = pixel_rays(seq.K, uv_b[:, 0], uv_b[:, 1]) * depth_b[:, None]
    X = rays @ b.T_world_cam[:3, :3].T + b.T_world_cam[:3, 3]
    for inst, (M_a, M_b) in seq.motions(a, b).items():
        sel = inst_b == inst
        M = M_a @ invert_pose(M_b)
        X[sel] = X[sel] @ M[:3, :3].T + M[:3, 3]
    uv_a, _ = project(seq.K, a.T_world_cam, X)
    return uv_a


def test_point_seen_in_two_frames_lands_where_depth_and_pose_predict(sequence):
    seq, frames = sequence
    a, b = frames[0], frames[4]
    flow, status = seq.correspondence(a, b)
    vis = np.argwhere(status == VISIBLE)
    assert len(vis) > 0.2 * H * W, "too few visible correspondences to test"
    rng = np.random.default_rng(0)
    pick = vis[rng.choice(len(vis), size=min(800, len(vis)), replace=False)]
    uv_a = pick[:, ::-1].astype(np.float64)
    uv_b = uv_a + flow[pick[:, 0], pick[:, 1]]
    # an independent ray cast through the predicted (sub-pixel) position in frame b
    depth_b, inst_b = seq.renderer.cast(b.T_world_cam, b.time, uv_b)
    back = _back_to_source(seq, a, b, uv_b, depth_b, inst_b)
    err = np.linalg.norm(back - uv_a, axis=1)
    assert np.median(err) < 0.01
    # pixels next to a depth edge may see the other surface at the exact sub-pixel position
    assert np.mean(err < 0.5) > 0.97, np.percentile(err, [50, 90, 99])


def test_moving_objects_are_flagged_and_their_flow_follows_them():
    seq = SyntheticSequence(SynthConfig(preset="indoor", seed=4, frames=12, width=W, height=H))
    movers = {o.instance for o in seq.scene.objects if o.dynamic}
    assert movers, "seed 4 should have a walking person"
    for i in range(len(seq)):
        a = seq.frame(i)
        if a.dynamic.sum() > 30:
            break
    else:
        pytest.fail("no frame shows the moving object")
    assert set(np.unique(a.instance[a.dynamic])) <= movers
    b = seq.frame(i + 1 if i + 1 < len(seq) else i - 1)
    flow, status = seq.correspondence(a, b)
    sel = np.argwhere(a.dynamic & (status == VISIBLE))
    assert len(sel) > 10
    uv_a = sel[:, ::-1].astype(np.float64)
    uv_b = uv_a + flow[sel[:, 0], sel[:, 1]]
    depth_b, inst_b = seq.renderer.cast(b.T_world_cam, b.time, uv_b)
    assert np.mean(inst_b == a.instance[sel[:, 0], sel[:, 1]]) > 0.95
    err = np.linalg.norm(_back_to_source(seq, a, b, uv_b, depth_b, inst_b) - uv_a, axis=1)
    assert np.mean(err < 0.5) > 0.95
    # ignoring the object's own motion would put its pixels elsewhere
    from perception_models.data.synth.correspondence import correspondence

    flow_static, _ = correspondence(seq.K, a.depth, a.instance, a.T_world_cam, b.T_world_cam, b.depth, b.instance, {})
    moved = np.linalg.norm(flow[sel[:, 0], sel[:, 1]] - flow_static[sel[:, 0], sel[:, 1]], axis=1)
    assert np.median(moved) > 0.2, "object motion should change the flow of its pixels"


def _plane_scene(objects=()):
    from perception_models.data.synth.scene import Material

    tile = np.full((8, 8, 3), 0.5, np.float32)
    mat = Material([tile, tile[:4, :4]], 1.0)
    light = Lighting(np.array([0, 0, 1.0]), np.ones(3), np.ones(3) * 0.3, np.ones(3), np.ones(3))
    return Scene("test", 0, list(objects), [mat], 0, light, Trajectory(np.zeros(1), np.eye(4)[None]), far=1e4)


def test_depth_agrees_with_the_analytic_distance_to_planes():
    height, pitch = 1.4, np.radians(12.0)  # camera looks 12 degrees down at the ground
    wall_x, K = 9.0, intrinsics(W, H, 80.0)
    wall = SceneObject(
        CLASS_ID["wall"], 0, [Part("box", np.array([0.5, 50.0, 1.0]), np.array([wall_x + 0.5, 0, 1.0]))], np.eye(4)
    )
    T = body_to_optical_pose(make_pose(rpy_to_matrix(0.0, pitch, 0.0), np.array([0.0, 0.0, height])))
    r = Renderer(_plane_scene([wall]), K, W, H).render(T, 0.0)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d = pixel_rays(K, u, v) @ T[:3, :3].T  # world ray per pixel, optical z = 1
    with np.errstate(divide="ignore"):
        t_ground = np.where(d[..., 2] < 0, height / -d[..., 2], np.inf)
        t_wall = np.where(d[..., 0] > 0, wall_x / d[..., 0], np.inf)
    z_wall = height + t_wall * d[..., 2]
    t_wall = np.where((z_wall >= 0) & (z_wall <= 2.0), t_wall, np.inf)
    expect = np.minimum(t_ground, t_wall)
    finite = np.isfinite(expect)
    assert finite.mean() > 0.5 and np.isinf(r.depth[~finite]).all()
    np.testing.assert_allclose(r.depth[finite], expect[finite], rtol=1e-5)
    assert (r.semantic[np.isfinite(t_wall) & (t_wall < t_ground)] == CLASS_ID["wall"]).all()
    assert (r.semantic[~finite] == CLASS_ID["sky"]).all()


def test_each_box_is_the_extent_of_its_instance_mask(sequence):
    seq, frames = sequence
    seen = 0
    for f in frames:
        ids = set(np.unique(f.instance)) - {0}
        assert {b.instance for b in f.boxes} == ids
        for b in f.boxes:
            ys, xs = np.nonzero(f.instance == b.instance)
            assert (b.x0, b.y0, b.x1, b.y1) == (xs.min(), ys.min(), xs.max(), ys.max())
            assert b.pixels == len(xs)
            assert b.class_name in THING_CLASSES
            assert (f.semantic[ys, xs] == CLASSES.index(b.class_name)).all()
            seen += 1
    assert seen > 0


def test_same_seed_same_bytes_whatever_the_workers():
    cfg = SynthConfig(preset="driving", seed=3, frames=3, width=W, height=H)
    one = list(SyntheticSequence(cfg).frames(workers=1))
    two = list(SyntheticSequence(cfg).frames(workers=2))
    for a, b in zip(one, two):
        for name in ("rgb", "depth", "semantic", "instance", "dynamic"):
            assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    other = SyntheticSequence(SynthConfig(preset="driving", seed=4, frames=3, width=W, height=H)).frame(0)
    assert other.rgb.tobytes() != one[0].rgb.tobytes()


def test_frames_follow_rep103_and_the_optical_convention(sequence):
    seq, frames = sequence
    for f in frames:
        R_body, R_opt = f.T_world_body[:3, :3], f.T_world_cam[:3, :3]
        np.testing.assert_allclose(R_opt, R_body @ R_BODY_OPTICAL)
        np.testing.assert_allclose(R_opt[:, 2], R_body[:, 0])  # optical z = body forward (x)
        np.testing.assert_allclose(R_opt[:, 1], -R_body[:, 2])  # optical y = body down
        assert f.T_world_body[2, 3] > 0.5  # above the ground (z up)
        q = matrix_to_quaternion(R_opt)
        np.testing.assert_allclose(quaternion_to_matrix(q), R_opt, atol=1e-9)
    # sky above, ground below the horizon in a driving view
    if seq.config.preset == "driving":
        f = frames[0]
        assert (f.semantic[0] == CLASS_ID["sky"]).mean() > 0.2 or (f.semantic[0] == CLASS_ID["wall"]).mean() > 0.2
        assert (f.semantic[-1] == CLASS_ID["ground"]).mean() > 0.8


def test_status_marks_sky_and_every_class_is_drawn():
    seq = SyntheticSequence(SynthConfig(preset="driving", seed=2, frames=3, width=W, height=H))
    a, b = seq.frame(0), seq.frame(1)
    _, status = seq.correspondence(a, b)
    assert ((status == NO_DEPTH) == ~np.isfinite(a.depth)).all()
    classes = set()
    for seed in range(3):
        for preset in ("driving", "indoor"):
            s = SyntheticSequence(SynthConfig(preset=preset, seed=seed, frames=2, width=W, height=H))
            classes |= {o.semantic for o in s.scene.objects}
    assert {CLASS_ID[n] for n in THING_CLASSES} <= classes


def test_boxes_from_instances_handles_truncation():
    inst = np.zeros((10, 12), np.uint16)
    sem = np.zeros((10, 12), np.uint8)
    inst[0:3, 5:12] = 7
    sem[0:3, 5:12] = CLASS_ID["car"]
    (box,) = boxes_from_instances(inst, sem)
    assert (box.x0, box.y0, box.x1, box.y1, box.truncated, box.class_name) == (5, 0, 11, 2, True, "car")
    assert box.xywh == [5, 0, 7, 3]
