"""LaunchDescriptions for `ros2 launch` built from the graphs in bringup.py.

launch/<graph>.launch.py is one line that calls `generate(<graph>)`: every graph argument
becomes a DeclareLaunchArgument with its description, and the nodes come from the same
build function `koba up` uses, so nothing about a graph is written twice. launch and
launch_ros exist only on a ROS 2 distro; this module imports them lazily.
"""
from __future__ import annotations

from koba_ros.bringup import graph as find_graph


def generate(graph_name: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode, Node

    g = find_graph(graph_name)

    def nodes(context, *args, **kwargs):
        values = {a.name: LaunchConfiguration(a.name).perform(context) for a in g.arguments}
        actions = []
        for spec in g.resolve(**values):
            common = dict(package="koba_ros", executable=spec.executable, name=spec.name, output="screen",
                          parameters=[dict(spec.parameters)], remappings=list(spec.remappings))
            if spec.lifecycle:
                actions.append(LifecycleNode(namespace="", autostart=True, **common))
            else:
                actions.append(Node(**common))
        return actions

    declared = [
        DeclareLaunchArgument(a.name, default_value=a.default, description=a.description,
                              **({"choices": list(a.choices)} if a.choices else {}))
        for a in g.arguments
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=nodes)])
