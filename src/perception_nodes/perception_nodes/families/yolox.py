"""YOLOX (Ge et al. 2021) as its ``tools/export_onnx.py`` writes it: input BGR 0-255 (no
normalisation) with the image at the top-left of a 114-grey square canvas; output ``[1, N, 5+nc]``
raw grid head (decode_in_inference off): per grid cell of strides 8, 16, 32 (row-major per
stride) the offsets dx, dy, log w, log h (in stride units), objectness and class scores (both
after sigmoid). Box centre = (cell + d) * stride, size = exp(log size) * stride; score =
objectness x best class score; class-aware NMS (YOLOX's demo uses IoU 0.45)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .yolo import Candidates, _rows, select


def grid(height: int, width: int, strides: tuple[int, ...] = (8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) cell x, y and (N,) stride of each output row."""
    cells, st = [], []
    for s in strides:
        yv, xv = np.meshgrid(np.arange(height // s), np.arange(width // s), indexing="ij")
        cells.append(np.stack([xv, yv], -1).reshape(-1, 2))
        st.append(np.full(cells[-1].shape[0], s))
    return np.concatenate(cells).astype(np.float64), np.concatenate(st).astype(np.float64)


class YoloxDecoder:
    """Card ``decode``: ``output`` (output), ``strides`` ([8, 16, 32]), ``grid_in_graph`` (false:
    raw head; true: the export decoded boxes already), ``iou_threshold`` (0.45)."""

    def __init__(self, card: Any) -> None:
        d = card.decode
        self.num_classes = card.num_classes
        self.output = str(d.get("output", "output"))
        self.strides = tuple(int(s) for s in d.get("strides", (8, 16, 32)))
        self.grid_in_graph = bool(d.get("grid_in_graph", False))
        self.iou_threshold = float(d.get("iou_threshold", 0.45))
        self.cells, self.cell_strides = grid(card.input_height, card.input_width, self.strides)

    @property
    def required_outputs(self) -> tuple[str, ...]:
        return (self.output,)

    def candidates(self, outputs: dict[str, np.ndarray], score_threshold: float) -> Candidates:
        a = _rows(outputs[self.output], 5 + self.num_classes, "YOLOX")
        if len(a) != len(self.cells):
            raise ValueError(
                f"YOLOX output has {len(a)} rows; strides {list(self.strides)} on the card's input give "
                f"{len(self.cells)} (is the card's input size the export's?)"
            )
        cls = a[:, 5:]
        labels = cls.argmax(1)
        scores = (a[:, 4] * cls[np.arange(len(a)), labels]).astype(np.float64)
        keep = np.nonzero(np.isfinite(scores) & (scores >= score_threshold) & np.isfinite(a[:, :4]).all(1))[0]
        r = a[keep, :4].astype(np.float64)
        if self.grid_in_graph:
            xy, wh = r[:, :2], r[:, 2:]
        else:
            s = self.cell_strides[keep, None]
            xy = (r[:, :2] + self.cells[keep]) * s
            wh = np.exp(np.clip(r[:, 2:], -20, 20)) * s
        boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1)
        return Candidates(boxes, scores[keep], labels[keep].astype(np.int64))

    def decode(
        self,
        outputs: dict[str, np.ndarray],
        score_threshold: float,
        max_detections: int,
        allowed: np.ndarray | None = None,
    ) -> Candidates:
        return select(self.candidates(outputs, score_threshold), self.iou_threshold, max_detections, allowed)
