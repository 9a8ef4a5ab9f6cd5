"""OpenCV geometry behind calls that never raise: degenerate input is a failed estimate with a
reason on every OpenCV version (5.1's findEssentialMat raises cv2.error on a pair without
parallax; 4.x returned None)."""

import cv2
import numpy as np
import pytest

from perception_nodes.pipelines.cv_geometry import (
    check_intrinsics,
    find_essential,
    find_homography,
    solve_pnp_ransac,
    triangulate,
)

K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])


def _scene(n=200, seed=0):
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 10, n)]
    return X


def _project(X, R=np.eye(3), t=np.zeros(3)):
    x = (K @ (X @ R.T + t).T).T
    return x[:, :2] / x[:, 2:]


def test_essential_recovers_a_real_motion():
    X = _scene()
    R = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))[0]
    t = np.array([0.3, 0.0, 0.1])
    est = find_essential(_project(X), _project(X, R, t), K, cv2.USAC_MAGSAC, 1.0)
    assert est.ok and est.reason == ""
    assert np.allclose(est.extra["R"], R, atol=1e-3)
    assert np.allclose(est.extra["t"], t / np.linalg.norm(t), atol=1e-2)
    assert est.inliers > 150


def test_intrinsics_read_from_a_projection_matrix_slice_work():
    """K as a strided view (KITTI's calib gives P; K = P[:, :3]): OpenCV read it wrongly and every
    essential matrix failed ("no essential matrix") until the helpers made it contiguous."""
    X = _scene()
    R = cv2.Rodrigues(np.array([0.0, 0.05, 0.0]))[0]
    t = np.array([0.3, 0.0, 0.1])
    P = np.c_[K, [1.0, 2.0, 3.0]]
    a, b = _project(X), _project(X, R, t)
    assert not P[:, :3].flags.c_contiguous
    est = find_essential(a, b, P[:, :3], cv2.USAC_MAGSAC, 1.0)
    assert est.ok and np.allclose(est.extra["R"], R, atol=1e-3)
    pnp = solve_pnp_ransac(X, b, P[:, :3], 2.0)
    assert pnp.ok and np.allclose(pnp.value[:3, :3], R, atol=1e-3)


@pytest.mark.parametrize("method", [cv2.RANSAC, cv2.USAC_MAGSAC])
def test_essential_on_a_pair_without_parallax_is_a_failed_estimate(method):
    a = _project(_scene())
    est = find_essential(a, a.copy(), K, method, 1.0)  # identical views: OpenCV 5.1 raises here
    if est.ok:  # some versions return a (meaningless) pose; it must then at least be finite
        assert np.isfinite(est.extra["R"]).all()
    else:
        assert est.reason and est.value is None and est.inliers == 0


@pytest.mark.parametrize(
    "case,a,b,k,why",
    [
        ("too few", np.zeros((3, 2)), np.zeros((3, 2)), K, "points <"),
        ("nan", np.full((20, 2), np.nan), np.zeros((20, 2)), K, "non-finite"),
        ("mismatched", np.zeros((20, 2)), np.zeros((19, 2)), K, "against"),
        (
            "singular K",
            np.random.default_rng(1).uniform(0, 300, (20, 2)),
            np.random.default_rng(2).uniform(0, 300, (20, 2)),
            np.zeros((3, 3)),
            "focal",
        ),
        (
            "nan K",
            np.random.default_rng(1).uniform(0, 300, (20, 2)),
            np.random.default_rng(2).uniform(0, 300, (20, 2)),
            np.full((3, 3), np.nan),
            "finite",
        ),
    ],
)
def test_degenerate_inputs_give_reasons_not_exceptions(case, a, b, k, why):
    est = find_essential(a, b, k, cv2.RANSAC, 1.0)
    assert not est.ok and why in est.reason, (case, est.reason)
    if "K" not in case:  # a homography needs no K
        h = find_homography(a, b, 3.0)
        assert not h.ok and h.reason


def test_homography_on_collinear_points_fails_cleanly():
    x = np.linspace(0, 300, 30)
    a = np.c_[x, x]
    est = find_homography(a, a + 1.0, 3.0)
    assert not est.ok and est.reason
    assert est.mask.shape == (30,)


def test_pnp_recovers_a_pose_and_fails_on_degenerate_points():
    X = _scene()
    R = cv2.Rodrigues(np.array([0.02, -0.03, 0.01]))[0]
    t = np.array([0.1, 0.0, 0.2])
    est = solve_pnp_ransac(X, _project(X, R, t), K, 1.0)
    assert est.ok and np.allclose(est.value[:3, :3], R, atol=1e-3) and np.allclose(est.value[:3, 3], t, atol=1e-2)
    same = np.repeat(X[:1], 10, 0)  # all points at one place
    bad = solve_pnp_ransac(same, _project(same), K, 1.0)
    assert not bad.ok and bad.reason
    assert not solve_pnp_ransac(X, _project(X), np.eye(3) * 0, 1.0).ok


def test_triangulate_marks_points_at_infinity_as_nan():
    P = K @ np.eye(3, 4)
    pts = triangulate(P, P, np.array([[10.0, 10.0]]), np.array([[10.0, 10.0]]))  # same ray twice
    assert pts.shape == (1, 3)
    assert triangulate(P, P, np.zeros((0, 2)), np.zeros((0, 2))).shape == (0, 3)


def test_check_intrinsics():
    assert check_intrinsics(K) == ""
    assert "no camera" in check_intrinsics(None)
    assert "positive" in check_intrinsics(np.diag([-1.0, 1.0, 1.0]))
    assert "singular" in check_intrinsics(np.array([[1.0, 0, 0], [0, 1e-14, 0], [0, 0, 1e-14]]))
