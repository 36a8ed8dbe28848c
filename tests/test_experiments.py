"""The eight experiments' wiring, end to end on the tiny random model (2 seeds, a few steps each), the run cache,
the presets, and the continual-learning task sequence."""

import importlib
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from doubles import ScriptedReflectionLM

from fastslow import stats
from fastslow.config import parse_config
from fastslow.data import DataPlan
from fastslow.errors import FastSlowError
from fastslow.experiments import REGISTRY, read_config_file, run_experiment
from fastslow.experiments.common import Experiment, config_hash, is_complete, parallel, train_job
from fastslow.experiments.presets import PRESETS, SUITE_V3, experiment_settings, select_suite
from fastslow.report import load_run
from fastslow.tasks import load_task
from fastslow.tasks.sequence import SequenceTask

TINY_SIZES = {"loop.steps": 4, "loop.steps_per_cycle": 2, "loop.problems_per_step": 4, "loop.rollouts_per_problem": 4,
              "loop.population_size": 2, "task.train_size": 16, "task.val_size": 8, "gepa.budget_passes": 2,
              "eval.every": 2, "eval.samples": 2, "eval.kl_prompts": 4}
SHORT = "doubles:ShortAnswerTask"


def rows(run_dir):
    return load_run(run_dir).rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_path):
    """A config file for the tiny model and an output folder shared by the tests (so runs are cached)."""
    root = tmp_path_factory.mktemp("experiments")
    config = {
        "model": {"path": tiny_model_path, "max_new_tokens": 8},
        "task": {"name": SHORT, "seed_prompt": "Answer briefly."},
        "rl": {"learning_rate": 1e-3, "warmup_steps": 0},
        "experiment": {
            "overrides": TINY_SIZES,
            "ood_tasks": [{"name": SHORT, "prompt": "Be brief."}],
            "task_b": {"name": SHORT, "seed_prompt": "Short."}, "steps_b": 2,
            "stages": [{"name": SHORT, "label": "first"}, {"name": SHORT, "label": "second"}], "steps_per_stage": 2,
        },
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, root / "out"


def run(name, setup, **kwargs):
    config, out = setup
    return run_experiment(name, config, seeds=2, out=out, workers=1, reflection_lm=ScriptedReflectionLM(), **kwargs)


def run_dirs(folder):
    return {label: Path(path) for label, path in json.loads((folder / "runs.json").read_text()).items()}


def budget(path, axis):
    """(budget spent on the axis, val accuracy) at each evaluation, read from metrics.jsonl directly."""
    measured = [r for r in rows(path) if r.get("val_accuracy") is not None]
    spent = {"samples": lambda r: r["samples"], "rollouts": lambda r: r["rl_rollouts"] + r["fast_rollouts"],
             "seconds": lambda r: r["wall_time"] - rows(path)[0]["wall_time"]}[axis]
    return [spent(r) for r in measured], [r["val_accuracy"] for r in measured]


def test_efficiency_trains_every_mode_per_seed_and_reports_the_ratio_from_its_runs(setup):
    folder = run("efficiency", setup)
    runs = run_dirs(folder)
    assert sorted(runs) == sorted(f"{m} seed {s}" for m in ("fst", "rl", "gepa", "fst-distill") for s in (0, 1))
    for label, path in runs.items():
        assert [r["step"] for r in rows(path)] == [0, 1, 2, 3, 4]
        assert rows(path)[0]["mode"] == label.split()[0]
    # both modes of a seed share the data plan and the step-0 evaluation; different seeds differ
    assert rows(runs["fst seed 0"])[0]["val_accuracy"] == rows(runs["rl seed 0"])[0]["val_accuracy"]
    summary = json.loads((folder / "summary.json").read_text())
    expected = [stats.sample_efficiency(load_run(runs[f"fst seed {s}"]).series("samples", "val_accuracy"),
                                        load_run(runs[f"rl seed {s}"]).series("samples", "val_accuracy"))
                for s in (0, 1)]
    assert summary["fst"]["efficiency_per_seed"] == expected
    # whether RL had stopped rising: its running peak's gain over the last third of its problems
    rises = [stats.late_gain(*load_run(runs[f"rl seed {s}"]).series("samples", "val_accuracy")) for s in (0, 1)]
    assert summary["rl"]["peak_gain_last_third"]["mean"] == pytest.approx(np.mean(rises))
    trends = [stats.late_trend(*load_run(runs[f"rl seed {s}"]).series("samples", "val_accuracy")) for s in (0, 1)]
    assert summary["rl"]["trend_per_seed"] == [None if t is None else {"rise": pytest.approx(t.rise),
                                                                       "stderr": pytest.approx(t.stderr)} for t in trends]
    assert summary["rl"]["rising_seeds"] == sum(t is not None and t.rising for t in trends)
    # the same ratio per rollout sampled (the fast phase's included) and per second of wall clock, for every mode
    for mode in ("fst", "gepa", "fst-distill"):
        for axis in ("rollouts", "seconds"):
            expected = [stats.sample_efficiency(budget(runs[f"{mode} seed {s}"], axis), budget(runs[f"rl seed {s}"], axis))
                        for s in (0, 1)]
            assert summary[mode][f"efficiency_per_seed_{axis}"] == pytest.approx(expected)
    spent = [rows(runs[f"fst seed {s}"])[-1]["rl_rollouts"] + rows(runs[f"fst seed {s}"])[-1]["fast_rollouts"]
             for s in (0, 1)]
    assert summary["fst"]["rollouts"]["mean"] == pytest.approx(np.mean(spent))
    assert spent[0] > rows(runs["rl seed 0"])[-1]["rl_rollouts"]  # FST pays for its fast phase in rollouts
    assert summary["gepa"]["seconds"]["mean"] > 0
    results = (folder / "results.md").read_text()
    for file in ("results.md", "report.html", "efficiency_samples.png", "efficiency_rollouts.png",
                 "efficiency_seconds.png"):
        assert (folder / file).is_file()
    assert "fastslow experiment efficiency" in results and "rollouts sampled (RL + fast phase)" in results
    assert "Wall clock is each run's own" in results and "RL's running peak rose" in results


def test_asymptote_and_kl_reuse_the_efficiency_runs(setup):
    _, out = setup
    before = sorted(p.name for p in (out / "runs").iterdir())
    asymptote, kl = run("asymptote", setup), run("kl", setup)
    assert sorted(p.name for p in (out / "runs").iterdir()) == before  # nothing retrained
    a = json.loads((asymptote / "summary.json").read_text())
    fst_runs = [run_dirs(asymptote)[f"fst seed {s}"] for s in (0, 1)]
    for fit, path in zip(a["fst"]["fits"], fst_runs):
        steps, accuracy = load_run(path).series("step", "val_accuracy")
        assert fit is None or fit["A"] == pytest.approx(stats.fit_sigmoid(steps, accuracy).A)
    k = json.loads((kl / "summary.json").read_text())
    assert k["final_kl"]["rl"]["n"] == 2 and k["final_kl"]["rl"]["mean"] > 0
    assert (kl / "kl_vs_accuracy_by_mode.png").is_file()
    # per axis: at the largest budget both runs of a seed reached. Problems: the same for both, so the final KL;
    # rollouts: RL's final count, which FST reached earlier in its run
    pairs = [(run_dirs(kl)[f"fst seed {s}"], run_dirs(kl)[f"rl seed {s}"]) for s in (0, 1)]
    final = [(rows(f)[-1]["kl_base"], rows(r)[-1]["kl_base"]) for f, r in pairs]
    assert k["at_matched_budget"]["samples"]["kl_fst"]["mean"] == pytest.approx(np.mean([f for f, _ in final]))
    assert k["at_matched_budget"]["samples"]["kl_rl"]["mean"] == pytest.approx(np.mean([r for _, r in final]))
    at_rollouts = []
    for f, r in pairs:
        spent = rows(r)[-1]["rl_rollouts"]
        at_rollouts.append([row["kl_base"] for row in rows(f) if row.get("kl_base") is not None
                            and row["rl_rollouts"] + row["fast_rollouts"] <= spent][-1])
    assert k["at_matched_budget"]["rollouts"]["kl_fst"]["mean"] == pytest.approx(np.mean(at_rollouts))
    assert set(k) >= {"kl_reduction_at_matched_samples", "kl_reduction_at_matched_rollouts",
                      "kl_reduction_at_matched_seconds"}
    for axis in ("rollouts", "seconds"):
        assert a["fst"][f"A_{axis}"]["n"] + a["fst"][f"A_{axis}"]["dropped"] == 2
        assert f"A_fst_minus_rl_{axis}" in a
    for axis in ("samples", "rollouts", "seconds"):
        assert -1 <= a[f"best_fst_minus_rl_at_matched_{axis}"]["mean"] <= 1


def test_runs_trained_elsewhere_are_analysed_from_their_metrics_without_training(setup, tmp_path):
    """--runs-from: a GPU machine's runs, copied back without checkpoints and named with that machine's model
    fingerprint, give the same results here as where they trained, and nothing is trained."""
    config, _ = setup
    there = run("efficiency", setup)
    elsewhere = tmp_path / "copied" / "runs"
    for label, path in run_dirs(there).items():
        shutil.copytree(path, elsewhere / f"{path.name.rsplit('-', 1)[0]}-0ther0ne",
                        ignore=shutil.ignore_patterns("checkpoints"))
    # found by content whatever its label: an older version named a sweep's default arm apart
    renamed = elsewhere / "k-sweep-2-fst-s1-0ther0ne"
    next(elsewhere.glob("*-fst-s1-0ther0ne")).rename(renamed)
    here = run_experiment("efficiency", config, seeds=2, out=tmp_path / "here", workers=1,
                          reflection_lm=ScriptedReflectionLM(), runs_from=tmp_path / "copied")
    assert not (tmp_path / "here" / "runs").exists()  # nothing trained
    assert all(path.parent == elsewhere for path in run_dirs(here).values())
    assert run_dirs(here)["fst seed 1"] == renamed
    original, again = (json.loads((folder / "summary.json").read_text()) for folder in (there, here))
    assert again == original
    assert "runs trained elsewhere, read from" in (here / "results.md").read_text()
    # a config that differs, or a run that stopped early, is not taken for the one asked for
    with pytest.raises(FastSlowError, match=r"no finished run .*-fst-s0-\* .*differs in loop\.steps \(4, here 6\)"):
        run_experiment("efficiency", config, seeds=2, out=tmp_path / "here", workers=1,
                       reflection_lm=ScriptedReflectionLM(), runs_from=tmp_path / "copied",
                       overrides={"loop.steps": 6})
    fst = next(elsewhere.glob("*-fst-s0-*"))
    metrics = fst / "metrics.jsonl"
    metrics.write_text("".join(metrics.read_text().splitlines(keepends=True)[:-1]))
    with pytest.raises(FastSlowError, match=f"{fst.name} did not finish its 4 steps"):
        run_experiment("efficiency", config, seeds=2, out=tmp_path / "here", workers=1,
                       reflection_lm=ScriptedReflectionLM(), runs_from=tmp_path / "copied")


def test_decomposition_reproduces_the_runs_final_evaluation(setup):
    folder = run("decomposition", setup)
    summary = json.loads((folder / "summary.json").read_text())
    fst_runs = [run_dirs(folder)[f"fst seed {s}"] for s in (0, 1)]
    # measured like the run's own evaluations: base weights + the config's seed prompt reproduce step 0,
    # trained weights + evolved prompt reproduce the last step
    for cell, row in (("base weights + seed prompt", 0), ("trained weights + evolved prompt", -1)):
        logged = [rows(path)[row]["val_accuracy"] for path in fst_runs]
        assert summary[cell]["mean"] == pytest.approx(np.mean(logged)) and summary[cell]["n"] == 2
    for prompt, path in zip(summary["evolved_prompts"], fst_runs):  # the best member of the last cycle's population
        last = json.loads((path / "population" / "cycle-1.json").read_text())
        assert prompt == next(m["text"] for m in last["members"] if m["id"] == last["best"])
    assert (fst_runs[0] / "export" / "config.json").is_file()
    # what the runs had spent where the cells are measured: the end of each FST run
    assert summary["cost"]["samples"]["mean"] == pytest.approx(np.mean([rows(p)[-1]["samples"] for p in fst_runs]))
    assert summary["cost"]["rollouts"]["mean"] == pytest.approx(
        np.mean([rows(p)[-1]["rl_rollouts"] + rows(p)[-1]["fast_rollouts"] for p in fst_runs]))


def test_ood_evaluates_base_rl_and_fst_weights_on_the_other_tasks(setup):
    folder = run("ood", setup)
    summary = json.loads((folder / "summary.json").read_text())
    assert len(summary) == 5  # experiment, preset, seeds + the training task and one other task
    other = next(v for k, v in summary.items() if isinstance(v, dict) and "training task" not in k)
    assert {"base", "rl", "fst", "fst_minus_rl"} <= set(other) and other["fst"]["n"] == 2


def test_plasticity_starts_fresh_rl_from_each_checkpoint(setup):
    folder = run("plasticity", setup)
    runs = run_dirs(folder)
    for start in ("base", "rl", "fst"):
        path = runs[f"{SHORT} from {start} seed 0"]
        config = yaml.safe_load((path / "config.yaml").read_text())
        assert config["mode"] == "rl" and config["loop"]["steps"] == 2 and config["task"]["seed_prompt"] == "Short."
        assert config["model"]["path"].endswith("/export") == (start != "base")
    # the RL-trained start begins where its phase-A run ended (same weights, task and val split; different prompt)
    assert rows(runs[f"{SHORT} from rl seed 0"])[0]["val_accuracy"] != rows(runs[f"{SHORT} from base seed 0"])[0]["val_accuracy"]
    # each start's gain minus the base's, seed by seed (phase B's seed s trains on the same problems from every start)
    summary = json.loads((folder / "summary.json").read_text())

    def gain(start, seed):
        run_rows = rows(runs[f"{SHORT} from {start} seed {seed}"])
        accuracy = [r["val_accuracy"] for r in run_rows if r["val_accuracy"] is not None]
        return accuracy[-1] - accuracy[0]

    seeds = range(summary["seeds"])
    for start in ("rl", "fst"):
        expected = stats.summarize([gain(start, s) - gain("base", s) for s in seeds])
        assert summary[start]["gain_minus_base"]["mean"] == pytest.approx(expected.mean)
    fst_vs_rl = stats.summarize([gain("fst", s) - gain("rl", s) for s in seeds])
    assert summary["fst_gain_minus_rl"]["mean"] == pytest.approx(fst_vs_rl.mean)


def test_continual_logs_every_stage_and_normalises_by_a_shared_peak(setup):
    folder = run("continual", setup)
    summary = json.loads((folder / "summary.json").read_text())
    for path in run_dirs(folder).values():
        evaluated = [r for r in rows(path) if r["val_accuracy"] is not None]
        assert [r["step"] for r in evaluated] == [0, 2, 4]
        assert all(set(r["val_accuracy_by_group"]) == {"first", "second"} for r in evaluated)
    peaks = summary["shared_peaks"]
    normalised = [summary[m][stage]["normalised_at_stage_end"]["max"] for m in ("fst", "rl") for stage in ("first", "second")]
    assert len(peaks) == 2 and all(v is None or v <= 1.0 + 1e-9 for v in normalised)
    assert any(v == pytest.approx(1.0) for v in normalised)  # some run sets the shared peak of some stage


def test_zero_reward_counts_steps_until_reward_leaves_zero(setup):
    folder = run("zero-reward", setup)
    summary = json.loads((folder / "summary.json").read_text())
    for mode in ("fst", "rl"):
        for seed, first in enumerate(summary[mode]["first_nonzero_per_seed"]):
            steps, reward = load_run(run_dirs(folder)[f"{mode} seed {seed}"]).series("step", "reward_mean")
            assert first == stats.steps_until_nonzero(steps, reward)


@pytest.mark.parametrize("name,key,values", [("k-sweep", "population_size", [1, 2]),
                                             ("t-sweep", "steps_per_cycle", [1, 2])])
def test_ablations_train_fst_at_each_value_and_an_rl_reference(setup, name, key, values):
    config, out = setup
    data, section = read_config_file(config)
    section = {**section, "values": values}
    path = config.with_name(f"{name}.yaml")
    path.write_text(yaml.safe_dump({**data, "experiment": section}))
    folder = run_experiment(name, path, seeds=2, out=out, workers=1, reflection_lm=ScriptedReflectionLM())
    runs = run_dirs(folder)
    letter = "K" if name == "k-sweep" else "T"
    assert sorted(runs) == sorted([f"{letter}={v} seed {s}" for v in values for s in (0, 1)] + ["rl seed 0", "rl seed 1"])
    for value in values:
        configs = [load_run(runs[f"{letter}={value} seed {s}"]).config for s in (0, 1)]
        assert all(c["loop"][key] == value and c["mode"] == "fst" for c in configs)
    # the config's own value (2, TINY_SIZES) is plain FST: the run efficiency and the other sweep train too
    plain = runs[f"{letter}=2 seed 0"].name
    assert "-fst-s0-" in plain and not plain.startswith(name)
    assert runs[f"{letter}=1 seed 0"].name.startswith(f"{name}-1-fst-s0-")
    summary = json.loads((folder / "summary.json").read_text())
    assert set(summary) >= {f"{letter}={v}" for v in values} | {"rl"}
    for value in values:
        arm = summary[f"{letter}={value}"]
        expected = [stats.sample_efficiency(budget(runs[f"{letter}={value} seed {s}"], "rollouts"),
                                            budget(runs[f"rl seed {s}"], "rollouts")) for s in (0, 1)]
        mean = stats.summarize(expected).mean  # nan where no seed reached RL's peak: null in summary.json
        assert arm["efficiency_vs_rl_rollouts"]["mean"] == (None if math.isnan(mean) else pytest.approx(mean))
        assert arm["rollouts"]["mean"] > summary["rl"]["rollouts"]["mean"]  # the fast phase's rollouts on top
        # each RL step spreads its rollouts over at most K members: the population is the top K of GEPA's front
        held = [len(row["member_signal"]) for s in (0, 1)
                for row in load_run(runs[f"{letter}={value} seed {s}"]).measured("member_signal")]
        population = value if name == "k-sweep" else 2
        assert held and arm["prompts_at_most"] == max(held) <= population
        assert 1 <= arm["prompts_per_step"]["min"] <= arm["prompts_per_step"]["max"] <= population
    assert summary["rl"]["prompts_at_most"] == 1  # RL samples under the seed prompt alone
    assert (folder / f"{name.replace('-', '_')}.png").is_file()


def test_every_registered_experiment_is_tested():
    tested = {"efficiency", "asymptote", "kl", "decomposition", "ood", "plasticity", "continual", "zero-reward",
              "k-sweep", "t-sweep"}
    assert set(REGISTRY) == tested


# ---------------------------------------------------------------- inputs, presets and the cache


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "speed"}, "unknown experiment 'speed'"),
    ({"name": "kl", "preset": "huge"}, "unknown preset 'huge'"),
    ({"name": "kl", "seeds": 0}, "--seeds"),
    ({"name": "kl", "config_path": Path("/nonexistent.yaml")}, "config file not found"),
])
def test_bad_input_is_one_clear_error(kwargs, message):
    with pytest.raises(FastSlowError, match=message):
        run_experiment(**kwargs)


def test_the_callers_overrides_apply_after_the_presets_in_their_own_order(tmp_path, monkeypatch):
    # the full preset sets task.train_size; --set task={...} then --set task.train_size=384 must end with 384
    seen = []
    monkeypatch.setattr(importlib.import_module(REGISTRY["efficiency"]), "run", lambda exp: seen.append(exp) or tmp_path)
    task = {"name": "compare", "args": {"digits": 2}}
    run_experiment("efficiency", None, preset="full", out=tmp_path, overrides={"task": task, "task.train_size": 384})
    assert "task.train_size" in PRESETS["full"]["overrides"]
    assert seen[0].base["task"] == {**task, "train_size": 384}


def test_settings_layer_defaults_preset_and_config_file():
    settings = experiment_settings("plasticity", "small", {"steps_b": 7, "overrides": {"loop.steps": 3}})
    assert settings["steps_b"] == 7 and settings["task_b"]["name"] == "strings"
    assert settings["overrides"]["loop.steps"] == 3
    assert settings["overrides"]["eval.every"] == PRESETS["small"]["overrides"]["eval.every"]


@pytest.mark.parametrize("task", [experiment_settings("efficiency", "small", None)["task"],
                                  experiment_settings("plasticity", "small", None)["task_b"]])
def test_default_string_tasks_start_from_their_own_instruction(task):
    # docs/RESULTS.md measures these tasks under their instruction: a changed held-out list must not swap the program
    assert task["seed_prompt"] == load_task(task["name"], **task["args"]).instruction


def candidate(family: str, accuracy: float, varied: float, n: int) -> dict:
    return {"task": {"name": family, "args": {"n": n}}, "accuracy": accuracy, "problems_with_variance": varied}


def test_the_suite_rule_keeps_weak_prompts_with_an_rl_signal_the_most_varied_per_family_in_candidate_order():
    measured = [
        candidate("strings", 0.20, 0.30, 0),
        candidate("strings", 0.01, 0.50, 1),  # too weak: RL would start from ~0
        candidate("strings", 0.35, 0.50, 2),  # too strong
        candidate("strings", 0.02, 0.10, 3),  # both bounds are inside
        candidate("strings", 0.30, 0.09, 4),  # too little signal
        candidate("strings", 0.10, 0.40, 5),
        candidate("strings", 0.10, 0.35, 6),
        candidate("cipher", 0.34, 0.20, 7),
    ]
    suite, lacking = select_suite(measured)
    assert [t["args"]["n"] for t in suite] == [0, 5, 6, 7]  # strings 5, 6, 0 beat 3 on variance; candidate order
    assert lacking is None
    suite, lacking = select_suite(measured[:2])
    assert [t["args"]["n"] for t in suite] == [0] and lacking == "1 of 3 tasks; 1 of 2 families"


@pytest.mark.parametrize("task", SUITE_V3)
def test_the_v3_suite_starts_each_task_from_a_near_miss_of_its_instruction(task):
    from fastslow.micro.evaluate import near_misses
    from fastslow.tasks.micro_language import describe

    program = load_task(task["name"], **task["args"]).program
    assert task["seed_prompt"] in [describe(near) for near in near_misses(program)]


def test_unknown_experiment_settings_are_named():
    with pytest.raises(FastSlowError, match="unknown setting.*ood_task"):
        experiment_settings("ood", "small", {"ood_task": []})


def test_set_gives_experiment_settings_as_the_config_files_section_does(tmp_path, monkeypatch):
    import fastslow.experiments.efficiency as efficiency
    from fastslow.experiments import run_experiment

    seen = {}
    monkeypatch.setattr(efficiency, "run", lambda experiment: seen.setdefault("experiment", experiment))
    overrides = {"experiment.modes": ["fst", "rl"], "loop.steps": 5}
    experiment = run_experiment("efficiency", out=tmp_path, overrides=overrides)
    assert experiment.settings["modes"] == ["fst", "rl"] and experiment.base["loop"]["steps"] == 5
    assert "--set 'experiment.modes=[fst, rl]'" in experiment.command  # the command re-runs it as given
    with pytest.raises(FastSlowError, match="unknown setting.*ood_task"):
        run_experiment("efficiency", out=tmp_path, overrides={"experiment.ood_task": []})


def test_the_example_config_is_a_valid_run_config_with_known_settings():
    base, section = read_config_file(Path(__file__).parent.parent / "configs" / "experiments" / "qwen-math.yaml")
    assert parse_config(base).model.lora.r == 16
    settings = experiment_settings("plasticity", "full", section)
    assert settings["task_b"]["name"] == "hover" and settings["overrides"]["loop.steps"] == 200


def _experiment(tmp_path, model_path, **base):
    return Experiment("kl", "small", 1, tmp_path, {"model": {"path": model_path}, "task": {"name": SHORT}, **base},
                      {}, 1, "test")


def test_run_names_hash_the_whole_config(tmp_path, tiny_model_path):
    exp = _experiment(tmp_path, tiny_model_path)
    a, b = exp.config("rl", 0), exp.config("rl", 0)
    assert a.name == b.name and a.name.startswith("ShortAnswerTask-rl-s0-")
    assert exp.config("rl", 1).name != a.name
    assert exp.config("rl", 0, **{"loop.steps": 5}).name != a.name
    assert a.run_dir.parent == tmp_path / "runs"
    assert config_hash(a) == a.name.rsplit("-", 1)[1]


def test_an_interrupted_run_is_resumed_and_a_finished_one_kept(tmp_path, tiny_model_path):
    exp = _experiment(tmp_path, tiny_model_path, **{"loop": {"steps": 2, "steps_per_cycle": 1, "problems_per_step": 2,
                                                             "rollouts_per_problem": 2, "population_size": 1},
                                                    "task": {"name": SHORT, "train_size": 8, "val_size": 4},
                                                    "eval": {"every": 1, "samples": 1, "kl_prompts": 2}})
    config = exp.config("rl", 0)
    assert not is_complete(config)
    exp.train([config])
    assert is_complete(config)
    finished = (config.run_dir / "metrics.jsonl").read_text()
    # simulate a kill after step 1's checkpoint: drop the last row and the newest checkpoint
    lines = finished.splitlines(keepends=True)
    (config.run_dir / "metrics.jsonl").write_text("".join(lines[:-1]))
    (config.run_dir / "checkpoints" / "LATEST").write_text("step-000001")
    assert not is_complete(config)
    exp.train([config])
    assert (config.run_dir / "metrics.jsonl").read_text().splitlines()[-1].startswith('{"step": 2')
    mtime = (config.run_dir / "metrics.jsonl").stat().st_mtime_ns
    exp.train([config])  # complete: not touched
    assert (config.run_dir / "metrics.jsonl").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_runs_in_spawned_processes_match_runs_in_this_process(tmp_path, tiny_model_path):
    data = {"model": {"path": tiny_model_path, "max_new_tokens": 8}, "task": {"name": SHORT, "train_size": 8, "val_size": 4},
            "loop": {"steps": 2, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2, "population_size": 2},
            "eval": {"every": 1, "samples": 2, "kl_prompts": 2}, "rl": {"learning_rate": 1e-3, "warmup_steps": 0}}
    jobs, labels = [], []
    for where in ("here", "spawned-a", "spawned-b"):
        config = parse_config({**data, "mode": "fst", "name": where, "output_dir": str(tmp_path)})
        jobs.append((config.model_dump(mode="json"), False, ScriptedReflectionLM()))
        labels.append(where)
    parallel(train_job, jobs[:1], 1, print, labels[:1])
    parallel(train_job, jobs[1:], 2, print, labels[1:])

    def measured(name):
        return [{k: r[k] for k in ("step", "val_accuracy", "reward_mean", "kl_base")} for r in rows(tmp_path / name)]

    assert measured("here") == measured("spawned-a") == measured("spawned-b")



def test_a_time_limit_stops_the_runs_still_training_at_a_safe_point_and_a_later_call_resumes_them(tmp_path,
                                                                                                    tiny_model_path):
    exp = _experiment(tmp_path, tiny_model_path, **{"loop": {"steps": 400, "steps_per_cycle": 1, "problems_per_step": 2,
                                                             "rollouts_per_problem": 2, "population_size": 1},
                                                    "task": {"name": SHORT, "train_size": 800, "val_size": 4},
                                                    "eval": {"every": 50, "samples": 1, "kl_prompts": 2}})
    config = exp.config("rl", 0)

    def steps() -> list[int]:
        return [json.loads(line)["step"] for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]

    started = time.monotonic()
    exp.train([config], limit_s=20)
    assert time.monotonic() - started < 20 + 40  # stopped, not run to its 400 steps
    first = steps()
    assert not is_complete(config) and 0 < first[-1] < 400 and first == list(range(len(first)))  # whole rows only
    assert not (config.run_dir / ".lock").exists()  # the stopped run released its lock on the way out
    exp.train([config], limit_s=20)  # resumes from the stopped run's last checkpoint (one a step here)
    second = steps()
    assert second[-1] > first[-1] and second == list(range(len(second)))  # nothing lost or repeated

# ---------------------------------------------------------------- the continual-learning task


def sequence(**kwargs):
    stages = [{"name": "strings", "args": {"program": "reverse"}}, {"name": "counting", "args": {"rule": "vowels"}}]
    return SequenceTask(stages, steps_per_stage=3, problems_per_step=2, **kwargs)


def test_sequence_lays_out_train_problems_stage_after_stage():
    task = sequence()
    train = task.problems("train", task.train_size, seed=0)
    assert task.train_size == 12 and task.stage_boundaries == [3]
    plan = DataPlan(train, problems_per_step=2, steps_per_cycle=2, seed=5, ordered=task.ordered)
    groups = [{p.info["group"] for p in plan.batch(step)} for step in range(1, 7)]
    assert groups == [{"strings"}] * 3 + [{"counting"}] * 3
    assert all(p.id.startswith(p.info["group"] + "/") for p in train)
    assert len({p.id for p in train}) == len(train)


def test_sequence_val_covers_every_stage_and_scoring_goes_to_the_stage_task():
    task = sequence()
    val = task.problems("val", 5, seed=1)
    assert [p.info["group"] for p in val] == ["strings"] * 3 + ["counting"] * 2
    word = next(p for p in val if p.info["group"] == "strings")
    assert task.score(word, word.prompt[::-1]).reward == 1.0
    assert task.score(word, word.prompt + "x").reward == 0.0
    count = next(p for p in val if p.info["group"] == "counting")
    inner = load_task("counting", rule="vowels")
    assert task.score(count, count.answer) == inner.score(count, count.answer)
    assert task.seed_prompt == "Solve the task." and sequence(seed_prompt="Go.").seed_prompt == "Go."


@pytest.mark.parametrize("kwargs, message", [
    ({"stages": [{"name": "strings"}]}, "at least two stages"),
    ({"stages": [{"name": "strings"}, {"name": "strings"}]}, "label 'strings' is used twice"),
    ({"stages": [{"name": "strings"}, {"task": "counting"}]}, r"stages\[1\]"),
    ({"stages": [{"name": "strings"}, {"name": "nope"}]}, "unknown task 'nope'"),
])
def test_sequence_rejects_bad_stages(kwargs, message):
    with pytest.raises(FastSlowError, match=message):
        SequenceTask(steps_per_stage=2, problems_per_step=2, **kwargs)


def test_sequence_needs_exactly_the_training_problems_its_stages_fill():
    with pytest.raises(FastSlowError, match="exactly 12 training problems"):
        sequence().problems("train", 10, seed=0)


def test_experiment_workers_take_one_gpu_each_round_robin(monkeypatch):
    """On a multi-GPU host each worker process sees one GPU (TRL refuses nn.DataParallel over several)."""
    import os
    from multiprocessing import get_context

    import torch

    from fastslow.experiments.common import _init_worker

    threads = torch.get_num_threads()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    counter, seen = get_context("spawn").Value("i", 0), []
    for _ in range(3):
        _init_worker(threads, ["2", "5"], counter)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["2", "5", "2"]
    _init_worker(threads, [], counter)  # no GPU: the environment is left alone
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"
