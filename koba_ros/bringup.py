"""The graphs of koba_ros, defined once.

`koba up GRAPH` (composed on one executor, or one process per node) and the files in
launch/ (for `ros2 launch` on a ROS 2 distro) both read the graphs from here.

A graph has string arguments (as launch arguments are) and a build function that turns
them into NodeSpecs. Node parameters come from config/<node name>.yaml
(`<node name>: ros__parameters: {...}`) with graph-specific overrides on top.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import yaml

from koba_ros.errors import KobaError, reason
from koba_ros.paths import config_dir


@dataclass(frozen=True)
class Argument:
    name: str
    default: str
    description: str
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeSpec:
    name: str                       # ROS node name
    executable: str                 # module stem in koba_ros/nodes, and the `ros2 run` executable
    node_class: str                 # class in that module; its __init__ takes rclpy Node kwargs
    parameters: Mapping[str, object] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()
    lifecycle: bool = False         # configure + activate on start

    @property
    def module(self) -> str:
        return f"koba_ros.nodes.{self.executable}"

    def load_class(self):
        return getattr(importlib.import_module(self.module), self.node_class)


@dataclass(frozen=True)
class Graph:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    build: Callable[[Mapping[str, str]], list[NodeSpec]]

    def resolve(self, **values: str) -> list[NodeSpec]:
        """NodeSpecs for these argument values (missing ones take their defaults)."""
        known = {a.name: a for a in self.arguments}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise KobaError(f"graph '{self.name}' has no argument {', '.join(unknown)}; it takes: "
                            f"{', '.join(known) or 'none'}")
        resolved = {name: str(values.get(name, arg.default)) for name, arg in known.items()}
        for name, value in resolved.items():
            if known[name].choices and value not in known[name].choices:
                raise KobaError(f"{name} must be one of {', '.join(known[name].choices)}, got {value!r}")
        return self.build(resolved)


def as_bool(value: str) -> bool:
    lowered = str(value).strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off", ""):
        return False
    raise KobaError(f"expected true or false, got {value!r}")


def config_parameters(node_name: str) -> dict:
    """ros__parameters of config/<node_name>.yaml, or {} when there is no such file."""
    path = config_dir() / f"{node_name}.yaml"
    if not path.is_file():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:   # an edited file: one line, also for `koba up GRAPH --list`
        raise KobaError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    try:
        return dict(data[node_name]["ros__parameters"])
    except (KeyError, TypeError):
        raise KobaError(f"{path}: expected '{node_name}: ros__parameters: {{...}}'") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """What the YAML parser found wrong and where, in one line ("expected ',' or ']', but got '<stream end>' at line
    8, column 1"); its own text spans four lines."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem or reason(exc)}{where}"


def node(executable: str, node_class: str, *, name: str | None = None, overrides: Mapping | None = None,
         remappings: tuple[tuple[str, str], ...] = (), lifecycle: bool = False) -> NodeSpec:
    name = name or executable
    parameters = {**config_parameters(name), **(overrides or {})}
    return NodeSpec(name, executable, node_class, parameters, remappings, lifecycle)


# --- the graphs -------------------------------------------------------------------------

# Pieces several graphs share.
TTS_ARGS = (
    Argument("tts_output_wav", "", "Write the robot's speech to this WAV file instead of playing it."),
)


def _tts(a: Mapping[str, str]) -> NodeSpec:
    return node("tts_node", "TTSNode", overrides={"output_wav": a["tts_output_wav"]} if a["tts_output_wav"] else None)


# The cell: a camera (simulated or RealSense), perception, the arm's controller (simulated) and the picker.
CELL_ARGS = (
    Argument("scene", "", "Scene file for the simulated cell (empty: sim/scenes/demo.json)."),
    Argument("headless", "false", "No PyBullet window; CPU TinyRenderer (true/false).", ("true", "false")),
    Argument("camera", "sim", "Camera source: the simulator, or a RealSense D4xx (no simulated arm then).",
             ("sim", "realsense")),
)


def _sim(a: Mapping[str, str]) -> NodeSpec:
    return node("sim_node", "SimNode", overrides={"scene": a["scene"], "headless": as_bool(a["headless"])})


def _cell(a: Mapping[str, str]) -> list[NodeSpec]:
    if a["camera"] == "realsense":
        source = node("realsense_node", "RealSenseNode", lifecycle=True)
    else:
        source = _sim(a)
    return [source, node("perception_node", "PerceptionNode", lifecycle=True), node("picker_node", "PickerNode")]


SPEECH_ARGS = (
    Argument("audio_source", "topic", "Where speech_node hears: /audio topic, a file, or the microphone.",
             ("topic", "file", "microphone")),
    Argument("wav_file", "", "Audio file for audio_source:=file."),
    Argument("asr_backend", "pocketsphinx", "ASR backend.", ("pocketsphinx", "whisper")),
    Argument("whisper_checkpoint", "", "Whisper checkpoint file (.pt) for asr_backend:=whisper."),
)


def _speech(a: Mapping[str, str]) -> NodeSpec:
    overrides = {"source": a["audio_source"], "backend": a["asr_backend"]}
    overrides.update({k: v for k, v in (("wav_file", a["wav_file"]), ("checkpoint", a["whisper_checkpoint"])) if v})
    return node("speech_node", "SpeechNode", overrides=overrides, lifecycle=True)


PICKING_ARGS = (*TTS_ARGS, *CELL_ARGS, *SPEECH_ARGS,
                Argument("speech", "true", "Hear spoken instructions (speech_node); typed text on /instruction "
                         "works either way.", ("true", "false")))


def _picking(a: Mapping[str, str]) -> list[NodeSpec]:
    speech = [_speech(a)] if as_bool(a["speech"]) else []
    return [_tts(a), *_cell(a), *speech, node("grounding_node", "GroundingNode", lifecycle=True)]


SIM_ARGS = tuple(arg for arg in CELL_ARGS if arg.name in ("scene", "headless"))
TELEOP_ARGS = (*TTS_ARGS, *SPEECH_ARGS, *SIM_ARGS,
               Argument("sim", "true", "Run the simulated cell (sim_node); false for a real arm's controller.",
                        ("true", "false")))


def _teleop(a: Mapping[str, str]) -> list[NodeSpec]:
    cell = [_sim(a)] if as_bool(a["sim"]) else []
    return [*cell, _speech(a), node("teleop_node", "TeleopNode"), _tts(a)]


MAZE_TRAINING_ARGS = (
    Argument("feedback", "simulated", "Who gives /human_feedback: simulated (simulated_human_node), keyboard "
             "(keys in this terminal), face (facial expressions seen by a camera), or none (reward only).",
             ("simulated", "keyboard", "face", "none")),
    Argument("env", "maze", "Environment the learner runs.", ("maze", "taxi")),
    Argument("agent", "auto", "Learning agent; auto: dqn_tamer, or dqn with feedback:=none.",
             ("auto", "dqn", "tamer", "dqn_tamer")),
    Argument("output_dir", "", "Folder for learning curves and checkpoints (empty: none)."),
)


def _maze_agent(a: Mapping[str, str]) -> str:
    """The agent to run. TAMER and DQN-TAMER learn from a person: without feedback TAMER has nothing to learn from,
    and DQN-TAMER's short exploration schedule (the person was to replace it) leaves it stuck (maze, seed 0: the
    goal reached in 0 of 60 episodes, DQN 39), so feedback:=none runs DQN and refuses them. ("auto" stands for "not
    given": the launch file passes every argument, so a default of dqn_tamer could not be told from one typed.)"""
    if a["feedback"] != "none":
        return "dqn_tamer" if a["agent"] == "auto" else a["agent"]
    if a["agent"] in ("tamer", "dqn_tamer"):
        raise KobaError(f"agent:={a['agent']} learns from human feedback and feedback:=none gives it none; use "
                        "agent:=dqn (the default with feedback:=none) or a feedback source")
    return "dqn"


def _maze_training(a: Mapping[str, str]) -> list[NodeSpec]:
    shared = {"env": a["env"]}
    learner = {**shared, "agent": _maze_agent(a), **({"output_dir": a["output_dir"]} if a["output_dir"] else {})}
    specs = [node("tamer_learner_node", "TamerLearnerNode", overrides=learner)]
    if a["feedback"] == "simulated":
        specs.append(node("simulated_human_node", "SimulatedHumanNode", overrides=shared))
    elif a["feedback"] == "keyboard":
        specs.append(node("keyboard_feedback_node", "KeyboardFeedbackNode"))
    elif a["feedback"] == "face":
        # --- face feedback: the face engineer's node spec goes here ---
        specs.append(node("face_feedback_node", "FaceFeedbackNode", lifecycle=True))
    return specs


GRAPHS: dict[str, Graph] = {
    g.name: g
    for g in (
        Graph("picking", "Spoken-instruction pick-and-place in the simulated (or real) cell.", PICKING_ARGS, _picking),
        Graph("teleop", "Spoken teleoperation of the arm.", TELEOP_ARGS, _teleop),
        Graph("maze_training", "DQN-TAMER learning a maze from reward and human feedback.", MAZE_TRAINING_ARGS,
              _maze_training),
    )
}


def graph(name: str) -> Graph:
    if name not in GRAPHS:
        raise KobaError(f"unknown graph {name!r}; graphs: {', '.join(GRAPHS)}")
    return GRAPHS[name]
