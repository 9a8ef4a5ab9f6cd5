"""Losses for the keypoint network.

- :func:`detector_loss`: cross-entropy over each 8x8 cell's 65 classes (SuperPoint): the label is
  the position of the cell's keypoint (pseudo ground truth, see ``train/matching_data.py``) or
  "no keypoint" (class 64).
- Descriptors are metric-learnt on dense stride-8 maps with known correspondences between two
  views: anchors are cells of view A, positives the descriptors of view B sampled (bilinear) at the
  anchors' true positions. Two losses — ``contrastive`` (hinge on cosine similarity: positives
  above ``pos_margin``, negatives below ``neg_margin``) and ``triplet`` (margin on squared
  distances) — and two ways to choose negatives:

  - ``hard``: the most similar descriptor of view B anywhere outside an exclusion radius around
    the true correspondence (hard negative mining);
  - ``spatial``: descriptors of view B drawn at a *geometric distance* between ``ring[0]`` and
    ``ring[1]`` cells from the true correspondence (spatial negative mining: the confusers a
    matcher meets are the nearby, similar-looking places), the hardest of those.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def detector_loss(logits: torch.Tensor, keypoints: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, 65, h, w); keypoints (B, 8h, 8w) {0, 1} pixel map; valid (B, h, w) cells that count."""
    b, _, h, w = logits.shape
    cells = F.pixel_unshuffle(keypoints[:, None].float(), 8)  # (B, 64, h, w)
    # one keypoint per cell: the first marked position (ties broken by a fixed tiny ramp)
    ramp = torch.linspace(0, 1e-3, 64, device=logits.device).view(1, 64, 1, 1)
    has = cells.sum(1) > 0
    labels = torch.where(has, (cells + ramp * cells).argmax(1), torch.full_like(has, 64, dtype=torch.long))
    loss = F.cross_entropy(logits, labels, reduction="none")
    if valid is not None:
        return (loss * valid).sum() / valid.sum().clamp(min=1)
    return loss.mean()


def _cell_grid(h: int, w: int, device) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([x, y], dim=-1).float()  # (h, w, 2) cell coordinates


def descriptor_loss(
    desc_a: torch.Tensor,
    desc_b: torch.Tensor,
    corr: torch.Tensor,
    valid: torch.Tensor,
    loss: str = "triplet",
    mining: str = "hard",
    anchors: int = 256,
    exclusion: float = 1.5,
    ring: tuple[float, float] = (2.0, 6.0),
    pos_margin: float = 1.0,
    neg_margin: float = 0.2,
    triplet_margin: float = 0.5,
    generator: torch.Generator | None = None,
    prefer: torch.Tensor | None = None,
    min_preferred: int = 32,
) -> torch.Tensor:
    """desc_a/desc_b (B, D, h, w) unit descriptors; corr (B, h, w, 2): each A cell's position in B in
    cell coordinates; valid (B, h, w) where that position is known (inside, not occluded).
    ``prefer`` (B, h, w): cells to draw anchors from when at least ``min_preferred`` of them are
    valid (the cells holding keypoints: descriptors only matter there, and a featureless patch of
    sky has no descriptor that could be told from its neighbours)."""
    if loss not in ("contrastive", "triplet") or mining not in ("hard", "spatial"):
        raise ValueError(f"descriptor loss '{loss}' / mining '{mining}': use contrastive|triplet and hard|spatial")
    b, d, h, w = desc_b.shape
    grid_b = _cell_grid(h, w, desc_b.device).reshape(-1, 2)  # (hw, 2)
    terms = []
    for i in range(b):
        mask = valid[i].reshape(-1)
        if prefer is not None and int((mask & prefer[i].reshape(-1)).sum()) >= min_preferred:
            mask = mask & prefer[i].reshape(-1)
        idx = torch.nonzero(mask, as_tuple=False)[:, 0]
        if idx.numel() == 0:
            continue
        if idx.numel() > anchors:
            idx = idx[torch.randperm(idx.numel(), generator=generator, device=idx.device)[:anchors]]
        a = desc_a[i].reshape(d, -1)[:, idx].T  # (N, D)
        pos_xy = corr[i].reshape(-1, 2)[idx]  # (N, 2) cells in B
        g = torch.stack([pos_xy[:, 0] / (w - 1) * 2 - 1, pos_xy[:, 1] / (h - 1) * 2 - 1], -1)
        p = F.grid_sample(desc_b[i : i + 1], g[None, :, None], mode="bilinear", align_corners=True)[0, :, :, 0].T
        p = F.normalize(p, dim=-1)
        sim_all = a @ desc_b[i].reshape(d, -1)  # (N, hw)
        dist = torch.cdist(pos_xy, grid_b)  # (N, hw) cells
        if mining == "hard":
            allowed = dist > exclusion
        else:
            allowed = (dist >= ring[0]) & (dist <= ring[1])
        neg_sim = sim_all.masked_fill(~allowed, -2.0).max(dim=1).values
        ok = allowed.any(dim=1)
        pos_sim = (a * p).sum(-1)
        if loss == "contrastive":
            t = F.relu(pos_margin - pos_sim) + F.relu(neg_sim - neg_margin)
        else:  # squared distance of unit vectors: 2 - 2 cos
            t = F.relu(triplet_margin + (2 - 2 * pos_sim) - (2 - 2 * neg_sim))
        terms.append(t[ok])
    if not terms:
        return desc_a.sum() * 0.0
    return torch.cat(terms).mean()


def keypoint_distillation(
    student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Cross-entropy of the student's 65-way cell logits to the teacher's softmax, plus the mean
    1 - cosine between their descriptors (both unit length), weighted by the teacher's keypoint
    mass per cell (descriptors where the teacher sees keypoints matter most)."""
    s_logits, s_desc = student
    t_logits, t_desc = teacher
    t_prob = torch.softmax(t_logits, dim=1)
    ce = -(t_prob * F.log_softmax(s_logits, dim=1)).sum(dim=1).mean()
    weight = 1.0 - t_prob[:, 64]  # not the dustbin: a keypoint somewhere in the cell
    cos = (s_desc * t_desc).sum(dim=1)
    desc = ((1.0 - cos) * weight).sum() / weight.sum().clamp(min=1e-6)
    return ce + desc
