"""benchmarks/: every benchmark answers --help without importing the heavy libraries, and benchmarks/gpu.sh, the
device's entry script, works without a GPU (no wheels, $OUT a temporary folder); benchmarks/suite.py stops a task
past its time limit, workers included, and runs a config's own model; benchmarks/smollm2_transfer.py's pieces come
back together, checked; benchmarks/overlap.py's summary reads accuracy on three axes, and its time keeps each
arm's run."""

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BENCHMARKS = sorted(p for p in (ROOT / "benchmarks").glob("*.py") if 'if __name__ == "__main__":' in p.read_text())
HEAVY = ("torch", "transformers", "trl", "scipy", "matplotlib")

# --help answered inside one interpreter, which then names the heavy modules it imported
HELP = """
import runpy, sys
sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exit:
    code = exit.code or 0
print("HEAVY:" + ",".join(m for m in {heavy} if m in sys.modules))
sys.exit(code)
""".format(heavy=HEAVY)


def env(**extra):
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")]), **extra}


def test_every_python_file_in_benchmarks_is_a_benchmark_but_the_shared_random_model():
    helpers = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {p.name for p in BENCHMARKS}
    assert helpers == {"random_model.py"}  # imported by update_memory.py and recipe_shape_probe.py


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_each_benchmark_answers_help_without_importing_torch(script):
    done = subprocess.run([sys.executable, "-c", HELP, str(script)], capture_output=True, text=True, env=env(),
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and len(done.stdout.splitlines()) > 3  # a description, not bare usage
    assert done.stdout.splitlines()[-1] == "HEAVY:"  # none imported


def gpu_sh(out, *args, **extra):
    return subprocess.run(["bash", str(ROOT / "benchmarks/gpu.sh"), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "OUT": str(out), "WHEELS": str(out / "no-wheels"), **extra})


def test_gpu_sh_runs_a_benchmark_and_writes_the_hardware_line_and_the_log(tmp_path):
    done = gpu_sh(tmp_path / "out", "suite", "task", "5")
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout.splitlines()[-1])  # the benchmark's own output, after the hardware lines
    assert task["name"] == "code"
    log = (tmp_path / "out" / "suite.log").read_text().splitlines()
    hardware = log[:6]
    assert hardware[1].startswith("cores ") and hardware[3].startswith("commit ")
    assert hardware[-1] == "command: bash benchmarks/gpu.sh suite task 5"
    assert len(log) == 7 and json.loads(log[-1]) == task
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["suite.log"]  # nothing to pack


def test_gpu_sh_passes_help_and_exit_codes_through_and_refuses_an_unknown_benchmark(tmp_path):
    done = gpu_sh(tmp_path / "out", "run_experiments", "--help")
    assert done.returncode == 0 and "--workers WORKERS" in done.stdout
    done = gpu_sh(tmp_path / "out", "suite", "task", "99")
    assert done.returncode == 1 and "no task 99 (it has 7)" in done.stderr + done.stdout
    done = gpu_sh(tmp_path / "out", "no_such_benchmark")
    assert done.returncode == 2 and "no benchmarks/no_such_benchmark.py" in done.stderr


def test_gpu_sh_packs_what_the_device_could_not_return(tmp_path):
    out = tmp_path / "out"
    run = out / "runs" / "a" / "fst-s0"  # 3 folders down: would not come back
    (run / "checkpoints" / "step-6").mkdir(parents=True)
    (run / "checkpoints" / "step-6" / "model.safetensors").write_bytes(b"\0" * 1000)
    (run / "metrics.jsonl").write_text("{}\n")
    for i in range(9):
        (out / f"table-{i}.md").write_text(f"table {i}\n")
    done = gpu_sh(out, "suite", "task", "0")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["results.tgz", "suite.log"]  # four runs fit in one call
    with tarfile.open(out / "results.tgz") as tar:
        names = set(tar.getnames())
    assert {f"table-{i}.md" for i in range(9)} | {"runs/a/fst-s0/metrics.jsonl"} <= names
    assert not any("checkpoints" in name for name in names)  # a run's checkpoints never travel back


def process_gone(pid: int, wait_s: float = 5.0) -> bool:
    """No process `pid`, or only its zombie (stopped, not yet reaped by init)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.1)
    return False


def test_suite_stops_a_task_past_its_limit_with_its_workers_and_shows_the_end_of_its_log(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("suite", ROOT / "benchmarks/suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    worker = tmp_path / "worker.pid"  # a task's worker process: the task's own child, in its process group
    commands = {0: ["bash", "-c", f"echo training; sleep 60 & echo $! > {worker}; wait"],
                1: ["bash", "-c", "echo finished"]}
    handler, started = signal.getsignal(signal.SIGTERM), time.monotonic()
    codes = suite.run_side_by_side(commands, tmp_path / "logs", limit_s=2)
    assert codes == {0: -signal.SIGTERM, 1: 0}
    assert time.monotonic() - started < suite.GRACE_S  # sleep heeds SIGTERM: no wait for the SIGKILL
    assert process_gone(int(worker.read_text()))
    assert (tmp_path / "logs" / "1.log").read_text() == "finished\n"
    printed = capsys.readouterr().out
    assert "--- task 0, end of" in printed and "training" in printed.split("--- task 0")[1]
    assert "--- task 1" not in printed  # only a failed task's log is shown
    assert signal.getsignal(signal.SIGTERM) == handler  # this process's own SIGTERM handling is given back


def transfer(*args):
    return subprocess.run([sys.executable, str(ROOT / "benchmarks/smollm2_transfer.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120, env=env())


def test_smollm2_transfer_sends_a_file_in_pieces_that_receive_and_join_put_back_together_checked(tmp_path):
    gguf, parts, store = tmp_path / "model.gguf", tmp_path / "tree" / ".smollm2", tmp_path / "store"
    gguf.write_bytes(os.urandom(50_000))  # incompressible: xz keeps it ~50 kB, two pieces of 0.03 MiB
    assert transfer("pack", "--gguf", gguf, "--parts", parts, "--piece-mib", 0.03).returncode == 0
    assert sorted(p.name for p in parts.iterdir()) == ["SHA256SUMS", "part-aa", "part-ab"]
    second = (parts / "part-ab").read_bytes()
    (parts / "part-ab").unlink()  # call 1 carries the first piece only
    done = transfer("receive", "--parts", parts, "--store", store)
    assert done.returncode == 0 and "holds part-aa of 2 pieces" in done.stdout, done.stderr
    (parts / "part-aa").unlink()  # call 2 the second only: the first is in the store, outside the tree
    (parts / "part-ab").write_bytes(second)
    done = transfer("join", "--parts", parts, "--store", store, "--no-convert")
    assert done.returncode == 0, done.stderr
    assert (store / "smollm2.gguf").read_bytes() == gguf.read_bytes()

    (store / "smollm2.gguf").unlink()  # a piece corrupted in the store: refused, nothing joined
    (store / "part-aa").write_bytes(b"x" + (store / "part-aa").read_bytes()[1:])
    done = transfer("join", "--parts", parts, "--store", store, "--no-convert")
    assert done.returncode == 1 and "part-aa no longer match" in done.stderr and not (store / "smollm2.gguf").exists()
    (store / "part-aa").unlink()  # a piece that never came: named
    done = transfer("join", "--parts", parts, "--store", store, "--no-convert")
    assert done.returncode == 1 and "pieces part-aa missing" in done.stderr
    (parts / "part-ab").write_bytes(b"y" + second[1:])  # corrupted on the way: refused at once
    done = transfer("receive", "--parts", parts, "--store", store)
    assert done.returncode == 1 and "part-ab: its SHA-256 is not SHA256SUMS'" in done.stderr


def test_suite_runs_a_config_with_its_own_model_and_reflection_unless_told_otherwise():
    spec = importlib.util.spec_from_file_location("suite", ROOT / "benchmarks/suite.py")
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)

    def pairs(**args):
        settings = suite.model_settings(argparse.Namespace(**{"model": None, "reflector": None, "set": [], **args}))
        assert settings[::2] == ["--set"] * (len(settings) // 2)
        return settings[1::2]

    assert pairs() == ["model.path=micro-v4", "model.max_new_tokens=48", "reflection.kind=local",
                       "reflection.model=micro"]
    assert pairs(config="configs/smollm2-text.yaml") == []  # the config's model, answer length and reflection
    assert pairs(config="c.yaml", model="/tmp/smollm2/smollm2.gguf", reflector="self", set=["loop.steps=9"]) == [
        "model.path=/tmp/smollm2/smollm2.gguf", "reflection.kind=self", "loop.steps=9"]


def test_overlap_summary_matches_arms_at_rls_end_on_three_axes_with_runs_found_beside_their_list(tmp_path):
    """benchmarks/overlap.py summary on hand-written runs: each arm's running best at RL's last problems, rollouts and
    seconds (steps × the arm's seconds per step measured alone), and when it reaches RL's final accuracy; the runs
    are found under the accuracy folder, whatever machine's paths confident_prompts.json names."""
    accuracy, timing = tmp_path / "acc", tmp_path / "time"
    curves = {"rl-rl-s0": ([0.3, 0.5, 0.6], [0, 768, 1536]), "rl-rl-s1": ([0.3, 0.4, 0.6], [0, 768, 1536]),
              "fst-overlap-fst-s0": ([0.3, 0.6, 0.7], [0, 1200, 2400]),
              "fst-overlap-fst-s1": ([0.3, 0.6, 0.7], [0, 1200, 2400])}
    for name, (val, rollouts) in curves.items():
        (accuracy / "runs" / name).mkdir(parents=True)
        rows = [{"step": 6 * i, "samples": 96 * i, "val_accuracy": v, "rl_rollouts": r, "fast_rollouts": 0}
                for i, (v, r) in enumerate(zip(val, rollouts))]
        (accuracy / "runs" / name / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (accuracy / "confident_prompts.json").write_text(json.dumps(
        {"rl": ["/root/out/acc/a/runs/rl-rl-s0", "/root/out/acc/a/runs/rl-rl-s1"],
         "fst-overlap": ["/root/out/acc/a/runs/fst-overlap-fst-s0", "/root/out/acc/a/runs/fst-overlap-fst-s1"]}))
    timing.mkdir()
    (timing / "time.json").write_text(json.dumps({"arms": {"rl": {"seconds per step": 0.25},
                                                           "fst-overlap": {"seconds per step": 0.5}}}))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/overlap.py"), "summary", "--time", str(timing),
                           "--accuracy", str(accuracy)], capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("RL's final running best (mean of 2 seeds): 0.600; matched at RL's end: 192 problems, "
                        "1536 rollouts, 3.0 s")
    assert "| rl | 0.250 | 1.00 | 0.600 ± 0.000 | 0.600 ± 0.000 | 0.600 ± 0.000 | 3.0 |" in lines
    # at 192 problems FST's best is 0.7; by 1536 rollouts and by 3 s it had reached its second evaluation's 0.6
    assert "| fst-overlap | 0.500 | 2.00 | 0.700 ± 0.000 | 0.600 ± 0.000 | 0.600 ± 0.000 | 3.0 |" in lines


def test_overlap_summary_of_time_folders_reads_their_own_evaluated_runs_one_seed_each(tmp_path):
    """benchmarks/overlap.py summary --time S0 S1 (no --accuracy): each folder's runs/ARM is one seed, and each arm's
    seconds per step is the folders' mean."""
    folders = [tmp_path / "s0", tmp_path / "s1"]
    for folder, (rl_best, seconds) in zip(folders, [(0.5, 0.2), (0.7, 0.3)]):
        for arm, best, rollouts in (("rl", rl_best, 1536), ("fst", 0.8, 2400)):
            (folder / "runs" / arm).mkdir(parents=True)
            rows = [{"step": 0, "samples": 0, "val_accuracy": 0.3, "rl_rollouts": 0, "fast_rollouts": 0},
                    {"step": 12, "samples": 192, "val_accuracy": best, "rl_rollouts": rollouts, "fast_rollouts": 0}]
            (folder / "runs" / arm / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (folder / "time.json").write_text(json.dumps({"arms": {"rl": {"seconds per step": seconds},
                                                               "fst": {"seconds per step": 2 * seconds}}}))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks/overlap.py"), "summary", "--time", *map(str, folders)],
                          capture_output=True, text=True, env=env(), timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("RL's final running best (mean of 2 seeds): 0.600; matched at RL's end: 192 problems")
    assert "| rl | 0.250 | 1.00 | 0.600 ± 0.100 | 0.600 ± 0.100 | 0.600 ± 0.100 | 3.0 |" in lines
    # FST: 0.8 at 192 problems; by RL's 1536 rollouts and 3 s (12 steps at 0.25 s) only its start, 0.3
    assert "| fst | 0.500 | 2.00 | 0.800 ± 0.000 | 0.300 ± 0.000 | 0.300 ± 0.000 | 6.0 |" in lines


def test_overlap_time_keeps_each_arms_run_directory_and_writes_its_tables(tmp_path):
    """benchmarks/overlap.py time on the tiny model: each arm's run directory stays under DIR/runs (a run that
    crashes or is cut off keeps its metrics there), beside the tables; a second measurement replaces the first."""
    command = [sys.executable, str(ROOT / "benchmarks/overlap.py"), "time", "--tiny", "--steps", "2", "--arms", "rl",
               "--task", json.dumps({"name": "strings", "args": {"program_seed": 7}}), "--out", str(tmp_path)]
    for _ in range(2):
        done = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "runs/rl/metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2]
    timing = json.loads((tmp_path / "time.json").read_text())["arms"]
    assert list(timing) == ["rl"] and timing["rl"]["seconds per step"] > 0


def test_overlap_step_seconds_leave_evaluations_out_overall_and_after_cycle_0():
    """benchmarks/overlap.py's seconds per step on hand-written metrics rows: the evaluations' seconds (step 0's is
    before the clock starts; the last step's is inside it) are not the method's price."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from overlap import step_seconds

    rows = [{"step": 0, "cycle": 0, "wall_time": 20.0},  # model load and the step-0 evaluation
            {"step": 1, "cycle": 0, "wall_time": 110.0}, {"step": 2, "cycle": 0, "wall_time": 140.0},
            {"step": 3, "cycle": 1, "wall_time": 170.0}, {"step": 4, "cycle": 1, "wall_time": 218.0, "seconds_eval": 18.0}]
    timing = step_seconds(rows)
    assert timing["seconds per step"] == (218.0 - 20.0 - 18.0) / 4
    assert timing["seconds per step after cycle 0"] == (218.0 - 140.0 - 18.0) / 2


def test_fast_phase_profile_records_each_generate_call_with_its_shape_as_it_ends(capsys):
    """benchmarks/fast_phase_profile.py's recorder: every call through the wrapped `generate` is logged (rows, longest
    prompt, new tokens, seconds) and printed at once, and what the wrapped function returns passes through."""
    import types

    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fast_phase_profile import record_generate_calls

    module = types.SimpleNamespace(generate=lambda model, prompts, pad_id, **kw: torch.zeros(len(prompts), kw["new"]))
    calls = record_generate_calls(module)
    out = module.generate(None, [[1, 2, 3], [4]], 0, new=5)
    module.generate(None, [[1]], 0, new=2)
    assert out.shape == (2, 5)
    assert [(c["rows"], c["prompt"], c["new"]) for c in calls] == [(2, 3, 5), (1, 1, 2)]
    assert all(c["seconds"] >= 0 for c in calls)
    assert "| 1 | 2 | 3 | 5 |" in capsys.readouterr().out


def test_a_random_models_tokenizer_decodes_every_id_it_can_sample_and_reads_it_back():
    """benchmarks/random_model.decodable: with the micro tokenizer's 100 tokens alone a random model's answers decode to
    nothing (every reflection empty, GEPA proposing nothing); with it each id is text that encodes back to that id."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from random_model import decodable

    from fastslow.policy import load_tokenizer

    plain = load_tokenizer("micro")
    assert plain.decode([300, 511], skip_special_tokens=True) == ""
    tokenizer = decodable(load_tokenizer("micro"), 512)
    assert len(tokenizer) == 512
    text = tokenizer.decode([300, 511], skip_special_tokens=True)
    assert text == "<w300><w511>"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == [300, 511]


def test_reuse_step_time_keeps_each_runs_directory_beside_its_table(tmp_path):
    """benchmarks/reuse_step_time.py --tiny --out DIR: each variant's run directory stays under DIR/runs (a run that
    crashes or is cut off keeps its metrics), named after the variant, beside results.md."""
    command = [sys.executable, str(ROOT / "benchmarks/reuse_step_time.py"), "--tiny", "--out", str(tmp_path),
               "--proposals", "2"]
    done = subprocess.run(command, capture_output=True, text=True, env=env(), timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["fst", "fst-reuse", "fst-reuse-n-2", "rl"]
    rows = [json.loads(line) for line in (tmp_path / "runs/fst-reuse/metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2]
    assert "| **× RL per step** |" in (tmp_path / "results.md").read_text()
