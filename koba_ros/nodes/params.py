"""Small helpers every node uses: declared parameters with descriptions, parameters fixed once the node runs, given
parameters it does not have named, and sensor QoS."""
import array
import difflib
import math
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from koba_ros.errors import KobaError

RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}


# What a parameter of each type expects, as its error says it.
EXPECTED = {Parameter.Type.BOOL: "true or false", Parameter.Type.INTEGER: "an integer",
            Parameter.Type.DOUBLE: "a number", Parameter.Type.STRING: "a string",
            Parameter.Type.DOUBLE_ARRAY: "a list of numbers", Parameter.Type.INTEGER_ARRAY: "a list of integers",
            Parameter.Type.STRING_ARRAY: "a list of strings", Parameter.Type.BOOL_ARRAY: "a list of true/false"}


def declare(node: Node, name: str, default: Any, description: str, *, read_only: bool = False) -> Any:
    """Declare a parameter with a description and return its current value.

    A value given (config file, -p, launch) has the default's type, except that an integer serves for a float and a
    list of numbers for a list of floats (YAML writes `max_rate: 5`, `-p max_rate:=5`); any other type, or no value
    at all, is a KobaError naming the parameter and what it expects (rclpy raised InvalidParameterTypeException from
    the node's constructor)."""
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    where = f"{node.get_name()}: parameter {name}"
    try:
        value = node.declare_parameter(name, default, descriptor).value
    except InvalidParameterTypeException:
        # Read what was given (a dynamically typed parameter takes any type), then declare it as the default's type.
        given = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        node.undeclare_parameter(name)
        converted = as_type_of(default, given, where)
        return node.declare_parameter(name, converted, descriptor, ignore_override=True).value
    if value is None and default is not None:   # a YAML key with no value: rclpy takes it as "not set"
        raise KobaError(f"{where} must be {expected(default)}, got no value")
    return value


def expected(default: Any) -> str:
    kind = Parameter.Type.from_parameter_value(default)
    return EXPECTED.get(kind, kind.name.lower())


def as_type_of(default: Any, given: Any, where: str) -> Any:
    """`given` as the type of `default`: integers become floats where the default is a float (or a list of floats)."""
    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if isinstance(default, float) and number(given):
        return float(given)
    if (isinstance(default, list) and default and all(isinstance(v, float) for v in default)
            and isinstance(given, (list, tuple, array.array)) and all(map(number, given))):
        return [float(v) for v in given]
    raise KobaError(f"{where} must be {expected(default)}, got {given!r:.60}")


def unknown_overrides(node: Node) -> str | None:
    """A line naming the parameters given to the node (config file, -p, graph) that it did not declare, or None: a
    misspelt name is dropped by rclpy and the node runs on the default. `koba up`'s composed graph refuses them (it
    gives each node its own parameters); a node process only warns, as a params file shared by several nodes
    (`/**:`) legitimately holds others' parameters. The parameters rclpy declares itself (use_sim_time, ...) pass."""
    # rclpy keeps the overrides it was given (params files, -p, parameter_overrides) only in this attribute.
    unknown = sorted(name for name in node._parameter_overrides if not node.has_parameter(name))
    if not unknown:
        return None
    declared = node.list_parameters([], 0).names
    hints = [f"{name} (did you mean {close[0]}?)" if (close := difflib.get_close_matches(name, declared, 1))
             else name for name in unknown]
    return f"{node.get_name()} has no parameter {', '.join(hints)}"


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
