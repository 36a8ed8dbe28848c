"""`fastslow run` under several processes (what `accelerate launch` starts on GPUs), here two CPU processes (gloo)
under torchrun: rank 0 owns the run directory and the fast phase, every rank trains on its share of each step."""

import json
import math
import os
import subprocess
import sys

from clirun import TESTS, write

from test_loop import tiny_config


def launch(*args, tmp_path, timeout=600):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)]), "ACCELERATE_USE_CPU": "1",
           "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "fastslow", *map(str, args)], capture_output=True, text=True, cwd=TESTS, env=env,
                          timeout=timeout)


def test_fst_runs_under_two_processes_and_resumes(tmp_path, tiny_model_path):
    """The run completes with one run directory, written once (no lock refused to rank 1, one closing line); each
    step trains all problems_per_step x G rollouts across the two ranks; the finished run resumes to the same end."""
    config = tiny_config(tmp_path / "runs", tiny_model_path, "fst", reflection={"kind": "local", "model": tiny_model_path},
                         report_to=[], loop={"steps": 2})
    path = write(tmp_path, config)
    done = launch("run", path, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("run directory:") == 1, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "fst"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert [r["rl_rollouts"] for r in rows[1:]] == [16, 32]  # 4 problems x G=4 per step, over both ranks
    assert (run_dir / "population" / "cycle-0.json").is_file()
    before = (run_dir / "metrics.jsonl").read_text()

    resumed = launch("run", path, "--resume", tmp_path=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (run_dir / "metrics.jsonl").read_text().startswith(before)  # nothing written before is lost


def test_fst_distill_runs_under_two_processes(tmp_path, tiny_model_path):
    """The distillation step (the student's and the teacher's passes, the LM head called on their hidden states) keeps
    both ranks in step: the run ends and each step logs one finite distill_kl (0 while the best prompt is the seed
    prompt: student and teacher are then the same)."""
    config = tiny_config(tmp_path / "runs", tiny_model_path, "fst-distill",
                         reflection={"kind": "local", "model": tiny_model_path}, report_to=[], loop={"steps": 2})
    done = launch("run", write(tmp_path, config), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "runs" / "fst-distill" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2]
    assert all(math.isfinite(r["distill_kl"]) and r["distill_kl"] >= 0 for r in rows[1:])


def test_fst_overlap_runs_its_fast_phase_worker_beside_rank_0(tmp_path, tiny_model_path):
    """loop.fast_phase overlap under two processes: rank 0 starts the worker, every rank trains on the population it
    broadcasts, and cycle 1's population comes from the weights cycle 0 started from."""
    config = tiny_config(tmp_path / "runs", tiny_model_path, "fst", reflection={"kind": "local", "model": tiny_model_path},
                         report_to=[], loop={"steps": 4, "fast_phase": "overlap"})
    done = launch("run", write(tmp_path, config), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = tmp_path / "runs" / "fst"
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["rl_rollouts"] for r in rows[1:]] == [16, 32, 48, 64]
    populations = [json.loads((run_dir / "population" / f"cycle-{c}.json").read_text()) for c in range(2)]
    assert [p["weights_step"] for p in populations] == [0, 0] and not any(p["fallback"] for p in populations)
