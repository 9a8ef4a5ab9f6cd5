"""One trainer for the detection and segmentation tasks.

    perception-models train --task detection --data out/synth/driving_0000 out/synth/indoor_0100 \\
        --val out/synth/driving_0900 --out runs/det --epochs 30

- deterministic: seeds for torch/numpy/python and per-sample augmentation streams
  (``seed, epoch, index``); the same command gives the same losses on the same machine;
- progress bar per epoch; ``log.jsonl`` with one line per logging step and one per validation
  (``perception-models plot runs/det`` draws the curves);
- checkpoints ``last.pt`` (every epoch, resumable with ``--resume``) and ``best.pt`` (best
  validation metric: mAP@[.5:.95] for detection, mIoU for segmentation);
- runs on a GPU when one is there (``--device auto``); several GPUs: launch with
  ``torchrun --nproc_per_node N -m perception_models.cli train ...``; DistributedDataParallel and a
  distributed sampler are used when ``WORLD_SIZE`` > 1;
- ``--init`` takes a checkpoint or an exported ONNX model (a shipped model whose checkpoint is gone:
  ``onnx_weights``), to fine-tune;
- ``--time-budget-min M``: the number of steps is fitted to M minutes of wall time from the rate
  measured over the first steps (logged as ``planned_steps``); the cosine schedule then runs to
  that step, so a run on a lent GPU ends its schedule before the machine goes back;
- ``--ema D``: validate, keep (``best.pt``) and export an exponential moving average of the
  weights instead of the last step's weights (``WeightAverage``); the raw weights stay in the
  checkpoints (``train_model``) for ``--resume``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..metrics import ConfusionMatrix, DetectionEvaluator
from ..models.backbone import Backbone, BasicBlock
from ..models.detection import Detector, DetectorConfig, DetectorWithPostprocess
from ..models.losses import pixel_cross_entropy
from ..models.segmentation import Segmenter, SegmenterConfig
from .data import Augment, DetectionDataset, SegmentationDataset, detection_collate

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


PROBE_STEPS = (20, 60)  # steps between which the time budget measures the rate


def resolve_device(name: str) -> torch.device:
    """``auto``: the GPU of this process (``LOCAL_RANK`` under torchrun) when CUDA works, else the CPU."""
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}': CUDA is not available here (use --device cpu or auto)")
    return dev


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (tensors, lists, dicts of them) onto ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


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


class WeightAverage:
    """Exponential moving average of a model's weights and BatchNorm statistics (Polyak averaging,
    as YOLOv5's ModelEMA): after step n, ``avg = d * avg + (1 - d) * weights`` with
    ``d = min(decay, (1 + n) / (10 + n))`` (TensorFlow's ``num_updates``), so the average spans about
    the last n / 9 steps until that reaches ``1 / (1 - decay)`` (0.999: 1000 steps, after ~9000).
    One epoch's weights differ from the next by the noise of its last batches; the average much
    less, so checkpoints chosen by validation are less a draw of that noise. Integer buffers
    (BatchNorm's batch counts) are copied."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for avg, w in zip(self.module.state_dict().values(), model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.mul_(d).add_(w.detach(), alpha=1.0 - d)
            else:
                avg.copy_(w)


class StepPlan:
    """How many steps a run makes: ``epochs * steps_per_epoch``, or, with a time budget, as many as
    the rate measured between ``PROBE_STEPS`` fits in the budget (decided once, then fixed)."""

    def __init__(self, steps_per_epoch: int, epochs: int, budget_min: float) -> None:
        self.steps_per_epoch, self.budget_s = steps_per_epoch, budget_min * 60.0
        self.total = steps_per_epoch * epochs
        self.t_start = time.monotonic()
        self._t_probe: float | None = None
        self.decided = budget_min <= 0

    def after_step(self, run_step: int, step: int) -> dict[str, Any] | None:
        """Called after each step with the steps this run has made and the global step; returns the
        plan when it is decided; past the budget, ends the run at ``step``."""
        if self.decided:
            if self.out_of_time():
                self.total = min(self.total, step)
            return None
        if run_step == PROBE_STEPS[0]:
            self._t_probe = time.monotonic()
        if run_step == PROBE_STEPS[1] and self._t_probe is not None:
            now = time.monotonic()
            rate = (PROBE_STEPS[1] - PROBE_STEPS[0]) / max(now - self._t_probe, 1e-6)
            left = self.budget_s - (now - self.t_start)
            # validation passes cost time too: keep 15 % of the remaining budget for them
            self.total = min(self.total, max(run_step + 1, run_step + int(rate * left * 0.85)))
            self.decided = True
            return {
                "kind": "plan",
                "steps_per_second": rate,
                "planned_steps": self.total,
                "budget_minutes": self.budget_s / 60.0,
            }
        return None

    def resumed(self) -> None:
        """A resumed run makes the steps its ``--epochs`` say; the budget was the first run's."""
        self.decided, self.budget_s = True, 0.0

    def out_of_time(self) -> bool:
        """Past the budget (the measured rate was too optimistic): the run ends at this step."""
        return self.budget_s > 0 and time.monotonic() - self.t_start > self.budget_s

    def epochs(self) -> int:
        return max(1, math.ceil(self.total / self.steps_per_epoch))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world


def build_datasets(cfg: TrainConfig):
    aug = Augment() if cfg.augment else None
    if cfg.task == "detection":
        train = DetectionDataset(
            [Path(d) for d in cfg.data],
            cfg.input_size,
            cfg.class_names or None,
            aug,
            cfg.seed,
            cache_images=cfg.cache_images,
        )
        val = DetectionDataset([Path(d) for d in cfg.val], cfg.input_size, train.class_names, None, cfg.seed)
        return train, val, train.class_names
    from ..data.readers.labels import CAMVID11, CAMVID_LUT
    from ..data.synth.scene import CLASSES

    kw = dict(image_dir="train", label_dir="trainannot", lut=CAMVID_LUT) if cfg.camvid else {}
    vkw = dict(image_dir="val", label_dir="valannot", lut=CAMVID_LUT) if cfg.camvid else {}
    train = SegmentationDataset(
        [Path(d) for d in cfg.data], cfg.input_size, aug, seed=cfg.seed, cache_images=cfg.cache_images, **kw
    )
    val = SegmentationDataset([Path(d) for d in cfg.val], cfg.input_size, None, seed=cfg.seed, **vkw)
    names = cfg.class_names or list(CAMVID11 if cfg.camvid else CLASSES)
    return train, val, names


def build_model(cfg: TrainConfig, num_classes: int) -> torch.nn.Module:
    backbone = Backbone(blocks=tuple(cfg.backbone_blocks)) if cfg.backbone_blocks else None
    if cfg.task == "detection":
        return Detector(
            DetectorConfig(num_classes=num_classes, input_size=tuple(cfg.input_size), loss=cfg.loss), backbone
        )
    return Segmenter(SegmenterConfig(num_classes=num_classes, input_size=tuple(cfg.input_size)), backbone)


def median_frequency_weights(dataset: SegmentationDataset, num_classes: int, max_weight: float = 20.0) -> torch.Tensor:
    """SegNet's median frequency balancing: w_c = median(f) / f_c, with f_c = pixels of class c /
    pixels of the images where c appears (label maps read at their stored resolution)."""
    from ..data.readers.labels import read_label_png

    pixels = np.zeros(num_classes, np.float64)
    present_pixels = np.zeros(num_classes, np.float64)
    for _img, lab_path in dataset.pairs:
        lab = read_label_png(lab_path, dataset.lut)
        counts = np.bincount(lab[lab < num_classes].reshape(-1), minlength=num_classes)[:num_classes]
        pixels += counts
        present_pixels += (counts > 0) * lab.size
    with np.errstate(divide="ignore", invalid="ignore"):
        freq = np.where(present_pixels > 0, pixels / present_pixels, np.nan)
    weights = np.nanmedian(freq) / freq
    weights = np.where(np.isfinite(weights), np.clip(weights, 0.0, max_weight), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def resume_from(
    last: Path,
    models: dict[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    default_best: float,
) -> tuple[int, int, float]:
    """Load ``last.pt`` into ``models`` (checkpoint key -> module), the optimizer and the RNGs;
    returns (first epoch to run, step, best metric so far). Shared by every trainer."""
    if not last.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint {last}")
    ck = torch.load(last, map_location="cpu", weights_only=True)
    saved = ck.get("modules", [k for k in models if k in ck])
    if sorted(saved) != sorted(models):
        raise ValueError(
            f"--resume: {last} holds the weights {sorted(saved)}, this run trains {sorted(models)} "
            "(resume with the options it was started with, e.g. --ema)"
        )
    for key, module in models.items():
        module.load_state_dict(ck[key])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["torch_rng"])
    gen.set_state(ck["loader_rng"])
    return ck["epoch"] + 1, ck["step"], ck.get("best", default_best)


def optimizer_step(opt: torch.optim.Optimizer, params: Any, loss: torch.Tensor, lr: float, clip: float = 10.0) -> None:
    """One update at learning rate ``lr`` with gradient-norm clipping (every trainer's step)."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


def checkpoint_epoch(
    out: Path,
    modules: dict[str, torch.nn.Module],
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    cfg: Any,
    epoch: int,
    step: int,
    metrics: dict[str, Any],
    best: float,
    lower_is_better: bool = False,
    best_without_validation: bool = False,
) -> float:
    """Write ``last.pt`` (resumable: weights, optimizer, RNGs) and ``best.pt`` when the validation
    metric improved (or every epoch when there is no validation); returns the best metric."""
    m = metrics["metric"]
    improved = bool(np.isfinite(m) and (m < best if lower_is_better else m > best))
    best = m if improved else best
    ck = {
        **{k: v.state_dict() for k, v in modules.items()},
        "modules": list(modules),
        "optimizer": opt.state_dict(),
        "epoch": epoch,
        "step": step,
        "best": best,
        "config": asdict(cfg),
        "metrics": metrics,
        "torch_rng": torch.get_rng_state(),
        "loader_rng": gen.get_state(),
    }
    torch.save(ck, out / "last.pt")
    if improved or best_without_validation:
        torch.save(ck, out / "best.pt")
    return best


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


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


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    from tqdm import tqdm

    if cfg.task not in TASKS:
        raise ValueError(f"task '{cfg.task}' must be one of {TASKS}")
    if not 0.0 <= cfg.ema < 1.0:
        raise ValueError(f"ema {cfg.ema} must be 0 (off) or a decay in (0, 1), e.g. 0.999")
    rank, world = _distributed()
    _seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set, val_set, class_names = build_datasets(cfg)
    cfg.class_names = list(class_names)
    cfg.num_classes = cfg.num_classes or len(class_names)
    model = build_model(cfg, cfg.num_classes).to(device)
    collate = detection_collate if cfg.task == "detection" else None
    if cfg.init and not resume:
        calib = None
        if cfg.init.endswith(".onnx"):  # BatchNorm statistics from un-augmented training images
            plain = copy.copy(train_set)  # same samples (and decoded images), no augmentation
            plain.augment = None
            calib_set = torch.utils.data.Subset(plain, range(min(len(train_set), 16 * cfg.batch_size)))
            calib = (
                to_device(b[0], device)
                for b in DataLoader(calib_set, cfg.batch_size, collate_fn=collate, num_workers=cfg.workers)
            )
        line = init_weights(model, cfg.init, cfg.task, calib)
        if rank == 0:
            print(line)
    weights = None
    if cfg.task == "segmentation" and cfg.class_weights == "median_frequency":
        weights = median_frequency_weights(train_set, cfg.num_classes)
        if rank == 0:
            print(
                "class weights (median frequency): "
                + ", ".join(f"{n} {w:.2f}" for n, w in zip(class_names, weights.tolist()))
            )
        weights = weights.to(device)
    elif cfg.class_weights not in ("none", "median_frequency"):
        raise ValueError(f"class_weights '{cfg.class_weights}' must be none or median_frequency")
    ema = WeightAverage(model, cfg.ema) if cfg.ema > 0 else None
    # the weights that are validated, kept as best.pt and exported: the average when there is one
    modules = {"model": ema.module, "train_model": model} if ema is not None else {"model": model}
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    sampler = torch.utils.data.DistributedSampler(train_set, world, rank, seed=cfg.seed) if world > 1 else None
    gen = torch.Generator().manual_seed(cfg.seed)
    pin = device.type == "cuda"
    loader = DataLoader(
        train_set,
        cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=gen,
        num_workers=cfg.workers,
        collate_fn=collate,
        drop_last=len(train_set) > cfg.batch_size,
        pin_memory=pin,
        persistent_workers=cfg.workers > 0,
    )
    val_loader = DataLoader(
        val_set, cfg.batch_size, shuffle=False, num_workers=cfg.workers, collate_fn=collate, pin_memory=pin
    )
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(loader) if not cfg.max_steps_per_epoch else min(len(loader), cfg.max_steps_per_epoch)
    plan = StepPlan(steps_per_epoch, cfg.epochs, cfg.time_budget_min if world == 1 else 0.0)
    start_epoch, step, best = 0, 0, -1.0
    last = out / "last.pt"
    if resume:
        start_epoch, step, best = resume_from(last, modules, opt, gen, -1.0)
        plan.resumed()
    log = open(out / "log.jsonl", "a") if rank == 0 else None
    result: dict[str, Any] = {}
    run_steps = 0
    try:
        epoch = start_epoch
        while epoch < plan.epochs() and step < plan.total:
            train_set.epoch = epoch
            if sampler is not None:
                sampler.set_epoch(epoch)
            net.train()
            bar = tqdm(
                loader,
                total=steps_per_epoch,
                desc=f"{cfg.task} epoch {epoch + 1}/{plan.epochs()}",
                disable=not progress or rank != 0,
                unit="batch",
            )
            t0 = time.monotonic()
            for b, batch in enumerate(bar):
                if b >= steps_per_epoch or step >= plan.total:
                    break
                if cfg.task == "detection":
                    images, targets = to_device(batch, device)
                    losses = model.loss(*net(images), targets)
                else:
                    images, labels = to_device(batch, device)
                    loss = pixel_cross_entropy(net(images), labels, class_weights=weights)
                    losses = {"total": loss}
                optimizer_step(opt, model.parameters(), losses["total"], _lr_at(step, plan.total, cfg))
                step += 1
                if ema is not None:
                    ema.update(model, step)
                run_steps += 1
                decided = plan.after_step(run_steps, step)
                cfg.epochs = plan.epochs()  # what the checkpoints and the card record
                if decided is not None:
                    if log is not None:
                        log.write(json.dumps({**decided, "step": step}) + "\n")
                    if progress and rank == 0:
                        print(
                            f"time budget: {decided['steps_per_second']:.2f} steps/s -> "
                            f"{decided['planned_steps']} steps"
                        )
                values = {k: float(v.detach()) for k, v in losses.items()}
                bar.set_postfix(loss=f"{values['total']:.3f}")
                if log is not None and (step % cfg.log_every == 0 or b == steps_per_epoch - 1):
                    log.write(
                        json.dumps(
                            {"kind": "train", "epoch": epoch, "step": step, "lr": opt.param_groups[0]["lr"], **values}
                        )
                        + "\n"
                    )
                    log.flush()
            if rank != 0:  # validation and checkpoints are rank 0's; every rank moves on an epoch
                epoch += 1
                continue
            metrics = evaluate(cfg, modules["model"], val_loader, class_names, device)
            entry = {
                "kind": "val",
                "epoch": epoch,
                "step": step,
                "seconds": time.monotonic() - t0,
                "metric": metrics["metric"],
                **{k: v for k, v in metrics.items() if k not in ("confusion_matrix",)},
            }
            assert log is not None
            log.write(json.dumps(entry) + "\n")
            log.flush()
            best = checkpoint_epoch(out, modules, opt, gen, cfg, epoch, step, metrics, best)
            result = {"epoch": epoch, "metric": metrics["metric"], "best": best, "metrics": metrics}
            if progress:
                print(
                    f"epoch {epoch + 1}: {'mAP' if cfg.task == 'detection' else 'mIoU'} {metrics['metric']:.4f} "
                    f"(best {best:.4f})"
                )
            epoch += 1
    finally:
        if log is not None:
            log.close()
    return result


def load_checkpoint(path: Path | str) -> tuple[torch.nn.Module, TrainConfig, dict]:
    """Model (eval mode), its training config and the checkpoint's metrics."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    c = ck["config"]
    c["input_size"] = tuple(c["input_size"])
    cfg = TrainConfig(**c)
    model = build_model(cfg, cfg.num_classes)
    model.load_state_dict(ck["model"])
    return model.eval(), cfg, ck.get("metrics", {})


def plot_log(run: Path | str, out: Path | str | None = None) -> Path:
    """Training loss and validation metric curves of a run folder as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run)
    rows = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if ln.strip()]
    tr = [r for r in rows if r["kind"] == "train"]
    va = [r for r in rows if r["kind"] == "val"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for key in sorted({k for r in tr for k in r} - {"kind", "epoch", "step", "lr"}):
        a.plot([r["step"] for r in tr], [r[key] for r in tr], label=key)
    a.set_xlabel("step")
    a.set_ylabel("loss")
    a.set_yscale("log")
    a.legend()
    b.plot([r["epoch"] + 1 for r in va], [r["metric"] for r in va], marker="o")
    b.set_xlabel("epoch")
    b.set_ylabel("validation metric")
    b.grid(True)
    fig.tight_layout()
    path = Path(out) if out else run / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
