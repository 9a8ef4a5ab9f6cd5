"""Light heads: a 3x3 convolution as rank-r depthwise + pointwise pairs, started by SVD (the best
rank-r approximation per input channel) and refitted on data; the multi-task network built with
``head_rank`` has the architecture of a factorised full network, and its export loads back."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from perception_models.models.backbone import ConvBNAct
from perception_models.models.multitask import MultiTaskConfig, MultiTaskExport, MultiTaskNet
from perception_models.models.separable import SeparableConv, factorize, refit_pointwise, replaceable

pytestmark = pytest.mark.train
IN = (96, 128)


def _truncated(conv: nn.Conv2d, rank: int) -> nn.Conv2d:
    """The convolution whose weight is, per input channel, the rank-``rank`` truncated SVD."""
    w = conv.weight.detach().double()
    cout, cin, kh, kw = w.shape
    out = copy.deepcopy(conv)
    for i in range(cin):
        u, s, vh = torch.linalg.svd(w[:, i].reshape(cout, kh * kw), full_matrices=False)
        approx = (u[:, :rank] * s[:rank]) @ vh[:rank]
        with torch.no_grad():
            out.weight[:, i] = approx.reshape(cout, kh, kw).float()
    return out


@pytest.mark.parametrize("cout, stride, dilation", [(5, 1, 1), (16, 2, 1), (12, 1, 2)])
def test_a_pair_is_the_rank_r_truncation_of_the_convolution_and_exact_at_full_rank(cout, stride, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, cout, 3, stride, padding=dilation, dilation=dilation, bias=True)
    x = torch.randn(2, 6, 17, 21)
    with torch.no_grad():
        for rank in (1, 2, 3):
            np.testing.assert_allclose(
                SeparableConv.from_conv(conv, rank)(x).numpy(), _truncated(conv, rank)(x).numpy(), atol=1e-5
            )
        full = min(cout, 9)  # rank of a Cout x 9 matrix
        np.testing.assert_allclose(SeparableConv.from_conv(conv, full)(x).numpy(), conv(x).numpy(), atol=1e-5)
    with torch.no_grad():
        errors = [float((SeparableConv.from_conv(conv, r)(x) - conv(x)).norm()) for r in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] > 0


def test_only_convolutions_the_pair_makes_at_least_twice_cheaper_are_replaced():
    assert replaceable(nn.Conv2d(64, 64, 3), 2)  # 64*2*(9+64) = 9344 vs 36864
    assert not replaceable(nn.Conv2d(64, 64, 3), 4)  # 18688: not under half
    assert not replaceable(nn.Conv2d(64, 64, 1), 1)  # 1x1: nothing to separate
    assert not replaceable(nn.Conv2d(64, 1, 3), 1)  # a disparity head: the pair costs more
    assert not replaceable(nn.Conv2d(64, 64, 3, groups=64), 1)  # already depthwise
    net = nn.Sequential(ConvBNAct(8, 32), ConvBNAct(32, 32, 1), nn.Conv2d(32, 1, 3, padding=1))
    assert factorize(net, 2) == ["0.0"]
    assert isinstance(net[0][0], SeparableConv) and factorize(net, 2) == []  # idempotent
    with pytest.raises(ValueError, match="rank"):
        factorize(net, 0)


def test_refitting_the_pointwise_halves_matches_the_full_network_on_the_data():
    """Each layer, fitted after the ones before it, gets closer to the full layer's output on the
    batches (least squares cannot do worse than the SVD start), and the network's output error
    falls; where the full convolutions are exactly rank 1 per channel the fit is exact."""
    torch.manual_seed(0)
    full = nn.Sequential(ConvBNAct(4, 24), ConvBNAct(24, 24), ConvBNAct(24, 24, dilation=2), nn.Conv2d(24, 16, 3))
    full.eval()
    batches = [torch.randn(2, 4, 24, 32) for _ in range(2)]
    light = copy.deepcopy(full)
    names = factorize(light, 1)
    assert names == ["0.0", "1.0", "2.0", "3"]
    x = torch.randn(2, 4, 24, 32)
    with torch.no_grad():
        svd_error = float((light.eval()(x) - full(x)).norm() / full(x).norm())
    report = refit_pointwise(light, full, batches)
    assert list(report) == names  # in the order the forward pass runs them
    assert all(after <= before + 1e-9 for before, after in report.values())
    with torch.no_grad():
        refit_error = float((light(x) - full(x)).norm() / full(x).norm())
    assert refit_error < 0.8 * svd_error, (svd_error, refit_error)
    # rank-1 convolutions: the SVD start is exact already, and the refit keeps it so
    exact = copy.deepcopy(full)
    for conv in [m for m in exact.modules() if isinstance(m, nn.Conv2d)]:
        with torch.no_grad():
            conv.weight.copy_(_truncated(conv, 1).weight)
    light = copy.deepcopy(exact)
    factorize(light, 1)
    fitted = refit_pointwise(light, exact, batches, ridge=1e-10)
    assert all(before < 1e-5 and after < 1e-5 for before, after in fitted.values()), fitted


def test_a_light_multitask_net_is_a_factorised_full_one_and_its_export_loads_back(tmp_path):
    from perception_models.export import _export_onnx
    from perception_models.onnx_weights import head_ranks, load_onnx_weights

    torch.manual_seed(0)
    full = MultiTaskNet(MultiTaskConfig(input_size=IN, top_k=64))
    replaced = full.factorize_heads(2, detection_rank=3)  # the detection tower at its own rank
    assert (full.cfg.head_rank, full.cfg.detection_rank) == (2, 3) and len(replaced) == 23
    assert not any(n.startswith(("backbone", "attention")) for n in replaced)  # shared parts stay
    ranks = {n.split(".")[0]: len(m.depthwise) for n, m in full.named_modules() if isinstance(m, SeparableConv)}
    assert ranks == {"neck": 3, "det_head": 3, "seg_head": 2, "depth_decoder": 2, "kp_det": 2, "kp_desc": 2}
    light = MultiTaskNet(MultiTaskConfig(input_size=IN, top_k=64, head_rank=2, detection_rank=3))
    a, b = full.state_dict(), light.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    # trained-like weights (no constant tensors the exporter would fold away), then the round trip
    for m in light.modules():
        with torch.no_grad():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.2), m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, nn.Conv2d):
                m.weight.add_(0.01 * torch.randn_like(m.weight))
                if m.bias is not None:
                    m.bias.add_(0.01 * torch.randn_like(m.bias))
    light.eval()
    wrap = MultiTaskExport(light).eval()
    x = torch.randn(1, 3, *IN)
    report = _export_onnx(wrap, (x,), tmp_path / "light.onnx", ["image"], wrap.output_names())
    assert not report["trt_unfriendly"] and not report["dynamic_io"]
    assert head_ranks(tmp_path / "light.onnx") == (2, 3)
    assert head_ranks(Path(__file__).resolve().parents[2] / "models" / "multitask.onnx") == (0, 0)
    back = MultiTaskNet(MultiTaskConfig(input_size=IN, top_k=64, head_rank=2, detection_rank=3))
    counts = load_onnx_weights(back, tmp_path / "light.onnx", strict=False)
    assert counts["missing"] == ["depth_decoder.heads.3"]  # coarser depth heads are never exported
    back.eval()
    with torch.no_grad():
        ours, theirs = light(x), back(x)
    torch.testing.assert_close(ours["segmentation"], theirs["segmentation"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours["detection"][0], theirs["detection"][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(ours["keypoints"][1], theirs["keypoints"][1], atol=1e-4, rtol=1e-4)
