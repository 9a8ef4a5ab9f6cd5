# Source this to use the workspace from a shell (install path (a), the venv):
#   source scripts/env.sh && perception demo
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PERCEPTION_ROOT="$_root"
export PATH="$_root/.venv/bin:$_root/.venv/lib/perception_nodes:$PATH"
export AMENT_PREFIX_PATH="$_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Large images need a bigger shared-memory segment than Fast DDS's default 512 KB.
export FASTRTPS_DEFAULT_PROFILES_FILE="${FASTRTPS_DEFAULT_PROFILES_FILE:-$_root/config/fastdds_shm.xml}"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$FASTRTPS_DEFAULT_PROFILES_FILE}"
unset _root
