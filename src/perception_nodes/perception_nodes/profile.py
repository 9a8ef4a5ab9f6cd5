"""Stack profiles: which nodes to start, with which parameter files, overrides and remappings.

``config/profiles/<name>.yaml`` is read by both ``launch/perception.launch.py`` (ROS launch) and
the ``perception`` CLI (plain processes, used by tests and the demo), so both start the same
graph. Format::

    description: one line
    nodes:
      <node name>:
        executable: generic_onnx_node        # an executable of perception_nodes
        namespace: ""                        # optional
        param_files: [generic_onnx_node.param.yaml]   # relative to config/
        parameters: {model_path: models/x.onnx}       # overrides, after the files
        remappings: {image: /camera/image_raw}
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .tasks import NODE_EXECUTABLES
from .workspace import shared_path


class ProfileError(ValueError):
    pass


@dataclass
class NodeSpec:
    name: str
    executable: str
    namespace: str = ""
    param_files: list[Path] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, str] = field(default_factory=dict)

    @property
    def fqn(self) -> str:
        ns = self.namespace.strip("/")
        return f"/{ns}/{self.name}" if ns else f"/{self.name}"


@dataclass
class Profile:
    name: str
    description: str
    nodes: list[NodeSpec]

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ProfileError(f"profile '{self.name}' has no node '{name}'; it has {[n.name for n in self.nodes]}")


def profile_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p.resolve()
    candidate = shared_path(f"config/profiles/{name_or_path}.yaml")
    if candidate.is_file():
        return candidate
    available = sorted(x.stem for x in shared_path("config/profiles").glob("*.yaml"))
    raise ProfileError(f"profile '{name_or_path}' not found; available: {available}")


def load_profile(name_or_path: str, overrides: dict[str, dict[str, Any]] | None = None) -> Profile:
    """Load a profile; ``overrides`` = {node: {param: value}} applied last (CLI ``--set``)."""
    path = profile_path(name_or_path)
    data = yaml.safe_load(path.read_text()) or {}
    config_dir = shared_path("config")
    nodes = []
    for name, body in (data.get("nodes") or {}).items():
        body = body or {}
        exe = body.get("executable")
        if exe not in NODE_EXECUTABLES:
            raise ProfileError(f"{path}: node '{name}' has executable '{exe}'; known: {NODE_EXECUTABLES}")
        files = []
        for f in body.get("param_files", []):
            fp = Path(os.path.expandvars(f))
            fp = fp if fp.is_absolute() else config_dir / fp
            if not fp.is_file():
                raise ProfileError(f"{path}: node '{name}': parameter file {fp} does not exist")
            files.append(fp)
        params = dict(body.get("parameters") or {})
        params.update((overrides or {}).get(name, {}))
        nodes.append(NodeSpec(name, exe, body.get("namespace", ""), files, params, dict(body.get("remappings") or {})))
    unknown = set(overrides or {}) - {n.name for n in nodes}
    if unknown:
        raise ProfileError(
            f"--set names node(s) {sorted(unknown)} not in profile '{path.stem}' (its nodes: {[n.name for n in nodes]})"
        )
    for n in nodes:
        check_parameter_names(n, (overrides or {}).get(n.name, {}))
    return Profile(path.stem, str(data.get("description", "")), nodes)


# parameters every rclpy node has besides its schema's
ROS_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


def check_parameter_names(spec: NodeSpec, names: Any) -> None:
    """``--set node.name=...`` must name a parameter of the node's schema: a typo is an error that
    lists the close matches (it would otherwise be ignored, and the node run with its default)."""
    import difflib

    from .params import load_schema

    known = set(load_schema(spec.executable)["properties"]) | ROS_PARAMETERS
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; its parameters: {', '.join(sorted(known))}"
            raise ProfileError(f"--set {spec.name}.{name}: {spec.executable} has no parameter '{name}'{hint}")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def effective_parameters(spec: NodeSpec) -> dict[str, Any]:
    """The parameters the node will run with: schema defaults, then each parameter file's
    entries that apply to this node (``/**``, its name or its full name), then the overrides —
    the order rclpy applies them in."""
    from .params import defaults, load_schema

    values = defaults(load_schema(spec.executable))
    names = {"/**", spec.name, spec.fqn, spec.fqn.lstrip("/")}
    for f in spec.param_files:
        data = yaml.safe_load(Path(f).read_text()) or {}
        for target, body in data.items():
            if target in names and isinstance(body, dict):
                values.update(_flatten(body.get("ros__parameters") or {}))
    values.update(spec.parameters)
    return values


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """['node.param=value', ...] -> {node: {param: yaml-parsed value}}."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise ProfileError(f"--set '{item}' must look like node.parameter=value")
        out.setdefault(node, {})[param] = yaml.safe_load(value)
    return out
