"""Procedural scenes: classes, textures, objects, camera trajectories and object motion.

Two presets:

- ``driving``: a road winding through buildings, the camera 1.2–1.7 m above it moving forward
  at 4–10 m/s with low pitch; parked and moving cars, people on the sidewalks (some walking),
  cones, boxes, barrels, poles and bushes.
- ``indoor``: a room (walls, floor, ceiling) with boxes, chairs, barrels, cones and people; a
  handheld-like camera wandering with ±15° pitch and ±8° roll.

Everything is drawn from one ``numpy.random.Generator`` seeded by the caller, so a seed gives the
same scene, trajectory and images byte for byte. Frames are described in geometry.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .geometry import make_pose, rot_x, rot_z, rpy_to_matrix

CLASSES = ("sky", "ground", "wall", "clutter", "person", "car", "cone", "box", "barrel", "chair")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
THING_CLASSES = ("person", "car", "cone", "box", "barrel", "chair")  # what the detector finds
# colours for label visualisation (RGB), one per class
PALETTE = np.array(
    [
        [70, 130, 180],
        [128, 64, 128],
        [70, 70, 70],
        [107, 142, 35],
        [220, 20, 60],
        [0, 0, 142],
        [250, 170, 30],
        [190, 153, 153],
        [255, 127, 0],
        [153, 69, 200],
    ],
    dtype=np.uint8,
)
PRESETS = ("driving", "indoor")
TILE = 128


@dataclass
class Material:
    """A texture tile (mip levels, float RGB in [0, 1]) repeated every ``metres`` on a surface."""

    mips: list[np.ndarray]
    metres: float


@dataclass
class Part:
    """A unit shape placed in its object's frame: local = R · diag(scale) · unit + t."""

    shape: str
    scale: np.ndarray
    t: np.ndarray
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    material: int = 0

    def matrix(self) -> np.ndarray:
        A = np.eye(4)
        A[:3, :3] = self.R @ np.diag(self.scale)
        A[:3, 3] = self.t
        return A


@dataclass
class SceneObject:
    """Rigid parts sharing a class and an instance id; pose(t) = linear motion + yaw rate."""

    semantic: int
    instance: int  # 0 for stuff (walls, clutter), 1.. for things
    parts: list[Part]
    pose0: np.ndarray  # object -> world at t = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw_rate: float = 0.0

    @property
    def dynamic(self) -> bool:
        return bool(np.any(self.velocity != 0) or self.yaw_rate != 0)

    def pose_at(self, time: float) -> np.ndarray:
        if not self.dynamic:
            return self.pose0
        T = self.pose0.copy()
        T[:3, :3] = rot_z(self.yaw_rate * time) @ self.pose0[:3, :3]
        T[:3, 3] = self.pose0[:3, 3] + self.velocity * time
        return T


@dataclass
class Lighting:
    sun_dir: np.ndarray  # unit vector towards the sun (world)
    sun: np.ndarray  # RGB intensity
    ambient: np.ndarray  # RGB intensity
    sky_top: np.ndarray  # RGB in [0, 1]
    sky_horizon: np.ndarray


@dataclass
class Trajectory:
    times: np.ndarray  # (N,) seconds from the first frame
    body_poses: np.ndarray  # (N, 4, 4) camera_link -> world


@dataclass
class Scene:
    preset: str
    seed: int
    objects: list[SceneObject]
    materials: list[Material]
    ground_material: int
    lighting: Lighting
    trajectory: Trajectory
    far: float = 300.0
    ceiling: float | None = None  # indoor: the ceiling is a plane at this height (class wall)
    ceiling_material: int = 0


# ------------------------------------------------------------------ textures


def _mips(tile: np.ndarray) -> list[np.ndarray]:
    levels = [tile.astype(np.float32)]
    while levels[-1].shape[0] > 4:
        levels.append(cv2.resize(levels[-1], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA))
    return levels


def _noise(rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    out = np.zeros((TILE, TILE), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = 4 * 2**o
        grid = rng.random((n, n)).astype(np.float32)
        grid = np.pad(grid, 1, mode="wrap")  # seamless tiling
        up = cv2.resize(grid, (TILE + 2 * TILE // n, TILE + 2 * TILE // n), interpolation=cv2.INTER_CUBIC)
        off = TILE // n
        out += amp * up[off : off + TILE, off : off + TILE]
        total += amp
        amp *= 0.55
    out /= total
    return (out - out.min()) / max(1e-6, float(out.max() - out.min()))


def _two_colours(rng: np.random.Generator, base: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    a = rng.uniform(0.1, 0.9, 3) if base is None else np.clip(base + rng.normal(0, 0.08, 3), 0, 1)
    b = np.clip(a * rng.uniform(0.4, 1.3) + rng.normal(0, 0.1, 3), 0.02, 1.0)
    return a.astype(np.float32), b.astype(np.float32)


def procedural_tile(rng: np.random.Generator, kind: str, base: np.ndarray | None = None) -> np.ndarray:
    """A seamless (TILE, TILE, 3) texture: noise, checker, stripes or bricks, in two colours."""
    a, b = _two_colours(rng, base)
    n = _noise(rng)
    y, x = np.mgrid[0:TILE, 0:TILE]
    if kind == "noise":
        m = n
    elif kind == "checker":
        k = int(rng.choice([2, 4, 8]))
        m = (((x * k // TILE) + (y * k // TILE)) % 2).astype(np.float32) * 0.8 + 0.2 * n
    elif kind == "stripes":
        k = int(rng.choice([2, 4, 8, 16]))
        m = (np.sin(2 * np.pi * k * x / TILE) > rng.uniform(-0.5, 0.5)).astype(np.float32) * 0.7 + 0.3 * n
    elif kind == "bricks":
        rows = int(rng.choice([4, 8]))
        h = TILE // rows
        shift = ((y // h) % 2) * (TILE // 8)
        mortar = ((y % h) < 2) | (((x + shift) % (TILE // 4)) < 2)
        m = np.where(mortar, 1.0, 0.25 * n).astype(np.float32)
    else:
        raise ValueError(f"unknown texture kind '{kind}'")
    tile = a[None, None] * (1 - m[..., None]) + b[None, None] * m[..., None]
    return np.clip(tile, 0, 1)


def photo_tiles(folder: Path | None, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random crops of real photos (e.g. ../shared/data/camvid) as textures; [] when absent."""
    if folder is None or not folder.is_dir():
        return []
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in (".png", ".jpg", ".jpeg")
        and not any("annot" in q or "label" in q or q in ("gts", "palette") for q in map(str.lower, p.parts))
    )
    if not files:
        return []
    tiles = []
    for i in rng.choice(len(files), size=min(count, len(files)), replace=False):
        img = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < TILE:
            continue
        s = int(rng.integers(TILE, min(img.shape[:2]) + 1))
        y0 = int(rng.integers(0, img.shape[0] - s + 1))
        x0 = int(rng.integers(0, img.shape[1] - s + 1))
        crop = cv2.resize(img[y0 : y0 + s, x0 : x0 + s], (TILE, TILE), interpolation=cv2.INTER_AREA)
        tiles.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)
    return tiles


class MaterialBank:
    """Creates the scene's materials; photo patches replace some procedural ones when given."""

    def __init__(self, rng: np.random.Generator, photos: list[np.ndarray]) -> None:
        self.rng = rng
        self.photos = photos
        self.materials: list[Material] = []

    def add(
        self, kinds: tuple[str, ...], metres: tuple[float, float], base: np.ndarray | None = None, photo_p: float = 0.3
    ) -> int:
        if self.photos and self.rng.random() < photo_p:
            tile = self.photos[int(self.rng.integers(len(self.photos)))]
        else:
            tile = procedural_tile(self.rng, str(self.rng.choice(kinds)), base)
        self.materials.append(Material(_mips(tile), float(self.rng.uniform(*metres))))
        return len(self.materials) - 1


# ------------------------------------------------------------------ objects (object frame: x fwd, z up)


def make_person(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    h = rng.uniform(1.5, 1.9)
    skin = bank.add(("noise",), (0.3, 0.6), base=np.array([0.8, 0.6, 0.5]) * rng.uniform(0.4, 1.1), photo_p=0)
    shirt = bank.add(("noise", "stripes", "checker"), (0.2, 0.5))
    trousers = bank.add(("noise",), (0.2, 0.5))
    leg_h = 0.47 * h
    parts = [
        Part("cylinder", np.array([0.07, 0.07, leg_h]), np.array([0.0, y, 0.0]), material=trousers) for y in (-0.1, 0.1)
    ]
    parts.append(
        Part("sphere", np.array([0.14, 0.21, 0.17 * h]), np.array([0.0, 0.0, leg_h + 0.15 * h]), material=shirt)
    )
    parts += [
        Part("cylinder", np.array([0.05, 0.05, 0.33 * h]), np.array([0.0, y, leg_h - 0.02 * h]), material=shirt)
        for y in (-0.27, 0.27)
    ]
    parts.append(Part("sphere", np.array([0.1, 0.09, 0.115]), np.array([0.0, 0.0, h - 0.115]), material=skin))
    return parts


def make_car(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    L, W = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9)
    paint = bank.add(("noise",), (1.0, 3.0), base=rng.uniform(0.05, 0.95, 3), photo_p=0)
    glass = bank.add(("noise",), (1.0, 2.0), base=np.array([0.15, 0.2, 0.25]), photo_p=0)
    tyre = bank.add(("noise", "stripes"), (0.3, 0.6), base=np.array([0.08, 0.08, 0.08]), photo_p=0)
    r = rng.uniform(0.3, 0.38)
    parts = [
        Part("box", np.array([L / 2, W / 2, 0.33]), np.array([0.0, 0.0, r + 0.28]), material=paint),
        Part("box", np.array([L * 0.27, W * 0.44, 0.27]), np.array([-0.1 * L, 0.0, r + 0.88]), material=glass),
    ]
    for x in (-0.33 * L, 0.33 * L):
        for y in (-W / 2 + 0.05, W / 2 - 0.05 - 0.22):
            parts.append(
                Part("cylinder", np.array([r, r, 0.22]), np.array([x, y, r]), R=rot_x(-np.pi / 2), material=tyre)
            )
    return parts


def make_cone(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    h, r = rng.uniform(0.45, 0.9), rng.uniform(0.13, 0.22)
    orange = bank.add(("stripes", "noise"), (0.2, 0.5), base=np.array([0.95, 0.4, 0.05]), photo_p=0)
    return [
        Part("cone", np.array([r, r, h]), np.array([0.0, 0.0, 0.03]), material=orange),
        Part("box", np.array([r * 1.3, r * 1.3, 0.015]), np.array([0.0, 0.0, 0.015]), material=orange),
    ]


def make_box(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    s = rng.uniform(0.25, 0.8, 3)
    m = bank.add(("noise", "stripes", "checker"), (0.3, 1.0), base=np.array([0.6, 0.45, 0.3]) * rng.uniform(0.6, 1.3))
    return [Part("box", s / 2, np.array([0.0, 0.0, s[2] / 2]), material=m)]


def make_barrel(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    r, h = rng.uniform(0.25, 0.35), rng.uniform(0.8, 1.0)
    m = bank.add(("stripes", "noise"), (0.4, 1.0))
    return [
        Part("cylinder", np.array([r, r, h]), np.zeros(3), material=m),
        Part("cylinder", np.array([r * 1.04, r * 1.04, 0.04]), np.array([0.0, 0.0, h * 0.3]), material=m),
        Part("cylinder", np.array([r * 1.04, r * 1.04, 0.04]), np.array([0.0, 0.0, h * 0.7]), material=m),
    ]


def make_chair(rng: np.random.Generator, bank: MaterialBank) -> list[Part]:
    w, seat = rng.uniform(0.4, 0.55), rng.uniform(0.42, 0.5)
    m = bank.add(("noise", "stripes"), (0.3, 0.8))
    parts = [
        Part("box", np.array([w / 2, w / 2, 0.03]), np.array([0.0, 0.0, seat]), material=m),
        Part("box", np.array([0.03, w / 2, 0.25]), np.array([-w / 2 + 0.03, 0.0, seat + 0.28]), material=m),
    ]
    for x in (-w / 2 + 0.03, w / 2 - 0.03):
        for y in (-w / 2 + 0.03, w / 2 - 0.03):
            parts.append(Part("box", np.array([0.025, 0.025, seat / 2]), np.array([x, y, seat / 2]), material=m))
    return parts


BUILDERS: dict[str, Callable[[np.random.Generator, MaterialBank], list[Part]]] = {
    "person": make_person,
    "car": make_car,
    "cone": make_cone,
    "box": make_box,
    "barrel": make_barrel,
    "chair": make_chair,
}
FOOTPRINT = {"person": 0.4, "car": 2.6, "cone": 0.3, "box": 0.6, "barrel": 0.4, "chair": 0.45}


# ------------------------------------------------------------------ trajectories


def _smooth(
    rng: np.random.Generator, t: np.ndarray, amplitude: float, periods: tuple[float, float], terms: int = 3
) -> np.ndarray:
    """A smooth random signal: a few sines with random periods and phases."""
    out = np.zeros_like(t)
    for _ in range(terms):
        period = rng.uniform(*periods)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    return amplitude * out / terms


def driving_trajectory(rng: np.random.Generator, frames: int, fps: float) -> Trajectory:
    times = np.arange(frames) / fps
    fine = np.linspace(0.0, times[-1] if frames > 1 else 0.0, max(2, frames * 20))
    speed = rng.uniform(4.0, 10.0) + _smooth(rng, fine, 1.0, (8.0, 20.0))
    heading = _smooth(rng, fine, rng.uniform(0.2, 0.6), (10.0, 30.0))
    dt = np.diff(fine, prepend=fine[0])
    x = np.cumsum(speed * np.cos(heading) * dt)
    y = np.cumsum(speed * np.sin(heading) * dt)
    height = rng.uniform(1.2, 1.7)
    pitch0 = np.radians(rng.uniform(-3.0, 3.0))
    poses = []
    for tk in times:
        xi, yi, hi = (np.interp(tk, fine, a) for a in (x, y, heading))
        z = height + 0.02 * np.sin(2 * np.pi * tk * 1.3)
        pitch = pitch0 + np.radians(0.6) * np.sin(2 * np.pi * tk * 0.7)
        roll = np.radians(0.5) * np.sin(2 * np.pi * tk * 0.5 + 1.0)
        poses.append(make_pose(rpy_to_matrix(roll, pitch, hi), np.array([xi, yi, z])))
    return Trajectory(times, np.array(poses))


def handheld_trajectory(rng: np.random.Generator, frames: int, fps: float, room: tuple[float, float]) -> Trajectory:
    times = np.arange(frames) / fps
    lx, ly = room[0] / 2 - 1.2, room[1] / 2 - 1.2
    x = _smooth(rng, times, 2 * lx, (8.0, 20.0))
    y = _smooth(rng, times, 2 * ly, (8.0, 20.0))
    z = rng.uniform(1.2, 1.6) + _smooth(rng, times, 0.3, (4.0, 10.0))
    x, y = np.clip(x, -lx, lx), np.clip(y, -ly, ly)
    yaw0 = rng.uniform(-np.pi, np.pi)
    yaw = yaw0 + _smooth(rng, times, rng.uniform(1.5, 3.0), (10.0, 25.0))
    pitch = np.radians(_smooth(rng, times, 40.0, (3.0, 8.0))) + np.radians(rng.uniform(-5, 5))
    roll = np.radians(_smooth(rng, times, 20.0, (3.0, 8.0)))
    poses = [
        make_pose(rpy_to_matrix(r, p, w), np.array([a, b, c])) for a, b, c, r, p, w in zip(x, y, z, roll, pitch, yaw)
    ]
    return Trajectory(times, np.array(poses))


# ------------------------------------------------------------------ scenes


def _lighting(rng: np.random.Generator, indoor: bool) -> Lighting:
    elev, azim = np.radians(rng.uniform(20, 75)), rng.uniform(-np.pi, np.pi)
    sun_dir = np.array([np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)])
    warm = np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)])
    sun = warm * rng.uniform(0.5, 0.9) * (0.6 if indoor else 1.0)
    ambient = np.array([rng.uniform(0.8, 1.0), rng.uniform(0.85, 1.0), 1.0]) * rng.uniform(0.25, 0.5)
    top = np.array([0.25, 0.45, 0.85]) * rng.uniform(0.6, 1.1)
    horizon = np.clip(top + rng.uniform(0.2, 0.5), 0, 1)
    return Lighting(sun_dir, sun, ambient * (1.4 if indoor else 1.0), np.clip(top, 0, 1), horizon)


class _Placer:
    """Keeps objects off the camera path and apart from each other."""

    def __init__(self, path_xy: np.ndarray, clearance: float) -> None:
        self.path = path_xy
        self.clearance = clearance
        self.taken: list[tuple[np.ndarray, float]] = []

    def free(self, xy: np.ndarray, radius: float) -> bool:
        if np.min(np.linalg.norm(self.path - xy, axis=1)) < radius + self.clearance:
            return False
        return all(np.linalg.norm(xy - c) > radius + r for c, r in self.taken)

    def take(self, xy: np.ndarray, radius: float) -> None:
        self.taken.append((xy, radius))


def _moving_clear(placer: _Placer, xy0: np.ndarray, vel: np.ndarray, duration: float, radius: float) -> bool:
    return all(placer.free(xy0 + vel[:2] * s, radius) for s in np.linspace(0, duration, 6))


def build_scene(preset: str, seed: int, frames: int, fps: float = 10.0, photo_dir: Path | None = None) -> Scene:
    """A random scene and camera trajectory for ``preset`` (``driving`` or ``indoor``)."""
    if preset not in PRESETS:
        raise ValueError(f"preset '{preset}' must be one of {PRESETS}")
    rng = np.random.default_rng(seed)
    bank = MaterialBank(rng, photo_tiles(photo_dir, rng, 12))
    if preset == "driving":
        return _driving(rng, seed, frames, fps, bank)
    return _indoor(rng, seed, frames, fps, bank)


def _thing(
    rng: np.random.Generator,
    bank: MaterialBank,
    name: str,
    xy: np.ndarray,
    yaw: float,
    instance: int,
    velocity: np.ndarray | None = None,
    z: float = 0.0,
) -> SceneObject:
    parts = BUILDERS[name](rng, bank)
    return SceneObject(
        CLASS_ID[name],
        instance,
        parts,
        make_pose(rot_z(yaw), np.array([xy[0], xy[1], z])),
        velocity if velocity is not None else np.zeros(3),
    )


def _driving(rng: np.random.Generator, seed: int, frames: int, fps: float, bank: MaterialBank) -> Scene:
    traj = driving_trajectory(rng, frames, fps)
    duration = float(traj.times[-1]) if frames > 1 else 0.0
    # a dense path (positions + headings), extended 60 m beyond the last frame so the view ahead is built
    pos = traj.body_poses[:, :2, 3]
    head = np.arctan2(traj.body_poses[:, 1, 0], traj.body_poses[:, 0, 0])
    ext = np.array([pos[-1] + s * np.array([np.cos(head[-1]), np.sin(head[-1])]) for s in np.arange(2, 62, 2)])
    path = np.vstack([pos[0] - np.array([np.cos(head[0]), np.sin(head[0])]) * np.arange(10, 0, -2)[:, None], pos, ext])
    seg = np.diff(path, axis=0)
    arclen = np.concatenate([[0], np.cumsum(np.linalg.norm(seg, axis=1))])
    headings = np.arctan2(np.gradient(path[:, 1]), np.gradient(path[:, 0]))

    def at(s: float) -> tuple[np.ndarray, float]:
        return (
            np.array([np.interp(s, arclen, path[:, 0]), np.interp(s, arclen, path[:, 1])]),
            float(np.interp(s, arclen, np.unwrap(headings))),
        )

    road_half = rng.uniform(3.5, 6.0)
    ground = bank.add(("noise",), (0.8, 2.5), base=np.array([0.33, 0.33, 0.33]) * rng.uniform(0.7, 1.3), photo_p=0.15)
    placer = _Placer(pos, clearance=road_half * 0.3)
    objects: list[SceneObject] = []
    # lane dashes and sidewalks (class ground): texture on the road for photometric losses,
    # and the road's edges for the segmentation to find
    paint = bank.add(("noise",), (0.5, 1.0), base=np.array([0.85, 0.85, 0.8]), photo_p=0)
    kerb = bank.add(("noise", "checker", "bricks"), (0.5, 2.0), base=np.array([0.55, 0.55, 0.52]), photo_p=0.2)
    dash, gap = rng.uniform(2.0, 4.0), rng.uniform(3.0, 7.0)
    s = 0.0
    while s < arclen[-1]:
        c, h = at(s + dash / 2)
        objects.append(
            SceneObject(
                CLASS_ID["ground"],
                0,
                [Part("box", np.array([dash / 2, 0.07, 0.005]), np.array([0.0, 0.0, 0.005]), material=paint)],
                make_pose(rot_z(h), np.array([c[0], c[1], 0.0])),
            )
        )
        s += dash + gap
    walk_w = rng.uniform(1.5, 3.0)
    for side in (-1.0, 1.0):
        s = -10.0
        while s < arclen[-1]:
            seg = 4.0
            c, h = at(s + seg / 2)
            normal = np.array([-np.sin(h), np.cos(h)]) * side
            xy = c + normal * (road_half + walk_w / 2)
            objects.append(
                SceneObject(
                    CLASS_ID["ground"],
                    0,
                    [
                        Part(
                            "box",
                            np.array([seg / 2 + 0.05, walk_w / 2, 0.06]),
                            np.array([0.0, 0.0, 0.06]),
                            material=kerb,
                        )
                    ],
                    make_pose(rot_z(h), np.array([xy[0], xy[1], 0.0])),
                )
            )
            s += seg
    # buildings on both sides
    for side in (-1.0, 1.0):
        s = -10.0
        while s < arclen[-1]:
            length = rng.uniform(6, 20)
            centre, h = at(s + length / 2)
            offset = road_half + rng.uniform(2.5, 8.0)
            normal = np.array([-np.sin(h), np.cos(h)]) * side
            depth = rng.uniform(6, 15)
            xy = centre + normal * (offset + depth / 2)
            height = rng.uniform(4, 22)
            m = bank.add(("bricks", "noise", "checker", "stripes"), (2.0, 8.0), photo_p=0.4)
            objects.append(
                SceneObject(
                    CLASS_ID["wall"],
                    0,
                    [
                        Part(
                            "box",
                            np.array([length / 2, depth / 2, height / 2]),
                            np.array([0.0, 0.0, height / 2]),
                            material=m,
                        )
                    ],
                    make_pose(rot_z(h), np.array([xy[0], xy[1], 0.0])),
                )
            )
            s += length + rng.uniform(0.0, 6.0)
    instance = 0
    n_things = int(rng.integers(20, 36))
    names = ["car", "person", "cone", "box", "barrel", "chair"]
    weights = np.array([0.3, 0.3, 0.15, 0.1, 0.1, 0.05])
    for _ in range(n_things * 4):
        if instance >= n_things:
            break
        name = str(rng.choice(names, p=weights))
        s = rng.uniform(5.0, arclen[-1] - 5.0)
        centre, h = at(s)
        side = rng.choice([-1.0, 1.0])
        normal = np.array([-np.sin(h), np.cos(h)]) * side
        moving = name in ("car", "person") and rng.random() < 0.4
        if name == "car":
            lateral = road_half - rng.uniform(1.2, 1.8) if not moving else road_half * rng.uniform(0.45, 0.6)
        else:
            lateral = road_half + rng.uniform(0.4, walk_w - 0.3)
        xy = centre + normal * lateral
        yaw = h + (np.pi if (side > 0 and name == "car" and moving) else 0.0) + rng.normal(0, 0.1)
        if name == "person":
            yaw = h + rng.uniform(-np.pi, np.pi) if not moving else h + (0.0 if rng.random() < 0.5 else np.pi)
        vel = np.zeros(3)
        if moving:
            speed = rng.uniform(3.0, 8.0) if name == "car" else rng.uniform(0.8, 1.6)
            vel = np.array([np.cos(yaw), np.sin(yaw), 0.0]) * speed
        r = FOOTPRINT[name]
        if not _moving_clear(placer, xy, vel, duration, r):
            continue
        instance += 1
        placer.take(xy, r)
        on_walk = road_half < lateral < road_half + walk_w
        objects.append(_thing(rng, bank, name, xy, yaw, instance, vel, z=0.12 if on_walk else 0.0))
    # clutter: poles and bushes along the sidewalks
    for _ in range(int(rng.integers(10, 25))):
        s = rng.uniform(0.0, arclen[-1])
        centre, h = at(s)
        normal = np.array([-np.sin(h), np.cos(h)]) * rng.choice([-1.0, 1.0])
        xy = centre + normal * (road_half + rng.uniform(0.3, walk_w - 0.2))
        if not placer.free(xy, 0.6):
            continue
        placer.take(xy, 0.6)
        if rng.random() < 0.5:
            m = bank.add(("noise", "stripes"), (0.5, 2.0), base=np.array([0.5, 0.5, 0.5]))
            part = Part("cylinder", np.array([0.06, 0.06, rng.uniform(2.5, 5.0)]), np.zeros(3), material=m)
        else:
            m = bank.add(("noise",), (0.5, 1.5), base=np.array([0.2, 0.45, 0.15]))
            size = rng.uniform(0.4, 1.0, 3)
            part = Part("sphere", size, np.array([0.0, 0.0, size[2] * 0.7]), material=m)
        objects.append(
            SceneObject(
                CLASS_ID["clutter"], 0, [part], make_pose(rot_z(rng.uniform(0, 6.3)), np.array([xy[0], xy[1], 0.12]))
            )
        )
    return Scene("driving", seed, objects, bank.materials, ground, _lighting(rng, False), traj)


def _indoor(rng: np.random.Generator, seed: int, frames: int, fps: float, bank: MaterialBank) -> Scene:
    room = (rng.uniform(7.0, 14.0), rng.uniform(6.0, 10.0))
    height = rng.uniform(2.6, 3.4)
    traj = handheld_trajectory(rng, frames, fps, room)
    duration = float(traj.times[-1]) if frames > 1 else 0.0
    floor = bank.add(("checker", "noise", "stripes"), (0.5, 2.0), photo_p=0.2)
    ceiling = bank.add(("noise", "checker"), (0.5, 2.0), base=np.array([0.85, 0.85, 0.8]), photo_p=0)
    objects: list[SceneObject] = []
    wall_m = [bank.add(("noise", "bricks", "stripes", "checker"), (1.0, 3.0), photo_p=0.4) for _ in range(4)]
    hx, hy, th = room[0] / 2, room[1] / 2, 0.1
    for (cx, cy, sx, sy), m in zip(
        ((hx + th, 0, th, hy + th), (-hx - th, 0, th, hy + th), (0, hy + th, hx + th, th), (0, -hy - th, hx + th, th)),
        wall_m,
    ):
        objects.append(
            SceneObject(
                CLASS_ID["wall"],
                0,
                [Part("box", np.array([sx, sy, height / 2]), np.array([0.0, 0.0, height / 2]), material=m)],
                make_pose(np.eye(3), np.array([cx, cy, 0.0])),
            )
        )
    placer = _Placer(traj.body_poses[:, :2, 3], clearance=0.5)
    names = ["box", "chair", "person", "barrel", "cone"]
    weights = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
    instance, n_things = 0, int(rng.integers(8, 16))
    for _ in range(n_things * 6):
        if instance >= n_things:
            break
        name = str(rng.choice(names, p=weights))
        r = FOOTPRINT[name]
        xy = np.array([rng.uniform(-hx + r + 0.1, hx - r - 0.1), rng.uniform(-hy + r + 0.1, hy - r - 0.1)])
        yaw = rng.uniform(-np.pi, np.pi)
        vel = np.zeros(3)
        if name == "person" and rng.random() < 0.5:
            vel = np.array([np.cos(yaw), np.sin(yaw), 0.0]) * rng.uniform(0.4, 1.0)
            end = xy + vel[:2] * duration
            if abs(end[0]) > hx - r or abs(end[1]) > hy - r:
                vel = np.zeros(3)
        if not _moving_clear(placer, xy, vel, duration, r):
            continue
        instance += 1
        placer.take(xy, r)
        objects.append(_thing(rng, bank, name, xy, yaw, instance, vel))
    for _ in range(int(rng.integers(4, 10))):  # small clutter on the floor and shelves on walls
        xy = np.array([rng.uniform(-hx + 0.3, hx - 0.3), rng.uniform(-hy + 0.3, hy - 0.3)])
        if not placer.free(xy, 0.3):
            continue
        placer.take(xy, 0.3)
        m = bank.add(("noise", "stripes"), (0.2, 0.6))
        size = rng.uniform(0.08, 0.25, 3)
        shape = str(rng.choice(["sphere", "box", "cylinder"]))
        t = np.array([0.0, 0.0, size[2] if shape != "cylinder" else 0.0])
        objects.append(
            SceneObject(
                CLASS_ID["clutter"],
                0,
                [Part(shape, size, t, material=m)],
                make_pose(rot_z(rng.uniform(0, 6.3)), np.array([xy[0], xy[1], 0.0])),
            )
        )
    return Scene(
        "indoor",
        seed,
        objects,
        bank.materials,
        floor,
        _lighting(rng, True),
        traj,
        far=50.0,
        ceiling=height,
        ceiling_material=ceiling,
    )
