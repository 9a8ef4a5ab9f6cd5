# syntax=docker/dockerfile:1
# Jetson image: JetPack 6 (L4T r36.x, Ubuntu 22.04, aarch64); CUDA, cuDNN and TensorRT (with its
# Python bindings) come from the l4t-jetpack base, matching the board's JetPack.
#
#   docker build -f docker/jetson.Dockerfile -t perception:jetson .      # on the Jetson
#   docker run --rm -it --runtime nvidia --net host --ipc host --device /dev/video0 \
#       -v perception-engines:/cache/engines perception:jetson camera_detection
#
# ROS 2: Jazzy's apt packages target Ubuntu 24.04 and JetPack 6 is Ubuntu 22.04, so this image
# installs Humble from packages.ros.org, as most Jetson users do (for Jazzy, build it from source
# the way dusty-nv/jetson-containers does and pass it as BASE with ROS_DISTRO=jazzy). The
# nodes run on both. Keep the L4T tag equal to the board's (`cat /etc/nv_tegra_release`).
ARG L4T_IMAGE=nvcr.io/nvidia/l4t-jetpack:r36.4.0
FROM ${L4T_IMAGE}

ARG ROS_DISTRO=humble

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    ROS_DISTRO=${ROS_DISTRO} \
    RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    PERCEPTION_ROOT=/opt/perception \
    PERCEPTION_ENGINE_CACHE=/cache/engines \
    PERCEPTION_PROFILE=camera_detection \
    PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl gnupg \
 && curl -fsSL https://raw.githubusercontent.com/ros/rosdistro/master/ros.key \
        -o /usr/share/keyrings/ros-archive-keyring.gpg \
 && echo "deb [arch=$(dpkg --print-architecture) signed-by=/usr/share/keyrings/ros-archive-keyring.gpg] http://packages.ros.org/ros2/ubuntu $(. /etc/os-release && echo "${UBUNTU_CODENAME}") main" \
        > /etc/apt/sources.list.d/ros2.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
        "ros-${ROS_DISTRO}-ros-base" "ros-${ROS_DISTRO}-rmw-fastrtps-cpp" \
        "ros-${ROS_DISTRO}-rosidl-default-generators" "ros-${ROS_DISTRO}-vision-msgs" \
        python3-colcon-common-extensions python3-pip build-essential cmake v4l-utils \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/perception
COPY requirements/runtime.txt requirements/runtime.txt
COPY docker/requirements.txt docker/requirements.lock docker/
# onnxruntime from PyPI is CPU-only on aarch64: the GPU path on a Jetson is native TensorRT.
RUN pip3 install --no-cache-dir --require-hashes -r docker/requirements.lock

COPY colcon.meta colcon_defaults.yaml ./
# launch/, config/, rviz/ and models/ are installed into share/perception_nodes by the build;
# vision_msgs comes from apt here (src/vision_msgs is only for installs without it)
COPY launch/ launch/
COPY config/ config/
COPY rviz/ rviz/
COPY models/ models/
COPY src/ src/
RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" \
 && colcon build --merge-install --install-base install --packages-skip vision_msgs \
        --event-handlers console_cohesion+ \
 && rm -rf build log
# The generic node's smoke-test model (profile camera_generic: a camera through any ONNX model).
RUN source "/opt/ros/${ROS_DISTRO}/setup.bash" && source install/setup.bash \
 && python3 -c "from perception_nodes.tools.demo_assets import make_demo_model; make_demo_model('cache/demo/demo_model.onnx')"
COPY docker/entrypoint.sh /usr/local/bin/perception-entrypoint

VOLUME ["/cache/engines"]
ENTRYPOINT ["/usr/local/bin/perception-entrypoint"]
CMD ["camera_detection"]
