"""Light heads: a trained k x k convolution replaced by a low-rank depthwise-separable pair,
initialised from it by SVD (the multi-task network's ``head_rank``; see models/multitask.py).

A full convolution W (Cout, Cin, k, k) costs Cin * Cout * k² MACs per output pixel. Taken one input
channel i at a time, W[:, i] is a Cout x k² matrix; its best rank-r approximation (SVD,
Eckart-Young) is U_r S_r V_r^T: r depthwise k x k filters on channel i (rows of sqrt(S) V^T) whose
responses a 1x1 convolution mixes (columns of U sqrt(S)). So

    SeparableConv(rank r) = r depthwise k x k (Cin -> Cin each) -> concatenated -> pointwise 1x1 (r * Cin -> Cout)

costs Cin * r * (k² + Cout) and is the full convolution exactly when r >= min(Cout, k²); a 3x3
with 64 outputs costs 3.9x less at r = 2. Training goes on from that approximation, so a trained
head keeps most of what it learned instead of starting from scratch (MobileNet's separable
convolutions, reached from a trained network as in low-rank filter approximation, Jaderberg et al.
2014, "Speeding up Convolutional Neural Networks with Low Rank Expansions").
"""

from __future__ import annotations

import torch
from torch import nn

# a convolution is replaced only where the pair costs at most this share of it
MAX_COST_SHARE = 0.5


class SeparableConv(nn.Module):
    """``rank`` depthwise k x k convolutions (one filter per input channel each) -> concatenated ->
    pointwise 1x1; stride, padding and dilation as the convolution it stands for (its bias, if
    any, on the pointwise one). Separate depthwise convolutions rather than one with ``rank``
    filters per channel: ONNX Runtime's CPU kernels are fast for the plain depthwise case only
    (one with a channel multiplier of 2 ran as slowly as the full convolution)."""

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        cin, cout = conv.in_channels, conv.out_channels
        self.depthwise = nn.ModuleList(
            nn.Conv2d(cin, cin, conv.kernel_size, conv.stride, conv.padding, conv.dilation, cin, bias=False)
            for _ in range(rank)
        )
        self.pointwise = nn.Conv2d(cin * rank, cout, 1, bias=conv.bias is not None)
        self.rank = rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rank == 1:
            return self.pointwise(self.depthwise[0](x))
        return self.pointwise(torch.cat([d(x) for d in self.depthwise], dim=1))

    @classmethod
    @torch.no_grad()
    def from_conv(cls, conv: nn.Conv2d, rank: int) -> SeparableConv:
        """The rank-``rank`` approximation of ``conv`` (exact when ``rank`` >= min(Cout, k²))."""
        sep = cls(conv, rank).to(conv.weight.device)
        w = conv.weight.detach().double()
        cout, cin, kh, kw = w.shape
        per_input = w.permute(1, 0, 2, 3).reshape(cin, cout, kh * kw)  # Cout x k² per input channel
        u, s, vh = torch.linalg.svd(per_input, full_matrices=False)  # (cin, cout, q), (cin, q), (cin, q, k²)
        q = min(rank, s.shape[1])
        root = s[:, :q].sqrt()
        depthwise = torch.zeros(rank, cin, kh * kw, dtype=w.dtype)
        pointwise = torch.zeros(cout, rank, cin, dtype=w.dtype)
        depthwise[:q] = (root[..., None] * vh[:, :q]).transpose(0, 1)
        pointwise[:, :q] = (u[:, :, :q] * root[:, None, :]).permute(1, 2, 0)
        for j, d in enumerate(sep.depthwise):  # the j-th filters of every channel
            d.weight.copy_(depthwise[j].reshape(cin, 1, kh, kw))
        # the concatenation puts depthwise j's channel i at j * Cin + i
        sep.pointwise.weight.copy_(pointwise.reshape(cout, rank * cin, 1, 1))
        if conv.bias is not None:
            sep.pointwise.bias.copy_(conv.bias)
        return sep


def replaceable(conv: nn.Module, rank: int) -> bool:
    """A full (ungrouped) k x k convolution, k > 1, that the rank-``rank`` pair makes at least
    1 / MAX_COST_SHARE times cheaper (a 3x3 to one output channel, e.g. a disparity head, is not)."""
    if not isinstance(conv, nn.Conv2d) or conv.groups != 1:
        return False
    k2 = conv.kernel_size[0] * conv.kernel_size[1]
    if k2 == 1:
        return False
    full = conv.in_channels * conv.out_channels * k2
    return conv.in_channels * rank * (k2 + conv.out_channels) <= MAX_COST_SHARE * full


def factorize(module: nn.Module, rank: int) -> list[str]:
    """Replace, in place, every convolution of ``module`` that ``replaceable`` allows by its SVD
    ``SeparableConv``; returns their names. Idempotent (the pairs are not replaceable)."""
    if rank < 1:
        raise ValueError(f"rank {rank} must be >= 1")
    names = [n for n, m in module.named_modules() if replaceable(m, rank)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, SeparableConv.from_conv(getattr(parent, attr), rank))
    return names


class _Stop(Exception):
    """Ends a forward pass once the layer being fitted has seen its input."""


@torch.no_grad()
def refit_pointwise(
    light: nn.Module,
    full: nn.Module,
    batches: list[torch.Tensor],
    pixels: int = 20000,
    ridge: float = 1e-3,
    min_samples: int = 4,
) -> dict[str, tuple[float, float]]:
    """Data-aware start for the light heads: layer by layer in the order the forward pass runs
    them, the pointwise weights (and bias) of each ``SeparableConv`` of ``light`` are solved by
    ridge least squares so that, on ``batches``, its output matches the output of the convolution
    of the same name in ``full`` (the network it was factorised from), *given the light network's
    own inputs* — so each layer also absorbs the approximation error of the layers before it
    (Jaderberg et al.'s data reconstruction, closed form). Both networks are evaluated in eval
    mode. A layer with fewer than ``min_samples`` pixels per unknown keeps its SVD start (a least
    squares fit on too few would not generalise). Returns, per layer, the relative error of its
    output before and after the fit."""
    seps = {n: m for n, m in light.named_modules() if isinstance(m, SeparableConv)}
    full_modules = dict(full.named_modules())
    was = light.training, full.training
    light.eval()
    full.eval()
    order: list[str] = []
    hooks = [m.register_forward_pre_hook(lambda _m, _i, n=n: order.append(n) if n not in order else None)
             for n, m in seps.items()]  # fmt: skip
    light(batches[0][:1])
    for h in hooks:
        h.remove()
    targets: dict[str, list[torch.Tensor]] = {n: [] for n in order}
    hooks = [full_modules[n].register_forward_hook(lambda _m, _i, out, n=n: targets[n].append(out)) for n in order]
    for b in batches:
        full(b)
    for h in hooks:
        h.remove()
    report: dict[str, tuple[float, float]] = {}
    gen = torch.Generator().manual_seed(0)
    for name in order:
        sep = seps[name]
        inputs: list[torch.Tensor] = []
        calls = len(targets[name]) // len(batches)  # a head shared by pyramid levels runs several times

        def grab(_m, inp, calls=calls):
            inputs.append(inp[0])
            if len(inputs) % calls == 0:
                raise _Stop

        h = sep.pointwise.register_forward_pre_hook(grab)
        for b in batches:
            try:
                light(b)
            except _Stop:
                pass
        h.remove()
        z = torch.cat([x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]) for x in inputs]).double()
        y = torch.cat([t.permute(0, 2, 3, 1).reshape(-1, t.shape[1]) for t in targets[name]]).double()
        pick = torch.randperm(len(z), generator=gen)[:pixels]
        z, y = z[pick], y[pick]
        pw = sep.pointwise
        if pw.bias is not None:  # the bias as one more input that is always 1
            z = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
            current = torch.cat([pw.weight.flatten(1), pw.bias[:, None]], 1).double().T
        else:
            current = pw.weight.flatten(1).double().T  # (K, Cout)
        before = float((z @ current - y).norm() / y.norm().clamp_min(1e-12))
        if len(z) < min_samples * z.shape[1]:  # too few pixels (a coarse map of a few frames): keep the SVD start
            report[name] = (before, before)
            continue
        gram = z.T @ z
        gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype)
        sol = torch.linalg.solve(gram, z.T @ y)  # (K [+ 1], Cout)
        after = float((z @ sol - y).norm() / y.norm().clamp_min(1e-12))
        k = pw.weight.shape[1]
        pw.weight.copy_(sol[:k].T.reshape(pw.weight.shape).to(pw.weight.dtype))
        if pw.bias is not None:
            pw.bias.copy_(sol[k].to(pw.bias.dtype))
        report[name] = (before, after)
    light.train(was[0])
    full.train(was[1])
    return report
