"""Launch a stack profile (config/profiles/<profile>.yaml) with ROS 2 launch.

    ros2 launch perception_nodes perception.launch.py profile:=camera_detection
    ros2 launch perception_nodes perception.launch.py profile:=camera_full namespace:=front log_level:=debug
    ros2 launch perception_nodes perception.launch.py profile:=synthetic_replay use_sim_time:=true \\
        overrides:=/tmp/overrides.yaml

From a robot's bringup::

    IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("perception_nodes"), "launch", "perception.launch.py"])
        ),
        launch_arguments={"profile": "camera_detection", "namespace": "front"}.items(),
    )

Arguments: ``profile`` (a name in config/profiles/ of the package share or the checkout, or a YAML
path), ``overrides`` (a YAML file ``{node: {parameter: value}}`` applied after the parameter files:
what ``perception run --set node.param=value`` and the container entrypoint pass), ``namespace``
(pushed in front of every node's own), ``use_sim_time`` (true when replaying a bag with /clock),
``log_level`` (debug, info, warn, error).

Reads the same profile as ``perception run`` (perception_nodes.profile.load_profile), so both
start the same nodes with the same parameter files, overrides and remappings, and the same Fast DDS
profile for large images. The inference nodes are lifecycle nodes (``LifecycleNode``; with their
``autostart`` parameter they configure and activate themselves, else a lifecycle manager does).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node


def _nodes(context, *args, **kwargs):
    import yaml

    from perception_nodes.launcher import ros_environment
    from perception_nodes.profile import load_profile
    from perception_nodes.tasks import PROCESSING_NODES

    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    overrides = {}
    if arg("overrides"):
        with open(arg("overrides")) as f:
            overrides = yaml.safe_load(f) or {}
    profile = load_profile(arg("profile"), overrides)
    sim_time = arg("use_sim_time").lower() in ("true", "1", "yes")
    env = ros_environment()
    actions = [
        SetEnvironmentVariable(k, env[k])
        for k in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
        if k in env
    ]
    if "PERCEPTION_ROOT" in env:  # a checkout (development); an install finds its share
        actions.append(SetEnvironmentVariable("PERCEPTION_ROOT", env["PERCEPTION_ROOT"]))
    for spec in profile.nodes:
        namespace = "/".join(p for p in (arg("namespace").strip("/"), spec.namespace.strip("/")) if p)
        action = LifecycleNode if spec.executable in PROCESSING_NODES else Node
        actions.append(
            action(
                package="perception_nodes",
                executable=spec.executable,
                name=spec.name,
                namespace=namespace,
                parameters=[str(f) for f in spec.param_files]
                + ([spec.parameters] if spec.parameters else [])
                + [{"use_sim_time": sim_time}],
                remappings=list(spec.remappings.items()),
                arguments=["--ros-args", "--log-level", arg("log_level")],
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "profile",
                default_value="camera_detection",
                description="stack profile: a name in config/profiles/ or a YAML path",
            ),
            DeclareLaunchArgument(
                "overrides", default_value="", description="YAML file {node: {parameter: value}} applied last"
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace in front of every node's"),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="use /clock (replaying a bag with --clock)"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn or error"),
            OpaqueFunction(function=_nodes),
        ]
    )
