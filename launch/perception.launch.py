"""Launch a stack profile (config/profiles/<profile>.yaml) with ROS 2 launch.

    ros2 launch launch/perception.launch.py profile:=generic_replay
    ros2 launch launch/perception.launch.py profile:=camera_generic overrides:=/tmp/overrides.yaml

``overrides`` is a YAML file ``{node: {parameter: value}}`` applied after the parameter files
(what ``perception run --set node.param=value`` and the container entrypoint pass).

Reads the same profile as ``perception run`` (perception_nodes.profile.load_profile), so both
start the same nodes with the same parameter files, overrides and remappings, and the same
Fast DDS profile for large images.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _nodes(context, *args, **kwargs):
    from perception_nodes.launcher import ros_environment
    from perception_nodes.profile import load_profile

    import yaml

    overrides_file = LaunchConfiguration("overrides").perform(context)
    overrides = {}
    if overrides_file:
        with open(overrides_file) as f:
            overrides = yaml.safe_load(f) or {}
    profile = load_profile(LaunchConfiguration("profile").perform(context), overrides)
    env = ros_environment()
    actions = [
        SetEnvironmentVariable(k, env[k])
        for k in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE", "PERCEPTION_ROOT")
    ]
    for spec in profile.nodes:
        actions.append(
            Node(
                package="perception_nodes",
                executable=spec.executable,
                name=spec.name,
                namespace=spec.namespace or "",
                parameters=[str(f) for f in spec.param_files] + ([spec.parameters] if spec.parameters else []),
                remappings=list(spec.remappings.items()),
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "profile",
                default_value="generic_replay",
                description="stack profile: a name in config/profiles/ or a YAML path",
            ),
            DeclareLaunchArgument(
                "overrides", default_value="", description="YAML file {node: {parameter: value}} applied last"
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
