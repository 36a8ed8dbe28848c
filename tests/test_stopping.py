"""SIGTERM and SIGINT stop a run cleanly: never inside a checkpoint write, the lock released, no temp folder left,
exit 128 + the signal's number with one line saying how to go on, and `--resume` continues from the checkpoint."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from clirun import TESTS, tiny_run, write
from doubles import FakeChatEndpoint

import fastslow.checkpoint as checkpoint
from fastslow.checkpoint import latest_checkpoint, save_checkpoint, verify
from fastslow.config import ReflectionConfig
from fastslow.reflection import make_reflection_lm
from fastslow.stopping import Stopped, deferred, stop_on_signals


def test_a_signal_inside_a_deferred_block_is_raised_when_the_block_ends():
    done = []
    with pytest.raises(Stopped) as stopped:
        with stop_on_signals():
            with deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)  # the handler has run by now; it must not have raised
                done.append("write finished")
            done.append("not reached")
    assert done == ["write finished"] and stopped.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the previous handler is back


def test_a_signal_outside_deferred_blocks_stops_at_once_and_later_signals_are_ignored():
    cleaned = []
    with pytest.raises(Stopped) as stopped:
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)
            finally:
                os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C does not cut the way out short
                time.sleep(0.05)
                cleaned.append(True)
    assert cleaned == [True] and stopped.value.exit_code == 130 and "SIGINT" in str(stopped.value)


def test_a_signal_during_a_checkpoint_write_stops_after_it_is_written_and_verified(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    save_checkpoint(root, 1, None, None, {"step": 1})
    write_manifest = checkpoint.write_manifest

    def signalled_mid_write(directory):  # the fault: SIGTERM lands while the checkpoint's files are being written
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        write_manifest(directory)

    monkeypatch.setattr(checkpoint, "write_manifest", signalled_mid_write)
    with pytest.raises(Stopped):
        with stop_on_signals():
            save_checkpoint(root, 2, None, {"optimizer": list(range(1000))}, {"step": 2}, keep=2)
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "step-000001", "step-000002"]  # no .tmp-*
    assert latest_checkpoint(root) == root / "step-000002" and verify(root / "step-000002") is None


def test_outside_a_command_signals_keep_their_usual_behaviour():
    with deferred():  # no handler installed: nothing deferred, nothing raised
        pass
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_a_stop_ends_reflection_requests_in_flight_without_waiting_for_their_deadline(tiny_model_path):
    """GEPA's batched reflections run in threads; a stop cancels their requests and skips the retries, so the run's
    way out does not wait minutes (deadline x attempts) for a slow server."""
    endpoint = FakeChatEndpoint([(200, "a valid answer", 0, 0.5)])  # trickles: each attempt would take minutes
    try:
        lm = make_reflection_lm(ReflectionConfig(kind="openai", model="m", base_url=endpoint.base_url, timeout_s=60,
                                                 retries=3, backoff_s=5), tiny_model_path)
        start = time.monotonic()
        with pytest.raises(Stopped):
            with stop_on_signals():
                threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM)).start()
                lm.batch_complete(["a prompt"] * 3)
        assert time.monotonic() - start < 5
    finally:
        endpoint.close()


def start_run(tmp_path, data, *flags):
    config = write(tmp_path, data)
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    process = subprocess.Popen([sys.executable, "-m", "fastslow", "run", str(config), *flags], cwd=TESTS, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return config, process


def wait_for(condition, process, timeout=300):
    deadline = time.time() + timeout
    while not condition() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended first: {process.communicate()[1][-2000:]}"


def assert_stopped(stderr, code_name, *fragments):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith(f"stopped by {code_name}; ") and sum("stopped by" in line for line in lines) == 1, stderr
    for fragment in fragments:
        assert fragment in lines[-1], stderr


def test_sigterm_mid_run_stops_after_a_checkpoint_and_resume_finishes_the_run(tmp_path, tiny_model_path):
    data = tiny_run(tmp_path, tiny_model_path, loop={"steps": 40, "steps_per_cycle": 1, "problems_per_step": 2,
                                                     "rollouts_per_problem": 2, "population_size": 1},
                    eval={"every": 40, "samples": 1, "kl_prompts": 1})
    run_dir = tmp_path / "runs" / "r"
    config, process = start_run(tmp_path, data)
    wait_for(lambda: (run_dir / "checkpoints" / "LATEST").is_file(), process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert_stopped(stderr, "SIGTERM", f"{run_dir} is kept up to step-", f"continue with: fastslow run {config} --resume")
    assert not (run_dir / ".lock").exists()
    assert not list((run_dir / "checkpoints").glob(".tmp-*")) and latest_checkpoint(run_dir / "checkpoints")
    stopped_at = json.loads((run_dir / "checkpoints" / latest_checkpoint(run_dir / "checkpoints").name / "state.json")
                            .read_text())["step"]
    assert 1 <= stopped_at < 40

    resumed = subprocess.run([sys.executable, "-m", "fastslow", "run", str(config), "--resume"], cwd=TESTS,
                             env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(41))  # each step once: the rows after the checkpoint redone
    clock = [row["wall_time"] for row in rows]
    assert clock == sorted(clock)  # the resumed run's clock goes on from its checkpoint's, it does not restart at 0


def test_sigint_before_the_first_checkpoint_keeps_nothing_and_says_to_start_again(tmp_path, tiny_model_path):
    data = tiny_run(tmp_path, tiny_model_path, loop={"steps": 40, "steps_per_cycle": 40, "problems_per_step": 2,
                                                     "rollouts_per_problem": 2, "population_size": 1},
                    eval={"every": 40, "samples": 1, "kl_prompts": 1})
    run_dir = tmp_path / "runs" / "r"
    config, process = start_run(tmp_path, data, "--set", "seed=3")
    wait_for(lambda: (run_dir / "metrics.jsonl").is_file() and (run_dir / "metrics.jsonl").read_text(), process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr
    assert_stopped(stderr, "SIGINT", "nothing was kept", f"start again with: fastslow run {config} --set=seed=3")
    assert "--resume" not in stderr
    assert list((tmp_path / "runs").iterdir()) == []  # the name is free again, the lock gone with it


def test_sigterm_during_an_overlap_run_ends_its_fast_phase_worker_too(tmp_path, tiny_model_path):
    """loop.fast_phase overlap: the worker process beside the run ends with it (the scratch it wrote aside)."""
    import psutil

    data = tiny_run(tmp_path, tiny_model_path, mode="fst",
                    loop={"steps": 40, "steps_per_cycle": 2, "problems_per_step": 2, "rollouts_per_problem": 2,
                          "population_size": 1, "fast_phase": "overlap"},
                    reflection={"kind": "local", "model": tiny_model_path},
                    eval={"every": 40, "samples": 1, "kl_prompts": 1})
    run_dir = tmp_path / "runs" / "r"
    _, process = start_run(tmp_path, data)
    wait_for(lambda: (run_dir / "checkpoints" / "LATEST").is_file(), process)
    workers = [child for child in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(child.cmdline())]
    assert workers, "no fast phase worker beside the run"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, stderr
    assert_stopped(stderr, "SIGTERM", "continue with: fastslow run")
    gone, alive = psutil.wait_procs(workers, timeout=15)
    assert not alive, f"worker(s) left running: {[p.pid for p in alive]}"
    assert not (run_dir / ".lock").exists()
