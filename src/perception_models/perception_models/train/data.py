"""Datasets for training: images letterboxed to the network input exactly as the nodes do it
(``perception_nodes.pipelines.preprocess.fit_image``), so training and inference see the same
geometry; boxes and label maps follow the same transform.

Per sample on the CPU (640x480 synthetic frame, 288x384 input): PNG decoding ~6 ms, photometric
augmentation ~2 ms at the network's size (it is applied after the letterbox, to the image area
only: 6 ms at the frame's size). ``cache_images`` decodes every image once, before the data
loader's workers fork, so they share the decoded frames (a GPU run is otherwise bound by decoding).
"""

from __future__ import annotations

from typing import Any

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from perception_nodes.tools.protocol import ignored_ground_truth

from ..data.readers.coco import load_coco
from ..data.readers.common import DataFormatError, read_rgb
from ..data.readers.labels import IGNORE, read_label_png

MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # normalisation recorded in the model card
STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class Augment:
    """Geometric + photometric augmentation; ``p_*`` are probabilities, ``zoom`` the max crop zoom."""

    p_flip: float = 0.5
    zoom: float = 1.6
    p_zoom: float = 0.5
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.3
    # detection: probability of an object-centred zoom (:meth:`object_crop`) instead of ``crop``, and
    # the range of the chosen object's size after it (sqrt(box area / crop area), log-uniform)
    p_object: float = 0.0
    object_size: tuple[float, float] = (0.15, 0.6)

    def photometric(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = rgb.astype(np.float32)
        x = (
            x * (1 + rng.uniform(-self.contrast, self.contrast))
            + 255 * rng.uniform(-self.brightness, self.brightness) / 2
        )
        grey = x.mean(axis=2, keepdims=True)
        x = grey + (x - grey) * (1 + rng.uniform(-self.saturation, self.saturation))
        return np.clip(x, 0, 255).astype(np.uint8)

    def crop(self, h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
        """A random crop (x0, y0, x1, y1) with the image's aspect ratio, or None."""
        if self.zoom <= 1.0 or rng.random() >= self.p_zoom:
            return None
        z = rng.uniform(1.0, self.zoom)
        cw, ch = int(round(w / z)), int(round(h / z))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return x0, y0, x0 + cw, y0 + ch

    def object_crop(
        self, h: int, w: int, boxes: np.ndarray, rng: np.random.Generator
    ) -> tuple[int, int, int, int] | None:
        """A crop (x0, y0, x1, y1) with the image's aspect ratio around one of ``boxes`` (xyxy,
        picked at random) in which that object's size, sqrt(box area / crop area), is drawn
        log-uniformly from ``object_size``; the crop holds the whole box, at a random place around
        it. None when no box is given, when the draw says no (``p_object``), or when the object is
        already that large (a crop cannot shrink it).

        Why: a robot's road footage shows people small and far (teacher labels on CamVid/KITTI:
        median size 0.06) while close-range photos show them large (VOC: median 0.35); without
        this zoom a student distilled on the footage never sees a large person."""
        if len(boxes) == 0 or self.p_object <= 0 or rng.random() >= self.p_object:
            return None
        bx0, by0, bx1, by1 = (float(v) for v in boxes[int(rng.integers(len(boxes)))])
        bw, bh = max(bx1 - bx0, 1.0), max(by1 - by0, 1.0)
        lo, hi = self.object_size
        size = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        cw = np.sqrt(bw * bh / size**2 * w / h)
        cw = max(cw, bw, bh * w / h)  # the whole box stays inside
        if cw >= w:
            return None
        ch = cw * h / w
        cw_i, ch_i = max(int(round(cw)), 1), max(int(round(ch)), 1)
        # the crop's left edge: anywhere that keeps the box inside the crop and the crop inside the image
        x_lo, x_hi = max(0, int(np.ceil(bx1)) - cw_i), min(int(bx0), w - cw_i)
        y_lo, y_hi = max(0, int(np.ceil(by1)) - ch_i), min(int(by0), h - ch_i)
        x0 = int(rng.integers(x_lo, x_hi + 1)) if x_hi >= x_lo else min(max(int(bx0), 0), w - cw_i)
        y0 = int(rng.integers(y_lo, y_hi + 1)) if y_hi >= y_lo else min(max(int(by0), 0), h - ch_i)
        return x0, y0, x0 + cw_i, y0 + ch_i


def photometric_inside(
    net: np.ndarray, lb, src_shape: tuple[int, ...], augment: Augment, rng: np.random.Generator
) -> np.ndarray:
    """``augment.photometric`` on the letterboxed image's content (``src_shape``: the image before
    the letterbox), leaving the padding as the nodes pad."""
    y0, x0 = int(lb.pad_y), int(lb.pad_x)
    y1, x1 = y0 + round(src_shape[0] * lb.scale_y), x0 + round(src_shape[1] * lb.scale_x)
    out = net.copy()
    out[y0:y1, x0:x1] = augment.photometric(net[y0:y1, x0:x1], rng)
    return out


class ImageCache:
    """Decoded images by path, filled up front with threads (OpenCV releases the GIL)."""

    def __init__(self, paths: list[Path], threads: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max(1, threads)) as pool:
            self.images = dict(zip(paths, pool.map(read_rgb, paths)))

    def __call__(self, path: Path) -> np.ndarray:
        return self.images[path]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.images.values())


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    from perception_nodes.pipelines.preprocess import to_nchw

    return torch.from_numpy(to_nchw(rgb, MEAN, STD)[0])


def _fit(rgb: np.ndarray, size: tuple[int, int]):
    from perception_nodes.pipelines.preprocess import fit_image

    return fit_image(rgb, size[1], size[0], mode="letterbox")


class DetectionDataset(Dataset):
    """COCO-annotated images (synthetic sets: ``<dir>/annotations_coco.json`` + ``rgb/``) ->
    (image (3, H, W), {"boxes": (G, 4) xyxy in network pixels, "labels": (G,) class index,
    "ignore": (G,) bool}). ``ignore`` marks the boxes the evaluation protocol ignores
    (:func:`~perception_nodes.tools.protocol.ignored_ground_truth`, judged in the image as stored), so
    that validation during training scores what the model cards score; the training loss still
    learns from them. COCO crowd boxes (``iscrowd``: a teacher's low-confidence boxes in a distilled
    set, perception_models.distill) come back as ``"uncertain"`` (U, 4): the loss neither rewards
    nor punishes what the model says there."""

    def __init__(
        self,
        roots: list[Path],
        input_size: tuple[int, int],
        class_names: list[str] | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        min_box: float = 2.0,
        cache_images: bool = False,
        keep_roots: list[str] | None = None,
    ) -> None:
        self.samples = []
        # --keep: whether the learning-without-forgetting term applies to a sample (its root is one of
        # ``keep_roots``); targets then carry "keep"
        self.keep: list[bool] | None = None if keep_roots is None else []
        kept_roots = {Path(r) for r in keep_roots or []}
        names = None
        for root in roots:
            root = Path(root)
            ann = root / "annotations_coco.json" if root.is_dir() else root
            samples, cats = load_coco(ann)
            names = names or cats
            if cats != names:
                raise DataFormatError(f"{ann}: categories {cats} differ from {names} of the other sets")
            self.samples += samples
            if self.keep is not None:
                self.keep += [root in kept_roots] * len(samples)
        if not self.samples:
            raise DataFormatError(f"no images in {[str(r) for r in roots]}")
        self.class_names = class_names or list(names or [])
        self.index = {n: i for i, n in enumerate(self.class_names)}
        self.input_size, self.augment, self.seed, self.min_box = input_size, augment, seed, min_box
        self.epoch = 0
        self.read = ImageCache([Path(s.image_path) for s in self.samples]) if cache_images else read_rgb

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.samples[i]
        rgb = self.read(Path(s.image_path))
        keep = [k for k, n in enumerate(s.labels) if n in self.index and not s.difficult[k]]
        unsure = [k for k, n in enumerate(s.labels) if n in self.index and s.difficult[k]]
        n_keep = len(keep)
        boxes = s.boxes[keep + unsure].astype(np.float32).reshape(-1, 4)
        labels = np.array([self.index[s.labels[k]] for k in keep], np.int64)
        small = ignored_ground_truth(boxes[:n_keep], s.areas[keep] if s.areas is not None else None)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            crop = self.augment.object_crop(*rgb.shape[:2], boxes[:n_keep], rng) or self.augment.crop(
                *rgb.shape[:2], rng
            )
            if crop is not None:
                x0, y0, x1, y1 = crop
                rgb = rgb[y0:y1, x0:x1]
                area = _areas(boxes[:n_keep])
                boxes = boxes - np.array([x0, y0, x0, y0], np.float32)
                boxes[:, 0::2] = boxes[:, 0::2].clip(0, x1 - x0)
                boxes[:, 1::2] = boxes[:, 1::2].clip(0, y1 - y0)
                # an object the crop cuts to less than half is neither a positive nor background:
                # it joins the uncertain boxes (a sliver labelled "person" teaches a wrong shape)
                cut = np.flatnonzero(_areas(boxes[:n_keep]) < 0.5 * area)
                if len(cut):
                    whole = np.setdiff1d(np.arange(n_keep), cut)
                    boxes = np.concatenate([boxes[whole], boxes[n_keep:], boxes[cut]])
                    labels, small = labels[whole], small[whole]
                    n_keep = len(whole)
            if rng.random() < self.augment.p_flip:
                rgb = rgb[:, ::-1]
                w = rgb.shape[1]
                boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1).reshape(-1, 4)
        net, lb = _fit(np.ascontiguousarray(rgb), self.input_size)
        if self.augment is not None:
            net = photometric_inside(net, lb, rgb.shape, self.augment, rng)
        boxes = boxes * np.array([lb.scale_x, lb.scale_y, lb.scale_x, lb.scale_y], np.float32) + np.array(
            [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y], np.float32
        )
        ok = ((boxes[:, 2] - boxes[:, 0]) >= self.min_box) & ((boxes[:, 3] - boxes[:, 1]) >= self.min_box)
        sure, uncertain = boxes[:n_keep], boxes[n_keep:]
        ok_sure, ok_unsure = ok[:n_keep], ok[n_keep:]
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(sure[ok_sure])).reshape(-1, 4),
            "labels": torch.from_numpy(labels[ok_sure]),
            "ignore": torch.from_numpy(small[ok_sure]),
            "uncertain": torch.from_numpy(np.ascontiguousarray(uncertain[ok_unsure])).reshape(-1, 4),
        }
        if self.keep is not None:
            target["keep"] = torch.tensor(self.keep[i])
        return to_tensor(net), target


def _areas(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)


class SegmentationDataset(Dataset):
    """Image + label PNG pairs -> (image (3, H, W), labels (H, W) long, ``IGNORE`` = 255).

    Synthetic sets: ``<dir>/rgb`` + ``<dir>/labels``. CamVid: ``image_dir=train``,
    ``label_dir=trainannot`` with ``lut=CAMVID_LUT``. Letterbox padding is labelled IGNORE. With
    ``tag`` set, items are (image, labels, tag): which part of a ``Mixed`` set a frame came from (the
    segmentation trainer's ``--keep`` term applies to the tagged synthetic frames only)."""

    def __init__(
        self,
        roots: list[Path],
        input_size: tuple[int, int],
        augment: Augment | None = None,
        image_dir: str = "rgb",
        label_dir: str = "labels",
        lut: np.ndarray | None = None,
        seed: int = 0,
        cache_images: bool = False,
        tag: int | None = None,
    ) -> None:
        self.tag = tag
        self.pairs: list[tuple[Path, Path]] = []
        for root in roots:
            images = sorted((Path(root) / image_dir).glob("*.png"))
            for img in images:
                lab = Path(root) / label_dir / img.name
                if lab.is_file():
                    self.pairs.append((img, lab))
        if not self.pairs:
            raise DataFormatError(f"no image/label pairs under {[str(r) for r in roots]} ({image_dir}/, {label_dir}/)")
        self.input_size, self.augment, self.lut, self.seed = input_size, augment, lut, seed
        self.epoch = 0
        self.read = ImageCache([img for img, _ in self.pairs]) if cache_images else read_rgb

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        img_path, lab_path = self.pairs[i]
        rgb = self.read(img_path)
        lab = read_label_png(lab_path, self.lut)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            crop = self.augment.crop(*rgb.shape[:2], rng)
            if crop is not None:
                x0, y0, x1, y1 = crop
                rgb, lab = rgb[y0:y1, x0:x1], lab[y0:y1, x0:x1]
            if rng.random() < self.augment.p_flip:
                rgb, lab = rgb[:, ::-1], lab[:, ::-1]
        net, lb = _fit(np.ascontiguousarray(rgb), self.input_size)
        if self.augment is not None:
            net = photometric_inside(net, lb, rgb.shape, self.augment, rng)
        h, w = self.input_size
        nh, nw = round(lab.shape[0] * lb.scale_y), round(lab.shape[1] * lb.scale_x)
        lab_net = np.full((h, w), IGNORE, np.uint8)
        resized = cv2.resize(np.ascontiguousarray(lab), (nw, nh), interpolation=cv2.INTER_NEAREST)
        lab_net[int(lb.pad_y) : int(lb.pad_y) + nh, int(lb.pad_x) : int(lb.pad_x) + nw] = resized
        item = to_tensor(net), torch.from_numpy(lab_net.astype(np.int64))
        return item if self.tag is None else (*item, torch.tensor(self.tag))


def detection_collate(batch):
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


class Mixed(torch.utils.data.ConcatDataset):
    """Several datasets as one (synthetic renders + real labelled frames); ``epoch`` reaches every
    part, so each keeps drawing its augmentation from (seed, epoch, index)."""

    def __init__(self, parts: list[Any]) -> None:
        super().__init__(parts)
        self.parts = parts
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch = value
        for p in self.parts:
            p.epoch = value


def mapped_lut(class_map: dict[str, list[str]], source: tuple[str, ...], target: list[str]) -> np.ndarray:
    """Label LUT from a class-map file's ``source class: target class`` (e.g. CamVid -> ours): source
    ids without a mapped target become IGNORE, so unmapped classes teach nothing (not "background")."""
    from ..data.readers.labels import make_lut

    unknown = sorted(
        {s for s in class_map if s not in source} | {t for v in class_map.values() for t in v if t not in target}
    )
    if unknown:
        raise ValueError(f"class map names {unknown}: not among the labels {list(source)} or the model's {target}")
    return make_lut({source.index(s): target.index(t[0]) for s, t in class_map.items() if t})
