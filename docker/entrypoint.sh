#!/usr/bin/env bash
# Entrypoint of the perception images: source ROS and the workspace, then `perception start`,
# which checks the camera, the GPU and the engine cache, builds missing TensorRT engines for this
# GPU into the cache volume and launches the profile (src/perception_nodes/perception_nodes/deploy.py).
#
#   IMAGE [PROFILE] [--camera DEV] [--allow-cpu] [--set node.param=value ...]   start a profile
#   IMAGE build-engines [PROFILE]     build the profile's engines into the cache, then exit
#   IMAGE check [PROFILE]             run the checks only (camera, GPU, cache), then exit
#   IMAGE bash | ros2 ... | python3 ...   run that command in the sourced environment
set -eo pipefail

ros_setup="${ROS_SETUP:-/opt/ros/${ROS_DISTRO:?ROS_DISTRO is not set}/setup.bash}"
ws_setup="${PERCEPTION_ROOT:-/opt/perception}/install/setup.bash"
for f in "$ros_setup" "$ws_setup"; do
  if [[ ! -f "$f" ]]; then
    echo "perception-entrypoint: $f not found (is this the perception image?)" >&2
    exit 2
  fi
  # shellcheck disable=SC1090
  source "$f"
done

start=(python3 -m perception_nodes.tools.cli start)
case "${1:-}" in
  build-engines) shift; exec "${start[@]}" --build-only "$@" ;;
  check)         shift; exec "${start[@]}" --check "$@" ;;
  bash|sh|ros2|python3|perception-models) exec "$@" ;;
  *)             exec "${start[@]}" "$@" ;;
esac
