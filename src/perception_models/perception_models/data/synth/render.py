"""Vectorised numpy ray casting of a :class:`~.scene.Scene` with exact ground truth.

Per frame it produces RGB, metric depth (optical-frame z; ``inf`` where only sky is seen),
semantic labels, instance ids, a dynamic-object mask and surface normals. Parts are culled by
projecting their bounding spheres, so each part only tests the rays of its screen rectangle;
textures are sampled from mip levels chosen by each pixel's footprint, so distant surfaces do
not alias into noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import primitives as P
from .geometry import invert_pose, pixel_rays
from .scene import CLASS_ID, Scene

NEAR = 0.05


@dataclass
class RenderedFrame:
    rgb: np.ndarray  # (H, W, 3) float32 linear-ish radiance in [0, 1+] before camera effects
    depth: np.ndarray  # (H, W) float32 metres (optical z); inf = sky
    semantic: np.ndarray  # (H, W) uint8 class ids (scene.CLASSES)
    instance: np.ndarray  # (H, W) uint16, 0 = stuff / sky
    dynamic: np.ndarray  # (H, W) bool, pixels on objects that move on their own
    normal: np.ndarray  # (H, W, 3) float32 world-frame unit normals (0 for sky)


@dataclass
class _Placed:
    shape: str
    A: np.ndarray  # unit -> world (4x4, with scale)
    A_inv: np.ndarray
    scale: np.ndarray
    material: int
    semantic: int
    instance: int
    dynamic: bool


def _place(obj, part, M: np.ndarray) -> _Placed:
    A = M @ part.matrix()
    A_inv = np.eye(4)
    A_inv[:3, :3] = np.diag(1.0 / part.scale) @ (M[:3, :3] @ part.R).T  # (R S)^-1 = S^-1 R^T
    A_inv[:3, 3] = -A_inv[:3, :3] @ A[:3, 3]
    return _Placed(part.shape, A, A_inv, part.scale, part.material, obj.semantic, obj.instance, obj.dynamic)


def placed_parts(scene: Scene, time: float, static: list[_Placed] | None = None) -> list[_Placed]:
    """Every part in the world at ``time``; ``static`` (the parts of objects that do not move,
    placed once) is reused when given."""
    if static is None:
        return [_place(o, part, o.pose_at(time)) for o in scene.objects for part in o.parts]
    moving = [_place(o, part, o.pose_at(time)) for o in scene.objects if o.dynamic for part in o.parts]
    return static + moving


_CORNERS = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
# local bounding boxes of the unit shapes (cylinder and cone stand on z = 0)
_UNIT_BOX = {
    "box": (np.zeros(3), np.ones(3)),
    "sphere": (np.zeros(3), np.ones(3)),
    "cylinder": (np.array([0, 0, 0.5]), np.array([1, 1, 0.5])),
    "cone": (np.array([0, 0, 0.5]), np.array([1, 1, 0.5])),
}


def screen_rects(K: np.ndarray, T_cam_world: np.ndarray, parts: list[_Placed], width: int, height: int) -> np.ndarray:
    """Pixel rectangles (P, 4: u0, v0, u1, v1) covering each part's oriented bounding box,
    clipped to the near plane (so walls the camera stands next to do not cover the whole
    image); rows with u0 >= u1 are not visible. Vectorised over parts."""
    if not parts:
        return np.zeros((0, 4), np.int64)
    local = np.stack([_UNIT_BOX[p.shape][0] + _CORNERS * _UNIT_BOX[p.shape][1] for p in parts])  # (P, 8, 3)
    M = T_cam_world[None] @ np.stack([p.A for p in parts])  # (P, 4, 4)
    pc = np.einsum("pij,pkj->pki", M[:, :3, :3], local) + M[:, None, :3, 3]  # (P, 8, 3)
    z = pc[..., 2]
    front = z >= NEAR
    a, b = _EDGES[:, 0], _EDGES[:, 1]
    za, zb = z[:, a], z[:, b]
    cross = front[:, a] != front[:, b]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cross, (NEAR - za) / (zb - za), 0.0)
    pe = pc[:, a] + t[..., None] * (pc[:, b] - pc[:, a])  # (P, 12, 3)
    pts = np.concatenate([pc, pe], axis=1)
    ok = np.concatenate([front, cross], axis=1)
    zz = np.where(ok, pts[..., 2], 1.0)
    u = np.where(ok, K[0, 0] * pts[..., 0] / zz + K[0, 2], np.nan)
    v = np.where(ok, K[1, 1] * pts[..., 1] / zz + K[1, 2], np.nan)
    seen = ok.any(axis=1)
    with np.errstate(invalid="ignore"):
        u0 = np.floor(np.nanmin(np.where(seen[:, None], u, 0), axis=1))
        u1 = np.ceil(np.nanmax(np.where(seen[:, None], u, -1), axis=1)) + 1
        v0 = np.floor(np.nanmin(np.where(seen[:, None], v, 0), axis=1))
        v1 = np.ceil(np.nanmax(np.where(seen[:, None], v, -1), axis=1)) + 1
    rect = np.stack(
        [np.clip(u0, 0, width), np.clip(v0, 0, height), np.clip(u1, 0, width), np.clip(v1, 0, height)], axis=1
    )
    rect[~seen] = 0
    return rect.astype(np.int64)


class Renderer:
    """Renders frames of one scene for a pinhole camera ``K`` (width x height pixels)."""

    def __init__(self, scene: Scene, K: np.ndarray, width: int, height: int) -> None:
        self.scene, self.K, self.width, self.height = scene, K, width, height
        v, u = np.mgrid[0:height, 0:width].astype(np.float64)
        self._rays_cam = pixel_rays(K, u, v).astype(np.float32)  # (H, W, 3), z = 1

    # -------------------------------------------------------------- geometry
    def cast(self, T_world_cam: np.ndarray, time: float, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cast rays through arbitrary (sub)pixel coordinates ``uv`` (N, 2): depth (N,) and instance (N,).

        Float64 and no culling: the reference the tests check rendered frames and flow against.
        """
        d = pixel_rays(self.K, uv[:, 0], uv[:, 1]) @ T_world_cam[:3, :3].T
        o = T_world_cam[:3, 3]
        depth, _ = self._planes(o, d[:, 0], d[:, 1], d[:, 2])
        inst = np.zeros(len(uv), np.uint16)
        for p in placed_parts(self.scene, time):
            ol, (dx, dy, dz) = self._to_local(p, o, d[:, 0], d[:, 1], d[:, 2])
            t = P.intersect(p.shape, ol, dx, dy, dz)
            closer = (t > NEAR) & (t < depth)
            depth[closer] = t[closer]
            inst[closer] = p.instance
        return depth, inst

    @staticmethod
    def _to_local(p: _Placed, o: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray):
        M = p.A_inv[:3, :3]
        ol = M @ o + p.A_inv[:3, 3]
        return ol, tuple(M[i, 0] * dx + M[i, 1] * dy + M[i, 2] * dz for i in range(3))

    def _planes(self, o: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground (z = 0) and, indoors, the ceiling: distance and which (0 ground, 1 ceiling)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dz < -1e-9, -o[2] / dz, np.inf)
            which = np.zeros(t.shape, np.int32)
            if self.scene.ceiling is not None:
                tc = np.where(dz > 1e-9, (self.scene.ceiling - o[2]) / dz, np.inf)
                which = (tc < t).astype(np.int32)
                t = np.minimum(t, tc)
        t = np.where((t > NEAR) & (t < self.scene.far), t, np.inf)
        return t, which

    # -------------------------------------------------------------- full frame
    def render(self, T_world_cam: np.ndarray, time: float) -> RenderedFrame:
        H, W = self.height, self.width
        o = T_world_cam[:3, 3]
        R = T_world_cam[:3, :3].astype(np.float32)
        rc = self._rays_cam
        # world ray directions as three planes (t along them = depth)
        dx, dy, dz = (R[i, 0] * rc[..., 0] + R[i, 1] * rc[..., 1] + R[i, 2] for i in range(3))
        T_cam_world = invert_pose(T_world_cam)

        depth, part_id = self._planes(o, dx, dy, dz)
        part_id[~np.isfinite(depth)] = -1  # 0 ground, 1 ceiling, 2+k part k, -1 sky
        n_planes = 2

        if not hasattr(self, "_static"):
            self._static = [_place(o, part, o.pose0) for o in self.scene.objects if not o.dynamic for part in o.parts]
        parts = placed_parts(self.scene, time, self._static)
        rects = screen_rects(self.K, T_cam_world, parts, W, H)
        for k in np.nonzero((rects[:, 0] < rects[:, 2]) & (rects[:, 1] < rects[:, 3]))[0]:
            p = parts[k]
            u0, v0, u1, v1 = (int(x) for x in rects[k])
            ol, dl = self._to_local(p, o, dx[v0:v1, u0:u1], dy[v0:v1, u0:u1], dz[v0:v1, u0:u1])
            t = P.intersect(p.shape, ol, *dl)
            dview = depth[v0:v1, u0:u1]
            closer = (t > NEAR) & (t < dview)
            if not closer.any():
                continue
            dview[closer] = t[closer]
            part_id[v0:v1, u0:u1][closer] = n_planes + k

        # normals and texture coordinates of the winning surface of each pixel
        normal = np.zeros((H, W, 3), np.float32)
        uv = np.zeros((H, W, 2), np.float32)
        flat_pid = part_id.reshape(-1)
        order = np.argsort(flat_pid, kind="stable")
        bounds = np.searchsorted(flat_pid[order], np.arange(-1, n_planes + len(parts) + 1))
        dflat = depth.reshape(-1)
        dirs = np.stack([dx.reshape(-1), dy.reshape(-1), dz.reshape(-1)], axis=1)
        nflat, uvflat = normal.reshape(-1, 3), uv.reshape(-1, 2)
        for pid in range(0, n_planes + len(parts)):
            idx = order[bounds[pid + 1] : bounds[pid + 2]]
            if idx.size == 0:
                continue
            pw = o + dflat[idx, None] * dirs[idx]
            if pid < n_planes:
                nflat[idx] = (0.0, 0.0, 1.0 if pid == 0 else -1.0)
                uvflat[idx] = pw[:, :2]
                continue
            p = parts[pid - n_planes]
            pl = pw @ p.A_inv[:3, :3].T + p.A_inv[:3, 3]
            nw = P.unit_normal(p.shape, pl) @ p.A_inv[:3, :3]  # inverse-transpose
            nflat[idx] = nw / (np.linalg.norm(nw, axis=1, keepdims=True) + 1e-12)
            uvflat[idx] = P.surface_uv(p.shape, pl, p.scale)

        sem_lut = np.array([CLASS_ID["ground"], CLASS_ID["wall"]] + [p.semantic for p in parts], np.uint8)
        inst_lut = np.array([0, 0] + [p.instance for p in parts], np.uint16)
        dyn_lut = np.array([False, False] + [p.dynamic for p in parts], bool)
        mat_lut = np.array(
            [self.scene.ground_material, self.scene.ceiling_material] + [p.material for p in parts], np.int32
        )
        hit = part_id >= 0
        pid = np.where(hit, part_id, 0)
        semantic = np.where(hit, sem_lut[pid], CLASS_ID["sky"]).astype(np.uint8)
        instance = np.where(hit, inst_lut[pid], 0).astype(np.uint16)
        dynamic = hit & dyn_lut[pid]

        rgb = self._shade(dirs, depth, normal, uv, mat_lut, pid, hit)
        return RenderedFrame(rgb, depth.astype(np.float32), semantic, instance, dynamic, normal)

    # -------------------------------------------------------------- shading
    def _build_atlas(self) -> None:
        """All mip levels of all materials in one flat array, for one gather per frame."""
        mats = self.scene.materials
        levels = min(len(m.mips) for m in mats)
        chunks, base = [], np.zeros((len(mats), levels), np.int64)
        offset = 0
        for i, m in enumerate(mats):
            for lv in range(levels):
                tile = m.mips[lv].reshape(-1, 3)
                base[i, lv] = offset
                chunks.append(tile)
                offset += len(tile)
        self._atlas = np.concatenate(chunks).astype(np.float32)
        self._atlas_base = base
        self._tile = mats[0].mips[0].shape[0]
        self._levels = levels
        self._metres = np.array([m.metres for m in mats], np.float32)
        if self._tile & (self._tile - 1):
            raise ValueError(f"texture tiles must be a power of two wide, got {self._tile}")

    def _shade(
        self,
        dirs: np.ndarray,
        depth: np.ndarray,
        normal: np.ndarray,
        uv: np.ndarray,
        mat_lut: np.ndarray,
        pid: np.ndarray,
        hit: np.ndarray,
    ) -> np.ndarray:
        """Albedo from each pixel's material (mip level by footprint) x sun + ambient; sky elsewhere.
        Works on all pixels in image order (no gathers); sky pixels are replaced at the end."""
        H, W = depth.shape
        if not hasattr(self, "_atlas"):
            self._build_atlas()
        light = self.scene.lighting
        f32 = np.float32
        nflat, uvflat = normal.reshape(-1, 3), uv.reshape(-1, 2)
        dflat = np.where(hit, depth, 0.0).reshape(-1).astype(f32)
        ray_len = np.sqrt(np.einsum("nc,nc->n", dirs, dirs))
        m = mat_lut[pid.reshape(-1)]
        inv_metres = (f32(1.0) / self._metres)[m]
        # texels covered by one pixel on the surface (grazing angles stretch it) -> mip level
        cos_inc = np.abs(np.einsum("nc,nc->n", nflat, dirs))
        texels = dflat * (ray_len * ray_len) * f32(self._tile / self.K[0, 0]) * inv_metres
        texels /= np.maximum(cos_inc, f32(0.15) * ray_len)
        level = np.minimum(np.rint(np.log2(np.maximum(texels, f32(1.0)))), self._levels - 1).astype(np.int32)
        n = np.right_shift(np.int32(self._tile), level)
        scale = n * inv_metres
        tu = np.floor(uvflat[:, 0] * scale).astype(np.int32) & (n - 1)  # tile sizes are powers of two
        tv = np.floor(uvflat[:, 1] * scale).astype(np.int32) & (n - 1)
        albedo = self._atlas[self._atlas_base[m, level] + tv * n + tu]
        lambert = np.clip(nflat @ light.sun_dir.astype(f32), 0.0, 1.0)
        rgb = albedo * (light.ambient.astype(f32)[None, :] + lambert[:, None] * light.sun.astype(f32)[None, :])
        sky = ~hit.reshape(-1)
        if sky.any():
            elev = np.clip(dirs[sky, 2] / ray_len[sky], 0.0, 1.0)[:, None]
            rgb[sky] = light.sky_horizon[None, :] * (1 - elev) + light.sky_top[None, :] * elev
        return rgb.reshape(H, W, 3)
