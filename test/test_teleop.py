"""Spoken teleop: the parser, workspace refusal, Cartesian jogs in the PyBullet cell, and stop preempting motion."""
import json

import numpy as np
import pytest

from koba_ros.errors import KobaError
from koba_ros.teleop.commands import Gripper, Home, Jog, Stop, parse_command, teleop_phrases


@pytest.mark.parametrize("text, direction, metres", [
    ("move left five centimeters", (0, 1, 0), 0.05),
    ("up ten centimeters", (0, 0, 1), 0.10),
    ("forward three centimeters", (1, 0, 0), 0.03),
    ("move right 25 mm", (0, -1, 0), 0.025),
    ("go back twenty five millimeters", (-1, 0, 0), 0.025),
    ("down one and a half centimeters", (0, 0, -1), 0.015),
    ("two point five centimeters up", (0, 0, 1), 0.025),
    ("move left five", (0, 1, 0), 0.05),
    ("go forward ten meters", (1, 0, 0), 10.0),
])
def test_jogs_in_words_and_digits(text, direction, metres):
    command = parse_command(text)
    assert isinstance(command, Jog)
    assert command.direction == tuple(float(v) for v in direction)
    assert command.distance == pytest.approx(metres)


def test_gripper_home_stop():
    assert parse_command("open the gripper") == Gripper(open=True)
    assert parse_command("Close the gripper.") == Gripper(open=False)
    assert parse_command("go home") == Home()
    assert parse_command("stop") == Stop()
    assert parse_command("move left ten centimeters no stop") == Stop()   # stop wins
    assert parse_command("cancel") == Stop() and parse_command("abort that move") == Stop()   # grounding's words too


@pytest.mark.parametrize("text", ["", "banana", "move left", "move left and up five centimeters",
                                  "move left banana centimeters", "move left zero centimeters"])
def test_nonsense_is_a_spoken_reason(text):
    with pytest.raises(KobaError) as err:
        parse_command(text)
    assert str(err.value).endswith((".", "?"))


def test_every_language_model_phrase_parses():
    for phrase in teleop_phrases():
        parse_command(phrase)


@pytest.fixture(scope="module")
def sim():
    from koba_ros.sim.cell import SimCell
    from koba_ros.sim.scene import Scene
    from koba_ros.teleop.session import SimTeleop

    with SimCell(Scene(seed=0, objects=())) as cell:
        teleop = SimTeleop(cell)
        yield teleop
        teleop.planner.close()


def test_jog_moves_the_tool_in_a_straight_line(sim):
    start = sim.tool_position()
    plan = sim.say("move left five centimeters")
    assert sim.wait()
    moved = sim.tool_position() - start
    assert moved[1] == pytest.approx(0.05, abs=0.005)
    assert abs(moved[0]) < 0.006 and abs(moved[2]) < 0.006
    assert plan.reply == "Moved left 5 centimeters."


def test_out_of_reach_is_refused_and_the_arm_stays(sim):
    before = sim.cell.arm_positions().copy()
    with pytest.raises(KobaError, match="That is out of my reach."):
        sim.say("go forward ten meters")
    with pytest.raises(KobaError, match="out of my reach"):
        sim.say("down one meter")
    sim.step(0.3)
    assert np.allclose(sim.cell.arm_positions(), before, atol=1e-3)


def test_stop_halts_a_jog_within_200_ms(sim):
    sim.say("go home")
    sim.wait()
    start = sim.tool_position()
    plan = sim.say("move right twenty centimeters")
    sim.step(0.4)                              # moving
    assert sim.tool_position()[1] < start[1] - 0.005
    sim.say("stop")
    sim.step(0.2)                              # within 200 ms of the stop the arm is held...
    held = sim.tool_position()
    sim.step(1.0)
    assert np.linalg.norm(sim.tool_position() - held) < 0.003           # ...and stays there
    assert np.linalg.norm(sim.tool_position() - np.asarray(plan.target)) > 0.05   # far short of the target


def test_gripper_opens_and_closes(sim):
    sim.say("close the gripper")
    sim.wait()
    assert sim.cell.gripper_width() < 0.01
    sim.say("open the gripper")
    sim.wait()
    assert sim.cell.gripper_width() > 0.07


@pytest.mark.parametrize("text, code", [("open the gripper", 0), ("", 1), ("fly to the moon", 1)])
def test_teleop_command_exits_non_zero_when_the_command_is_refused(text, code, capsys, monkeypatch):
    """Like `koba pick`: a script calling `koba teleop --say` learns from the exit status that nothing was done. The
    arm itself is checked (run_once reports moved_m 0.0 for a refusal without measuring): a second of physics after
    the command must leave its joints where they started."""
    from koba_ros.cli import main
    from koba_ros.sim.cell import TIME_STEP, SimCell
    from koba_ros.teleop import session

    arms = []

    class Watched(SimCell):
        def __enter__(self):
            arms.append(self.arm_positions().copy())
            return super().__enter__()

        def __exit__(self, *exc):
            self.step(int(round(1.0 / TIME_STEP)))
            arms.append(self.arm_positions().copy())
            return super().__exit__(*exc)

    monkeypatch.setattr(session, "SimCell", Watched)
    assert main(["teleop", "--say", text, "--json"]) == code
    result = json.loads(capsys.readouterr().out)
    assert result["accepted"] is (code == 0) and len(arms) == 2
    assert code == 0 or np.allclose(arms[0], arms[1], atol=1e-3), arms


def test_the_planner_refuses_unknown_or_impossible_arm_states_and_a_signed_distance():
    from koba_ros.errors import KobaError
    from koba_ros.sim.cell import HOME
    from koba_ros.teleop.commands import Home, parse_command
    from koba_ros.teleop.jog import JogPlanner

    planner = JogPlanner()
    try:
        for q in ([float("nan")] * 7, [1e6] * 7):
            for command in (Home(), parse_command("move up five centimeters")):
                with pytest.raises(KobaError) as info:
                    planner.plan(command, q)
                assert "\n" not in str(info.value)
        assert planner.plan(Home(), HOME).trajectory is not None
    finally:
        planner.close()
    with pytest.raises(KobaError, match="distance"):
        parse_command("move up -5 cm")  # "up -5" is not "up 5"
    assert parse_command("move up twenty-five centimeters").distance == pytest.approx(0.25)


def test_a_reply_waits_for_the_motion_and_stands_only_while_its_motion_does():
    from koba_ros.teleop.motions import GRIPPER_MOTION_S, REPLY_MARGIN_S, MotionLog

    log = MotionLog()
    assert log.wait(0.0) == 0.0 and log.current(None)
    jog = log.send(10.0, arm_s=2.0)
    assert log.wait(10.0) == pytest.approx(2.0 + REPLY_MARGIN_S) and log.current(jog)
    grip = log.send(10.5, gripper=True)                        # a gripper command does not replace the jog
    assert log.current(jog) and log.current(grip) and log.wait(10.5) == pytest.approx(1.5 + REPLY_MARGIN_S)
    assert log.wait(10.5) >= GRIPPER_MOTION_S
    log.stop(11.0)                                             # a stop replaces the jog and ends the wait
    assert not log.current(jog) and log.current(grip) and log.wait(11.0) == 0.0
    later = log.send(12.0, arm_s=1.0)
    log.send(12.5, arm_s=1.0)                                  # a later jog replaces it too
    assert not log.current(later)
