"""Graphs are defined once in bringup.py and everything else reads them."""
import ast
import importlib
from pathlib import Path

import pytest
import yaml

from koba_ros.bringup import GRAPHS, as_bool, config_parameters, graph
from koba_ros.errors import KobaError
from koba_ros.paths import config_dir, launch_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_graph_resolves_with_defaults_and_nodes_exist(name):
    specs = graph(name).resolve()
    assert specs, f"graph {name} has no nodes"
    assert len({s.name for s in specs}) == len(specs), "node names must be unique in a graph"
    for spec in specs:
        module = importlib.import_module(spec.module)
        assert callable(module.main), f"{spec.module} lacks main()"
        assert isinstance(spec.load_class(), type)
        assert (ROOT / "koba_ros" / "nodes" / f"{spec.executable}.py").is_file()


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_every_graph_argument_is_described(name):
    for arg in GRAPHS[name].arguments:
        assert arg.description.strip(), f"{name}:{arg.name} has no description"


def test_unknown_graph_and_argument_are_one_line_errors():
    with pytest.raises(KobaError, match="unknown graph"):
        graph("nope")
    with pytest.raises(KobaError, match="has no argument"):
        graph("picking").resolve(no_such_argument="1")


def test_as_bool():
    assert as_bool("true") and as_bool("1") and not as_bool("false") and not as_bool("")
    with pytest.raises(KobaError):
        as_bool("maybe")


def test_config_files_are_ros_parameter_files_named_after_their_node():
    nodes = {p.stem for p in (ROOT / "koba_ros" / "nodes").glob("*_node.py")}
    files = sorted(config_dir().glob("*.yaml"))
    assert files
    for path in files:
        data = yaml.safe_load(path.read_text())
        assert list(data) == [path.stem], f"{path.name} must hold one key: {path.stem}"
        assert "ros__parameters" in data[path.stem]
        assert path.stem in nodes, f"{path.name} configures a node that does not exist"
        assert isinstance(config_parameters(path.stem), dict)


def test_setup_py_exposes_every_node_as_an_executable():
    tree = ast.parse((ROOT / "setup.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "node_entry_points" for n in tree.body)
    import runpy
    import unittest.mock as mock

    with mock.patch("setuptools.setup") as fake_setup:
        runpy.run_path(str(ROOT / "setup.py"), run_name="__main__")
    scripts = fake_setup.call_args.kwargs["entry_points"]["console_scripts"]
    names = {s.split("=")[0].strip() for s in scripts}
    for spec in (s for g in GRAPHS.values() for s in g.resolve()):
        assert spec.executable in names


def test_package_xml_declares_runtime_dependencies():
    text = (ROOT / "package.xml").read_text()
    assert 'format="3"' in text
    for dep in ("rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "koba_interfaces", "launch_ros"):
        assert f">{dep}<" in text


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_launch_file_reads_the_graph_from_bringup(name):
    path = launch_dir() / f"{name}.launch.py"
    source = path.read_text()
    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "generate"]
    assert len(calls) == 1 and calls[0].args[0].value == name


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_launch_description_builds_where_launch_ros_exists(name):
    pytest.importorskip("launch_ros", reason="launch_ros is not on PyPI; this runs on a ROS 2 distro")
    from launch.actions import DeclareLaunchArgument

    from koba_ros.launch_description import generate

    description = generate(name)
    declared = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    assert declared == {a.name for a in GRAPHS[name].arguments}
