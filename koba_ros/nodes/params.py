"""Small helpers every node uses: declared parameters with descriptions, parameters fixed once the node runs, and
sensor QoS."""
import math
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from koba_ros.errors import KobaError

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


def declare(node: Node, name: str, default: Any, description: str, *, read_only: bool = False) -> Any:
    """Declare a parameter with a description and return its current value."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    return node.declare_parameter(name, default, descriptor).value


def freeze_parameters(node: Node) -> None:
    """Refuse `ros2 param set` on the node's parameters from now on, with the reason.

    Every koba node reads its parameters when it is built (lifecycle nodes use them on configure): a later change
    would be reported as a success and change nothing. use_sim_time stays settable (rclpy's own callback acts on
    it). Called once the node is built, by runtime.run_node and the composed launcher (rclpy also runs these
    callbacks for declarations, so it cannot come earlier)."""
    def refuse(parameters) -> SetParametersResult:
        names = [p.name for p in parameters if p.name != "use_sim_time"]
        if not names:
            return SetParametersResult(successful=True)
        return SetParametersResult(successful=False, reason=f"{', '.join(names)}: read when {node.get_name()} "
                                   "starts; restart it with --ros-args -p NAME:=VALUE (or koba up --arg)")

    node.add_on_set_parameters_callback(refuse)


def require_positive(**values: float) -> None:
    """KobaError naming the first parameter that is not a finite number > 0 (NaN fails too: a rate or timeout of
    NaN, 0 or less would divide by zero or fire on every tick)."""
    for name, value in values.items():
        if not 0.0 < float(value) < math.inf:
            raise KobaError(f"{name} must be a finite number > 0, got {value}")


def sensor_qos(reliability: str, depth: int = 5) -> QoSProfile:
    """QoS for sensor streams; `reliability` is a node parameter ("reliable" or "best_effort")."""
    if reliability not in RELIABILITY:
        raise ValueError(f"reliability must be one of {sorted(RELIABILITY)}, got {reliability!r}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=RELIABILITY[reliability])
