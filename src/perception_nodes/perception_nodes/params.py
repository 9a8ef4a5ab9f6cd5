"""Node parameters declared from a JSON schema (one source of truth, Autoware style).

Each node has ``perception_nodes/schema/<node>.schema.json``; ``"x-include": ["common"]`` merges
the shared inference-node parameters. The schema gives every parameter its type, default,
description, range (minimum/maximum -> rclpy ranges) and read-only flag; ``config/<node>.param.yaml``
files are validated against the same schema in tests, and the README's parameter tables are
generated from it (``scripts/gen_param_docs.py``). Enums and array lengths are checked with
jsonschema at configure time and on every parameter change.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema


class ParameterError(ValueError):
    """Invalid parameter values; the message lists each parameter and the accepted values."""


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict[str, Any]:
    """The node's schema with included schemas merged (returns a fresh copy each call)."""
    try:
        text = resources.files("perception_nodes.schema").joinpath(f"{name}.schema.json").read_text()
    except FileNotFoundError:
        raise ParameterError(f"no parameter schema '{name}.schema.json' in perception_nodes/schema") from None
    schema = json.loads(text)
    props: dict[str, Any] = {}
    for inc in schema.get("x-include", []):
        props.update(load_schema(inc)["properties"])
    props.update(schema.get("properties", {}))
    schema["properties"] = props
    schema.setdefault("additionalProperties", False)
    return schema


def defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v.get("default") for k, v in schema["properties"].items()}


def validate(schema: dict[str, Any], values: dict[str, Any]) -> None:
    """Raise ParameterError listing every invalid parameter (name, value, what is accepted)."""
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.path))
    if errors:
        lines = []
        for e in errors:
            where = ".".join(str(p) for p in e.path) or "(parameters)"
            lines.append(f"parameter '{where}': {e.message}")
        raise ParameterError("; ".join(lines))


def validate_param_file(schema: dict[str, Any], data: dict[str, Any]) -> None:
    """Validate a ROS parameter YAML ({node_or_/**: {ros__parameters: {...}}}) against ``schema``."""
    if not isinstance(data, dict) or not data:
        raise ParameterError("parameter file is empty or not a mapping")
    for node, body in data.items():
        if not isinstance(body, dict) or "ros__parameters" not in body:
            raise ParameterError(f"'{node}': expected a 'ros__parameters' mapping")
        validate(schema, body["ros__parameters"])


_JSON_TO_ROS = {"boolean": "BOOL", "integer": "INTEGER", "number": "DOUBLE", "string": "STRING"}
_ARRAY_TO_ROS = {
    "boolean": "BOOL_ARRAY",
    "integer": "INTEGER_ARRAY",
    "number": "DOUBLE_ARRAY",
    "string": "STRING_ARRAY",
}


def declare_from_schema(node: Any, schema: dict[str, Any]) -> None:
    """Declare every schema property on an rclpy node with a full ParameterDescriptor."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
    from rclpy.parameter import Parameter

    for name, prop in schema["properties"].items():
        jtype = prop["type"]
        if jtype == "array":
            ros_type = _ARRAY_TO_ROS[prop["items"]["type"]]
        else:
            ros_type = _JSON_TO_ROS[jtype]
        desc = ParameterDescriptor(
            name=name,
            type=getattr(Parameter.Type, ros_type).value,
            description=prop.get("description", ""),
            read_only=bool(prop.get("readOnly", False)),
        )
        if "enum" in prop:
            desc.additional_constraints = f"one of {prop['enum']}"
        lo, hi = prop.get("minimum"), prop.get("maximum")
        if jtype == "integer" and lo is not None and hi is not None:
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif jtype == "number" and lo is not None and hi is not None:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        default = prop.get("default")
        if jtype == "number" and default is not None:
            default = float(default)
        if jtype == "array" and prop["items"]["type"] == "number" and default:
            default = [float(x) for x in default]
        if jtype == "array" and not default:
            # rclpy cannot infer an element type from []; declare by type instead.
            node.declare_parameter(name, getattr(Parameter.Type, ros_type), desc)
        else:
            node.declare_parameter(name, default, desc)


def read_parameters(node: Any, schema: dict[str, Any]) -> dict[str, Any]:
    """Current values of the schema's parameters, validated (raises ParameterError)."""
    from rclpy.exceptions import ParameterUninitializedException

    values: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:  # an array declared by type, never set
            value = None
        if value is None and prop["type"] == "array":
            value = []
        if prop["type"] == "array" and value is not None:
            value = list(value)
        values[name] = value
    validate(schema, values)
    return values


def make_set_callback(schema: dict[str, Any], current: dict[str, Any]):
    """An on-set-parameters callback that rejects values the schema does not allow."""
    from rcl_interfaces.msg import SetParametersResult

    def callback(params: list) -> SetParametersResult:
        trial = dict(current)
        for p in params:
            if p.name in schema["properties"]:
                v = p.value
                trial[p.name] = list(v) if isinstance(v, (list, tuple)) or hasattr(v, "tolist") else v
        try:
            validate(schema, {k: v for k, v in trial.items() if v is not None})
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        current.update(trial)
        return SetParametersResult(successful=True)

    return callback
