"""ament_python package koba_ros.

Every koba_ros/nodes/*_node.py becomes an executable for `ros2 run koba_ros <name>`,
so adding a node never means editing this file.
"""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "koba_ros"
here = Path(__file__).parent


def node_entry_points():
    return [
        f"{path.stem} = koba_ros.nodes.{path.stem}:main"
        for path in sorted((here / "koba_ros" / "nodes").glob("*_node.py"))
    ]


def share_tree(folder):
    """data_files entries that install folder/** under share/koba_ros/folder."""
    entries = {}
    for path in glob(f"{folder}/**/*", recursive=True):
        if Path(path).is_file():
            entries.setdefault(str(Path("share", package_name, Path(path).parent)), []).append(path)
    return sorted(entries.items())


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        *share_tree("launch"),
        *share_tree("config"),
        *share_tree("sim"),
        *share_tree("models"),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="koba_ros team",
    maintainer_email="koba-ros@example.com",
    description="Spoken-instruction picking, spoken teleop, DQN-TAMER and an NLP library on ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": ["koba = koba_ros.cli:main", *node_entry_points()]},
)
