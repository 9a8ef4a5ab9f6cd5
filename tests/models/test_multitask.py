"""The multi-task network: one backbone pass feeds the four single-task heads, each through its own
attention (identity at the start, absent in the ablation); its export gives every task's outputs
from one graph, as ONNX Runtime computes them; the benchmark's compute counter is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from perception_models.models.multitask import (
    SCALES,
    MultiTaskConfig,
    MultiTaskExport,
    MultiTaskNet,
    TaskAttention,
)

pytestmark = pytest.mark.train
IN = (96, 128)


def test_one_backbone_pass_feeds_every_head_at_its_resolution():
    torch.manual_seed(0)
    net = MultiTaskNet(MultiTaskConfig(input_size=IN)).eval()
    calls = []
    net.backbone.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        out = net(torch.randn(2, 3, *IN))
    assert len(calls) == 1, "the backbone runs once for all four tasks"
    cls, box = out["detection"]
    assert cls.shape[0] == 2 and cls.shape[-1] == 6 and box.shape[-1] == 4 and cls.shape[1] == net.anchors.shape[0]
    assert out["segmentation"].shape == (2, 10, *IN)
    # the depth decoder stops at stride 4 (depth_stages 3); its finest disparity is upsampled
    assert set(out["depth"]) == {2, 3} and out["depth"][2].shape == (2, 1, IN[0] // 4, IN[1] // 4)
    assert net.depth(out["depth"], IN).shape == (2, 1, *IN)
    full = MultiTaskNet(MultiTaskConfig(input_size=IN, depth_stages=5)).eval()
    with torch.no_grad():
        assert set(full(torch.randn(1, 3, *IN))["depth"]) == {0, 1, 2, 3}
    assert full.scales("depth") == SCALES["depth"] and net.scales("depth") == ("s4", "s8", "s16", "s32")
    logits, desc = out["keypoints"]
    assert logits.shape == (2, 65, IN[0] // 8, IN[1] // 8) and desc.shape == (2, 64, IN[0] // 8, IN[1] // 8)
    assert torch.allclose(desc.norm(dim=1), torch.ones(1), atol=1e-5)


def test_attention_starts_as_the_identity_and_the_ablation_has_none():
    att = TaskAttention(8)
    assert all(c.kernel_size == (1, 1) for c in att.modules() if isinstance(c, torch.nn.Conv2d)), "MTAN's 1x1 masks"
    x = torch.rand(1, 8, 4, 4)
    assert torch.allclose(att(x), x * torch.sigmoid(torch.tensor(4.0)))
    on = MultiTaskNet(MultiTaskConfig(input_size=IN))
    off = MultiTaskNet(MultiTaskConfig(input_size=IN, attention=False))
    assert {t: sorted(m) for t, m in on.attention.items()} == {t: sorted(on.scales(t)) for t in SCALES}
    assert len(off.attention) == 0
    extra = sum(p.numel() for p in on.parameters()) - sum(p.numel() for p in off.parameters())
    assert 0 < extra < 0.25 * sum(p.numel() for p in off.parameters()), "attention is small next to the network"
    # the ablation computes each head on the shared features themselves
    shared = {s: torch.rand(1, c, 4, 4) for s, c in off.backbone.channels.items()}
    assert all(off.task_features(shared, "depth")[s] is shared[s] for s in off.scales("depth"))


def test_a_subset_of_tasks_builds_only_their_heads():
    net = MultiTaskNet(MultiTaskConfig(input_size=IN, tasks=("segmentation", "depth")))
    assert not hasattr(net, "det_head") and not hasattr(net, "kp_det")
    assert MultiTaskExport(net).output_names() == ["seg_labels", "seg_confidence", "depth"]
    with pytest.raises(ValueError, match="not among"):
        MultiTaskNet(MultiTaskConfig(tasks=("detection", "flow")))


def test_the_exported_graph_gives_every_task_as_torch_does(tmp_path):
    import onnxruntime as ort

    from perception_models.export import _export_onnx

    torch.manual_seed(0)
    net = MultiTaskNet(MultiTaskConfig(input_size=IN, top_k=64)).eval()
    with torch.no_grad():  # a detection bias that gives some boxes a score, so they are compared too
        net.det_head.cls_out.bias.fill_(0.0)
    wrap = MultiTaskExport(net).eval()
    x = torch.randn(1, 3, *IN)
    report = _export_onnx(wrap, (x,), tmp_path / "mt.onnx", ["image"], wrap.output_names())
    assert not report["trt_unfriendly"] and not report["dynamic_io"]
    sess = ort.InferenceSession(str(tmp_path / "mt.onnx"))
    got = dict(zip(wrap.output_names(), sess.run(None, {"image": x.numpy()})))
    with torch.no_grad():
        ref = dict(zip(wrap.output_names(), (t.numpy() for t in wrap(x))))
    live = ref["scores"] > 0
    assert live.any()
    np.testing.assert_allclose(got["scores"], ref["scores"], atol=1e-4)

    # boxes of equal score may come in another order: compare them as sorted rows
    def rows(d):
        r = np.concatenate([d["scores"][live][:, None], d["boxes"][live]], axis=1)
        return r[np.lexsort(np.round(r[:, ::-1], 2).T)]

    np.testing.assert_allclose(rows(got), rows(ref), atol=0.05)
    assert (got["seg_labels"] == ref["seg_labels"]).mean() > 0.999
    np.testing.assert_allclose(got["depth"], ref["depth"], rtol=1e-3)
    assert got["keypoints"].shape == (1, 64, 2) and got["descriptors"].shape == (1, 64, 64)


def test_the_benchmarks_compute_counter_counts_convolutions_and_matmuls(tmp_path):
    import importlib.util
    from pathlib import Path

    from onnx import TensorProto, helper, numpy_helper

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_multitask.py"
    spec = importlib.util.spec_from_file_location("bench_multitask", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    w = numpy_helper.from_array(np.zeros((16, 4, 3, 3), np.float32), "w")  # 4 -> 16 channels, 3x3, stride 2
    m = numpy_helper.from_array(np.zeros((16, 10), np.float32), "m")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1], strides=[2, 2]),
            helper.make_node("GlobalAveragePool", ["y"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("MatMul", ["f", "m"], ["z"]),
        ],
        "t",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 32, 32])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 10])],
        [w, m],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # conv: 16 x 16 x 16 outputs x (4 x 3 x 3); matmul: 10 outputs x 16
    assert bench.graph_macs(model) == 16 * 16 * 16 * 36 + 10 * 16
    assert bench.parameters(model) == 16 * 4 * 9 + 160


def test_the_network_starts_from_single_task_models_as_their_functions():
    """adopt(): the shared backbone and detection from the detector, the segmentation head and the
    depth decoder from theirs; without attention (and with backbones alike) each task computes
    exactly what its single-task model did."""
    from perception_models.models.depth import DepthConfig, DepthNet
    from perception_models.models.detection import Detector, DetectorConfig
    from perception_models.models.segmentation import Segmenter, SegmenterConfig

    torch.manual_seed(1)
    det = Detector(DetectorConfig(num_classes=6, input_size=IN)).eval()
    seg = Segmenter(SegmenterConfig(num_classes=10, input_size=IN)).eval()
    depth = DepthNet(DepthConfig()).eval()
    for other in (seg, depth):  # one backbone for all: then every head's input is its own
        other.backbone.load_state_dict(det.backbone.state_dict())
    net = MultiTaskNet(MultiTaskConfig(input_size=IN, attention=False)).eval()
    assert net.adopt(det, seg, depth) == [
        "backbone (detector)",
        "detection neck + head",
        "segmentation head",
        "depth decoder",
    ]
    x = torch.randn(1, 3, *IN)
    with torch.no_grad():
        out = net(x)
        for a, b in zip(out["detection"], det(x)):
            assert torch.equal(a, b)
        assert torch.equal(out["segmentation"], seg(x))
        ref = depth(x)
        assert all(torch.equal(out["depth"][s], ref[s]) for s in (2, 3)), "the stages it has are the depth net's"
