"""Detection and segmentation as tasks of the one training loop (``trainer.py``).

    perception-models train --task detection --data out/synth/driving_0000 out/synth/indoor_0100 \\
        --val out/synth/driving_0900 --out runs/det --epochs 30

``best.pt`` keeps the best validation mAP@[.5:.95] (detection) or mIoU (segmentation). ``--init``
takes a checkpoint or an exported ONNX model (a shipped model whose checkpoint is gone:
``onnx_weights``), to fine-tune; ``--backbone-blocks`` builds a deeper backbone whose added blocks
start as identities (:func:`grow_blocks`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..metrics import ConfusionMatrix, DetectionEvaluator
from ..models.anchor_free import AnchorFreeDetector, LightBackbone
from ..models.backbone import Backbone, BasicBlock
from ..models.detection import Detector, DetectorConfig, DetectorWithPostprocess
from ..models.losses import detection_distillation, pixel_cross_entropy, pixel_distillation
from ..models.segmentation import Segmenter, SegmenterConfig
from .data import Augment, DetectionDataset, Mixed, SegmentationDataset, detection_collate
from .trainer import TrainTask, fit, to_device

TASKS = ("detection", "segmentation")


@dataclass
class TrainConfig:
    task: str
    data: list[str]
    val: list[str]
    out: str
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    input_size: tuple[int, int] = (384, 512)
    loss: str = "focal"  # detection: focal | ohem
    num_classes: int = 0  # 0: from the data
    class_names: list[str] = field(default_factory=list)
    seed: int = 0
    workers: int = 0
    log_every: int = 10
    max_steps_per_epoch: int = 0  # 0: whole epoch
    camvid: bool = False  # segmentation data in CamVid layout (train/, trainannot/)
    augment: bool = True
    class_weights: str = "none"  # segmentation: none | median_frequency (SegNet)
    init: str = ""  # checkpoint (or exported .onnx) whose weights start this run
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    time_budget_min: float = 0.0  # > 0: fit the number of steps to this many minutes
    cache_images: bool = False  # decode the training images once, shared by the loader's workers
    ema: float = 0.0  # > 0: decay of the weights' moving average (WeightAverage)
    backbone_blocks: tuple[int, ...] = ()  # residual blocks per backbone stage; () = Backbone's default
    # detection: "retinanet" (anchors, models/detection.py) or "anchor_free" (the depthwise student,
    # models/anchor_free.py)
    architecture: str = "retinanet"
    # segmentation: real labelled frames (CamVid layout: train/ + trainannot/) next to --data, their
    # classes mapped to the model's by a class-map file (unmapped: ignored), repeated per epoch
    real_labels: list[str] = field(default_factory=list)
    real_class_map: str = ""
    real_repeat: int = 1
    # detection: probability of an object-centred zoom per training image (Augment.object_crop): objects
    # shown at every size, not only at the sizes the footage has them
    object_zoom: float = 0.0
    # learning without forgetting — weight of a term that keeps the --init model's outputs on the
    # synthetic frames while real labels (segmentation) or a teacher's pseudo-labels (detection) teach
    # the real images (``losses.pixel_distillation`` / ``losses.detection_distillation``); 0: off.
    # Segmentation: the --data frames; detection: the frames under ``keep_roots`` (distill: --synthetic)
    keep: float = 0.0
    keep_roots: list[str] = field(default_factory=list)
    keep_from: str = ""  # the model whose outputs the term keeps ("" = the --init one), e.g. a shipped .onnx


def init_weights(model: torch.nn.Module, path: str, expected_task: str, calibration_batches: Any = None) -> str:
    """Load ``path`` (a checkpoint, or an exported .onnx) into ``model``; returns a line saying what was
    loaded. ONNX weights have their BatchNorms re-calibrated on ``calibration_batches`` (see
    ``onnx_weights``) so that training starts from the exported function."""
    if path.endswith(".onnx"):
        from ..onnx_weights import calibrate_batchnorm, load_onnx_weights

        counts = load_onnx_weights(model, path, strict=False)
        grown = grow_blocks(model, counts["missing"], path)
        n = calibrate_batchnorm(model, calibration_batches) if calibration_batches is not None else 0
        return (
            f"initialised from {path} ({counts['convs']} convolutions; BatchNorms calibrated on {n} batches)"
            + _grown_line(grown)
        )
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("config", {}).get("task", expected_task) != expected_task:
        raise ValueError(f"--init {path}: a {ck['config']['task']} checkpoint, not {expected_task}")
    if "model" not in ck:
        raise ValueError(f"--init {path}: not a {expected_task} checkpoint (no 'model' weights)")
    missing, unexpected = model.load_state_dict(ck["model"], strict=False)
    if unexpected:
        raise ValueError(
            f"--init {path}: weights this model has no place for ({len(unexpected)}, e.g. {unexpected[0]}): "
            "a larger model than --backbone-blocks builds"
        )
    grown = grow_blocks(model, sorted({k.rsplit(".", 1)[0] for k in missing}), path)
    return f"initialised from {path} (epoch {ck.get('epoch')}, best {ck.get('best')})" + _grown_line(grown)


_BLOCK = re.compile(r"^backbone\.stages\.(\d+)\.(\d+)\.")


def grow_blocks(model: torch.nn.Module, missing: list[str], path: str) -> list[str]:
    """Start the backbone's residual blocks that ``path`` has no weights for (``missing``: module
    names) as identities: their last BatchNorm's scale and shift are zero, so each block returns its
    input (already non-negative after the previous ReLU) and the deeper model computes exactly what
    the loaded one did, then learns to use the new blocks. Any other missing weight is an error
    (another architecture, not a deeper one). Returns the grown blocks' names."""
    modules = dict(model.named_modules())
    lacking = set(missing)
    candidates = {m.group(0)[:-1] for m in map(_BLOCK.match, missing) if m and int(m.group(2)) >= 1}
    # a block is added only when none of its convolutions was loaded (a partly loaded one is not ours to reset)
    blocks = sorted(
        b
        for b in candidates
        if all(n in lacking for n, mod in modules.items() if n.startswith(b + ".") and isinstance(mod, torch.nn.Conv2d))
    )
    stray = [name for name in missing if not any(name.startswith(b + ".") for b in blocks)]
    if stray:
        raise ValueError(
            f"--init {path}: no weights for {len(stray)} modules of this model (e.g. {stray[0]}): "
            "another architecture (only backbone blocks added by --backbone-blocks may be missing)"
        )
    for name in blocks:
        block = modules[name]
        if not isinstance(block, BasicBlock) or not isinstance(block.skip, torch.nn.Identity):
            raise ValueError(f"--init {path}: {name} is missing but is not a stride-1 residual block")
        bn = block.conv2[1]
        with torch.no_grad():
            bn.weight.zero_()
            bn.bias.zero_()
    return blocks


def _grown_line(grown: list[str]) -> str:
    return f"; {len(grown)} added residual blocks start as identities ({', '.join(grown)})" if grown else ""


def build_datasets(cfg: TrainConfig):
    aug = Augment(p_object=cfg.object_zoom if cfg.task == "detection" else 0.0) if cfg.augment else None
    if cfg.task == "detection":
        train = DetectionDataset(
            [Path(d) for d in cfg.data],
            cfg.input_size,
            cfg.class_names or None,
            aug,
            cfg.seed,
            cache_images=cfg.cache_images,
            keep_roots=cfg.keep_roots if cfg.keep > 0 else None,
        )
        val = DetectionDataset([Path(d) for d in cfg.val], cfg.input_size, train.class_names, None, cfg.seed)
        return train, val, train.class_names
    from ..data.readers.labels import CAMVID11, CAMVID_LUT
    from ..data.synth.scene import CLASSES

    kw = dict(image_dir="train", label_dir="trainannot", lut=CAMVID_LUT) if cfg.camvid else {}
    vkw = dict(image_dir="val", label_dir="valannot", lut=CAMVID_LUT) if cfg.camvid else {}
    names = cfg.class_names or list(CAMVID11 if cfg.camvid else CLASSES)
    keep = cfg.keep > 0  # tag each frame: 1 = synthetic (the keep term applies), 0 = real
    parts: list[Any] = []
    if cfg.data:
        parts.append(
            SegmentationDataset(
                [Path(d) for d in cfg.data],
                cfg.input_size,
                aug,
                seed=cfg.seed,
                cache_images=cfg.cache_images,
                tag=1 if keep else None,
                **kw,
            )
        )
    if cfg.real_labels:
        from ..evaluate import read_class_map
        from .data import mapped_lut

        if not cfg.real_class_map:
            raise ValueError("--real-labels needs --real-class-map (CamVid class: model class)")
        lut = mapped_lut(read_class_map(cfg.real_class_map), CAMVID11, names)
        real = SegmentationDataset(
            [Path(d) for d in cfg.real_labels],
            cfg.input_size,
            aug,
            image_dir="train",
            label_dir="trainannot",
            lut=lut,
            seed=cfg.seed + 1,
            cache_images=cfg.cache_images,
            tag=0 if keep else None,
        )
        parts += [real] * max(1, cfg.real_repeat)
    if not parts:
        raise ValueError("segmentation training needs --data and/or --real-labels")
    train = parts[0] if len(parts) == 1 else Mixed(parts)
    val = SegmentationDataset([Path(d) for d in cfg.val], cfg.input_size, None, seed=cfg.seed, **vkw)
    return train, val, names


ARCHITECTURES = ("retinanet", "anchor_free")


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    blocks = tuple(cfg.backbone_blocks)
    if cfg.task == "detection" and cfg.architecture == "anchor_free":
        det_cfg = DetectorConfig(num_classes=num_classes, input_size=tuple(cfg.input_size))
        return AnchorFreeDetector(det_cfg, LightBackbone(blocks=blocks) if blocks else None)
    backbone = Backbone(blocks=blocks) if blocks else None
    if cfg.task == "detection":
        return Detector(
            DetectorConfig(num_classes=num_classes, input_size=tuple(cfg.input_size), loss=cfg.loss), backbone
        )
    return Segmenter(SegmenterConfig(num_classes=num_classes, input_size=tuple(cfg.input_size)), backbone)


def median_frequency_weights(dataset: Any, num_classes: int, max_weight: float = 20.0) -> torch.Tensor:
    """SegNet's median frequency balancing: w_c = median(f) / f_c, with f_c = pixels of class c /
    pixels of the images where c appears (label maps read at their stored resolution)."""
    from ..data.readers.labels import read_label_png

    pixels = np.zeros(num_classes, np.float64)
    present_pixels = np.zeros(num_classes, np.float64)
    parts = list({id(p): p for p in getattr(dataset, "parts", [dataset])}.values())  # a Mixed set: each part once
    for part, (_img, lab_path) in ((p, pair) for p in parts for pair in p.pairs):
        lab = read_label_png(lab_path, part.lut)
        counts = np.bincount(lab[lab < num_classes].reshape(-1), minlength=num_classes)[:num_classes]
        pixels += counts
        present_pixels += (counts > 0) * lab.size
    with np.errstate(divide="ignore", invalid="ignore"):
        freq = np.where(present_pixels > 0, pixels / present_pixels, np.nan)
    weights = np.nanmedian(freq) / freq
    weights = np.where(np.isfinite(weights), np.clip(weights, 0.0, max_weight), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def evaluate(
    cfg: TrainConfig,
    model: torch.nn.Module,
    loader: DataLoader,
    class_names: list[str],
    device: torch.device | None = None,
) -> dict[str, Any]:
    was_training = model.training
    model.eval()
    device = device or torch.device("cpu")
    if cfg.task == "detection":
        post = DetectorWithPostprocess(model)
        ev = DetectionEvaluator(len(class_names), class_names)
        for images, targets in loader:
            boxes, scores, labels = (t.cpu() for t in post(images.to(device)))
            for b, s, lab, t in zip(boxes, scores, labels, targets):
                k = s > 0
                ev.add(
                    t["boxes"].numpy(),
                    t["labels"].numpy(),
                    b[k].numpy(),
                    s[k].numpy(),
                    lab[k].numpy(),
                    gt_crowd=t["ignore"].numpy(),
                )
        out = ev.summary()
        out["metric"] = out["mAP"]
    else:
        cm = ConfusionMatrix(len(class_names), class_names)
        for images, labels in loader:
            cm.add(labels.numpy(), model(images.to(device)).argmax(dim=1).cpu().numpy())
        out = cm.summary()
        out["metric"] = out["mIoU"]
        out["confusion_matrix"] = cm.matrix.tolist()
    model.train(was_training)
    return out


class ImageTask(TrainTask):
    """Detection (anchors + focal loss, ``models/detection.py``, or the anchor-free student,
    ``models/anchor_free.py``) or segmentation (pixel
    cross-entropy, optionally median-frequency weighted) on letterboxed images."""

    unlogged = ("confusion_matrix",)

    def __init__(self, cfg: TrainConfig) -> None:
        super().__init__(cfg)
        self.name = cfg.task
        self.collate = detection_collate if cfg.task == "detection" else None
        self.pixel_weights: torch.Tensor | None = None
        self.keeper: torch.nn.Module | None = None  # --keep: the frozen --keep-from (or --init) model

    def check(self) -> None:
        if self.cfg.task not in TASKS:
            raise ValueError(f"task '{self.cfg.task}' must be one of {TASKS}")
        if self.cfg.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture '{self.cfg.architecture}' must be one of {ARCHITECTURES}")
        if self.cfg.architecture != "retinanet" and (self.cfg.task != "detection" or self.cfg.loss != "focal"):
            raise ValueError("--architecture anchor_free is a detector trained with the focal loss")
        if not 0.0 <= self.cfg.object_zoom <= 1.0:
            raise ValueError(f"object_zoom {self.cfg.object_zoom} is a probability (0-1)")
        if self.cfg.class_weights not in ("none", "median_frequency"):
            raise ValueError(f"class_weights '{self.cfg.class_weights}' must be none or median_frequency")
        if self.cfg.keep < 0:
            raise ValueError(f"keep {self.cfg.keep} is a loss weight (>= 0)")
        if self.cfg.keep > 0:
            frames = self.cfg.data if self.cfg.task == "segmentation" else self.cfg.keep_roots
            if not (self.cfg.keep_from or self.cfg.init) or not frames or self.cfg.architecture != "retinanet":
                raise ValueError(
                    "--keep (learning without forgetting) needs --keep-from or --init (the model whose outputs to "
                    "keep) and the synthetic frames to keep them on (segmentation: --data; detection: distill "
                    "--synthetic), for the segmenter or the anchor detector"
                )

    def build(self, device: torch.device, rank: int):
        cfg = self.cfg
        self.train_set, val_set, class_names = build_datasets(cfg)
        cfg.class_names = list(class_names)
        cfg.num_classes = cfg.num_classes or len(class_names)
        self.val_loader = DataLoader(
            val_set,
            cfg.batch_size,
            shuffle=False,
            num_workers=cfg.workers,
            collate_fn=self.collate,
            pin_memory=device.type == "cuda",
        )
        self.model = build_model(cfg, cfg.num_classes).to(device)
        if cfg.task == "segmentation" and cfg.class_weights == "median_frequency":
            weights = median_frequency_weights(self.train_set, cfg.num_classes)
            if rank == 0:
                print(
                    "class weights (median frequency): "
                    + ", ".join(f"{n} {w:.2f}" for n, w in zip(class_names, weights.tolist()))
                )
            self.pixel_weights = weights.to(device)
        if cfg.keep > 0:  # built here, not in initialise(): a resumed run needs it too
            self.keeper = build_model(cfg, cfg.num_classes).to(device)
            source = cfg.keep_from or cfg.init
            line = init_weights(self.keeper, source, cfg.task, self._calibration(device, source))
            self.keeper.eval().requires_grad_(False)
            if rank == 0:
                print(f"keep term (weight {cfg.keep}): {line}")
        return self.train_set, {"model": self.model}

    def initialise(self, device: torch.device, rank: int) -> str:
        if self.keeper is not None and self.cfg.keep_from in ("", self.cfg.init):  # same weights, calibrated once
            self.model.load_state_dict(self.keeper.state_dict())
            return f"initialised from {self.cfg.init} (the keep term's model)"
        return init_weights(self.model, self.cfg.init, self.cfg.task, self._calibration(device, self.cfg.init))

    def _calibration(self, device: torch.device, path: str) -> Any:
        cfg = self.cfg
        calib = None
        if path.endswith(".onnx"):  # BatchNorm statistics from un-augmented training images
            first = self.train_set.parts[0] if isinstance(self.train_set, Mixed) else self.train_set
            plain = copy.copy(first)  # same samples (and decoded images), no augmentation
            plain.augment = None
            n = min(len(plain), 16 * cfg.batch_size)
            calib = (
                to_device(b[0], device)
                for b in DataLoader(
                    torch.utils.data.Subset(plain, range(n)),
                    cfg.batch_size,
                    collate_fn=self.collate,
                    num_workers=cfg.workers,
                )
            )
        return calib

    def set_epoch(self, epoch: int) -> None:
        self.train_set.epoch = epoch

    def loss(self, nets: dict[str, torch.nn.Module], batch: Any) -> dict[str, torch.Tensor]:
        images, targets, *tags = batch
        if self.cfg.task == "detection":
            cls, box = nets["model"](images)
            losses = self.model.loss(cls, box, targets)
            if self.keeper is None:
                return losses
            with torch.no_grad():
                kept_cls, kept_box = self.keeper(images)
            frames = torch.stack([t["keep"] for t in targets])
            keep = detection_distillation(cls, box, kept_cls, kept_box, frames)
            return {**losses, "total": losses["total"] + self.cfg.keep * keep, "keep": keep.detach()}
        logits = nets["model"](images)
        ce = pixel_cross_entropy(logits, targets, class_weights=self.pixel_weights)
        if self.keeper is None:
            return {"total": ce}
        with torch.no_grad():
            kept = self.keeper(images)
        keep = pixel_distillation(logits, kept, frames=tags[0] == 1)
        return {"total": ce + self.cfg.keep * keep, "ce": ce.detach(), "keep": keep.detach()}

    def validate(self, modules: dict[str, torch.nn.Module], device: torch.device) -> dict[str, Any]:
        return evaluate(self.cfg, modules["model"], self.val_loader, self.cfg.class_names, device)

    def epoch_line(self, metrics: dict[str, Any], best: float) -> str:
        return f"{'mAP' if self.cfg.task == 'detection' else 'mIoU'} {metrics['metric']:.4f} (best {best:.4f})"


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a detector or a segmenter (``cfg.task``) with the one loop (``trainer.fit``)."""
    return fit(ImageTask(cfg), resume, progress)


def load_checkpoint(path: Path | str) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """Model (eval mode), its training config and the checkpoint's metrics."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    c = ck["config"]
    c["input_size"] = tuple(c["input_size"])
    cfg = TrainConfig(**c)
    model = build_model(cfg, cfg.num_classes)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck.get("metrics", {})
