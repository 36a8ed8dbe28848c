"""The run directory is held by one process: a second one is refused before it touches anything, a dead holder's
lock is taken over, and a fresh run that fails before its first checkpoint leaves no half-made directory."""

import json
import os
import resource
import socket
import subprocess
import sys

import pytest
from clirun import TESTS, assert_user_error, fastslow, snapshot, tiny_run, write

import fastslow.loop as loop
from fastslow.config import parse_config
from fastslow.errors import FastSlowError
from fastslow.fast.population import Member
from fastslow.rundir import LOCK, RunDir

HOLD = ("import sys, time; from pathlib import Path; from fastslow.rundir import RunLock; "
        "RunLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(600)")


def hold_lock(path):
    """Another process holding the run directory's lock (as a running `fastslow run` does)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(TESTS.parent)})
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_held_run_is_refused_before_anything_is_touched_and_taken_over_once_its_holder_is_gone(
        tmp_path, tiny_model_path):
    data = tiny_run(tmp_path, tiny_model_path)
    config = parse_config(data)
    loop.run(config)  # a finished run: config, metrics, population, a checkpoint
    run_dir = config.run_dir
    assert not (run_dir / LOCK).exists()  # released, and its file removed, when the run ended
    holder = hold_lock(run_dir / LOCK)
    try:
        before = snapshot(run_dir)
        result = fastslow("run", write(tmp_path, data), "--resume")
        assert_user_error(result, str(run_dir), "in use by another fastslow process",
                          f"pid {holder.pid} on {socket.gethostname()}")
        with pytest.raises(FastSlowError, match="in use by another fastslow process"):
            RunDir(config, resume=True)
        with pytest.raises(FastSlowError, match="in use by another fastslow process"):
            RunDir(config)  # a fresh run of the same name too
        assert snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / LOCK).exists()  # a killed holder leaves its file behind; the kernel has dropped its lock
    with RunDir(config, resume=True):
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()
        with pytest.raises(FastSlowError, match=f"pid {os.getpid()}"):
            RunDir(config, resume=True)  # also within one process: one RunDir at a time
    assert not (run_dir / LOCK).exists()


def test_a_refused_fresh_run_leaves_no_directory_behind(tmp_path, tiny_model_path):
    config = parse_config(tiny_run(tmp_path, tiny_model_path))
    with pytest.raises(FastSlowError, match="no run to resume"):
        RunDir(config, resume=True)
    assert not config.run_dir.exists() and (tmp_path / "runs").is_dir()


def limit_file_size():
    """preexec_fn: files may not grow past 1 MB (Python ignores SIGXFSZ, so a write fails with EFBIG), as on a
    full disk: the tiny model's weights (4 MB) cannot be written."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_a_fresh_run_that_fails_before_its_first_checkpoint_removes_what_it_wrote(tmp_path, tiny_model_path):
    data = tiny_run(tmp_path, tiny_model_path)
    result = fastslow("run", write(tmp_path, data), preexec_fn=limit_file_size)
    assert_user_error(result, "checkpoints", "cannot write checkpoint step-000001", "file too large for a file size limit",
                      "no earlier checkpoint", alone=False)
    assert list((tmp_path / "runs").iterdir()) == []  # the name is free again
    result = fastslow("run", write(tmp_path, data))
    assert result.returncode == 0, result.stderr


CLAIM = """
import sys
from accelerate import PartialState
from fastslow.cli import leave_process_group
from fastslow.config import parse_config
from fastslow.errors import FastSlowError
from fastslow.fast.population import Member
from fastslow.rundir import RunDir

PartialState(cpu=True)  # two CPU processes under torchrun (on GPUs PartialState() alone sees them)
try:
    with RunDir.claim(parse_config({"name": "r", "output_dir": sys.argv[1]}), resume=True):
        print("claimed", flush=True)
except FastSlowError as exc:
    print(f"refused: {exc}", flush=True)
finally:  # as `fastslow` does at exit (without it, gloo aborted 3 in 12 of these two-process runs)
    leave_process_group()
"""


def test_under_several_processes_rank_0_claims_and_every_rank_learns_the_verdict(tmp_path):
    (tmp_path / "claim.py").write_text(CLAIM)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(tmp_path / "claim.py"), str(tmp_path / "runs")], capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": str(TESTS.parent), "ACCELERATE_USE_CPU": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("refused: ") == 2 and "no run to resume" in result.stdout, result.stdout


def test_a_rank_that_does_not_own_the_run_directory_writes_nothing_to_it(tmp_path, tiny_model_path):
    """Under several processes every rank runs the loop, and only rank 0 may write: two ranks rewriting
    metrics.jsonl on resume once raced on the same temporary file."""
    config = parse_config(tiny_run(tmp_path, tiny_model_path))
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "metrics.jsonl").write_text(json.dumps({"step": 0}) + "\n" + json.dumps({"step": 1}) + "\n")
    before = snapshot(config.run_dir)
    reader = RunDir(config, resume=True, writer=False)
    reader.start()
    reader.log({"step": 2})
    reader.truncate_metrics(0)
    reader.write_population(0, [Member("seed", "Answer.")])
    assert snapshot(config.run_dir) == before


def test_half_a_metrics_row_from_a_killed_run_does_not_block_resume(tmp_path):
    config = parse_config({"name": "r", "output_dir": str(tmp_path)})
    config.run_dir.mkdir()
    (config.run_dir / "config.yaml").write_text(config.to_yaml())
    rows = [{"step": step, "reward_mean": 0.5} for step in range(3)]
    (config.run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "rew')
    with RunDir(config, resume=True) as run_dir:
        run_dir.truncate_metrics(1)  # what --resume does with a checkpoint at step 1
        assert [row["step"] for row in run_dir.rows()] == [0, 1]
    assert (config.run_dir / "metrics.jsonl").read_text() == "".join(json.dumps(r) + "\n" for r in rows[:2])
