"""Copy the tensorrt-stubs .pyi files to a folder mypy reads, fixing the stubs' syntax errors.

tensorrt-stubs 10.13 installs ``tensorrt/*.pyi`` without a PEP 561 marker and has two kinds of
invalid signatures: a parameter named ``in`` (a keyword), and parameters without a default after
ones with a default. Both are rewritten (``in_``; ``= ...``); nothing else changes.

usage: python scripts/patch_trt_stubs.py SITE_PACKAGES OUT_DIR
"""

import re
import sys
from pathlib import Path

PARAM = re.compile(r"^\s*\*{0,2}[A-Za-z_]\w*\s*(:[^=]+)?(=.*)?$")


def split_params(params: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in params:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def fix_def(line: str) -> str:
    m = re.match(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$", line)
    if not m:
        return line
    params = split_params(m.group(2))
    seen_default, fixed = False, []
    for p in params:
        p = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", p)
        name = p.strip()
        if name.startswith("*"):
            seen_default = False  # keyword-only params may lack defaults
        elif "=" in p:
            seen_default = True
        elif seen_default and name not in ("/",):
            p = p + " = ..."
        fixed.append(p)
    return m.group(1) + ",".join(fixed) + m.group(3)


def main() -> None:
    site, out = Path(sys.argv[1]), Path(sys.argv[2])
    for pkg in ("tensorrt", "tensorrt_bindings"):
        (out / pkg).mkdir(parents=True, exist_ok=True)
        for f in (site / pkg).glob("*.pyi"):
            text = "\n".join(fix_def(line) for line in f.read_text().splitlines()) + "\n"
            (out / pkg / f.name).write_text(text)


if __name__ == "__main__":
    main()
