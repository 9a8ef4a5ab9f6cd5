"""The task registry (perception_nodes/tasks.py) is what the install, the profiles, the replay, the
evaluation and the models CLI read: each row must point at things that exist and agree."""

from __future__ import annotations

import importlib
import json
import runpy
from pathlib import Path

import pytest
import yaml

from perception_nodes.model_card import load_card
from perception_nodes.params import load_schema
from perception_nodes.tasks import (
    EVAL_OUTPUTS,
    MULTITASK_NAMESPACES,
    NODE_EXECUTABLES,
    PER_FRAME_OUTPUTS,
    TASKS,
    TRAINABLE,
    output_prefix,
    owns_topic,
    task,
)

ROOT = Path(__file__).resolve().parents[2]


def test_setup_installs_exactly_the_registry_nodes_and_each_has_a_main():
    captured = {}

    import setuptools

    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        runpy.run_path(str(ROOT / "src" / "perception_nodes" / "setup.py"), run_name="__main__")
    finally:
        setuptools.setup = real
    scripts = {s.split(" = ")[0]: s.split(" = ")[1] for s in captured["entry_points"]["console_scripts"]}
    assert set(NODE_EXECUTABLES) <= set(scripts) and set(scripts) - set(NODE_EXECUTABLES) == {"perception"}
    for exe in NODE_EXECUTABLES:
        module, fn = scripts[exe].split(":")
        assert callable(getattr(importlib.import_module(module), fn)), exe


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_has_its_schema_params_and_default_model(name):
    t = task(name)
    schema = load_schema(t.schema)  # raises when the file is missing
    params = yaml.safe_load((ROOT / "config" / f"{t.node}.param.yaml").read_text())["/**"]["ros__parameters"]
    unknown = set(params) - set(schema["properties"])
    assert not unknown, f"config/{t.node}.param.yaml sets parameters its schema does not have: {unknown}"
    assert params["model_path"] == t.model, "the shipped parameter file runs the registry's default model"
    card = load_card(ROOT / t.model)
    # odometry runs on the depth model (and its pose model); every other task's model card names the task
    assert card.task == (name if name != "odometry" else "depth")
    assert Path(t.model).stem == card.task, "one name per task: the model file is named after its task"
    assert PER_FRAME_OUTPUTS[t.node] == t.per_frame_outputs
    if name == "multitask":  # its outputs are the task nodes' (perception eval scores them by those names)
        assert not t.eval_output and t.outputs_under == "namespace"
        served = {MULTITASK_NAMESPACES[s] for s in card.raw["tasks"]}
        assert {o.split("/")[0] for o in t.per_frame_outputs} == served, "the shipped model serves every output"
        for out in t.per_frame_outputs:
            node_name, leaf = out.split("/")
            single = task({"detector": "detection", "segmenter": "segmentation", "odometry": "odometry",
                           "matcher": "matching"}[node_name])  # fmt: skip
            assert leaf in single.per_frame_outputs, "the same per-frame outputs as the task nodes"
    else:
        assert t.per_frame_outputs and t.eval_output in EVAL_OUTPUTS


def test_models_cli_and_exporters_follow_the_registry():
    from perception_models import export
    from perception_models.cli import build_parser

    assert TRAINABLE == ("detection", "segmentation", "depth", "matching", "multitask")
    for name in TRAINABLE:
        assert callable(getattr(export, task(name).exporter))
    parser = build_parser()
    for command in ("train", "export", "evaluate"):
        sub = parser._subparsers._group_actions[0].choices[command]  # noqa: SLF001 (argparse has no public way)
        (opt,) = [a for a in sub._actions if "--task" in a.option_strings]  # noqa: SLF001
        assert tuple(opt.choices) == TRAINABLE, command
    with pytest.raises(export.ExportError, match="no exporter of its own"):
        export.export("odometry", "x.pt", "x.onnx")
    with pytest.raises(export.ExportError, match="does not take --calibrate"):
        export.export("matching", "x.pt", "x.onnx", calibrate=["seq"])
    with pytest.raises(ValueError, match="unknown task 'detector'"):
        task("detector")


def test_profiles_name_only_registry_executables():
    for path in sorted((ROOT / "config" / "profiles").glob("*.yaml")):
        nodes = yaml.safe_load(path.read_text())["nodes"]
        for name, spec in nodes.items():
            assert spec["executable"] in NODE_EXECUTABLES, (path.name, name)
    # the schema files of every node executable exist (load_schema raises otherwise)
    for exe in NODE_EXECUTABLES:
        assert json.dumps(load_schema(exe))


def test_a_multitask_nodes_outputs_are_under_its_namespace_not_its_name():
    assert output_prefix("detection_node", "/robot/detector", "robot") == "/robot/detector"
    assert output_prefix("multitask_node", "/robot/multitask", "robot") == "/robot"
    assert output_prefix("multitask_node", "/multitask", "") == ""
    assert owns_topic("multitask_node", "/multitask", "", "/detector/detections")
    assert owns_topic("multitask_node", "/robot/multitask", "/robot", "/robot/odometry/path")
    assert not owns_topic("multitask_node", "/multitask", "", "/camera/image_raw")
    assert not owns_topic("multitask_node", "/multitask", "", "/multitask/transition_event")
    assert owns_topic("detection_node", "/detector", "", "/detector/detections")
    assert not owns_topic("detection_node", "/detector", "", "/segmenter/labels")
