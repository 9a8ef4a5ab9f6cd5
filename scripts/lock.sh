#!/usr/bin/env bash
# `make lock`: re-resolve every Python dependency from the ranges in requirements/*.txt and
# docker/requirements.txt into hash-pinned lock files, then run the whole suite against the
# refreshed lock. The new locks are kept only when `make test` passes; otherwise the previous
# ones are put back and this exits non-zero. Commit the lock files together with the change
# that needed them.
#   requirements/lock.txt        the development/CI venv (CPython 3.11, Linux x86_64), installed
#                                exactly by scripts/setup_venv.sh (uv, else pip; --require-hashes)
#   requirements/lock-stubs.txt  TensorRT type stubs (installed --no-deps, for mypy only)
#   docker/requirements.lock     the container images' pip packages (CPython >= 3.10, any arch)
#   requirements/lock-uv.txt     the installer setup_venv.sh installs lock.txt with (requirements/uv.txt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION="$(sed -n 's/^uv==//p' requirements/uv.txt)"
tools="$ROOT/build/lock-tools"
[[ -x "$tools/bin/uv" ]] && [[ "$("$tools/bin/uv" --version)" == "uv $UV_VERSION"* ]] || {
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q "uv==$UV_VERSION"
}
uv="$tools/bin/uv"
index=(--index-url https://pypi.org/simple)
new="$(mktemp -d)"
trap 'rm -rf "$new"' EXIT
# torch: the CPU build (torch==2.13.0+cpu) is a local wheel in /opt/wheels on these machines.
"$uv" pip compile -q --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  "${index[@]}" --find-links /opt/wheels --no-emit-find-links --custom-compile-command "make lock" \
  requirements/ros.txt requirements/runtime.txt requirements/dev.txt requirements/models.txt \
  -o "$new/lock.txt"
"$uv" pip compile -q --generate-hashes --no-deps --python-version 3.11 "${index[@]}" \
  --custom-compile-command "make lock" requirements/stubs.txt -o "$new/lock-stubs.txt"
"$uv" pip compile -q --generate-hashes --universal --python-version 3.10 "${index[@]}" \
  --custom-compile-command "make lock" docker/requirements.txt -o "$new/docker.lock"
"$uv" pip compile -q --generate-hashes --no-deps --universal --python-version 3.10 "${index[@]}" \
  --custom-compile-command "make lock" requirements/uv.txt -o "$new/lock-uv.txt"

files=(requirements/lock.txt requirements/lock-stubs.txt docker/requirements.lock requirements/lock-uv.txt)
backup="$(mktemp -d)"
for f in "${files[@]}"; do [[ -f "$f" ]] && cp "$f" "$backup/$(basename "$f")"; done
cp "$new/lock.txt" requirements/lock.txt
cp "$new/lock-stubs.txt" requirements/lock-stubs.txt
cp "$new/docker.lock" docker/requirements.lock
cp "$new/lock-uv.txt" requirements/lock-uv.txt
echo "==> lock files refreshed; running make test against them"
if ! make test; then
  echo "make lock: the suite fails with the refreshed lock; the previous lock files are restored" >&2
  for f in "${files[@]}"; do [[ -f "$backup/$(basename "$f")" ]] && cp "$backup/$(basename "$f")" "$f"; done
  rm -rf "$backup"
  exit 1
fi
rm -rf "$backup"
git --no-pager diff --stat -- "${files[@]}" || true
echo "==> make lock: the suite passes with the refreshed lock; commit ${files[*]}"
