"""SuperPoint-style keypoint heads (DeTone et al. 2018; XFeat, Potje et al. 2024, exports the same):
``logits`` ``[1, 65, H/8, W/8]``: per 8x8 cell, 64 logits for where in the cell the keypoint is and
a 65th "no keypoint" dustbin; softmax over the 65, dustbin dropped, cells unfolded to a full-size
heatmap (channel = row-in-cell * 8 + column-in-cell), local maxima kept (non-maximum suppression
with a square window, radius ``nms_radius``) above ``detection_threshold``, the ``top_k`` best. A
reliability map ``[1, 1, H/8, W/8]`` (XFeat) multiplies the score. Descriptors are sampled
bilinearly from the dense map ``[1, D, H/8, W/8]`` at each keypoint and L2-normalised.

End-to-end exports (``layout: end2end``) already return ``keypoints`` [N, 2] (input pixels),
``scores`` [N] and ``descriptors`` [N, D]."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np


def _squeeze(a: np.ndarray, rank: int) -> np.ndarray:
    a = np.asarray(a, np.float32)
    while a.ndim > rank and a.shape[0] == 1:
        a = a[0]
    return a


def heatmap_from_logits(logits: np.ndarray, cell: int = 8) -> np.ndarray:
    """(C, h, w) cell logits with a dustbin -> (h*cell, w*cell) keypoint probability."""
    x = _squeeze(logits, 3)
    c, h, w = x.shape
    if c != cell * cell + 1:
        raise ValueError(
            f"keypoint logits have {c} channels; a {cell}x{cell} cell head with a dustbin has {cell * cell + 1}"
        )
    e = np.exp(x - x.max(0, keepdims=True))
    p = e[:-1] / e.sum(0, keepdims=True)
    return p.reshape(cell, cell, h, w).transpose(2, 0, 3, 1).reshape(h * cell, w * cell)


def sample_map(fmap: np.ndarray, xy: np.ndarray, cell: int) -> np.ndarray:
    """Bilinear samples (N, C) of a (C, h, w) map whose cell (i, j) covers input pixels
    [cell*j, cell*j + cell) at input pixel centres ``xy`` (N, 2)."""
    c, h, w = fmap.shape
    u = (xy[:, 0] + 0.5) / cell - 0.5
    v = (xy[:, 1] + 0.5) / cell - 0.5
    u0 = np.clip(np.floor(u), 0, w - 1).astype(np.int64)
    v0 = np.clip(np.floor(v), 0, h - 1).astype(np.int64)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu = np.clip(u - u0, 0, 1)[None].astype(np.float32)
    fv = np.clip(v - v0, 0, 1)[None].astype(np.float32)
    top = fmap[:, v0, u0] * (1 - fu) + fmap[:, v0, u1] * fu
    bottom = fmap[:, v1, u0] * (1 - fu) + fmap[:, v1, u1] * fu
    return (top * (1 - fv) + bottom * fv).T


class KeypointDecoder:
    """Card ``decode``: ``layout`` raw | end2end; raw: ``logits``, ``descriptors``, optional
    ``reliability``, ``cell`` (8), ``detection_threshold`` (0.05), ``nms_radius`` (2), ``top_k`` (1024)."""

    def __init__(self, card: Any) -> None:
        d = card.decode
        self.layout = str(d.get("layout", "raw"))
        if self.layout not in ("raw", "end2end"):
            raise ValueError(f"keypoint card decode.layout '{self.layout}' must be raw or end2end")
        if self.layout == "end2end":
            self.names = (
                str(d.get("keypoints", "keypoints")),
                str(d.get("scores", "scores")),
                str(d.get("descriptors", "descriptors")),
            )
        else:
            self.logits, self.descriptors = str(d["logits"]), str(d["descriptors"])
            self.reliability = str(d["reliability"]) if d.get("reliability") else None
        self.cell = int(d.get("cell", 8))
        self.threshold = float(d.get("detection_threshold", 0.05))
        self.nms_radius = int(d.get("nms_radius", 2))
        self.top_k = int(d.get("top_k", 1024))

    @property
    def required_outputs(self) -> tuple[str, ...]:
        if self.layout == "end2end":
            return self.names
        return (self.logits, self.descriptors) + ((self.reliability,) if self.reliability else ())

    def decode(self, outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Keypoints (N, 2) at network-input pixel centres, scores (N,), unit descriptors (N, D)."""
        if self.layout == "end2end":
            kp = np.asarray(outputs[self.names[0]], np.float32).reshape(-1, 2)
            sc = np.asarray(outputs[self.names[1]], np.float32).reshape(-1)
            de = np.asarray(outputs[self.names[2]], np.float32).reshape(len(sc), -1)
            ok = np.isfinite(kp).all(1) & np.isfinite(de).all(1) & np.isfinite(sc)
            kp, sc, de = kp[ok], sc[ok], de[ok]
        else:
            heat = heatmap_from_logits(outputs[self.logits], self.cell)
            k = 2 * self.nms_radius + 1
            peak = cv2.dilate(heat, np.ones((k, k), np.uint8))
            ys, xs = np.nonzero((heat >= peak) & (heat > self.threshold))
            kp = np.stack([xs, ys], 1).astype(np.float32)
            sc = heat[ys, xs]
            if self.reliability:
                rel = _squeeze(outputs[self.reliability], 3)
                sc = sc * sample_map(rel, kp, self.cell)[:, 0]
            de = (
                sample_map(_squeeze(outputs[self.descriptors], 3), kp, self.cell)
                if len(kp)
                else np.zeros((0, 1), np.float32)
            )
        if len(sc) > self.top_k:
            best = np.argpartition(-sc, self.top_k)[: self.top_k]
            kp, sc, de = kp[best], sc[best], de[best]
        order = np.argsort(-sc, kind="stable")
        kp, sc, de = kp[order], sc[order], de[order]
        norm = np.linalg.norm(de, axis=1, keepdims=True)
        de = de / np.where(norm > 0, norm, 1.0)
        return kp.astype(np.float32), np.maximum(sc, 1e-6).astype(np.float32), de.astype(np.float32)
