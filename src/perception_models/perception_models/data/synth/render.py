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
    rgb: np.ndarray        # (H, W, 3) float32 linear-ish radiance in [0, 1+] before camera effects
    depth: np.ndarray      # (H, W) float32 metres (optical z); inf = sky
    semantic: np.ndarray   # (H, W) uint8 class ids (scene.CLASSES)
    instance: np.ndarray   # (H, W) uint16, 0 = stuff / sky
    dynamic: np.ndarray    # (H, W) bool, pixels on objects that move on their own
    normal: np.ndarray     # (H, W, 3) float32 world-frame unit normals (0 for sky)


@dataclass
class _Placed:
    shape: str
    A: np.ndarray      # unit -> world (4x4, with scale)
    A_inv: np.ndarray
    scale: np.ndarray
    material: int
    semantic: int
    instance: int
    dynamic: bool
    centre: np.ndarray  # world bounding sphere
    radius: float


def placed_parts(scene: Scene, time: float) -> list[_Placed]:
    out = []
    for obj in scene.objects:
        M = obj.pose_at(time)
        for part in obj.parts:
            A = M @ part.matrix()
            c_u, r_u = P.UNIT_BOUNDS[part.shape]
            centre = A[:3, :3] @ c_u + A[:3, 3]
            out.append(_Placed(part.shape, A, np.linalg.inv(A), part.scale, part.material, obj.semantic,
                               obj.instance, obj.dynamic, centre, float(r_u * np.max(part.scale))))
    return out


_CORNERS = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
# local bounding boxes of the unit shapes (cylinder and cone stand on z = 0)
_UNIT_BOX = {"box": (np.zeros(3), np.ones(3)), "sphere": (np.zeros(3), np.ones(3)),
             "cylinder": (np.array([0, 0, 0.5]), np.array([1, 1, 0.5])),
             "cone": (np.array([0, 0, 0.5]), np.array([1, 1, 0.5]))}


def _screen_rect(K: np.ndarray, T_cam_world: np.ndarray, p: "_Placed",
                 width: int, height: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (u0, v0, u1, v1) covering a part's oriented bounding box, clipped to the
    near plane (so walls the camera stands next to do not cover the whole image); None if unseen."""
    c, h = _UNIT_BOX[p.shape]
    local = c + _CORNERS * h
    M = T_cam_world @ p.A
    pc = local @ M[:3, :3].T + M[:3, 3]
    z = pc[:, 2]
    pts = [pc[z >= NEAR]]
    for a, b in _EDGES:
        if (z[a] >= NEAR) != (z[b] >= NEAR):
            s = (NEAR - z[a]) / (z[b] - z[a])
            pts.append((pc[a] + s * (pc[b] - pc[a]))[None])
    q = np.concatenate(pts)
    if len(q) == 0:
        return None
    u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
    v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
    u0, u1 = int(np.floor(u.min())), int(np.ceil(u.max())) + 1
    v0, v1 = int(np.floor(v.min())), int(np.ceil(v.max())) + 1
    u0, v0, u1, v1 = max(u0, 0), max(v0, 0), min(u1, width), min(v1, height)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, v0, u1, v1


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
        hits: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        parts = placed_parts(self.scene, time)
        for k, p in enumerate(parts):
            rect = _screen_rect(self.K, T_cam_world, p, W, H)
            if rect is None:
                continue
            u0, v0, u1, v1 = rect
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
            idx = order[bounds[pid + 1]:bounds[pid + 2]]
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
        pid_groups = (order, bounds)

        sem_lut = np.array([CLASS_ID["ground"], CLASS_ID["wall"]] + [p.semantic for p in parts], np.uint8)
        inst_lut = np.array([0, 0] + [p.instance for p in parts], np.uint16)
        dyn_lut = np.array([False, False] + [p.dynamic for p in parts], bool)
        mat_lut = np.array([self.scene.ground_material, self.scene.ceiling_material] + [p.material for p in parts], np.int32)
        hit = part_id >= 0
        pid = np.where(hit, part_id, 0)
        semantic = np.where(hit, sem_lut[pid], CLASS_ID["sky"]).astype(np.uint8)
        instance = np.where(hit, inst_lut[pid], 0).astype(np.uint16)
        dynamic = hit & dyn_lut[pid]

        rgb = self._shade(dirs, depth, normal, uv, mat_lut, pid_groups, hit)
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

    def _shade(self, dirs: np.ndarray, depth: np.ndarray, normal: np.ndarray, uv: np.ndarray,
               mat_lut: np.ndarray, pid_groups: tuple[np.ndarray, np.ndarray], hit: np.ndarray) -> np.ndarray:
        H, W = depth.shape
        if not hasattr(self, "_atlas"):
            self._build_atlas()
        light = self.scene.lighting
        ray_len = np.sqrt(np.einsum("nc,nc->n", dirs, dirs))
        nflat, uvflat, dflat = normal.reshape(-1, 3), uv.reshape(-1, 2), depth.reshape(-1)
        order, bounds = pid_groups
        idx = order[bounds[1]:]                      # every pixel that hit a surface
        pid = np.repeat(np.arange(len(mat_lut)), np.diff(bounds[1:]))
        m = mat_lut[pid]
        metres = self._metres[m]
        # metres covered by one pixel on the surface (grazing angles stretch it) -> mip level
        cos_inc = np.abs(np.einsum("nc,nc->n", nflat[idx], dirs[idx])) / ray_len[idx]
        footprint = dflat[idx] * ray_len[idx] / self.K[0, 0] / np.maximum(cos_inc, 0.15)
        level = np.log2(np.maximum(footprint * (self._tile / metres), 1.0))
        level = np.minimum(np.rint(level), self._levels - 1).astype(np.int64)
        n = self._tile >> level
        tu = np.floor(uvflat[idx, 0] * (n / metres)).astype(np.int64) % n
        tv = np.floor(uvflat[idx, 1] * (n / metres)).astype(np.int64) % n
        albedo = np.zeros((H * W, 3), np.float32)
        albedo[idx] = self._atlas[self._atlas_base[m, level] + tv * n + tu]
        lambert = np.clip(nflat @ light.sun_dir.astype(np.float32), 0.0, 1.0)
        shade = light.ambient.astype(np.float32)[None, :] + lambert[:, None] * light.sun.astype(np.float32)[None, :]
        rgb = albedo * shade
        elev = np.clip(dirs[:, 2] / ray_len, 0.0, 1.0)[:, None]
        sky = light.sky_horizon[None, :] * (1 - elev) + light.sky_top[None, :] * elev
        rgb = np.where(hit.reshape(-1, 1), rgb, sky.astype(np.float32))
        return rgb.reshape(H, W, 3).astype(np.float32)
