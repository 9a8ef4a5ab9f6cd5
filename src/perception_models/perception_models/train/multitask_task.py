"""Joint training of the multi-task network (``models/multitask.py``): a task of the one training
loop (``trainer.py``).

    perception-models train --task multitask --data synth/driving_1000 ... --val synth/driving_9200 \\
        --out runs/multitask [--weighting uncertainty|fixed] [--no-attention] [--teacher models/matching.onnx]

Every synthetic frame teaches three tasks from its ground truth — boxes (the detector's anchor
loss), labels (pixel cross-entropy) and metric depth (scale-invariant log loss) — and the
keypoint head learns from a teacher (the shipped keypoint network, or any model
``onnx_weights`` loads into ``KeypointNet``) on the same image: cross-entropy to the teacher's
cell distribution and 1 - cosine to its descriptors (distillation). The frame goes through one
augmentation (crop, flip, photometric) shared by all tasks: the detection and segmentation
datasets draw it from the same (seed, epoch, index) stream, and depth repeats their geometry.

Keeping a model's function (``--keep W [--keep-from MODEL]``; learning without forgetting, as
``train --keep`` for the segmenter and ``distill --keep`` for the detector): a frozen earlier
multi-task network (``--keep-from``, default the ``--init`` one) runs on the same frames and each
task's loss gains W times a term that holds this network's outputs to its outputs — tempered KL of
the pixel classes, soft-target detection distillation, L1 of log depth, keypoint distillation.
With light heads (``--head-rank``) started from the full network, that network is the teacher of
every head (output distillation) beside the ground truth.

Single-task teachers (``--task-teacher detection=models/detection.onnx --task-teacher
segmentation=models/segmentation.onnx [--task-teacher-weight W]``): each named single-task model
runs, frozen, on the same augmented frames and its head of the multi-task network learns its
outputs beside the ground truth (soft-target detection distillation; tempered pixel KL): the
task-specific teachers of Li and Bilen's knowledge distillation for multi-task learning (ECCV 2020
workshops; they distil features through adaptors, here the outputs are distilled). The aim: a
shared backbone pulled towards what each task's own model computes. A teacher also carries what it
learned elsewhere (the shipped segmenter: CamVid labels) onto the synthetic frames it teaches on;
docs/model-history.md has what it bought.

Task weighting (``--weighting``): ``fixed`` sums the losses with ``task_weights``; ``uncertainty``
learns one log-variance s_t per task and minimises sum(exp(-s_t) L_t + s_t) (Kendall, Gal and
Cipolla, CVPR 2018). Validation: detection mAP@[.5:.95], segmentation mIoU and depth AbsRel on the
held-out sets; ``best.pt`` keeps the highest mean of mAP, mIoU and 1 - AbsRel.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..models.depth_losses import silog_loss
from ..models.detection import Detector
from ..models.losses import detection_distillation, pixel_cross_entropy, pixel_distillation
from ..models.matching_losses import keypoint_distillation
from ..models.multitask import TASKS, MultiTaskConfig, MultiTaskNet
from ..models.separable import refit_pointwise
from .data import Augment, DetectionDataset, SegmentationDataset, _fit
from .trainer import TrainTask, fit

WEIGHTINGS = ("fixed", "uncertainty")
TASK_TEACHERS = ("detection", "segmentation")  # the tasks a single-task model can teach (--task-teacher)


@dataclass
class MultiTaskTrainConfig:
    data: list[str] = field(default_factory=list)  # synthetic sequence folders (boxes, labels, depth)
    val: list[str] = field(default_factory=list)
    out: str = "runs/multitask"
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    input_size: tuple[int, int] = (384, 512)
    attention: bool = True
    head_rank: int = 0  # > 0: light heads (rank-r separable 3x3s; models/separable.py), SVD-initialised from --init
    detection_rank: int = 0  # with head_rank: the detection neck and head's rank (0 = head_rank)
    weighting: str = "uncertainty"  # fixed | uncertainty
    task_weights: dict[str, float] = field(
        default_factory=lambda: {"detection": 1.0, "segmentation": 1.0, "depth": 1.0, "keypoints": 1.0}
    )
    teacher: str = "models/matching.onnx"  # keypoint teacher ("" = no keypoint head)
    keep: float = 0.0  # weight of the terms that hold every head's outputs to the --keep-from model's (0 = off)
    keep_from: str = ""  # a multi-task checkpoint or ONNX ("" = the --init one)
    # single-task teachers: task -> a detector / segmenter ONNX or checkpoint of this project, whose
    # outputs that task's head also learns, with this weight (TASK_TEACHERS)
    task_teachers: dict[str, str] = field(default_factory=dict)
    task_teacher_weight: float = 1.0
    seed: int = 0
    workers: int = 0
    log_every: int = 10
    max_steps_per_epoch: int = 0
    augment: bool = True
    init: str = ""  # a multi-task checkpoint or exported multi-task ONNX
    # start from the shipped single-task models (ONNX): backbone + detection from the detector,
    # segmentation head from the segmenter, depth decoder from the depth model ("" = leave out)
    adopt_detection: str = ""
    adopt_segmentation: str = ""
    adopt_depth: str = ""
    device: str = "auto"
    time_budget_min: float = 0.0
    ema: float = 0.0
    max_depth: float = 100.0
    # depth for a canonical camera of this focal length (pixels at input_size; Metric3D, as the
    # shipped depth model: 152.5 px at 192x256 = 305 px at 384x512); 0 = depth as seen
    canonical_focal: float = 305.0
    detection_classes: list[str] = field(default_factory=list)  # set from the data (kept in checkpoints)


class MultiTaskFrames(Dataset):
    """Frame i of the synthetic sets -> (image, {"detection": targets, "labels": (H, W) long,
    "depth": (1, H, W) metres, NaN where unknown or padded, "focal": the camera's focal length in
    pixels of the network input}), one augmentation for all."""

    def __init__(self, roots: list[Path], input_size: tuple[int, int], augment: Augment | None, seed: int) -> None:
        self.det = DetectionDataset(roots, input_size, None, augment, seed)
        self.seg = SegmentationDataset(roots, input_size, augment, seed=seed)
        by_image = {str(img): (img, lab) for img, lab in self.seg.pairs}
        # the same frame at the same index in both: the same (seed, epoch, index) augmentation
        self.seg.pairs = [by_image[str(Path(s.image_path))] for s in self.det.samples]
        self.class_names = self.det.class_names
        self.input_size, self.augment, self.seed = input_size, augment, seed
        self.epoch = 0
        self._focal: dict[Path, float] = {}

    def __len__(self) -> int:
        return len(self.det)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.det.epoch = self.seg.epoch = epoch

    def focal(self, folder: Path) -> float:
        """The sequence's focal length (geometric mean of fx, fy) in its own pixels."""
        if folder not in self._focal:
            import yaml

            k = yaml.safe_load((folder / "camera_info.yaml").read_text())["camera_matrix"]["data"]
            self._focal[folder] = float(np.sqrt(k[0] * k[4]))
        return self._focal[folder]

    def depth(self, i: int) -> tuple[torch.Tensor, float]:
        from ..data.readers.depth import read_nyu_depth

        img_path = Path(self.det.samples[i].image_path)
        focal = self.focal(img_path.parent.parent)
        depth = read_nyu_depth(img_path.parent.parent / "depth" / img_path.name)
        if self.augment is not None:  # the geometry the other two drew from the same stream
            rng = np.random.default_rng([self.seed, self.epoch, i])
            crop = self.augment.crop(*depth.shape[:2], rng)
            if crop is not None:
                x0, y0, x1, y1 = crop
                depth = depth[y0:y1, x0:x1]
            if rng.random() < self.augment.p_flip:
                depth = depth[:, ::-1]
        _net, lb = _fit(np.zeros((*depth.shape, 3), np.uint8), self.input_size)
        h, w = self.input_size
        nh, nw = round(depth.shape[0] * lb.scale_y), round(depth.shape[1] * lb.scale_x)
        out = np.full((h, w), np.nan, np.float32)
        resized = cv2.resize(np.ascontiguousarray(depth), (nw, nh), interpolation=cv2.INTER_NEAREST)
        out[int(lb.pad_y) : int(lb.pad_y) + nh, int(lb.pad_x) : int(lb.pad_x) + nw] = resized
        return torch.from_numpy(out)[None], focal * float(np.sqrt(lb.scale_x * lb.scale_y))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]]:
        image, targets = self.det[i]
        _image, labels = self.seg[i]
        depth, focal = self.depth(i)
        return image, {"detection": targets, "labels": labels, "depth": depth, "focal": focal}


def collate(batch: list[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, dict[str, Any]]:
    images = torch.stack([b[0] for b in batch])
    return images, {
        "detection": [b[1]["detection"] for b in batch],
        "labels": torch.stack([b[1]["labels"] for b in batch]),
        "depth": torch.stack([b[1]["depth"] for b in batch]),
        "focal": torch.tensor([b[1]["focal"] for b in batch], dtype=torch.float32),
    }


class MultiTaskTask(TrainTask):
    name = "multitask"

    def check(self) -> None:
        cfg = self.cfg
        if not cfg.data:
            raise ValueError("multi-task training needs --data (synthetic sequences with boxes, labels and depth)")
        if cfg.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting '{cfg.weighting}' must be one of {WEIGHTINGS}")
        if any(s % 32 for s in cfg.input_size):
            raise ValueError(f"input size {cfg.input_size} must be multiples of 32")
        if cfg.head_rank < 0:
            raise ValueError(f"head rank {cfg.head_rank} must be 0 (full heads) or >= 1")
        if cfg.detection_rank < 0 or (cfg.detection_rank and not cfg.head_rank):
            raise ValueError(f"detection rank {cfg.detection_rank}: >= 1 with light heads (--head-rank), else 0")
        if cfg.keep < 0:
            raise ValueError(f"keep {cfg.keep} is a loss weight (>= 0)")
        if cfg.keep > 0 and not (cfg.keep_from or cfg.init):
            raise ValueError("--keep needs --keep-from or --init (the multi-task model whose outputs to keep)")
        for task, path in cfg.task_teachers.items():
            if task not in TASK_TEACHERS:
                raise ValueError(f"--task-teacher {task}={path}: a single-task teacher teaches one of {TASK_TEACHERS}")
            if not Path(path).is_file():
                raise ValueError(f"--task-teacher {task}={path}: no such model")
        if cfg.task_teacher_weight < 0:
            raise ValueError(f"task teacher weight {cfg.task_teacher_weight} is a loss weight (>= 0)")

    def build(self, device: torch.device, rank: int):
        cfg = self.cfg
        aug = Augment() if cfg.augment else None
        self.train_set = MultiTaskFrames([Path(d) for d in cfg.data], tuple(cfg.input_size), aug, cfg.seed)
        cfg.detection_classes = list(self.train_set.class_names)  # what the exporter's card names
        tasks = TASKS if cfg.teacher else tuple(t for t in TASKS if t != "keypoints")
        self.net = MultiTaskNet(
            MultiTaskConfig(
                input_size=tuple(cfg.input_size),
                detection_classes=list(self.train_set.class_names),
                attention=cfg.attention,
                tasks=tasks,
                max_depth=cfg.max_depth,
                canonical_focal=cfg.canonical_focal,
                head_rank=cfg.head_rank,
                detection_rank=cfg.detection_rank,
            )
        ).to(device)
        # Detector.loss reads only ``anchors`` and ``cfg``: the same anchor matching and focal loss
        self.detector_view = SimpleNamespace(anchors=self.net.anchors, cfg=self.net.det_cfg)
        modules: dict[str, torch.nn.Module] = {"model": self.net}
        if cfg.weighting == "uncertainty":  # learned log-variances, one per task, trained with the network
            self.log_vars = torch.nn.ParameterDict(
                {t: torch.nn.Parameter(torch.zeros((), device=device)) for t in tasks}
            )
            holder = torch.nn.Module()
            holder.log_vars = self.log_vars
            modules["weighting"] = holder
        self.teacher = self._teacher(device) if cfg.teacher else None
        self.keeper = self._keeper(device) if cfg.keep > 0 else None  # here, not in initialise(): resume needs it
        if self.keeper is not None and rank == 0:
            print(f"keep term (weight {cfg.keep}): every head's outputs held to {cfg.keep_from or cfg.init}")
        self.task_teachers = {t: self._task_teacher(t, p, device) for t, p in cfg.task_teachers.items()}
        if self.task_teachers and rank == 0:
            taught = ", ".join(f"{t} by {p}" for t, p in cfg.task_teachers.items())
            print(f"single-task teachers (weight {cfg.task_teacher_weight}): {taught}")
        self.val_sets = [Path(v) for v in cfg.val]
        if cfg.adopt_detection or cfg.adopt_segmentation or cfg.adopt_depth:
            line = self._with_full_heads(device, lambda: self._adopt(device))
            if rank == 0:
                print(line)
        return self.train_set, modules

    def _with_full_heads(self, device: torch.device, load: Callable[[], str]) -> str:
        """Run ``load`` (weights from full-head models) on this network, or, with light heads, on a
        full-head twin whose trained 3x3 convolutions then start the light heads: SVD of each, then
        each pointwise half refitted on training frames to the twin's outputs (models/separable.py)."""
        rank = self.net.cfg.head_rank
        if not rank:
            return load()
        light = self.net
        self.net = full = MultiTaskNet(replace(light.cfg, head_rank=0, detection_rank=0)).to(device)
        try:
            line = load()
            factorised = copy.deepcopy(full)
            replaced = factorised.factorize_heads(rank, light.cfg.detection_rank)
            light.load_state_dict(factorised.state_dict())
        finally:
            self.net = light
        batches = self._plain_batches(device, 8)  # one read for the refit (first 2) and the calibration
        errors = np.array(list(refit_pointwise(light, full, batches[:2]).values()))  # (layers, before/after)
        before, after = errors.mean(axis=0)
        calibrated = self._calibrate(device, batches)  # the BatchNorms after the pairs see slightly other inputs
        ranks = f"rank-{rank}" + (f" (detection rank {light.cfg.detection_rank})" if light.cfg.detection_rank else "")
        return (
            f"{line}; light heads: {len(replaced)} convolutions as {ranks} separable pairs (SVD, then refitted: "
            f"mean relative error of a layer's output {before:.3f} -> {after:.3f}), "
            f"BatchNorms calibrated again on {calibrated} batches"
        )

    def _adopt(self, device: torch.device) -> str:
        """Single-task ONNX models -> their modules in this network, then BatchNorms calibrated on
        un-augmented training frames (see onnx_weights) so training starts from their function."""
        from ..models.depth import DepthConfig, DepthNet
        from ..onnx_weights import load_onnx_weights

        cfg, net_cfg = self.cfg, self.net.cfg
        det = self._single_task_model("detection", cfg.adopt_detection) if cfg.adopt_detection else None
        seg = self._single_task_model("segmentation", cfg.adopt_segmentation) if cfg.adopt_segmentation else None
        depth = None
        if cfg.adopt_depth:
            depth = DepthNet(DepthConfig(min_depth=net_cfg.min_depth, max_depth=net_cfg.max_depth))
            load_onnx_weights(depth, cfg.adopt_depth, strict=False)  # the export keeps the finest head only
        adopted = self.net.adopt(det, seg, depth)
        calibrated = self._calibrate(device)
        return f"adopted {', '.join(adopted)} from single-task models; BatchNorms calibrated on {calibrated} batches"

    def _plain_batches(self, device: torch.device, count: int) -> list[torch.Tensor]:
        """The first ``count`` batches of un-augmented training frames."""
        cfg = self.cfg
        plain = MultiTaskFrames([Path(d) for d in cfg.data], tuple(cfg.input_size), None, cfg.seed)
        n = min(len(plain), count * cfg.batch_size)
        loader = DataLoader(torch.utils.data.Subset(plain, range(n)), cfg.batch_size, collate_fn=collate)
        return [b[0].to(device) for b in loader]

    def _calibrate(self, device: torch.device, batches: list[torch.Tensor] | None = None) -> int:
        """BatchNorms re-parameterised on un-augmented training frames (``batches``, default the first
        8) after weights came from ONNX (folded BatchNorms; see onnx_weights): the eval function is
        kept, train mode starts from it."""
        from ..onnx_weights import calibrate_batchnorm

        return calibrate_batchnorm(self.net, batches if batches is not None else self._plain_batches(device, 8))

    def initialise(self, device: torch.device, rank: int) -> str:
        """``--init``: a multi-task checkpoint, or an exported multi-task ONNX (the shipped
        models/multitask.onnx, whose checkpoint is gone) to fine-tune further."""
        if self.net.cfg.head_rank and _model_rank(self.cfg.init) == self._ranks():
            return self._initialise(device)  # light heads of the same rank: their own weights
        return self._with_full_heads(device, lambda: self._initialise(device))

    def _ranks(self) -> tuple[int, int]:
        """This run's (head rank, detection rank), as ``_model_rank`` reads a file's."""
        return _rank_pair(self.cfg.head_rank, self.cfg.detection_rank)

    def _keeper(self, device: torch.device) -> MultiTaskNet:
        """The frozen network of the keep term: ``--keep-from`` (default ``--init``), a multi-task
        checkpoint or ONNX of any head rank, in eval mode (an ONNX's folded BatchNorms give its
        exported function exactly; no calibration needed)."""
        source = self.cfg.keep_from or self.cfg.init
        rank, detection_rank = _model_rank(source)
        keeper = MultiTaskNet(replace(self.net.cfg, head_rank=rank, detection_rank=detection_rank))
        if source.endswith(".onnx"):
            from ..onnx_weights import load_onnx_weights

            load_onnx_weights(keeper, source, strict=False)  # the depth decoder's finest head is the one used
        else:
            keeper.load_state_dict(torch.load(source, map_location="cpu", weights_only=True)["model"])
        return keeper.to(device).eval().requires_grad_(False)

    def keep_terms(self, out: dict[str, Any], images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per task, the term that holds ``out`` to the keeper's outputs on the same images."""
        assert self.keeper is not None
        with torch.no_grad():
            kept = self.keeper(images)
        terms = head_distillation(out, kept)
        if "depth" in out:
            size = images.shape[-2:]
            log_depth = torch.log(self.net.depth(out["depth"], size))
            kept_log = torch.log(self.keeper.depth(kept["depth"], size))
            terms["depth"] = (log_depth - kept_log).abs().mean()
        if "keypoints" in out:
            terms["keypoints"] = keypoint_distillation(out["keypoints"], kept["keypoints"])
        return terms

    def _single_task_model(self, task: str, path: str) -> torch.nn.Module:
        """The single-task detector or segmenter of this network's classes and input size with the
        weights of ``path`` (an exported ONNX, or a checkpoint of this project)."""
        from ..models.segmentation import Segmenter
        from ..onnx_weights import load_onnx_weights

        c = self.net.cfg
        model = Detector(c.detector()) if task == "detection" else Segmenter(c.segmenter())
        if path.endswith(".onnx"):
            load_onnx_weights(model, path)
        else:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        return model

    def _task_teacher(self, task: str, path: str, device: torch.device) -> torch.nn.Module:
        """``--task-teacher``'s model, frozen, in eval mode (an ONNX's folded BatchNorms give its
        exported function exactly)."""
        try:
            model = self._single_task_model(task, path)
        except (KeyError, RuntimeError, ValueError) as e:
            raise ValueError(f"--task-teacher {task}={path}: not a {task} model of this network's classes ({e})") from e
        return model.to(device).eval().requires_grad_(False)

    def teacher_terms(self, out: dict[str, Any], images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per taught task, the distillation term to its single-task teacher on the same images."""
        with torch.no_grad():
            taught = {task: teacher(images) for task, teacher in self.task_teachers.items()}
        return head_distillation(out, taught)

    def _initialise(self, device: torch.device) -> str:
        if self.cfg.init.endswith(".onnx"):
            from ..onnx_weights import load_onnx_weights

            # not strict: the export keeps the depth decoder's finest head only (the coarser ones
            # are trained again from their initial weights and never exported)
            counts = load_onnx_weights(self.net, self.cfg.init, strict=False)
            calibrated = self._calibrate(device)
            missing = ", ".join(counts["missing"]) or "none"
            return (
                f"initialised from {self.cfg.init} ({counts['convs']} convolutions; not in the file: {missing}; "
                f"BatchNorms calibrated on {calibrated} batches)"
            )
        ck = torch.load(self.cfg.init, map_location="cpu", weights_only=True)
        if "model" not in ck or ck.get("config", {}).get("teacher") is None:
            raise ValueError(f"--init {self.cfg.init}: not a multi-task checkpoint")
        theirs, net = _config_ranks(ck["config"]), self.net.cfg  # net: the full-head twin while light heads start
        if theirs != _rank_pair(net.head_rank, net.detection_rank):
            ours = self._ranks()
            raise ValueError(
                f"--init {self.cfg.init}: heads of rank {theirs[0]} (detection {theirs[1]}), this run has "
                f"{ours[0]} (detection {ours[1]}) (light heads start from a full-head model or one of the same ranks)"
            )
        self.net.load_state_dict(ck["model"])
        return f"initialised from {self.cfg.init} (epoch {ck.get('epoch')}, best {ck.get('best')})"

    def _teacher(self, device: torch.device) -> torch.nn.Module:
        from ..models.matching import KeypointNet
        from ..onnx_weights import load_onnx_weights

        teacher = KeypointNet()
        path = self.cfg.teacher
        if path.endswith(".onnx"):
            # the export leaves out the backbone's last stage (keypoints read s8 and s16 only)
            missing = load_onnx_weights(teacher, path, strict=False)["missing"]
            unused = [m for m in missing if not m.startswith("backbone.stages.3.")]
            if unused:
                raise ValueError(f"--teacher {path}: not a keypoint network of this project (no weights for {unused})")
        else:
            teacher.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["model"])
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.to(device).eval()

    collate = staticmethod(collate)

    def focal_factor(self, focal: torch.Tensor) -> torch.Tensor:
        """(B, 1, 1, 1): canonical-camera depth -> depth of the cameras with these focal lengths."""
        c = self.net.cfg.canonical_focal
        return (focal / c if c > 0 else torch.ones_like(focal)).view(-1, 1, 1, 1)

    def set_epoch(self, epoch: int) -> None:
        self.train_set.set_epoch(epoch)

    def loss(self, nets: dict[str, torch.nn.Module], batch: Any) -> dict[str, torch.Tensor]:
        images, targets = batch
        out = nets["model"](images)
        losses: dict[str, torch.Tensor] = {}
        losses["detection"] = Detector.loss(self.detector_view, *out["detection"], targets["detection"])["total"]
        losses["segmentation"] = pixel_cross_entropy(out["segmentation"], targets["labels"])

        gt = targets["depth"]
        depth = self.net.depth(out["depth"], images.shape[-2:])
        depth = depth * self.focal_factor(targets["focal"].to(depth.device))
        gt = torch.where(gt <= self.cfg.max_depth, gt, torch.full_like(gt, float("nan")))
        losses["depth"] = silog_loss(depth, gt)
        if self.teacher is not None:
            with torch.no_grad():
                teacher = self.teacher(images)
            losses["keypoints"] = keypoint_distillation(out["keypoints"], teacher)
        kept = self.keep_terms(out, images) if self.keeper is not None else {}
        for task, term in kept.items():
            if task in losses:
                losses[task] = losses[task] + self.cfg.keep * term
        taught = self.teacher_terms(out, images) if self.task_teachers else {}
        for task, term in taught.items():
            losses[task] = losses[task] + self.cfg.task_teacher_weight * term
        total = images.new_zeros(())
        for task, value in losses.items():
            if self.cfg.weighting == "uncertainty":
                s = self.log_vars[task]
                total = total + torch.exp(-s) * value + s
            else:
                total = total + self.cfg.task_weights.get(task, 1.0) * value
        if kept:
            losses["keep"] = sum(t.detach() for t in kept.values())  # logged, already in the task losses
        if taught:
            losses["taught"] = sum(t.detach() for t in taught.values())  # logged, already in the task losses
        return {**losses, "total": total}

    @torch.no_grad()
    def validate(self, modules: dict[str, torch.nn.Module], device: torch.device) -> dict[str, Any] | None:
        if not self.val_sets:
            return None
        from ..metrics import ConfusionMatrix, DetectionEvaluator
        from ..metrics.depth import DepthEvaluator
        from ..models.detection import postprocess

        net = modules["model"]
        net.eval()
        frames = MultiTaskFrames(self.val_sets, tuple(self.cfg.input_size), None, self.cfg.seed)
        names = list(frames.class_names)
        det = DetectionEvaluator(len(names), names)
        seg = ConfusionMatrix(len(net.cfg.segmentation_classes), list(net.cfg.segmentation_classes))
        dep = DepthEvaluator(net.cfg.min_depth, min(60.0, self.cfg.max_depth))
        for images, targets in DataLoader(frames, self.cfg.batch_size, collate_fn=collate):
            out = net(images.to(device))
            boxes, scores, labels = (t.cpu() for t in postprocess(*out["detection"], net.anchors, net.det_cfg))
            for b, s, lab, t in zip(boxes, scores, labels, targets["detection"]):
                k = s > 0
                det.add(t["boxes"].numpy(), t["labels"].numpy(), b[k].numpy(), s[k].numpy(), lab[k].numpy(),
                        gt_crowd=t["ignore"].numpy())  # fmt: skip
            seg.add(targets["labels"].numpy(), out["segmentation"].argmax(dim=1).cpu().numpy())
            depth = net.depth(out["depth"], images.shape[-2:])
            depth = (depth * self.focal_factor(targets["focal"].to(depth.device))).cpu().numpy()
            for d, g in zip(depth[:, 0], targets["depth"].numpy()[:, 0]):
                dep.add(g, d)
        d, s, z = det.summary(), seg.summary(), dep.summary()
        abs_rel = z["absolute"]["abs_rel"]
        return {
            "mAP": d["mAP"],
            "mAP50": d["mAP50"],
            "mIoU": s["mIoU"],
            "abs_rel": abs_rel,
            "log_vars": {t: float(v) for t, v in getattr(self, "log_vars", {}).items()},
            "metric": float(np.mean([d["mAP"], s["mIoU"], 1.0 - min(abs_rel, 1.0)])),
        }

    def epoch_line(self, metrics: dict[str, Any], best: float) -> str:
        if "mAP" not in metrics:  # no --val
            return f"loss {metrics.get('metric', float('nan')):.4f}"
        return (
            f"mAP {metrics['mAP']:.3f}, mIoU {metrics['mIoU']:.3f}, AbsRel {metrics['abs_rel']:.3f} "
            f"(score {metrics['metric']:.4f}, best {best:.4f})"
        )


def head_distillation(out: dict[str, Any], reference: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The terms that hold ``out``'s detection and segmentation outputs to ``reference``'s (for the
    tasks both have; the raw outputs of a multi-task network, or of single-task models under their
    task's name): soft-target detection distillation and tempered pixel KL (``--keep``, ``--task-teacher``)."""
    terms: dict[str, torch.Tensor] = {}
    if "detection" in out and "detection" in reference:
        terms["detection"] = detection_distillation(*out["detection"], *reference["detection"])
    if "segmentation" in out and "segmentation" in reference:
        terms["segmentation"] = pixel_distillation(out["segmentation"], reference["segmentation"])
    return terms


def _rank_pair(head_rank: int, detection_rank: int) -> tuple[int, int]:
    """(head rank, detection rank), the detection tower's 0 meaning 'the heads' rank'."""
    return head_rank, detection_rank or head_rank


def _config_ranks(config: dict[str, Any]) -> tuple[int, int]:
    """The ranks a checkpoint's saved config says (checkpoints from before light heads: full)."""
    return _rank_pair(int(config.get("head_rank", 0)), int(config.get("detection_rank", 0)))


def _model_rank(path: str) -> tuple[int, int]:
    """The (head rank, detection rank) of a multi-task checkpoint or ONNX ((0, 0): full heads)."""
    if path.endswith(".onnx"):
        from ..onnx_weights import head_ranks

        return head_ranks(path)
    return _config_ranks(torch.load(path, map_location="cpu", weights_only=True).get("config") or {})


def load_multitask_checkpoint(path: Path | str) -> tuple[MultiTaskNet, MultiTaskTrainConfig, dict[str, Any]]:
    """The network (eval mode), its training config and the checkpoint's validation metrics. The
    exported weights are the checkpoint's ``model`` (the moving average when trained with --ema)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    c = dict(ck["config"])
    c["input_size"] = tuple(c["input_size"])
    cfg = MultiTaskTrainConfig(**c)
    if not cfg.detection_classes:  # checkpoints from before the names were kept: the data's names
        names = DetectionDataset([Path(d) for d in cfg.data], tuple(cfg.input_size), None, None, cfg.seed).class_names
        cfg.detection_classes = list(names)
    has_keypoints = any(k.startswith("kp_det.") for k in ck["model"])
    net = MultiTaskNet(
        MultiTaskConfig(
            input_size=cfg.input_size,
            detection_classes=list(cfg.detection_classes),
            attention=cfg.attention,
            tasks=TASKS if has_keypoints else tuple(t for t in TASKS if t != "keypoints"),
            max_depth=cfg.max_depth,
            canonical_focal=cfg.canonical_focal,
            head_rank=cfg.head_rank,
            detection_rank=cfg.detection_rank,
        )
    )
    net.load_state_dict(ck["model"])
    return net.eval(), cfg, dict(ck.get("metrics") or {})


def train_multitask(cfg: MultiTaskTrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train the multi-task network with the one loop (``trainer.fit``)."""
    return fit(MultiTaskTask(cfg), resume, progress)
