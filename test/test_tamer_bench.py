"""`koba tamer bench|train`: a tiny benchmark run (structure of the JSON and files), training with checkpoint
save and resume, and bad input."""
import json
from pathlib import Path

import pytest
import torch

from koba_ros.cli import main
from koba_ros.rl.bench import BenchConfig, episodes_to_solve, moving_average


def test_tiny_bench_json_and_files(tmp_path, capsys):
    code = main(["tamer", "bench", "--env", "maze", "--layout", "corridor", "--agents", "dqn,tamer,dqn_tamer",
                 "--seeds", "2", "--episodes", "12", "--human", "p_feedback=0.8", "--json", "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["env_id"] == "koba/Maze-v0" and out["shortest_path"] == 6
    for name in ("dqn", "tamer", "dqn_tamer"):
        s = out["summary"][name]
        assert s["runs"] == 2 and {"median", "q25", "q75"} <= set(s["episodes_to_solve"])
        assert 1 <= s["episodes_to_solve"]["median"] <= 13
    assert out["summary"]["dqn"]["feedback_used"]["max"] == 0
    assert out["summary"]["tamer"]["feedback_used"]["median"] > 0
    assert "dqn_tamer_over_dqn_episodes" in out["summary"]
    stored = json.loads((tmp_path / "bench.json").read_text())
    assert len(stored["runs"]) == 6 and all(len(r["steps"]) == 12 for r in stored["runs"])
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_taxi_bench_runs(capsys):
    assert main(["tamer", "bench", "--env", "taxi", "--agents", "tamer", "--seeds", "1", "--episodes", "3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["env_id"].startswith("Taxi") and out["summary"]["tamer"]["runs"] == 1


def test_solved_criterion():
    steps = [300] * 5 + [28] * 20
    assert episodes_to_solve("maze", steps, None, 26, 0.0) == 15  # the first window free of the 300s
    assert episodes_to_solve("maze", [28] * 12, None, 26, 0.0) == 10
    assert episodes_to_solve("maze", [40] * 30, None, 26, 0.0) is None
    assert episodes_to_solve("taxi", None, [-200] * 3 + [5] * 30, None, 0.0) == 13
    assert moving_average([1, 3, 5])[-1] == 3.0


def test_seeds_start_at_first_seed():
    from koba_ros.errors import KobaError
    from koba_ros.rl.bench import run_bench

    config = BenchConfig(env="maze", layout="corridor", agents=("dqn",), seeds=2, first_seed=100, episodes=2)
    assert [r["seed"] for r in run_bench(config)["runs"]] == [100, 101]
    with pytest.raises(KobaError, match="first_seed"):
        BenchConfig(first_seed=-1)


def test_train_writes_curves_and_checkpoint_then_resumes(tmp_path, capsys):
    args = ["tamer", "train", "--env", "maze", "--layout", "open5", "--agent", "dqn_tamer", "--episodes", "3",
            "--out", str(tmp_path), "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["agent"]["agent"] == "dqn_tamer" and len(state["episodes"]) == 3
    assert (tmp_path / "curve.csv").read_text().count("\n") == 4 and (tmp_path / "curve.png").is_file()
    assert main([*args, "--resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["resumed_from_episode"] == 3 and second["episodes"] == 6
    assert second["total_steps"] > first["total_steps"] and second["steps"] == second["total_steps"]
    assert (tmp_path / "curve.csv").read_text().count("\n") == 7
    # TensorBoard scalars: the same returns as curve.csv, one point per episode (no duplicates after the resume)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    returns = [float(line.split(",")[2]) for line in (tmp_path / "curve.csv").read_text().splitlines()[1:]]
    points = events.Scalars("episode/return")
    assert [p.step for p in points] == list(range(6))
    assert [p.value for p in points] == pytest.approx(returns, abs=1e-3)


def test_checkpoint_restores_the_agent_exactly(tmp_path):
    import numpy as np

    from koba_ros.rl.bench import build_run, simulate
    from koba_ros.rl.train import load_checkpoint, save_checkpoint

    config = BenchConfig(env="maze", layout="open5", agents=("dqn_tamer",), seeds=1, episodes=2)
    _, agent, session, human = build_run(config, "dqn_tamer", 0)
    now = simulate(session, human, 2, 1.0)
    save_checkpoint(tmp_path / "c.pt", agent, session, now, "maze")
    _, agent2, session2, _ = build_run(config, "dqn_tamer", 1)
    assert load_checkpoint(tmp_path / "c.pt", agent2, session2, "maze") == now
    states = np.arange(25)
    assert np.allclose(agent.q.net(states), agent2.q.net(states)) and np.allclose(agent.h.net(states),
                                                                                  agent2.h.net(states))
    assert agent2.alpha_h == agent.alpha_h and agent2.steps == agent.steps
    assert [agent.act(s % 25) for s in range(30)] == [agent2.act(s % 25) for s in range(30)]  # same RNG stream too


@pytest.mark.parametrize("argv, message", [
    (["tamer", "bench", "--agents", "ppo", "--episodes", "1"], "unknown agent"),
    (["tamer", "bench", "--human", "p_wrong=1.5", "--episodes", "1"], "p_wrong"),
    (["tamer", "bench", "--credit-delay", "uniform:5:1", "--episodes", "1"], "lo < hi"),
    (["tamer", "bench", "--human", "binary=maybe", "--episodes", "1"], "binary must be true or false"),
    (["tamer", "bench", "--human", "half_life=nan", "--episodes", "1"], "half_life must be a finite number"),
    (["tamer", "bench", "--env", "taxi", "--layout", "corridor", "--episodes", "1"], "--layout is for the maze"),
    (["tamer", "train", "--env", "taxi", "--layout", "open5", "--out", "/nonexistent_dir_for_test/t"],
     "--layout is for the maze"),
    (["tamer", "train", "--out", "/nonexistent_dir_for_test/x", "--resume"], "no checkpoint"),
    (["tamer", "train", "--agent", "dqn", "--env", "taxi", "--out", "{tmp}", "--resume"], "for env 'maze'"),
    (["tamer", "train", "--agent", "dqn", "--layout", "open5", "--episodes", "1", "--out", "{tmp}"],
     "already holds a run (checkpoint.pt); add --resume"),
    (["tamer", "train", "--episodes", "1", "--out", "/proc/koba_x"], "cannot create /proc/koba_x"),
    (["tamer", "bench", "--layout", "open5", "--episodes", "5", "--seeds", "1", "--agents", "tamer", "--human",
      "delay=gamma:3:4:0.1"], "delay gamma:3:4:0.1: a gamma peaked at 0.1 s has almost no mass"),  # hung
    (["tamer", "bench", "--layout", "open5", "--episodes", "5", "--seeds", "1", "--agents", "tamer",
      "--credit-delay", "gamma:3:4:0.1"], "almost no mass"),  # rejected all feedback, exit 0
    (["tamer", "bench", "--layout", "corridor", "--agents", "dqn,tamer,dqn", "--seeds", "1", "--episodes", "1"],
     "--agents names dqn more than once"),
    (["tamer", "bench", "--layout", "corridor", "--agents", "dqn", "--seeds", "1", "--episodes", "1", "--out",
      "/proc/koba_x"], "cannot create /proc/koba_x"),
])
def test_bad_input_is_one_line_error(argv, message, tmp_path, capsys):
    if "{tmp}" in argv:
        assert main(["tamer", "train", "--agent", "dqn", "--layout", "open5", "--episodes", "1", "--out",
                     str(tmp_path)]) == 0
        argv = [str(tmp_path) if a == "{tmp}" else a for a in argv]
    capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, nothing removed
    assert not Path("/nonexistent_dir_for_test").exists()


def test_bench_refuses_a_file_as_out_before_running(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("keep me")
    assert main(["tamer", "bench", "--layout", "corridor", "--agents", "dqn", "--seeds", "1", "--episodes", "1",
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--out {out} is a file, not a folder" in err and "\n" not in err  # no progress line: nothing ran
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("argv, message", [
    (["tamer", "bench", "--episodes", "0"], "--episodes: must be a whole number > 0, got '0'"),  # was: 300
    (["tamer", "train", "--out", "x", "--episodes", "-3"], "--episodes: must be a whole number > 0, got '-3'"),
    (["tamer", "bench", "--seeds", "0"], "--seeds: must be a whole number > 0, got '0'"),
    (["feedback", "--keyboard", "--wait", "nan"], "--wait: must be a finite number >= 0, got 'nan'"),
    (["feedback", "--keyboard", "--wait", "inf"], "--wait: must be a finite number >= 0, got 'inf'"),
    (["feedback", "--keyboard", "--wait", "-1"], "--wait: must be a finite number >= 0, got '-1'"),
])
def test_bad_numbers_are_refused_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and message in err and "\n" not in err


@pytest.mark.parametrize("content, message", [
    ({"env": "maze"}, "is not a koba tamer checkpoint"),  # was KeyError 'agent'
    (torch.zeros(3), "is not a koba tamer checkpoint"),  # was AttributeError
    ({"env": "maze", "agent": torch.zeros(3), "now": 0.0, "total_steps": 0, "episodes": []}, "damaged: agent is a"),
    ({"env": "maze", "agent": {"agent": "dqn_tamer"}, "now": 0.0, "total_steps": 0, "episodes": []}, "damaged"),
    ({"env": "maze", "agent": {}, "now": 0.0, "total_steps": 0, "episodes": [[1, 2]]}, "damaged"),
])
def test_resume_from_a_foreign_checkpoint_is_one_line_error(content, message, tmp_path, capsys):
    torch.save(content, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert main(["tamer", "train", "--out", str(tmp_path), "--resume", "--layout", "open5", "--episodes", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert (tmp_path / "checkpoint.pt").read_bytes() == before and sorted(tmp_path.iterdir()) == [
        tmp_path / "checkpoint.pt"]


def test_prepare_output_is_the_check_train_and_the_learner_node_share(tmp_path):
    from koba_ros.errors import KobaError
    from koba_ros.rl.train import prepare_output

    a_file = tmp_path / "file"
    a_file.write_text("")
    with pytest.raises(KobaError, match=f"^output_dir {a_file} is a file, not a folder$"):
        prepare_output(a_file, False, "output_dir", "resume")
    run = tmp_path / "run"
    with pytest.raises(KobaError, match="^resume: no checkpoint at"):
        prepare_output(run, True, "output_dir", "resume")
    assert not run.exists()
    prepare_output(run / "deeper", False, "output_dir", "resume")
    assert (run / "deeper").is_dir()
    (run / "deeper" / "checkpoint.pt").write_bytes(b"")
    with pytest.raises(KobaError, match="already holds a run .*add resume to continue it, or give another output_dir"):
        prepare_output(run / "deeper", False, "output_dir", "resume")
    prepare_output(run / "deeper", True, "output_dir", "resume")  # resuming it is fine


def test_feedback_command_needs_a_terminal(capsys):
    assert main(["feedback", "--keyboard"]) == 2  # pytest's stdin is not a TTY
    assert "terminal" in capsys.readouterr().err
