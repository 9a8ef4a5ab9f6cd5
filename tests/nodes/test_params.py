"""Parameter schemas: shipped YAML files validate, bad values are rejected with precise text."""

from pathlib import Path

import pytest
import yaml

from perception_nodes.params import ParameterError, defaults, load_schema, validate, validate_param_file

ROOT = Path(__file__).resolve().parents[2]
PARAM_FILES = sorted((ROOT / "config").glob("*.param.yaml"))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_shipped_param_file_validates_against_its_schema(path):
    schema = load_schema(path.name.removesuffix(".param.yaml"))
    validate_param_file(schema, yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_param_files_list_every_parameter_that_has_a_default(path):
    schema = load_schema(path.name.removesuffix(".param.yaml"))
    params = yaml.safe_load(path.read_text())["/**"]["ros__parameters"]
    expected = {k for k, v in defaults(schema).items() if v != []}
    assert expected <= set(params), f"missing: {sorted(expected - set(params))}"


def test_schema_defaults_are_valid():
    for path in (ROOT / "src/perception_nodes/perception_nodes/schema").glob("*.schema.json"):
        schema = load_schema(path.name.removesuffix(".schema.json"))
        validate(schema, {k: v for k, v in defaults(schema).items()})


@pytest.mark.parametrize(
    "name,value,text",
    [
        ("input_policy", "sometimes", "'sometimes' is not one of"),
        ("onnxruntime_threads", -1, "less than the minimum"),
        ("mean", [0.5, 0.5], "too short"),
        ("backend", "tflite", "'tflite' is not one of"),
        ("no_such_param", 1, "Additional properties"),
    ],
)
def test_invalid_values_name_the_parameter(name, value, text):
    schema = load_schema("generic_onnx_node")
    values = defaults(schema)
    values[name] = value
    with pytest.raises(ParameterError, match=text) as err:
        validate(schema, values)
    assert name in str(err.value) or name == "no_such_param"


def test_bad_param_file_shape():
    schema = load_schema("generic_onnx_node")
    with pytest.raises(ParameterError, match="ros__parameters"):
        validate_param_file(schema, {"/**": {"params": {}}})


def test_readme_parameter_tables_are_generated_from_the_schemas():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts/gen_param_docs.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr
