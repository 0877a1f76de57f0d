"""Session 26's bench review: the GPU call's plan and what it returns (bench/next_gpu_call.sh), the DQN-TAMER sweep's
settings, asr.py's defaults, one JSON object on stdout, the executor bench's pool, the grounding bench's CPU ratio."""
import importlib.util
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "next_gpu_call.sh"
LEASE_S, START_S, TRANSFER_S = 900, 180, 20   # device README: 15 min, starts counted (about 3 min assumed)


def load_bench(name: str):
    """A bench script as a module (bench/ is no package), with the repository on the path as its scripts expect."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(env: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    full = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT)], env=full, capture_output=True, text=True, timeout=120)


def dry_plan(tmp_path: Path, part: int) -> tuple[str, int, list[tuple[int, int]], int]:
    """The dry run's stderr, TOTAL, each step's (start, limit) and the end time it reports."""
    done = run_script({"NEXT_GPU_DRY": "1", "NEXT_GPU_PART": str(part), "OUT": str(tmp_path / "out")}, tmp_path)
    assert done.returncode == 0, done.stderr
    total = int(re.search(r"TOTAL (\d+)s", done.stderr).group(1))
    steps = [(int(t), int(limit)) for t, limit in re.findall(r"\(t=(\d+)s, (?:in parallel, )?limit (\d+)s\)",
                                                             done.stderr)]
    end = int(re.search(r"done at t=(\d+)s", done.stderr).group(1))
    return done.stderr, total, steps, end


# 1. bench/next_gpu_call.sh: a plan that fits the lease with one rerun, and at most 8 files back from $OUT.
def test_next_gpu_call_dry_run_fits_a_rerun_and_keeps_what_the_readme_promises(tmp_path):
    plans = {part: dry_plan(tmp_path, part) for part in (1, 2)}
    for part, (log, total, steps, end) in plans.items():
        # two machine starts and two calls of TOTAL: a failed first call can be rerun inside the lease
        assert 2 * (START_S + total + TRANSFER_S) <= LEASE_S, (part, total)
        # the dry run's clock advances by each step's limit (a parallel group by its longest), so skips show
        assert steps[1][0] == steps[0][0] + steps[0][1], log
        assert end >= sum(limit for _, limit in steps[:2]) and end <= total, log
        assert "skipped" not in log, log
    part1, part2 = plans[1][0], plans[2][0]
    # README: ours_bf16_master_bias waits for the next GPU call; the fair baseline is hf_bf16_master; ALONE at
    # full size and wso on unseen code are in it
    bench = next(line for line in part1.splitlines() if "koba_ros.nlp bench" in line)
    assert "hf_bf16_master" in bench and "ours_bf16_master_bias" in bench and "--profile-steps" not in bench
    assert part1.index("hf_bf16_master") < part1.index("repro alone")   # the bench first, then ALONE
    assert "repro alone" in part1 and "repro wso" in part2 and "spike" in part2 and "repro expand" in part2
    assert not list(tmp_path.glob("next_gpu_part*")), "a dry run makes no work folder"


STUB = """#!/bin/bash
# stands in for python3: writes what each real command's --out would hold
[[ "$1" == "-c" && -n "${STUB_PREFLIGHT_FAILS:-}" ]] && { echo "torch: no CUDA"; exit 1; }
echo "stub $*"
prev=""; for a in "$@"; do
  if [[ "$prev" == "--out" ]]; then
    case "$a" in *.json) mkdir -p "$(dirname "$a")"; echo '{}' > "$a";;
                 *) mkdir -p "$a"; echo '{}' > "$a/$(basename "$a").json"; echo png > "$a/$(basename "$a").png";; esac
  fi; prev="$a"; done
exit 0
"""


@pytest.mark.parametrize("part", [1, 2, 3])
def test_next_gpu_call_returns_one_archive_and_a_few_flat_files(tmp_path, part):
    stub = tmp_path / "stubpy"
    stub.write_text(STUB)
    stub.chmod(0o755)
    out, work = tmp_path / "out", tmp_path / "work"
    done = run_script({"KOBA_PY": str(stub), "NEXT_GPU_PART": str(part), "OUT": str(out),
                       "NEXT_GPU_WORK": str(work)}, tmp_path)
    assert done.returncode == 0, done.stderr
    returned = [p for p in out.rglob("*") if p.is_file()]
    # the device tool returns at most 8 files from $OUT: results.tgz and at most 6 key files, all at the top
    assert len(returned) <= 7 and all(p.parent == out for p in returned), returned
    assert (out / "results.tgz").exists() and (out / "env.txt").exists() and (out / "steps.log").exists()
    with tarfile.open(out / "results.tgz") as tgz:
        names = {Path(n).as_posix().removeprefix("./") for n in tgz.getnames()}
    logs = re.findall(r"-> (\S+)\n", done.stderr)
    assert logs and set(logs) <= names and "steps.log" in names, (logs, names)
    expected = {1: ["bench.json", "alone.json"], 2: ["wso.json", "spike.json", "expand.json"],
                3: ["bench_candidates.json", "lm_sample_cuda.json"]}[part]
    assert all((out / name).exists() for name in expected), returned


def test_next_gpu_call_stops_at_once_when_the_machines_python_cannot_run_it(tmp_path):
    stub = tmp_path / "stubpy"
    stub.write_text(STUB)
    stub.chmod(0o755)
    out = tmp_path / "out"
    done = run_script({"KOBA_PY": str(stub), "STUB_PREFLIGHT_FAILS": "1", "OUT": str(out),
                       "NEXT_GPU_WORK": str(tmp_path / "work")}, tmp_path)
    assert done.returncode == 2 and "no CUDA torch" in done.stderr
    assert "GPT-2 bench" not in done.stderr   # no lease time spent on a run that cannot work
    assert (out / "env.txt").read_text().startswith("torch: no CUDA") and (out / "results.tgz").exists()


def test_next_gpu_call_refuses_a_bad_part_in_one_line(tmp_path):
    done = run_script({"NEXT_GPU_PART": "4", "OUT": str(tmp_path / "out")}, tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "NEXT_GPU_PART" in done.stderr


# 2. bench/dqn_tamer.py: the sweep runs with the parsed --set / --alpha-h / --human, varying only its field.
def test_dqn_tamer_sweep_uses_the_parsed_settings_and_says_so(monkeypatch, capsys):
    bench = load_bench("dqn_tamer")
    calls = []
    summary = {"episodes_to_solve": {"median": 1, "q25": 1, "q75": 1}, "solved_runs": 1, "runs": 1,
               "final_return": {"median": 0, "q25": 0, "q75": 0}, "feedback_used": {"median": 0, "q25": 0, "q75": 0}}

    def fake_run_bench(config, progress=None):
        calls.append(config)
        return {"summary": {a: summary for a in config.agents}, "runs": [], "config": {}}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(sys, "argv", ["dqn_tamer.py", "--envs", "", "--alpha-h", "7", "--set", "q.lr=0.002",
                                      "--human", "half_life=0,p_feedback=0.3", "--sweep-params", "p_wrong"])
    bench.main()
    assert len(calls) == 1 + len(bench.WRONG_RATES)
    for config, rate in zip(calls[1:], bench.WRONG_RATES, strict=True):
        assert config.agent.alpha_h == 7 and config.agent.q.lr == 0.002
        assert (config.human.half_life, config.human.p_feedback, config.human.p_wrong) == (0.0, 0.3, rate)
    assert calls[0].agents == ("dqn",) and calls[0].agent.q.lr == 0.002 and calls[0].human.half_life == 0.0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sweep_settings"] == {"alpha_h": 7.0, "set": ["q.lr=0.002"], "human": "half_life=0,p_feedback=0.3"}


def test_dqn_tamer_bad_setting_fails_before_any_run(monkeypatch):
    from koba_ros.errors import KobaError

    bench = load_bench("dqn_tamer")
    monkeypatch.setattr(bench, "run_bench", lambda config, progress=None: pytest.fail("ran before checking"))
    monkeypatch.setattr(sys, "argv", ["dqn_tamer.py", "--envs", "", "--set", "no_such_field=1"])
    with pytest.raises(KobaError, match="expected field=value"):
        bench.main()


# 3. bench/asr.py: its defaults are the reported run (docs/speech.md "Numbers").
def test_asr_defaults_are_the_reported_run():
    args = load_bench("asr").build_parser().parse_args([])
    reported = re.search(r"Reported run: `taskset -c 0 \.venv/bin/python bench/asr\.py --voices (\S+) "
                         r"--sentences (\d+)`", (REPO / "docs" / "speech.md").read_text())
    assert (args.voices, args.sentences) == (reported.group(1), int(reported.group(2)))
    assert (args.voices, args.sentences) == ("en-us,en-us+m3,en-gb", 14)


# 4. Progress on stderr: a tiny run's stdout is one JSON object.
@pytest.mark.parametrize("argv", [["lm_gqa_uptraining.py", "--seeds", "1", "--steps", "4", "--eval-tokens", "3000"],
                                  ["lm_yarn.py", "--seeds", "1", "--steps", "2", "--finetune", "1",
                                   "--eval-windows", "2"],
                                  ["lm_loss_scaling.py", "--seeds", "0", "--pretrain-steps", "2",
                                   "--train-steps", "2"]])
def test_lm_benches_print_one_json_object_on_stdout(argv):
    done = subprocess.run([sys.executable, str(REPO / "bench" / argv[0]), *argv[1:]], cwd=REPO, capture_output=True,
                          text=True, timeout=240, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
                                                       "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr[-2000:]
    json.loads(done.stdout)   # one object: progress lines would make this fail ("Extra data")
    assert any(line.startswith("{") for line in done.stderr.splitlines())   # the progress went to stderr


# 5. bench/executor.py: the pool runtime.spin gives two nodes, as its docstring says.
@pytest.mark.ros
def test_executor_bench_spins_with_runtime_spins_pool():
    from koba_ros.nodes.executor import QueueOnceExecutor
    from koba_ros.nodes.runtime import pool_size

    bench = load_bench("executor")
    sizes = []

    class Recording(QueueOnceExecutor):
        def __init__(self, num_threads=None, context=None):
            sizes.append(num_threads)
            super().__init__(num_threads=num_threads, context=context)

    result = bench.measure(Recording, 0.2)
    assert sizes == [pool_size(2)] and sizes[0] > 2 and "steps_per_s" in result


# 6. bench/grounding.py: the CPU ratio is against the single model, whichever order --models lists them in.
def test_grounding_cpu_ratio_is_against_the_single_model_even_when_the_ensemble_comes_first():
    bench = load_bench("grounding")
    grounders = {"symbolic": SimpleNamespace(), "ensemble_a+b": SimpleNamespace(members=[1, 2]),
                 "learned_minilm": SimpleNamespace(members=[1])}
    results = {"symbolic": {"latency": {"cpu_median_ms": 2.0}},
               "ensemble_a+b": {"latency": {"cpu_median_ms": 30.0}},
               "learned_minilm": {"latency": {"cpu_median_ms": 20.0}}}
    assert bench.cpu_relative_to_single(results, grounders) == "learned_minilm"
    assert results["ensemble_a+b"]["latency"]["cpu_vs_reference"] == 1.5
    assert results["learned_minilm"]["latency"]["cpu_vs_reference"] == 1.0
    assert "cpu_vs_reference" not in results["symbolic"]["latency"]
    only_ensembles = {"ensemble_a+b": {"latency": {"cpu_median_ms": 30.0}}}
    assert bench.cpu_relative_to_single(only_ensembles, grounders) == "ensemble_a+b"
    assert bench.cpu_relative_to_single({"symbolic": {"latency": {"cpu_median_ms": 2.0}}}, grounders) is None
