import json
import re

import numpy as np
import pytest
import yaml
from PIL import Image

from fastslow import report
from fastslow.errors import FastSlowError

KEYS = ["step", "cycle", "mode", "samples", "rl_rollouts", "fast_rollouts", "reward_mean", "val_accuracy",
        "val_accuracy_seed_prompt", "kl_base", "entropy", "seconds_generate", "seconds_score", "seconds_reflect",
        "seconds_update", "reflection_failed", "best_prompt_id", "wall_time"]


def write_fake_run(root, name, mode, val_accuracy, kl=None, entropy=None, populations=(), task="strings"):
    """A hand-made run directory in the docs/RUNDIR.md format: 8 problems and 16 RL rollouts per step, 40 GEPA
    scoring rollouts per cycle of 2 steps (fst, gepa); `val_accuracy`, `kl`, `entropy` are per step, None where
    not measured."""
    run_dir = root / name
    (run_dir / "population").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"name": name, "mode": mode, "task": {"name": task}}))
    rows = []
    for step, accuracy in enumerate(val_accuracy):
        cycle = max(step - 1, 0) // 2
        row = dict.fromkeys(KEYS)
        row.update(step=step, cycle=cycle, mode=mode, samples=8 * step, rl_rollouts=0 if mode == "gepa" else 16 * step,
                   fast_rollouts=0 if mode == "rl" or step == 0 else 40 * (cycle + 1), val_accuracy=accuracy,
                   kl_base=kl[step] if kl else None, entropy=entropy[step] if entropy else None,
                   wall_time=10.0 * step)
        if step:
            row.update(reward_mean=0.1 * step, seconds_generate=2.0, seconds_update=1.0,
                       seconds_score=0.5 if mode != "rl" else None, seconds_reflect=(3.0 if step % 2 else 0.0)
                       if mode != "rl" else None)
        rows.append(row)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for cycle, members in enumerate(populations):
        (run_dir / "population" / f"cycle-{cycle}.json").write_text(json.dumps(
            {"cycle": cycle, "reflection_failed": False, "metric_calls": 40, "members": members,
             "best": members[0]["id"]}))
    return run_dir


def member(id, text, parent, score):
    return {"id": id, "text": text, "parent": parent, "mean_score": score, "scores": {"p0": score}}


@pytest.fixture
def runs(tmp_path):
    fst = write_fake_run(
        tmp_path, "demo-fst", "fst",
        val_accuracy=[0.1, None, 0.3, None, 0.5, None, 0.4],
        kl=[0.0, None, 0.01, None, 0.02, None, 0.03], entropy=[0.5, None, 0.48, None, 0.46, None, 0.45],
        populations=[[member("seed", "Answer the question.", None, 0.2)],
                     [member("c1-1", "Reverse the <string> carefully & check it.", "seed", 0.45),
                      member("seed", "Answer the question.", None, 0.2)]])
    rl = write_fake_run(
        tmp_path, "demo-rl", "rl",
        val_accuracy=[0.1, None, 0.2, None, 0.25, None, 0.3],
        kl=[0.0, None, 0.03, None, 0.06, None, 0.09], entropy=[0.5, None, 0.3, None, 0.2, None, 0.15])
    return fst, rl


def test_make_report_writes_valid_pngs_and_one_self_contained_page(runs, tmp_path):
    page = report.make_report(list(runs), tmp_path / "out", notes=["FST is ahead of RL at step 6."])
    assert page == tmp_path / "out" / "report.html"
    text = page.read_text()
    pngs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    # the seed-prompt accuracy was never measured in these runs, so it gets no plot
    assert pngs == ["entropy.png", "kl_vs_accuracy.png", "reward.png", "seconds_per_phase.png", "val_accuracy.png",
                    "val_accuracy_wall_clock.png"]
    for name in pngs:
        with Image.open(tmp_path / "out" / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
        assert f"href='{name}'" in text
    assert text.count("src='data:image/png;base64,") == len(pngs)
    for label in ("demo-fst", "demo-rl"):
        assert label in text
    assert "(fst)" not in text and "(rl)" not in text  # the names already say the mode
    assert text.index("FST is ahead of RL at step 6.") < text.index("<h2>Runs</h2>")


def test_report_shows_the_population_per_cycle_with_texts_scores_and_parents(runs, tmp_path):
    text = report.make_report(list(runs), tmp_path / "out").read_text()
    assert "Reverse the &lt;string&gt; carefully &amp; check it." in text  # escaped, not raw HTML
    assert "cycle 1 — best c1-1 (0.450), 2 members, 40 metric calls" in text
    assert "<td>c1-1</td><td>seed</td><td>0.450</td>" in text
    assert "no population files" in text  # the RL run has none


def test_summary_table_reports_final_and_peak_values_and_the_comparison_with_rl(runs):
    table = report.summary_table(list(runs))
    lines = table.splitlines()
    fst_row = next(line for line in lines if line.startswith("| demo-fst | 6 | 48 |"))
    assert "| 96 / 120 | 0.400 | 0.500 | 0.0300 | 0.450 | 1.0 min |" in fst_row
    # RL peaks at 0.3 after 48 samples; FST first reaches 0.3 at 16 samples -> 3.00x
    comparison = next(line for line in lines if line.startswith("| demo-fst | demo-rl |"))
    assert "| 0.300 | 48 | 16 | 3.00× |" in comparison
    # at accuracy 0.3 RL has KL 0.09 and FST 0.01: 1 - 0.01/0.09 = 89% less
    assert "| 89% | This run reached RL's peak 0.300 at 16 samples, RL at 48 samples. |" in comparison


def test_missing_values_are_skipped_not_drawn_as_zero(runs):
    fig = report.plot_accuracy(report.load_runs(list(runs)))
    raw_fst = fig.axes[0].lines[1]  # running max, then raw, per run
    assert raw_fst.get_xdata().tolist() == [0, 16, 32, 48]
    assert raw_fst.get_ydata().tolist() == [0.1, 0.3, 0.5, 0.4]
    assert fig.axes[0].lines[0].get_ydata().tolist() == [0.1, 0.3, 0.5, 0.5]


def test_reward_counts_rl_and_gepa_rollouts(runs):
    fig = report.plot_reward(report.load_runs(list(runs)))
    raw_fst, _, raw_rl, _ = fig.axes[0].lines
    assert raw_fst.get_xdata()[:3].tolist() == [16 + 40, 32 + 40, 48 + 80]
    assert raw_rl.get_xdata()[:3].tolist() == [16, 32, 48]
    assert raw_fst.get_ydata()[:3] == pytest.approx([0.1, 0.2, 0.3])  # step 0 has no reward: left out


def test_seconds_per_step_averages_each_phase_over_rl_steps(runs):
    fst, rl = report.load_runs(list(runs))
    assert report.seconds_per_step(fst) == pytest.approx({"generate": 2.0, "score": 0.5, "reflect": 1.5, "update": 1.0})
    assert report.seconds_per_step(rl) == pytest.approx({"generate": 2.0, "score": 0.0, "reflect": 0.0, "update": 1.0})


def test_a_run_without_kl_or_entropy_still_gets_a_report(tmp_path):
    gepa = write_fake_run(tmp_path, "prompts-only", "gepa", val_accuracy=[0.1, 0.2, 0.3])
    page = report.make_report([gepa], tmp_path / "out")
    assert not (tmp_path / "out" / "kl_vs_accuracy.png").exists()
    assert not (tmp_path / "out" / "entropy.png").exists()
    assert (tmp_path / "out" / "val_accuracy.png").exists()
    assert "prompts-only (gepa)" in page.read_text()  # the name does not say the mode: the label does
    assert "Against RL" not in page.read_text()


def test_runs_with_the_same_name_are_told_apart_by_path(tmp_path):
    a = write_fake_run(tmp_path / "seed0", "demo", "fst", val_accuracy=[0.1, 0.2])
    b = write_fake_run(tmp_path / "seed1", "demo", "fst", val_accuracy=[0.1, 0.3])
    labels = [run.label for run in report.load_runs([a, b])]
    assert labels == [f"demo (fst) {a}", f"demo (fst) {b}"]


def test_a_path_that_is_not_a_run_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FastSlowError, match=re.escape(f"{tmp_path}: not a run directory (missing metrics.jsonl)")):
        report.make_report([tmp_path], tmp_path / "out")
    with pytest.raises(FastSlowError, match="at least one run directory"):
        report.summary_table([])


def test_a_partial_last_line_is_ignored_but_a_broken_earlier_line_is_an_error(tmp_path):
    run_dir = write_fake_run(tmp_path, "live", "rl", val_accuracy=[0.1, 0.2])
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 2, "val_acc')  # the run is still writing
    assert [row["step"] for row in report.load_run(run_dir).rows] == [0, 1]
    metrics.write_text("not json\n" + metrics.read_text())
    with pytest.raises(FastSlowError, match=r"metrics.jsonl: line 1 is not valid JSON"):
        report.load_run(run_dir)


def test_plots_draw_every_run_in_its_own_colour(runs):
    fig = report.plot_kl(report.load_runs(list(runs)))
    fst_line, rl_line = fig.axes[0].lines
    assert fst_line.get_color() != rl_line.get_color()
    assert np.array(rl_line.get_xydata()).tolist() == [[0.1, 0.0], [0.2, 0.03], [0.25, 0.06], [0.3, 0.09]]


def test_report_plots_the_signal_metrics_and_warns_about_a_starved_cycle(tmp_path):
    run = signal_run(tmp_path, "locked", [0.1, None, 0.3, None, 0.3])  # accuracy has room: worth a warning
    page = report.make_report([run], tmp_path / "out").read_text()
    for plot in ("rl_signal.png", "member_entropy.png", "grad_norm.png"):
        assert (tmp_path / "out" / plot).is_file()
    assert "cycle(s) 1 (0%) trained on almost no within-prompt signal" in page
    assert "cycle(s) 0" not in page


def write_rows(root, name, mode, rows, task="strings"):
    """A run directory holding exactly these metrics rows (every other key absent, as in older runs)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"name": name, "mode": mode, "task": {"name": task}}))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps({"mode": mode, **row}) + "\n" for row in rows))
    return run_dir


def accuracy_rows(accuracies):
    """Step 0..n, 8 samples per step, val_accuracy per step (None: not measured), 10 s per step."""
    return [{"step": step, "cycle": max(step - 1, 0) // 2, "samples": 8 * step, "val_accuracy": accuracy,
             "wall_time": 10.0 * step} for step, accuracy in enumerate(accuracies)]


def comparison(tmp_path, fst_accuracy, rl_accuracy):
    fst = write_rows(tmp_path, "a-fst", "fst", accuracy_rows(fst_accuracy))
    rl = write_rows(tmp_path, "a-rl", "rl", accuracy_rows(rl_accuracy))
    (row,) = report._comparison_rows(report.load_runs([fst, rl]))
    return row


def test_a_run_pair_where_rl_never_leaves_zero_says_so_in_words(tmp_path):
    row = comparison(tmp_path, [0.0, None, 0.5, None, 0.95], [0.0, None, 0.0, None, 0.0])
    assert row["in words"] == "RL never rose above its start (0.000) in 32 samples; this run reached 0.950 at 32 samples."
    # RL's "peak" is its start: no sample count is reported as if something had been reached
    assert (row["samples RL needs"], row["samples this run needs"], row["sample efficiency"]) == ("—", "—", "—")


def test_a_run_that_never_reaches_rls_peak_says_so_in_words(tmp_path):
    row = comparison(tmp_path, [0.1, None, 0.2, None, 0.25], [0.1, None, 0.3, None, 0.6])
    assert row["in words"] == ("This run never reached RL's peak 0.600 in 32 samples (its best 0.250); "
                               "RL reached it at 32 samples.")
    assert (row["samples RL needs"], row["samples this run needs"]) == ("32", "—")
    row = comparison(tmp_path / "flat", [0.2, None, 0.2, None, 0.2], [0.0, None, 0.0, None, 0.0])
    assert row["in words"] == ("Neither run improved: RL never rose above its start (0.000) in 32 samples, "
                               "this run stayed at 0.200 in 32 samples.")
    row = comparison(tmp_path / "ahead", [0.7, None, 0.7, None, 0.7], [0.1, None, 0.3, None, 0.6])
    assert row["in words"] == "This run was at RL's peak 0.600 from its first evaluation; RL needed 32 samples."
    assert row["sample efficiency"] == "∞"


def test_the_page_shows_the_words_in_the_comparison_table(tmp_path):
    fst = write_rows(tmp_path, "a-fst", "fst", accuracy_rows([0.0, 0.5, 0.95]))
    rl = write_rows(tmp_path, "a-rl", "rl", accuracy_rows([0.0, 0.0, 0.0]))
    page = report.make_report([fst, rl], tmp_path / "out").read_text()
    assert "<td>RL never rose above its start (0.000) in 16 samples; this run reached 0.950 at 16 samples.</td>" in page


def test_labels_name_the_mode_once(tmp_path):
    assert report._label("fst", "fst") == "fst"
    assert report._label("demo-fst", "fst") == "demo-fst"
    assert report._label("efficiency_rl_s0", "rl") == "efficiency_rl_s0"
    assert report._label("demo", "fst") == "demo (fst)"
    assert report._label("fastest", "fst") == "fastest (fst)"  # a part of a word is not the mode


def signal_run(tmp_path, name, val_accuracy):
    """An fst run whose cycle 1 (steps 3-4) trains on no within-prompt signal, at the given val accuracy per step."""
    run = write_fake_run(tmp_path, name, "fst", val_accuracy=val_accuracy)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[1:]:  # cycle 0 (steps 1-2) learns within prompts, cycle 1 (steps 3-4) only between them
        locked = row["cycle"] == 1
        row.update(kept_problems=5, grad_norm=1e-4 if locked else 0.5, within_prompt_signal=0.0 if locked else 0.6,
                   within_prompt_variance_share=0.0 if locked else 0.3,
                   member_entropy={"seed": 0.3, "c0-1": 0.001}, member_signal={"seed": 0.1, "c0-1": 0.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run


def test_no_starvation_warning_where_the_policy_is_certain_and_right(tmp_path):
    # the demo's case: GEPA found the program, the policy is near-certain and right (0.95 at the cycle's end)
    run = signal_run(tmp_path, "solved", [0.1, None, 0.5, None, 0.95])
    page = report.make_report([run], tmp_path / "out").read_text()
    assert (tmp_path / "out" / "rl_signal.png").is_file()  # the signal is plotted...
    assert "trained on almost no within-prompt signal" not in page  # ...but not warned about


def test_legends_sit_outside_the_axes(runs, tmp_path):
    loaded = report.load_runs([*runs, signal_run(tmp_path, "locked", [0.1, None, 0.3, None, 0.3])])
    plots = [plot(loaded) for _, _, plot in report.PLOTS]
    assert sum(fig is not None for fig in plots) >= 8
    for fig in filter(None, plots):
        assert fig.axes[0].get_legend() is None and len(fig.legends) == 1, fig.axes[0].get_title()


def test_a_line_lying_on_another_stays_visible(tmp_path):
    a = write_rows(tmp_path, "a", "fst", accuracy_rows([0.0, 0.0, 0.0]))
    b = write_rows(tmp_path, "b", "rl", accuracy_rows([0.0, 0.0, 0.0]))
    fig = report.plot_accuracy(report.load_runs([a, b]), title="Validation accuracy, seed prompt")
    first, second = fig.axes[0].lines[0], fig.axes[0].lines[2]  # each run's running max
    assert first.get_ydata().tolist() == second.get_ydata().tolist()
    assert first.get_linewidth() > second.get_linewidth() + 1  # the later one drawn thin inside the earlier one
    assert first.get_marker() != second.get_marker() and first.get_color() != second.get_color()


def test_a_short_phase_is_still_drawn_wide_enough_to_see(tmp_path):
    rows = [{"step": 0, "cycle": 0, "wall_time": 0.0}] + [
        {"step": s, "cycle": 0, "wall_time": 10.0 * s, "seconds_generate": 8.0, "seconds_score": 0.001,
         "seconds_reflect": 0.0, "seconds_update": 2.0} for s in (1, 2)]
    fig = report.plot_phases(report.load_runs([write_rows(tmp_path, "r", "fst", rows)]))
    widths = [patch.get_width() for patch in fig.axes[0].patches]
    assert widths[0] == pytest.approx(8.0) and widths[1] == pytest.approx(0.015 * 10.001)  # score: 0.001 s
    assert widths[2] == 0.0  # nothing is drawn for a phase that took no time
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == ["generate (8 s)", "score (0.001 s)"]


def timed_rows():
    """Hand-written rows of a run with the fast phase's and evaluation's seconds recorded (docs/RUNDIR.md)."""
    return [{"step": 0, "cycle": 0, "wall_time": 5.0, "seconds_eval": 5.0, "val_accuracy": 0.1},
            {"step": 1, "cycle": 0, "wall_time": 25.0, "fast_phase_s": 8.0, "fast_phase_wait_s": 0.0},
            {"step": 2, "cycle": 0, "wall_time": 32.0, "fast_phase_s": None, "fast_phase_wait_s": None},
            {"step": 3, "cycle": 1, "wall_time": 50.0, "fast_phase_s": 1.0, "fast_phase_wait_s": 6.0,
             "seconds_eval": 2.0, "val_accuracy": 0.4}]


def test_seconds_per_step_split_into_slow_fast_waiting_and_eval_sums_to_the_wall_clock(tmp_path):
    run = report.load_run(write_rows(tmp_path, "overlap", "fst", timed_rows()))
    steps = report.step_times(run)
    assert [s["total"] for s in steps] == [20.0, 7.0, 18.0]  # the wall_time deltas
    assert [(s["slow"], s["fast"], s["waiting"], s["eval"], s["checkpoint"]) for s in steps] == [
        (12.0, 8.0, 0.0, 0.0, None), (7.0, 0.0, 0.0, 0.0, None), (9.0, 1.0, 6.0, 2.0, None)]
    for s in steps:
        assert s["slow"] + s["fast"] + s["waiting"] + s["eval"] == s["total"] and s["measured"]
    (row,) = report._time_rows(report.load_runs([tmp_path / "overlap"]))
    assert row == {"run": "overlap (fst)", "steps": "3", "seconds per step": "15.00", "slow": "9.33 s (62%)",
                   "fast": "3.00 s (20%)", "waiting": "2.00 s (13%)", "eval": "0.67 s (4%)",
                   "checkpoint": "— (in slow)", "split": "measured"}
    page = report.make_report([tmp_path / "overlap"], tmp_path / "out").read_text()
    assert "Where a step's time goes" in page and "<td>9.33 s (62%)</td>" in page
    assert ("| 15.00 | 9.33 s (62%) | 3.00 s (20%) | 2.00 s (13%) | 0.67 s (4%) | — (in slow) | measured |"
            in report.summary_table([tmp_path / "overlap"]))


def test_a_checkpoints_seconds_come_out_of_the_slow_part_of_the_next_cycles_first_step(tmp_path):
    rows = timed_rows()
    rows[3]["seconds_checkpoint"] = 3.0  # the boundary between cycles 0 and 1
    steps = report.step_times(report.load_run(write_rows(tmp_path, "overlap", "fst", rows)))
    assert [(s["slow"], s["checkpoint"]) for s in steps] == [(12.0, 0.0), (7.0, 0.0), (6.0, 3.0)]
    (row,) = report._time_rows(report.load_runs([tmp_path / "overlap"]))
    assert row["slow"] == "8.33 s (56%)" and row["checkpoint"] == "1.00 s (7%)"


def test_an_older_run_gets_its_fast_phase_estimated_from_its_first_steps(runs):
    fst, rl = report.load_runs(list(runs))
    # write_fake_run: 10 s per step; 2 s generation + 0.5 s scoring every step, 3 s reflection on a cycle's first
    # step (1, 3, 5): the fast phase is the reflection plus the generation beyond a typical step's (none here)
    steps = report.step_times(fst)
    assert [s["fast"] for s in steps] == [3.0, 0.0, 3.0, 0.0, 3.0, 0.0]
    assert all(s["slow"] + s["fast"] == s["total"] == 10.0 and s["eval"] is None and not s["measured"] for s in steps)
    assert all(s["fast"] == 0.0 for s in report.step_times(rl))  # RL has no fast phase
    fst_row, rl_row = report._time_rows([fst, rl])
    assert (fst_row["slow"], fst_row["fast"], fst_row["eval"]) == ("8.50 s (85%)", "1.50 s (15%)", "— (in slow)")
    assert fst_row["split"].startswith("estimated")


def test_a_resumed_runs_clock_is_added_up(tmp_path):
    rows = [{"step": 0, "cycle": 0, "wall_time": 1.0, "val_accuracy": 0.1},
            {"step": 1, "cycle": 0, "wall_time": 11.0}, {"step": 2, "cycle": 0, "wall_time": 21.0},
            {"step": 3, "cycle": 1, "wall_time": 9.0, "val_accuracy": 0.5}]  # resumed: the clock restarted
    run = report.load_run(write_rows(tmp_path, "resumed", "rl", rows))
    assert report.elapsed(run) == {0: 1.0, 1: 11.0, 2: 21.0, 3: 30.0}
    fig = report.plot_accuracy([run], against="wall clock")
    assert fig.axes[0].lines[1].get_xdata().tolist() == pytest.approx([1 / 60, 30 / 60])
    assert fig.axes[0].get_xlabel() == "wall clock, minutes"
    assert "| 0.5 min |" in report.summary_table([tmp_path / "resumed"])


def test_a_resumed_runs_seconds_axis_adds_its_clocks_up(tmp_path):
    """The experiments' wall-clock axis (claims 1-3 per second) counts a resumed run's time before the resume."""
    from fastslow.experiments.common import axis_curve

    rows = [{"step": 0, "cycle": 0, "wall_time": 2.0, "val_accuracy": 0.1},
            {"step": 1, "cycle": 0, "wall_time": 12.0, "val_accuracy": 0.2},
            {"step": 2, "cycle": 1, "wall_time": 5.0, "val_accuracy": 0.3}]  # resumed after step 1
    seconds, accuracy = axis_curve(write_rows(tmp_path, "resumed", "fst", rows), "seconds")
    assert seconds.tolist() == [0.0, 10.0, 15.0] and accuracy.tolist() == [0.1, 0.2, 0.3]
