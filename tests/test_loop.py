"""End to end: two cycles of each mode on a tiny random model with a scripted reflection LM; resume after SIGKILL."""

import json
import math
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from clirun import assert_user_error, fastslow
from doubles import ScriptedReflectionLM

import fastslow.loop as loop
from fastslow import stats
from fastslow.config import parse_config
from fastslow.policy import load_model
from fastslow.rundir import METRIC_KEYS

TIMING_KEYS = {"wall_time", "seconds_generate", "seconds_score", "seconds_reflect", "seconds_update", "seconds_reference",
               "seconds_eval", "fast_phase_s", "fast_phase_wait_s", "seconds_checkpoint"}


def tiny_config(output_dir, model_path, mode="fst", **sections):
    data = {
        "name": mode, "mode": mode, "output_dir": str(output_dir), "seed": 3,
        "model": {"path": model_path, "max_new_tokens": 8},
        "task": {"name": "doubles:ShortAnswerTask", "train_size": 32, "val_size": 8},
        "loop": {"steps": 4, "steps_per_cycle": 2, "problems_per_step": 4, "rollouts_per_problem": 4, "population_size": 2},
        "rl": {"learning_rate": 1e-3, "warmup_steps": 0},
        "gepa": {"budget_passes": 4},
        "eval": {"every": 2, "samples": 2, "kl_prompts": 4},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values} if isinstance(values, dict) else values
    return data


def run_capturing_model(monkeypatch, config, **kwargs):
    """Run the loop and return (run dir, the model object it trained)."""
    captured = {}

    def capture(*args, **kw):
        captured["model"] = load_model(*args, **kw)
        return captured["model"]

    monkeypatch.setattr(loop, "load_model", capture)
    path = loop.run(parse_config(config), **kwargs)
    return path, captured["model"]


def weights_changed(model, model_path) -> bool:
    fresh = load_model(model_path).state_dict()
    trained = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in model.state_dict().items()}
    return any(not torch.equal(trained[k].cpu(), v) for k, v in fresh.items() if k in trained) or any("lora_B" in k and v.abs().sum() > 0 for k, v in trained.items())


def rows(path):
    return [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("mode", ["fst", "rl", "gepa"])
def test_two_cycles_of_each_mode(tmp_path, tiny_model_path, monkeypatch, mode):
    reflection = ScriptedReflectionLM()
    path, model = run_capturing_model(monkeypatch, tiny_config(tmp_path, tiny_model_path, mode), reflection_lm=reflection)
    metrics = rows(path)
    assert [r["step"] for r in metrics] == [0, 1, 2, 3, 4]
    for row in metrics:
        assert set(METRIC_KEYS) <= set(row)
    for row in (metrics[0], metrics[2], metrics[4]):  # evaluated at step 0, every 2 steps and the last step
        assert row["val_accuracy"] is not None and row["val_accuracy_seed_prompt"] is not None
        assert row["kl_base"] is not None and row["entropy"] is not None
    assert metrics[-1]["samples"] == 16 and metrics[-1]["cycle"] == 1
    # the KL term's pass under the starting weights (rl.kl_coef 0.001) has its own column, apart from generation
    assert all(((row["seconds_reference"] or 0) > 0) == (mode != "gepa") for row in metrics[1:])
    assert (Path(path) / "config.yaml").is_file()
    assert weights_changed(model, tiny_model_path) == (mode != "gepa")
    if mode == "gepa":
        assert metrics[-1]["rl_rollouts"] == 0 and all(r["kl_base"] in (None, 0.0) for r in metrics)
    else:
        assert metrics[-1]["rl_rollouts"] == 4 * 4 * 4
        assert metrics[-1]["kl_base"] > 0
        for row in metrics[1:]:  # where each step's signal came from (docs/RUNDIR.md)
            assert math.isfinite(row["grad_norm"]) and row["grad_norm"] >= 0
            assert row["member_entropy"] and all(math.isfinite(h) and h >= 0 for h in row["member_entropy"].values())
            assert set(row["member_entropy"]) <= {m for m in row["member_signal"]}
            assert row["within_prompt_signal"] is None or 0 <= row["within_prompt_signal"] <= 1
    if mode == "rl":
        assert reflection.prompts == [] and not (Path(path) / "population" / "cycle-0.json").exists()
        assert metrics[-1]["fast_rollouts"] == 0
    else:
        cycle1 = json.loads((Path(path) / "population" / "cycle-1.json").read_text())
        texts = {m["text"] for m in cycle1["members"]}
        assert texts != {"Answer."} and len(cycle1["members"]) <= 2  # the population changed; K = 2
        assert reflection.prompts and "Answer." in reflection.prompts[0]  # the seed prompt was reflected on
        assert metrics[-1]["fast_rollouts"] > 0
        assert all(m["scores"] for m in cycle1["members"])


def test_fst_distill_evolves_prompts_and_distils_the_best_into_the_weights(tmp_path, tiny_model_path, monkeypatch):
    """fst-distill: GEPA runs as in fst; each slow step is a distillation step (finite distill_kl), and evaluation
    uses the distilled weights under the seed prompt. rl.kl_coef 0: the teacher is a frozen copy of the start."""
    reflection = ScriptedReflectionLM()
    config = tiny_config(tmp_path, tiny_model_path, "fst-distill", rl={"kl_coef": 0.0})
    path, model = run_capturing_model(monkeypatch, config, reflection_lm=reflection)
    metrics = rows(path)
    assert [r["step"] for r in metrics] == [0, 1, 2, 3, 4] and all(set(METRIC_KEYS) <= set(r) for r in metrics)
    assert metrics[0]["distill_kl"] is None
    for row in metrics[1:]:
        assert row["mode"] == "fst-distill" and math.isfinite(row["distill_kl"]) and row["distill_kl"] >= 0
        assert row["loss"] == row["distill_kl"] and math.isfinite(row["grad_norm"])
    for row in (metrics[0], metrics[2], metrics[4]):
        assert row["val_accuracy"] == row["val_accuracy_seed_prompt"]
    assert weights_changed(model, tiny_model_path) and metrics[-1]["kl_base"] > 0
    assert metrics[-1]["rl_rollouts"] == 4 * 4 * 4 and metrics[-1]["fast_rollouts"] > 0
    assert stats.starved_cycles(metrics) == {}  # no reward signal is trained on: nothing to warn about
    cycle1 = json.loads((Path(path) / "population" / "cycle-1.json").read_text())
    assert {m["text"] for m in cycle1["members"]} != {"Answer."} and reflection.prompts
    state = json.loads((Path(path) / "checkpoints" / "step-000004" / "state.json").read_text())
    assert state["deployed_prompt"] == "Answer." and state["best_prompt"] == cycle1["members"][0]["text"]


def test_fst_with_rollout_reuse_trains_on_the_fast_phases_rollouts(tmp_path, tiny_model_path, monkeypatch):
    config = tiny_config(tmp_path, tiny_model_path, "fst", loop={"reuse_fast_rollouts": True})
    path, model = run_capturing_model(monkeypatch, config, reflection_lm=ScriptedReflectionLM())
    steps = rows(path)[1:]
    assert weights_changed(model, tiny_model_path)
    assert all(r["reused_rollouts"] + r["fresh_rollouts"] == 4 * 4 for r in steps)  # G rollouts per problem
    assert steps[-1]["rl_rollouts"] == sum(r["fresh_rollouts"] for r in steps)  # reused ones are not counted twice
    # the re-scoring alone leaves one rollout per (carried member, anchor problem): every cycle reuses
    assert all(sum(r["reused_rollouts"] for r in steps if r["cycle"] == c) > 0 for c in (0, 1))
    for r in steps:  # a cycle's first step trains with the weights that sampled the fast phase: ratio 1
        if r["importance_ratio_mean"] is not None and r["step"] in (1, 3):
            assert abs(r["importance_ratio_mean"] - 1) < 1e-4 and r["importance_capped_share"] == 0
    assert any(r["importance_ratio_mean"] is not None for r in steps)


def test_lora_trains_adapters_and_checkpoints_them(tmp_path, tiny_model_path, monkeypatch):
    config = tiny_config(tmp_path, tiny_model_path, "rl", model={"lora": {"r": 4, "alpha": 8}}, report_to=["tensorboard"])
    path, model = run_capturing_model(monkeypatch, config)
    assert list((Path(path) / "tensorboard").glob("events.out.tfevents.*"))  # report_to: tensorboard
    assert weights_changed(model, tiny_model_path)
    latest = (Path(path) / "checkpoints" / "LATEST").read_text().strip()
    assert (Path(path) / "checkpoints" / latest / "model" / "adapter_model.safetensors").is_file()
    assert rows(path)[-1]["kl_base"] > 0  # KL measured against the same module with adapters disabled


def wandb_history(run_dir):
    """The rows a wandb offline run recorded: its .wandb file is a log of protobuf records in LevelDB's log format
    (a 7-byte header, then 32 KB blocks of [crc u32, length u16, type u8] chunks; types 1 full, 2-4 first/mid/last)."""
    from wandb.proto import wandb_internal_pb2

    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    data, pos, payload, rows = path.read_bytes(), 7, b"", []
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload, pos = payload + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            payload = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return rows


TRACKIO_LOGS = "import json, sys; from trackio.sqlite_storage import SQLiteStorage; " \
               "print(json.dumps(SQLiteStorage.get_logs('fastslow', sys.argv[1])))"


def test_wandb_offline_and_trackio_hold_the_logged_rows(tmp_path, tiny_model_path):
    config = tiny_config(tmp_path, tiny_model_path, "rl", report_to=["wandb", "trackio"])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "WANDB_MODE": "offline",
           "TRACKIO_DIR": str(tmp_path / "trackio")}
    (tmp_path / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    run = subprocess.run([sys.executable, "-m", "fastslow", "run", str(tmp_path / "config.yaml")], env=env,
                         cwd=Path(__file__).parent, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    logged = {row["step"]: row["reward_mean"] for row in rows(tmp_path / "rl") if row["step"] > 0}
    assert len(logged) == 4

    history = wandb_history(tmp_path / "rl")  # inside the run directory
    assert {row["_step"]: row["reward_mean"] for row in history if "reward_mean" in row} == logged

    trackio = subprocess.run([sys.executable, "-c", TRACKIO_LOGS, "rl"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert trackio.returncode == 0, trackio.stderr
    assert {row["step"]: row["reward_mean"] for row in json.loads(trackio.stdout) if "reward_mean" in row} == logged


def test_failed_reflection_keeps_the_population_and_says_so(tmp_path, tiny_model_path):
    path = loop.run(parse_config(tiny_config(tmp_path, tiny_model_path, "fst")), reflection_lm=ScriptedReflectionLM(fail=True))
    population = json.loads((Path(path) / "population" / "cycle-0.json").read_text())
    assert population["reflection_failed"] is True
    assert [m["text"] for m in population["members"]] == ["Answer."]
    assert all(r["reflection_failed"] for r in rows(path)[1:])


def _worker(config_file, *flags):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, str(Path(__file__).parent / "loop_worker.py"), str(config_file), *flags],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_while_the_run_is_going_is_refused_and_the_run_finishes_whole(tmp_path, tiny_model_path):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(tiny_config(tmp_path, tiny_model_path, "fst")))
    live = _worker(config_file)
    metrics = tmp_path / "fst" / "metrics.jsonl"
    deadline = time.time() + 300
    while not (metrics.exists() and metrics.read_text()) and live.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    live.send_signal(signal.SIGSTOP)  # mid-run (step 0 logged, GEPA under way), holding the run directory
    try:
        assert live.poll() is None, "the run ended before a second process could try it"
        second = fastslow("run", config_file, "--resume")  # a JSON file is a YAML file
    finally:
        live.send_signal(signal.SIGCONT)
    assert_user_error(second, str(tmp_path / "fst"), "in use by another fastslow process", f"pid {live.pid}")
    assert live.wait(timeout=600) == 0, live.stderr.read().decode()[-2000:]
    assert [r["step"] for r in rows(tmp_path / "fst")] == [0, 1, 2, 3, 4]  # nothing deleted or truncated under it


@pytest.mark.slow
def test_checkpoints_every_other_cycle_change_nothing_but_where_checkpoints_are(tmp_path, tiny_model_path):
    """checkpoint.every: 2 with the overlap schedule: between checkpoints the worker's next job loads the weights
    saved alone at the cycle boundary, so every metric and population equals the run that checkpoints every cycle;
    the checkpoints fall on every other cycle and the last step, and the weights saved alone are gone at the end."""
    def run(name, every):
        data = tiny_config(tmp_path / name, tiny_model_path, "fst", checkpoint={"every": every, "keep": 5},
                           loop={"steps": 6, "fast_phase": "overlap"})
        return loop.run(parse_config(data))

    each, other = run("each", 1), run("other", 2)

    def comparable(path):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows(path)]

    assert comparable(each) == comparable(other) and len(rows(other)) == 7
    for cycle in range(3):
        a, b = (json.loads((p / "population" / f"cycle-{cycle}.json").read_text()) for p in (each, other))
        assert a["weights_step"] == b["weights_step"] and a["members"] == b["members"]
    assert sorted(p.name for p in (each / "checkpoints").glob("step-*")) == ["step-000002", "step-000004",
                                                                            "step-000006"]
    assert sorted(p.name for p in (other / "checkpoints").glob("step-*")) == ["step-000004", "step-000006"]
    assert not (other / "fast-weights").exists()
    # each boundary's seconds (the weights alone after cycle 0, a checkpoint after cycle 1): the next cycle's 1st step
    seconds = {r["step"]: r["seconds_checkpoint"] for r in rows(other)}
    assert seconds[3] > 0 and seconds[5] > 0 and all(seconds[s] is None for s in (0, 1, 2, 4, 6))


@pytest.mark.slow
@pytest.mark.parametrize("reuse, schedule, every", [(False, "sync", 1), (True, "sync", 1), (True, "overlap", 1),
                                                    (True, "overlap", 2)],
                         ids=["", "reusing-rollouts", "overlap-reusing-rollouts", "overlap-every-other-cycle"])
def test_resume_after_sigkill_reproduces_the_uninterrupted_metrics(tmp_path, tiny_model_path, reuse, schedule, every):
    """Checkpoints fall on cycle boundaries, where the cycle's stored rollouts are used up or dropped; with the
    overlap schedule a checkpoint also holds the next cycle's fast phase, computed beside the cycle it ends (and
    with checkpoint.every 2 the killed run leaves the weights it saved alone for the worker in between)."""
    steps = {"loop": {"steps": 8, "reuse_fast_rollouts": reuse, "fast_phase": schedule}, "checkpoint": {"every": every}}
    straight_cfg, killed_cfg = tmp_path / "straight.json", tmp_path / "killed.json"
    straight_cfg.write_text(json.dumps(tiny_config(tmp_path / "a", tiny_model_path, "fst", **steps)))
    killed_cfg.write_text(json.dumps(tiny_config(tmp_path / "b", tiny_model_path, "fst", **steps)))
    straight = _worker(straight_cfg)

    victim = _worker(killed_cfg)
    latest = tmp_path / "b" / "fst" / "checkpoints" / "LATEST"
    deadline = time.time() + 300
    while not latest.exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert len(rows(tmp_path / "b" / "fst")) < 9

    resumed = _worker(killed_cfg, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read().decode()[-2000:]
    assert straight.wait(timeout=600) == 0, straight.stderr.read().decode()[-2000:]

    def comparable(path):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows(path)]

    a, b = comparable(tmp_path / "a" / "fst"), comparable(tmp_path / "b" / "fst")
    assert [r["step"] for r in b] == list(range(9))
    assert a == b
