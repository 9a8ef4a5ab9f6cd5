"""Losses: sigmoid focal loss and online hard negative mining for the detector's classifier,
smooth-L1 for its boxes, pixel-wise cross-entropy with an ignore label for segmentation, and the
learning-without-forgetting terms (``--keep``) that hold a model to an earlier one's outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sum over elements of -alpha_t (1 - p_t)^gamma log(p_t) (Lin et al. 2017); targets in {0, 1}."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * (1 - p_t) ** gamma * ce).sum()


def ohem_bce_loss(
    logits: torch.Tensor, targets: torch.Tensor, negatives_per_positive: int = 3, min_negatives: int = 16
) -> torch.Tensor:
    """Binary cross-entropy over all positive elements and only the hardest negatives
    (``negatives_per_positive`` per positive, as SSD does); the rest of the negatives are ignored.
    ``logits``/``targets`` (N, C) for the anchors that are not ignored."""
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    pos = targets > 0.5
    n_pos = int(pos.sum())
    neg_loss = ce.masked_fill(pos, -1.0).flatten()
    k = min(int(neg_loss.numel() - n_pos), max(negatives_per_positive * n_pos, min_negatives))
    hardest = torch.topk(neg_loss, k).values if k > 0 else neg_loss.new_zeros(0)
    return ce[pos].sum() + hardest.clamp(min=0).sum()


def smooth_l1_terms(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    diff = (pred - target).abs()
    return torch.where(diff < beta, 0.5 * diff**2 / beta, diff - 0.5 * beta)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, beta: float = 1.0 / 9) -> torch.Tensor:
    return smooth_l1_terms(pred, target, beta).sum()


def pixel_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255, class_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy over labelled pixels; logits (B, C, H, W), labels (B, H, W) long."""
    return F.cross_entropy(logits, labels, weight=class_weights, ignore_index=ignore_index)


def pixel_distillation(
    student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0, frames: torch.Tensor | None = None
) -> torch.Tensor:
    """Learning without forgetting for segmentation (Li & Hoiem, 2016): KL(teacher || student) of the
    per-pixel class distributions softened by ``temperature``, times T² (Hinton et al.) so its gradient
    keeps the scale of a cross-entropy; mean over the pixels of the ``frames`` selected (a (B,) bool
    mask; None: all). Logits (B, C, H, W); a batch with no selected frame gives 0."""
    if frames is not None:
        if not bool(frames.any()):
            return student.sum() * 0.0
        student, teacher = student[frames], teacher[frames]
    t = temperature
    log_p = F.log_softmax(student / t, dim=1)
    log_q = F.log_softmax(teacher.detach() / t, dim=1)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)  # (B, H, W)
    return kl.mean() * t * t


def detection_distillation(
    cls: torch.Tensor,
    box: torch.Tensor,
    kept_cls: torch.Tensor,
    kept_box: torch.Tensor,
    frames: torch.Tensor | None = None,
    box_from: float = 0.3,
) -> torch.Tensor:
    """Learning without forgetting for the anchor detector: on the ``frames`` chosen ((B,) bool; None:
    all), the class probabilities learn the earlier model's as soft targets, with quality-focal
    weights |p - q|^2 (Li et al., Generalized Focal Loss, 2020) so the many anchors both call
    background add little; the box deltas learn the earlier ones (smooth-L1) on the anchors where its
    best class probability is >= ``box_from`` (its detections), weighted by that probability. Both
    are normalised by the number of those anchors (at least 1), as the focal loss is by positives.
    Logits (B, A, C), deltas (B, A, 4); a batch with no chosen frame gives 0."""
    if frames is not None:
        if not bool(frames.any()):
            return cls.sum() * 0.0 + box.sum() * 0.0
        cls, box, kept_cls, kept_box = cls[frames], box[frames], kept_cls[frames], kept_box[frames]
    q = torch.sigmoid(kept_cls.detach())
    w = q.max(dim=-1).values
    sel = w >= box_from
    norm = max(int(sel.sum()), 1)
    bce = F.binary_cross_entropy_with_logits(cls, q, reduction="none")
    cls_term = (bce * (torch.sigmoid(cls) - q).abs().pow(2)).sum() / norm
    box_term = (smooth_l1_terms(box[sel], kept_box.detach()[sel]).sum(-1) * w[sel]).sum() / norm
    return cls_term + box_term
