"""Analytic ray intersection with unit shapes, placed in the world by affine transforms.

Every part of a scene is a *unit shape* (cube [-1, 1]^3, sphere of radius 1, cylinder and cone of
radius 1 on z in [0, 1]) mapped to the world by ``A = [R·diag(scale) | t]``. A ray o + t·d mapped
by A^-1 keeps its parameter t, so intersecting the unit shape in local coordinates gives the world
hit distance directly; since camera rays have optical z = 1, that t *is* the depth. Normals map by
A^-T. The ground is the analytic plane z = 0 (render.py).

``intersect`` is vectorised over rays given as three arrays of any shape (``dx, dy, dz``) from one
origin ``o`` (3 floats), both in the shape's local frame; it returns t (``inf`` for a miss).
``unit_normal`` and ``surface_uv`` then work on the (fewer) hit points only.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-5
SHAPES = ("box", "sphere", "cylinder", "cone")


def hit_box(o, dx, dy, dz):
    """Slab test against [-1, 1]^3."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_near = np.full(dx.shape, -np.inf, dtype=dx.dtype)
        t_far = np.full(dx.shape, np.inf, dtype=dx.dtype)
        for oc, dc in zip(o, (dx, dy, dz)):
            inv = 1.0 / dc
            t1 = (-1.0 - oc) * inv
            t2 = (1.0 - oc) * inv
            np.maximum(t_near, np.minimum(t1, t2), out=t_near)
            np.minimum(t_far, np.maximum(t1, t2), out=t_far)
        hit = (t_far >= t_near) & (t_far > EPS)
        t = np.where(t_near > EPS, t_near, t_far)
    return np.where(hit, t, np.inf)


def _roots(a, b, c):
    """Roots of a t^2 + 2 b t + c = 0, smaller first (nan where there are none)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.sqrt(b * b - a * c)
        r1 = (-b - s) / a
        r2 = (-b + s) / a
    return np.minimum(r1, r2), np.maximum(r1, r2)


def hit_sphere(o, dx, dy, dz):
    a = dx * dx + dy * dy + dz * dz
    b = o[0] * dx + o[1] * dy + o[2] * dz
    c = float(o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - 1.0)
    lo, hi = _roots(a, b, c)
    t = np.where(lo > EPS, lo, np.where(hi > EPS, hi, np.inf))
    return np.where(np.isnan(t), np.inf, t)


def _cap(o, dx, dy, dz, z):
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z - o[2]) / dz
        x = o[0] + t * dx
        y = o[1] + t * dy
        return np.where((t > EPS) & (x * x + y * y <= 1.0), t, np.inf)


def _side(o, dz, lo, hi):
    best = np.full(dz.shape, np.inf, dtype=dz.dtype)
    with np.errstate(invalid="ignore"):
        for r in (hi, lo):  # lo last, so it wins when both are on the surface
            z = o[2] + r * dz
            best = np.where((r > EPS) & (z >= 0.0) & (z <= 1.0), r, best)
    return best


def hit_cylinder(o, dx, dy, dz):
    a = dx * dx + dy * dy
    b = o[0] * dx + o[1] * dy
    c = float(o[0] ** 2 + o[1] ** 2 - 1.0)
    t = _side(o, dz, *_roots(a, b, c))
    t = np.minimum(t, _cap(o, dx, dy, dz, 1.0))
    return np.minimum(t, _cap(o, dx, dy, dz, 0.0))


def hit_cone(o, dx, dy, dz):
    # x^2 + y^2 = (1 - z)^2 with z in [0, 1]: apex at z = 1, base radius 1 at z = 0
    w = 1.0 - o[2]
    a = dx * dx + dy * dy - dz * dz
    b = o[0] * dx + o[1] * dy + w * dz
    c = float(o[0] ** 2 + o[1] ** 2 - w * w)
    t = _side(o, dz, *_roots(a, b, c))
    return np.minimum(t, _cap(o, dx, dy, dz, 0.0))


_HIT = {"box": hit_box, "sphere": hit_sphere, "cylinder": hit_cylinder, "cone": hit_cone}


def intersect(shape: str, o: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
    """Distance along each local ray to ``shape`` (inf for a miss)."""
    try:
        fn = _HIT[shape]
    except KeyError:
        raise ValueError(f"unknown shape '{shape}'; one of {SHAPES}") from None
    return fn(o, dx, dy, dz)


def unit_normal(shape: str, p: np.ndarray) -> np.ndarray:
    """Outward normal (unnormalised) of the unit shape at local hit points ``p`` (N, 3)."""
    if shape == "box":
        ax = np.abs(p).argmax(axis=1)
        n = np.zeros_like(p)
        rows = np.arange(len(p))
        n[rows, ax] = np.sign(p[rows, ax])
        return n
    if shape == "sphere":
        return p.copy()
    n = np.zeros_like(p)
    n[:, 0], n[:, 1] = p[:, 0], p[:, 1]
    if shape == "cone":  # gradient of x^2 + y^2 - (1 - z)^2
        n[:, 2] = 1.0 - p[:, 2]
    else:
        n[p[:, 2] > 1.0 - 1e-4] = (0.0, 0.0, 1.0)
    n[p[:, 2] < 1e-4] = (0.0, 0.0, -1.0)
    return n


def surface_uv(shape: str, p: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Metric texture coordinates (metres on the surface) of local hit points (N, 2)."""
    if shape == "box":
        ax = np.abs(p).argmax(axis=1)
        ia = np.where(ax == 0, 1, 0)  # the two in-face axes of each face
        ib = np.where(ax == 2, 1, 2)
        rows = np.arange(len(p))
        return np.stack([p[rows, ia] * scale[ia], p[rows, ib] * scale[ib]], axis=1)
    ang = np.arctan2(p[:, 1], p[:, 0])
    r = float(scale[:2].mean())
    if shape == "sphere":
        return np.stack([ang * r, np.arcsin(np.clip(p[:, 2], -1, 1)) * r], axis=1)
    return np.stack([ang * r, p[:, 2] * scale[2]], axis=1)
