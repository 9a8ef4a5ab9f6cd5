"""Self-supervised depth + pose losses (Monodepth2, Godard et al. 2019) and a supervised term.

- photometric error: 0.85 (1 - SSIM) / 2 + 0.15 L1 between the target frame and each source
  frame warped into it (:func:`..geometry.warp`);
- per-pixel minimum over the source frames (occlusions: a pixel hidden in one source is usually
  visible in the other);
- auto-masking: the *unwarped* sources compete in the same minimum (plus a little noise to break
  ties), so pixels that look the same without any motion — a static camera, objects moving with
  it, textureless regions — do not train the depth; flagged moving objects are masked out too;
- edge-aware smoothness of the mean-normalised disparity;
- supervised: scale-invariant log error (Eigen et al. 2014) where ground-truth depth exists, pooled over
  the batch's pixels or averaged over its images (sparse references beside dense renders).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM over 3x3 windows (reflection padding), (B, C, H, W) in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2
    x, y = F.pad(x, (1, 1, 1, 1), mode="reflect"), F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_x, mu_y = F.avg_pool2d(x, 3, 1), F.avg_pool2d(y, 3, 1)
    sigma_x = F.avg_pool2d(x * x, 3, 1) - mu_x**2
    sigma_y = F.avg_pool2d(y * y, 3, 1) - mu_y**2
    sigma_xy = F.avg_pool2d(x * y, 3, 1) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2)
    return (num / den).clamp(-1, 1)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.85) -> torch.Tensor:
    """(B, 1, H, W): alpha (1 - SSIM) / 2 + (1 - alpha) L1, averaged over channels."""
    l1 = (pred - target).abs().mean(1, keepdim=True)
    return alpha * ((1 - ssim(pred, target)) / 2).mean(1, keepdim=True) + (1 - alpha) * l1


def reprojection_loss(
    target: torch.Tensor,
    warped: list[torch.Tensor],
    sources: list[torch.Tensor],
    automask: bool = True,
    static_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the per-pixel minimum reprojection error over ``warped`` sources.

    ``sources`` are the same frames unwarped (for auto-masking); ``static_mask`` (B, 1, H, W), 1
    where the pixel may train (0 on flagged moving objects). Returns the loss and the mask of
    pixels that trained (for logging)."""
    errors = torch.cat([photometric_error(w, target) for w in warped], dim=1)
    if automask:
        identity = torch.cat([photometric_error(s, target) for s in sources], dim=1)
        identity = identity + torch.randn_like(identity) * 1e-5
        errors_all = torch.cat([identity, errors], dim=1)
        best, idx = errors_all.min(dim=1, keepdim=True)
        used = (idx >= identity.shape[1]).to(target.dtype)
    else:
        best = errors.min(dim=1, keepdim=True).values
        used = torch.ones_like(best)
    if static_mask is not None:
        used = used * static_mask
    return (best * used).sum() / used.sum().clamp(min=1.0), used


def smoothness_loss(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Edge-aware first-order smoothness of the mean-normalised disparity (B, 1, H, W)."""
    d = disp / (disp.mean(dim=(2, 3), keepdim=True) + 1e-7)
    dx = (d[:, :, :, :-1] - d[:, :, :, 1:]).abs()
    dy = (d[:, :, :-1, :] - d[:, :, 1:, :]).abs()
    ix = (image[:, :, :, :-1] - image[:, :, :, 1:]).abs().mean(1, keepdim=True)
    iy = (image[:, :, :-1, :] - image[:, :, 1:, :]).abs().mean(1, keepdim=True)
    return (dx * torch.exp(-ix)).mean() + (dy * torch.exp(-iy)).mean()


def silog_loss(
    pred: torch.Tensor, gt: torch.Tensor, variance_focus: float = 0.85, per_image: bool = False
) -> torch.Tensor:
    """Scale-invariant log error over pixels with finite, positive ground truth; (B, 1, H, W) each.

    ``per_image=False`` pools every valid pixel of the batch into one error (each pixel counts once);
    ``per_image=True`` takes the error of each image that has ground truth and averages those, so an
    image counts once however many of its pixels are known. That matters when a batch mixes dense
    ground truth (a render: every pixel) with sparse (a triangulated reference or projected lidar:
    ~1000 points at 192x256): pooled, a sparse frame weighs ~2 % of a dense one."""
    valid = torch.isfinite(gt) & (gt > 0)
    if not valid.any():
        return pred.new_zeros(())
    g = torch.where(valid, torch.log(pred.clamp(min=1e-6)) - torch.log(torch.where(valid, gt, 1.0)), 0.0).flatten(1)
    n = valid.flatten(1).sum(1).to(g.dtype)
    if not per_image:  # one group: every valid pixel of the batch
        g, n = g.reshape(1, -1), n.sum().reshape(1)
    has = n > 0
    mean, mean_sq = g[has].sum(1) / n[has], (g[has] ** 2).sum(1) / n[has]
    return (torch.sqrt((mean_sq - variance_focus * mean**2).clamp(min=0.0) + 1e-8) * 10.0).mean()


def ssi_loss(pred: torch.Tensor, target: torch.Tensor, trim: float = 0.2) -> torch.Tensor:
    """Scale-and-shift-invariant trimmed MAE (MiDaS, Ranftl et al. 2020) between a prediction and a
    relative-depth teacher, both inverse depth (B, 1, H, W): each image's valid pixels (finite
    target) are shifted by their median and divided by their mean absolute deviation, then the
    mean absolute difference over all but the ``trim`` largest residuals. Zero when ``pred`` is
    any positive affine map of ``target``; what a teacher known only up to scale and shift can teach."""
    losses = []
    for p, t in zip(pred.flatten(1), target.flatten(1)):
        valid = torch.isfinite(t) & torch.isfinite(p)
        if valid.sum() < 16:
            continue
        p, t = p[valid], t[valid]
        p = (p - p.median()) / (p - p.median()).abs().mean().clamp(min=1e-6)
        t = (t - t.median()) / (t - t.median()).abs().mean().clamp(min=1e-6)
        r = (p - t).abs()
        keep = max(1, int(round(r.numel() * (1.0 - trim))))
        losses.append(torch.sort(r)[0][:keep].mean())
    return torch.stack(losses).mean() if losses else pred.new_zeros(())
