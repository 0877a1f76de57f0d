"""The koba command: help everywhere, one-line errors, non-zero exits."""
import subprocess
import sys

import pytest

from koba_ros.cli import COMMANDS, build_parser, main


def run_koba(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "koba_ros.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_help_lists_every_command():
    out = run_koba("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name.replace("_", "-") in out.stdout


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([name.replace("_", "-"), "--help"])
    assert exit_info.value.code == 0
    assert "usage: koba" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["no-such-command"], ["up", "no_such_graph"], ["say"], ["up", "picking", "--bogus"],
                                  ["say", "caf\udce9"]])  # Latin-1 bytes on the command line
def test_bad_arguments_give_one_line_and_nonzero_exit(argv):
    out = run_koba(*argv)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0]


def test_koba_error_is_one_line_exit_2(capsys):
    assert main(["say", "   "]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["koba say: error: nothing to say: the text is empty"]


@pytest.mark.parametrize("argv, message", [
    (["lm", "expand", "--checkpoint", "c", "--out", "o", "--width-factor", "2", "--noise", "nan"],
     "finite number >= 0"),
    (["lm", "bench", "--peak-tflops", "0"], "finite number > 0"),
    (["lm", "tickets", "--train", "t.tsv", "--sparsity", "nan"], "a finite number"),
    (["lm", "tickets", "--train", "t.tsv", "--l1", "inf"], "finite number >= 0"),
    (["lm", "influence", "--train", "t.tsv", "--epochs", "0"], "whole number > 0"),
    (["up", "teleop", "--duration", "-5"], "a number of seconds from 0 to"),
    (["up", "teleop", "--duration", "1e10"], "a number of seconds from 0 to"),  # the timer's clock overflowed
    (["train", "grounding", "--seed", "-1"], "from 0 to 2^63 - 1"),
    (["train", "crop-kinds", "--seed", str(2 ** 64)], "from 0 to 2^63 - 1"),
    (["tamer", "train", "--out", "o", "--seed", "-1"], "whole number >= 0"),
    (["face", "img.png", "--calibrate", "nan"], "finite number >= 0"),
])
def test_bad_numbers_are_refused_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_third_party_errors_become_short_one_line_reasons(tmp_path):
    import torch

    from koba_ros.errors import KobaError, reason
    from koba_ros.grounding.grounder import Member

    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "text.pt").write_text("hello world\n")
    for name in ("garbage.pt", "text.pt"):
        with pytest.raises(Exception) as err:
            torch.load(tmp_path / name, weights_only=True)
        text = reason(err.value)
        assert text.startswith("not a torch weights file") and "\n" not in text and len(text) <= 160
        with pytest.raises(KobaError, match="cannot read grounding model .*: not a torch weights file") as err:
            Member(tmp_path / name)
        assert "\n" not in str(err.value) and "file an issue" not in str(err.value)
    assert reason(KeyError("config")) == "KeyError: 'config'"
    assert len(reason(ValueError("x" * 500))) == 160
