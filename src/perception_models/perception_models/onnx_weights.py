"""Weights back from an exported ONNX model, to fine-tune a shipped model whose checkpoint is gone.

    model = build_model(...)                       # same architecture as the export
    report = load_onnx_weights(model, "models/segmentation.onnx")
    calibrate_batchnorm(model, batches)            # before training in train mode (see below)

The exporter names every initializer after its module (``<wrapper>.backbone.stem.0.0.weight``)
and folds each BatchNorm that follows a convolution into it: the convolution keeps its name and
the BatchNorm's shift becomes ``<conv>.weight_bias``. Unfolding is exact for inference: the conv
takes the folded weight and its BatchNorm becomes the identity plus that shift. BatchNorms the
exporter left alone (weights shared between pyramid levels) are copied as they are.

Folded weights make a bad start in train mode, where BatchNorm normalises each batch: every
channel would be rescaled to unit variance. ``calibrate_batchnorm`` measures each BatchNorm's input
statistics on real batches (in eval mode, so the network is the exported one throughout) and
re-parameterises it so that the eval function is unchanged and the train-mode function matches it
on data like those batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def head_ranks(onnx_path: Path | str) -> tuple[int, int]:
    """A multi-task graph's light-head ranks (depthwise convolutions per channel of its separable
    pairs, models/separable.py): (the heads', the detection neck and head's), which may differ
    (``MultiTaskNet.DETECTION_TOWER``); 0 for full heads. One read of the file."""
    from .models.multitask import MultiTaskNet

    tower = tuple(f".{head}." for head in MultiTaskNet.DETECTION_TOWER)
    ranks: tuple[list[int], list[int]] = ([], [])
    for n in _initializers(Path(onnx_path)):
        if ".depthwise." in n:
            ranks[any(t in n for t in tower)].append(int(n.split(".depthwise.")[1].split(".")[0]) + 1)
    return max(ranks[0], default=0), max(ranks[1], default=0)


def _prefix(names: set[str], model: nn.Module) -> str:
    """The wrapper prefix the exporter put before the model's own parameter names."""
    first = next(k for k, m in model.named_modules() if isinstance(m, nn.Conv2d))
    for name in names:
        if name.endswith(first + ".weight"):
            return name[: -len(first + ".weight")]
    raise ValueError(f"no initializer named '*{first}.weight': the ONNX file was not exported from this architecture")


def _batchnorm_after(modules: dict[str, nn.Module], conv_name: str) -> tuple[str, nn.BatchNorm2d] | None:
    """The BatchNorm that follows ``conv_name`` in its Sequential (ConvBNAct: conv at 0, BN at 1);
    for the pointwise half of a light head's separable pair (models/separable.py), the one after the pair."""
    parent, _, idx = conv_name.rpartition(".")
    if idx == "pointwise" and parent:
        return _batchnorm_after(modules, parent)
    if not idx.isdigit():
        return None
    name = f"{parent}.{int(idx) + 1}" if parent else str(int(idx) + 1)
    bn = modules.get(name)
    return (name, bn) if isinstance(bn, nn.BatchNorm2d) else None


def _copy(dst: torch.Tensor, src: np.ndarray, name: str) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"{name}: shape {tuple(src.shape)} in the ONNX file, {tuple(dst.shape)} in the model")
    with torch.no_grad():
        dst.copy_(torch.from_numpy(np.array(src, copy=True)).to(dst.dtype))


def load_onnx_weights(model: nn.Module, onnx_path: Path | str, strict: bool = True) -> dict[str, Any]:
    """Load every convolution and BatchNorm of ``model`` from ``onnx_path``; raises when one has
    another shape, or is missing and ``strict`` (not strict: modules the export leaves out, such as
    the depth decoder's coarser heads, keep their weights and are listed under ``missing``).
    Returns counts (convs, folded_batchnorms, batchnorms) and ``missing``."""
    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    init = _initializers(path)
    prefix = _prefix(set(init), model)
    modules = dict(model.named_modules())
    done: set[str] = set()
    counts: dict[str, Any] = {"convs": 0, "folded_batchnorms": 0, "batchnorms": 0, "missing": []}
    for name, conv in modules.items():
        if not isinstance(conv, nn.Conv2d):
            continue
        key = prefix + name
        if key + ".weight" not in init:
            if strict:
                raise ValueError(f"{path}: no weight for {name}")
            counts["missing"].append(name)
            after = _batchnorm_after(modules, name)
            done.update([name] + ([after[0]] if after else []))
            continue
        _copy(conv.weight, init[key + ".weight"], name)
        done.add(name)
        counts["convs"] += 1
        if conv.bias is not None:
            if key + ".bias" not in init:
                raise ValueError(f"{path}: no bias for {name}")
            _copy(conv.bias, init[key + ".bias"], name + ".bias")
        after = _batchnorm_after(modules, name)
        if after is None:
            continue
        bn_name, bn = after
        if key + ".weight_bias" in init:  # folded into the conv: BN = identity + shift
            eps = bn.eps
            with torch.no_grad():
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - eps)
                bn.weight.fill_(1.0)
            _copy(bn.bias, init[key + ".weight_bias"], bn_name + ".bias")
            counts["folded_batchnorms"] += 1
        else:
            bkey = prefix + bn_name
            for attr in ("weight", "bias", "running_mean", "running_var"):
                if bkey + "." + attr not in init:
                    raise ValueError(
                        f"{path}: BatchNorm {bn_name} neither folded into {name} nor stored ({attr} missing)"
                    )
                _copy(getattr(bn, attr), init[bkey + "." + attr], f"{bn_name}.{attr}")
            counts["batchnorms"] += 1
        done.add(bn_name)
    stray = [n for n, m in modules.items() if isinstance(m, nn.BatchNorm2d) and n not in done]
    if stray:
        raise ValueError(f"{path}: BatchNorms not after a convolution, not loaded: {stray}")
    return counts


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor], forward=None) -> int:
    """Re-parameterise every BatchNorm from its input statistics over ``batches``, keeping the
    model's eval-mode function: running mean/var become the measured ones and weight/bias absorb
    the change. Returns the number of batches used. ``forward(model, batch)`` runs the model
    (default ``model(batch)``)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums: dict[int, list] = {id(b): [0.0, 0.0, 0] for b in bns}

    def hook(mod, inp, _out):
        x = inp[0].detach().double()
        s = sums[id(mod)]
        s[0] = s[0] + x.sum(dim=(0, 2, 3))
        s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
        s[2] += x.numel() // x.shape[1]

    handles = [b.register_forward_hook(hook) for b in bns]
    was_training = model.training
    model.eval()
    n = 0
    try:
        for batch in batches:
            forward(model, batch) if forward is not None else model(batch)
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if n == 0:
        raise ValueError("calibrate_batchnorm: no batches")
    for b in bns:
        s0, s1, count = sums[id(b)]
        if count == 0:
            continue  # not reached by this forward (e.g. another task's head)
        mean = (s0 / count).to(b.running_mean.dtype)
        var = (s1 / count - (s0 / count) ** 2).clamp_min(1e-6).to(b.running_var.dtype)
        old_std = (b.running_var + b.eps).sqrt()
        new_std = (var + b.eps).sqrt()
        # y = w (x - m) / s + c must stay the same function of x after (m, s) -> (mean, new_std):
        # w' = w new_std / old_std; c' = c + w (mean - m) / old_std
        b.bias.add_(b.weight * (mean - b.running_mean) / old_std)
        b.weight.mul_(new_std / old_std)
        b.running_mean.copy_(mean)
        b.running_var.copy_(var)
    return n
