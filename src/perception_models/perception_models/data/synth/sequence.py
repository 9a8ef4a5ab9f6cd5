"""Synthetic sequences: a scene, a camera, and per frame everything the four tasks train on.

    seq = SyntheticSequence(SynthConfig(preset="driving", seed=7, frames=300))
    for frame in seq.frames(workers=2):        # rendered in parallel, yielded in order
        frame.rgb, frame.depth, frame.semantic, frame.instance, frame.boxes, frame.T_world_cam
    flow, status = seq.correspondence(frame_a, frame_b)

Deterministic: the same config gives the same bytes, whatever the number of workers.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .camera_effects import CameraEffects
from .correspondence import correspondence
from .geometry import body_to_optical_pose, intrinsics
from .render import Renderer
from .scene import CLASSES, THING_CLASSES, Scene, build_scene

GENERATOR_VERSION = "1.0"


@dataclass(frozen=True)
class SynthConfig:
    preset: str = "driving"
    seed: int = 0
    frames: int = 100
    width: int = 640
    height: int = 480
    fps: float = 10.0
    hfov_deg: float = 0.0  # 0: drawn per sequence from 60..100 degrees
    randomization: float = 1.0  # camera effects strength (0 = clean images)
    photo_dir: str | None = None  # real photos for textures (e.g. ../shared/data/camvid)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Box:
    """Visible extent of one object instance, in pixels (inclusive), from its instance mask."""

    instance: int
    class_name: str
    x0: int
    y0: int
    x1: int
    y1: int
    pixels: int  # visible pixels of the instance
    truncated: bool  # touches the image border

    @property
    def xywh(self) -> list[int]:
        return [self.x0, self.y0, self.x1 - self.x0 + 1, self.y1 - self.y0 + 1]


@dataclass
class Frame:
    index: int
    time: float  # seconds since the first frame
    rgb: np.ndarray  # (H, W, 3) uint8, camera effects applied
    depth: np.ndarray  # (H, W) float32 metres, optical z; inf = sky
    semantic: np.ndarray  # (H, W) uint8, scene.CLASSES
    instance: np.ndarray  # (H, W) uint16, 0 = none
    dynamic: np.ndarray  # (H, W) bool: on an object moving on its own
    boxes: list[Box] = field(default_factory=list)
    T_world_cam: np.ndarray = field(default_factory=lambda: np.eye(4))  # optical -> world
    T_world_body: np.ndarray = field(default_factory=lambda: np.eye(4))  # camera_link -> world
    encoded: dict[str, bytes] = field(default_factory=dict)  # files made by a ``postprocess`` in the worker


def boxes_from_instances(instance: np.ndarray, semantic: np.ndarray) -> list[Box]:
    """One box per instance id: exactly the extent of its visible mask."""
    h, w = instance.shape
    boxes = []
    ids, first, counts = np.unique(instance.reshape(-1), return_index=True, return_counts=True)
    for k, idx, n in zip(ids, first, counts):
        if k == 0:
            continue
        m = instance == k
        rows = np.nonzero(m.any(axis=1))[0]
        cols = np.nonzero(m.any(axis=0))[0]
        cls = CLASSES[int(semantic.reshape(-1)[idx])]
        x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
        boxes.append(Box(int(k), cls, x0, y0, x1, y1, int(n), x0 == 0 or y0 == 0 or x1 == w - 1 or y1 == h - 1))
    return boxes


class SyntheticSequence:
    def __init__(self, config: SynthConfig) -> None:
        self.config = config
        rng = np.random.default_rng([config.seed, 1])
        hfov = config.hfov_deg or float(rng.uniform(60.0, 100.0))
        self.K = intrinsics(config.width, config.height, hfov)
        self.effects = CameraEffects.sample(rng, config.randomization)
        self.scene: Scene = build_scene(
            config.preset, config.seed, config.frames, config.fps, Path(config.photo_dir) if config.photo_dir else None
        )
        self.renderer = Renderer(self.scene, self.K, config.width, config.height)

    def __len__(self) -> int:
        return self.config.frames

    def pose(self, index: int) -> np.ndarray:
        return body_to_optical_pose(self.scene.trajectory.body_poses[index])

    def frame(self, index: int) -> Frame:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} outside 0..{len(self) - 1}")
        t = float(self.scene.trajectory.times[index])
        T = self.pose(index)
        r = self.renderer.render(T, t)
        rgb = self.effects.apply(r.rgb, np.random.default_rng([self.config.seed, 2, index]))
        return Frame(
            index,
            t,
            rgb,
            r.depth,
            r.semantic,
            r.instance,
            r.dynamic,
            boxes_from_instances(r.instance, r.semantic),
            T,
            self.scene.trajectory.body_poses[index],
        )

    def frames(
        self,
        workers: int = 1,
        start: int = 0,
        stop: int | None = None,
        postprocess: Callable[[Frame], None] | None = None,
    ) -> Iterator[Frame]:
        """Frames in order; ``workers`` > 1 renders them in parallel processes.

        ``postprocess`` (a picklable function) runs on each frame where it was rendered, e.g. to
        encode its files there instead of in the consuming process.
        """
        indices = range(start, len(self) if stop is None else min(stop, len(self)))
        if workers <= 1:
            for i in indices:
                f = self.frame(i)
                if postprocess is not None:
                    postprocess(f)
                yield f
            return
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers, initializer=_init_worker, initargs=(self.config, postprocess)) as pool:
            yield from pool.imap(_render_one, indices, chunksize=1)

    def motions(self, a: Frame, b: Frame) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        return {
            o.instance: (o.pose_at(a.time), o.pose_at(b.time))
            for o in self.scene.objects
            if o.dynamic and o.instance > 0
        }

    def correspondence(self, a: Frame, b: Frame) -> tuple[np.ndarray, np.ndarray]:
        """Flow (H, W, 2) from frame a to b and its status (correspondence.VISIBLE, ...)."""
        return correspondence(
            self.K,
            a.depth,
            a.instance,
            a.T_world_cam,
            b.T_world_cam,
            b.depth,
            b.instance,
            self.motions(a, b),
            rays=self.renderer._rays_cam,
        )

    def camera_info(self) -> dict:
        """ROS camera_info YAML content (no distortion)."""
        from ..camera_info import camera_info_dict

        c = self.config
        return camera_info_dict(self.K, c.width, c.height, f"synth_{c.preset}")


_WORKER: SyntheticSequence | None = None
_POST: Callable[[Frame], None] | None = None


def _init_worker(config: SynthConfig, postprocess: Callable[[Frame], None] | None) -> None:
    global _WORKER, _POST
    _WORKER, _POST = SyntheticSequence(config), postprocess


def _render_one(index: int) -> Frame:
    assert _WORKER is not None
    frame = _WORKER.frame(index)
    if _POST is not None:
        _POST(frame)
    return frame


__all__ = [
    "SynthConfig",
    "SyntheticSequence",
    "Frame",
    "Box",
    "boxes_from_instances",
    "GENERATOR_VERSION",
    "THING_CLASSES",
    "CLASSES",
]
