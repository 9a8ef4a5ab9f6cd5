"""Camera geometry for self-supervised depth and odometry (Monodepth2's BackprojectDepth /
Project3D / transformation_from_parameters, as plain functions):

- pinhole back-projection of a depth map and projection of points into another view;
- 6-DoF pose vectors (axis-angle + translation) <-> 4x4 matrices (Rodrigues);
- :func:`warp`: a spatial transformer (``grid_sample``) that rebuilds the target view from a
  source image, the target's depth and the relative pose.

Conventions: pixels as OpenCV (centre of pixel (u, v) at (u, v)); camera optical frame
(x right, y down, z forward, REP-103); ``T_a_b`` maps points in frame b to frame a (the pose of b
in a). Everything is batched: depth (B, 1, H, W), K (B, 3, 3), T (B, 4, 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pixel_grid(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Homogeneous pixel coordinates (3, H*W): rows u, v, 1."""
    v, u = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype), torch.arange(width, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([u.reshape(-1), v.reshape(-1), torch.ones_like(u).reshape(-1)])


def backproject(depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) -> camera points (B, 3, H*W)."""
    b, _, h, w = depth.shape
    rays = torch.linalg.inv(K) @ pixel_grid(h, w, depth.device, depth.dtype)  # (B, 3, HW)
    return rays * depth.reshape(b, 1, h * w)


def project(
    points: torch.Tensor, K: torch.Tensor, T: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Points (B, 3, N) in frame b, ``T`` = T_a_b -> pixels (B, 2, N) in view a and their depth (B, 1, N)."""
    p = T[:, :3, :3] @ points + T[:, :3, 3:]
    z = p[:, 2:3]
    uv = (K @ p)[:, :2] / z.clamp(min=eps)
    return uv, z


def warp(
    source: torch.Tensor,
    depth: torch.Tensor,
    T_source_target: torch.Tensor,
    K: torch.Tensor,
    padding_mode: str = "border",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The target view rebuilt from ``source`` (B, C, H, W): each target pixel is back-projected
    with its depth, moved into the source camera and sampled there (bilinear, ``grid_sample``).
    Returns the image and a (B, 1, H, W) mask of pixels that land inside the source, in front of it."""
    b, _, h, w = depth.shape
    uv, z = project(backproject(depth, K), K, T_source_target)
    gx = uv[:, 0] / (w - 1) * 2 - 1  # align_corners=True: -1 and 1 are the centres of the corner pixels
    gy = uv[:, 1] / (h - 1) * 2 - 1
    grid = torch.stack([gx, gy], dim=-1).reshape(b, h, w, 2)
    image = F.grid_sample(source, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    inside = (gx.abs() <= 1) & (gy.abs() <= 1) & (z[:, 0] > 0)
    return image, inside.reshape(b, 1, h, w).to(source.dtype)


def axis_angle_to_matrix(vec: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (B, 3) axis * angle -> (B, 3, 3) rotation (smooth at angle 0)."""
    theta = vec.norm(dim=1, keepdim=True).clamp(min=1e-8)
    axis = vec / theta
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).reshape(-1, 3, 3)
    s, c = torch.sin(theta)[:, :, None], torch.cos(theta)[:, :, None]
    eye = torch.eye(3, dtype=vec.dtype, device=vec.device).expand_as(skew)
    return eye + s * skew + (1 - c) * (skew @ skew)


def pose_vec_to_matrix(axis_angle: torch.Tensor, translation: torch.Tensor, invert: bool = False) -> torch.Tensor:
    """(B, 3) rotation vector + (B, 3) translation -> (B, 4, 4) [R t; 0 1], or its inverse."""
    R = axis_angle_to_matrix(axis_angle)
    t = translation[:, :, None]
    if invert:
        R = R.transpose(1, 2)
        t = -R @ t
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=R.dtype, device=R.device).expand(R.shape[0], 1, 4)
    return torch.cat([torch.cat([R, t], dim=2), bottom], dim=1)


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """K for an image resized by (sx, sy) with OpenCV pixel centres: u' = (u + 0.5) sx - 0.5."""
    S = torch.tensor(
        [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=K.dtype, device=K.device
    )
    return S @ K
