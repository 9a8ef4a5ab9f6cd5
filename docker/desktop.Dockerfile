# syntax=docker/dockerfile:1
# Desktop / server image: x86_64, CUDA 12.6 + TensorRT 10 + ROS 2 Jazzy (Ubuntu 24.04).
#
#   docker build -f docker/desktop.Dockerfile -t perception:desktop .
#   docker run --rm -it --gpus all --net host --ipc host --device /dev/video0 \
#       -v perception-engines:/cache/engines perception:desktop camera_detection
#
# The workspace is built with colcon against the system ROS (install path (b) of the README).
# TensorRT engines are NOT built here: an engine only runs on the GPU model and TensorRT version
# that built it, so the entrypoint builds them on first start into the /cache/engines volume.
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG ROS_DISTRO=jazzy
# TensorRT from NVIDIA's CUDA apt repository (already configured in the CUDA base image).
# `apt-cache madison libnvinfer10` lists the versions; the engine cache key contains the
# TensorRT version, so changing it rebuilds engines on the next start (logged).
ARG TENSORRT_VERSION=10.7.0.23-1+cuda12.6

ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    ROS_DISTRO=${ROS_DISTRO} \
    RMW_IMPLEMENTATION=rmw_fastrtps_cpp \
    PERCEPTION_ROOT=/opt/perception \
    PERCEPTION_ENGINE_CACHE=/cache/engines \
    PERCEPTION_PROFILE=camera_detection \
    PIP_NO_CACHE_DIR=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# ROS 2 from packages.ros.org; TensorRT runtime, ONNX parser and Python bindings; build tools
# for the interface package. Versions come from the base image tag and the two ARGs above.
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
        "libnvinfer10=${TENSORRT_VERSION}" "libnvinfer-plugin10=${TENSORRT_VERSION}" \
        "libnvonnxparsers10=${TENSORRT_VERSION}" "python3-libnvinfer=${TENSORRT_VERSION}" \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/perception
COPY requirements/runtime.txt requirements/runtime.txt
COPY docker/requirements.txt docker/requirements.lock docker/
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
