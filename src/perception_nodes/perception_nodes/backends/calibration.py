"""INT8 calibration batches from a folder of images or a bag's image topic (no TensorRT here)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..image_conversion import IMAGE_SUFFIXES, list_images
from ..pipelines.preprocess import fit_image, to_nchw
from .base import BackendError


def iter_rgb_images(
    images: str | None = None, bag: str | None = None, topic: str = "/camera/image_raw"
) -> Iterator[np.ndarray]:
    if images:
        files = list_images(images)
        if not files:
            raise BackendError(f"no images ({sorted(IMAGE_SUFFIXES)}) in '{images}'")
        for f in files:
            bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if bgr is not None:
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    elif bag:
        from ..bag_io import read_messages, typestore
        from ..image_conversion import image_to_rgb

        store = typestore(bag)
        for _t, msgtype, _ts, cdr in read_messages(bag, [topic]):
            yield image_to_rgb(store.deserialize_cdr(cdr, msgtype))
    else:
        raise BackendError("calibration needs images=DIR or bag=BAG")


def calibration_batches(
    onnx_path: Path,
    shapes: dict[str, tuple[int, ...]],
    *,
    images: str | None = None,
    bag: str | None = None,
    topic: str = "/camera/image_raw",
    count: int = 200,
    mean: tuple[float, ...] = (0.0, 0.0, 0.0),
    std: tuple[float, ...] = (1.0, 1.0, 1.0),
) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed NCHW float32 batches for the model's single image input."""
    from .tensorrt_backend import onnx_input_specs, resolve_input_shapes

    specs = onnx_input_specs(onnx_path)
    resolved = resolve_input_shapes(specs, shapes or None)
    if len(resolved) != 1:
        raise BackendError(f"calibration supports one image input; the model has {list(resolved)}")
    ((name, (n, _c, h, w)),) = resolved.items()
    m, s = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    batch: list[np.ndarray] = []
    used = 0
    for rgb in iter_rgb_images(images, bag, topic):
        img, _ = fit_image(rgb, w, h)
        batch.append(to_nchw(img, m, s)[0])
        if len(batch) == n:
            yield {name: np.stack(batch)}
            batch, used = [], used + n
            if used >= count:
                return
