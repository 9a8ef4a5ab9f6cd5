"""The forward-motion ambiguity of the essential matrix, and the refit from smooth motions that resolves it.

A camera driving forward past distant points sees flow that a sideways step with a few degrees of
yaw explains about as well: on KITTI seq-06 MAGSAC++ picked such a motion in 6 of 50 frames
(rotation 2.8-9.7 degrees off, translation direction 69-101 degrees off), and one such frame bends
the whole path after it. The true motion explains the matches a little better (2-9 % lower
truncated cost), but MAGSAC's minimal samples rarely land in its basin when most points are far;
the frames around say where to look: a camera on a robot does not turn 8 degrees in one frame and
back in the next.

:func:`resolve_ambiguity`: when the essential matrix's rotation jumps by more than ``jump_deg``
from the previous frame's (no rotation on the first frame), the motion is refitted (robust
Levenberg-Marquardt on the Sampson distances of all matches, :func:`refine_motion`) from three
starts: the robust estimate, the previous frame's motion and no rotation. The fit with the lowest
truncated (MSAC) cost wins if it beats the refitted robust estimate by ``tolerance``; otherwise the
robust estimate stands as it is. A real turn keeps its rotation: no smooth start explains its
matches better. Numpy only (no scipy on the robot).
"""

from __future__ import annotations

import cv2
import numpy as np

from ...transforms import rotation_angle_deg
from .two_view import TwoViewGeometry


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def _rays(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    return np.c_[(uv - K[:2, 2]) / K[[0, 1], [0, 1]], np.ones(len(uv))]


def _epipolar(R: np.ndarray, t: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The epipolar residuals x2^T E x1 of E = [t]x R and their Sampson denominators (squared)."""
    E = _skew(t) @ R
    Ex1, Etx2 = x1 @ E.T, x2 @ E
    return np.sum(x2 * Ex1, axis=1), Ex1[:, 0] ** 2 + Ex1[:, 1] ** 2 + Etx2[:, 0] ** 2 + Etx2[:, 1] ** 2


def sampson_px(R: np.ndarray, t: np.ndarray, x1: np.ndarray, x2: np.ndarray, f: float) -> np.ndarray:
    """Signed Sampson distances (pixels, focal ``f``) of the rays ``x1`` (previous frame, z = 1)
    and ``x2`` (this frame) to the motion x2 = R x1 + t (|t| = 1)."""
    num, den2 = _epipolar(R, t, x1, x2)
    return num / (np.sqrt(den2) + 1e-15) * f


def _cauchy(r: np.ndarray, c: float) -> np.ndarray:
    return c * c * np.log1p((r / c) ** 2)


def _tangent(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1.0, 0.0, 0.0]) if abs(t[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(t, a)
    u /= np.linalg.norm(u)
    return u, np.cross(t, u)


def _translation_for(
    R: np.ndarray, x1: np.ndarray, x2: np.ndarray, f: float, scale_px: float, iterations: int = 5
) -> np.ndarray:
    """The unit translation that best fits rotation ``R``, the start of a fit from a rotation alone:
    the epipolar constraint t . (R x1 x x2) = 0 by iteratively reweighted least squares (Sampson
    normalisation and the Cauchy loss's weights; plain least squares lets the outliers pick it)."""
    n = np.cross(x1 @ R.T, x2)
    w = np.ones(len(n))
    for _ in range(iterations):
        t = np.linalg.eigh((n * w[:, None]).T @ n)[1][:, 0]
        num, den2 = _epipolar(R, t, x1, x2)
        den2 = den2 + 1e-15
        r = num / np.sqrt(den2) * f
        w = 1.0 / (1.0 + (r / scale_px) ** 2) / den2
    return t


def refine_motion(
    R0: np.ndarray,
    t0: np.ndarray | None,
    x1: np.ndarray,
    x2: np.ndarray,
    f: float,
    scale_px: float = 2.0,
    iterations: int = 30,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Levenberg-Marquardt over the rotation (3) and the unit translation's direction (2) on the
    Sampson distances with a Cauchy loss of scale ``scale_px``, from (R0, t0) (t0 None: the
    translation that best fits R0). Returns R, t (|t| = 1) and the robust cost."""
    R = np.asarray(R0, np.float64).copy()
    t = _translation_for(R, x1, x2, f, scale_px) if t0 is None else np.asarray(t0, np.float64) / np.linalg.norm(t0)

    def cost(R: np.ndarray, t: np.ndarray) -> float:
        return float(_cauchy(sampson_px(R, t, x1, x2, f), scale_px).sum())

    def moved(R: np.ndarray, t: np.ndarray, u: np.ndarray, v: np.ndarray, d: np.ndarray):
        tn = t + d[3] * u + d[4] * v
        return cv2.Rodrigues(np.asarray(d[:3], np.float64))[0] @ R, tn / np.linalg.norm(tn)

    c, lam, eps = cost(R, t), 1e-2, 1e-6
    for _ in range(iterations):
        r = sampson_px(R, t, x1, x2, f)
        w = 1.0 / np.sqrt(1.0 + (r / scale_px) ** 2)  # IRLS weights of the Cauchy loss (square roots)
        u, v = _tangent(t)
        J = np.empty((len(r), 5))
        for k in range(5):
            d = np.zeros(5)
            d[k] = eps
            J[:, k] = (sampson_px(*moved(R, t, u, v, d), x1, x2, f) - r) / eps
        Jw = J * w[:, None]
        H, g = Jw.T @ Jw, Jw.T @ (r * w)
        for _ in range(6):
            step = -np.linalg.solve(H + lam * np.diag(np.diag(H) + 1e-9), g)
            Rn, tn = moved(R, t, u, v, step)
            cn = cost(Rn, tn)
            if cn < c:
                R, t, c, lam = Rn, tn, cn, lam * 0.3
                break
            lam *= 10.0
        else:
            break
        if np.linalg.norm(step) < 1e-9:
            break
    return R, t, c


def _in_front(R: np.ndarray, t: np.ndarray, x1: np.ndarray, x2: np.ndarray) -> tuple[int, int]:
    """How many matches triangulate in front of both cameras with t, and how many with -t (depths
    z1, z2 of z2 x2 = z1 R x1 + t by least squares, closed form per match)."""
    p, q = x1 @ R.T, x2
    pp, qq, pq = (p * p).sum(1), (q * q).sum(1), (p * q).sum(1)
    pt, qt = p @ t, q @ t
    det = pp * qq - pq * pq + 1e-15
    z1 = (-qq * pt + pq * qt) / det  # normal equations of [p, -q] [z1, z2]^T = -t
    z2 = (pp * qt - pq * pt) / det
    return int(((z1 > 0) & (z2 > 0)).sum()), int(((z1 < 0) & (z2 < 0)).sum())


def resolve_ambiguity(
    g: TwoViewGeometry,
    a: np.ndarray,
    b: np.ndarray,
    K: np.ndarray,
    previous: tuple[np.ndarray, np.ndarray] | None,
    jump_deg: float = 2.0,
    tolerance: float = 0.01,
    threshold_px: float = 1.0,
) -> tuple[TwoViewGeometry, str]:
    """``g`` (the robust essential motion of the matches ``a`` -> ``b``), or, where its rotation
    jumps by more than ``jump_deg`` from ``previous`` (the last frame's R and unit t; None: no
    rotation), the refit from the smooth starts whose truncated Sampson cost (``threshold_px``) is
    lowest and beats the refitted ``g`` by ``tolerance`` (see the module). The second value says
    what was done ("" when ``g`` stands). Inliers of a replaced motion: Sampson distance below
    ``threshold_px``."""
    R_prev = np.eye(3) if previous is None else previous[0]
    if jump_deg <= 0 or len(a) < 8:
        return g, ""
    turn = rotation_angle_deg(g.R @ R_prev.T)
    if turn <= jump_deg:
        return g, ""
    K = np.asarray(K, np.float64).reshape(3, 3)
    x1, x2 = _rays(a, K), _rays(b, K)
    f = float(np.sqrt(K[0, 0] * K[1, 1]))
    starts = [(g.R, g.t), (np.eye(3), None)] + ([previous] if previous is not None else [])
    try:
        fits = [refine_motion(R0, t0, x1, x2, f, 2.0 * threshold_px)[:2] for R0, t0 in starts]
    except np.linalg.LinAlgError:  # a degenerate set of matches: the robust estimate stands
        return g, ""
    if not all(np.isfinite(R).all() and np.isfinite(t).all() for R, t in fits):
        return g, ""
    # the truncated (MSAC) cost decides: of two motions that explain the inliers alike, the one
    # with more of them wins, however the Cauchy costs of the outliers differ
    costs = [float(np.minimum(sampson_px(R, t, x1, x2, f) ** 2, threshold_px**2).sum()) for R, t in fits]
    best = int(np.argmin(costs))
    if best == 0 or costs[best] > costs[0] * (1.0 - tolerance):
        return g, ""  # no start found a clearly better motion: OpenCV's answer stands
    R, t = fits[best]
    front, behind = _in_front(R, t, x1, x2)
    t = -t if behind > front else t
    inl = np.abs(sampson_px(R, t, x1, x2, f)) < threshold_px
    why = f"essential rotation jumped {turn:.1f} deg; refitted to {rotation_angle_deg(R @ R_prev.T):.1f} deg"
    return TwoViewGeometry(R, t, a[inl], b[inl], int(inl.sum())), why
