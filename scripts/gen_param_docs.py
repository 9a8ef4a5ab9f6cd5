"""Generate the README's parameter tables from the node schemas (so the docs cannot drift).

usage: python scripts/gen_param_docs.py --write | --check
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "src/perception_nodes/perception_nodes/schema"
README = ROOT / "README.md"
BEGIN, END = "<!-- params:begin (scripts/gen_param_docs.py) -->", "<!-- params:end -->"


def table(name: str) -> str:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    lines = [f"#### `{name}`", "", schema.get("title", ""), ""]
    if schema.get("x-include"):
        lines += [f"Also every parameter of {', '.join('`' + i + '`' for i in schema['x-include'])}.", ""]
    lines += ["| parameter | type | default | range / values | read-only | description |", "|---|---|---|---|---|---|"]
    for key, p in schema["properties"].items():
        t = p["type"] if p["type"] != "array" else f"{p['items']['type']}[]"
        rng = ""
        if "enum" in p:
            rng = " / ".join(p["enum"])
        elif "minimum" in p or "maximum" in p:
            rng = f"{p.get('minimum', '')} .. {p.get('maximum', '')}"
        lines.append(
            f"| `{key}` | {t} | `{json.dumps(p.get('default'))}` | {rng} | "
            f"{'yes' if p.get('readOnly') else ''} | {p.get('description', '')} |"
        )
    return "\n".join(lines) + "\n"


def render() -> str:
    names = ["common"] + sorted(
        p.name.removesuffix(".schema.json") for p in SCHEMAS.glob("*.schema.json") if p.name != "common.schema.json"
    )
    return "\n".join(table(n) for n in names)


def main() -> int:
    text = README.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md lacks the markers {BEGIN} ... {END}")
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render()}{END}{tail}"
    if "--write" in sys.argv:
        README.write_text(new)
        return 0
    if new != text:
        print("README.md parameter tables are out of date: run `make docs`")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
