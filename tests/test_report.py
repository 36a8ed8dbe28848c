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
    assert pngs == ["entropy.png", "kl_vs_accuracy.png", "reward.png", "seconds_per_phase.png", "val_accuracy.png"]
    for name in pngs:
        with Image.open(tmp_path / "out" / name) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 300
        assert f"href='{name}'" in text
    assert text.count("src='data:image/png;base64,") == len(pngs)
    for label in ("demo-fst (fst)", "demo-rl (rl)"):
        assert label in text
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
    fst_row = next(line for line in lines if line.startswith("| demo-fst (fst) | 6 | 48 |"))
    assert "| 96 / 120 | 0.400 | 0.500 | 0.0300 | 0.450 | 1.0 min |" in fst_row
    # RL peaks at 0.3 after 48 samples; FST first reaches 0.3 at 16 samples -> 3.00x
    comparison = next(line for line in lines if line.startswith("| demo-fst (fst) | demo-rl (rl) |"))
    assert "| 0.300 | 48 | 16 | 3.00× |" in comparison
    # at accuracy 0.3 RL has KL 0.09 and FST 0.01: 1 - 0.01/0.09 = 89% less
    assert comparison.endswith("| 89% |")


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
    assert "prompts-only (gepa)" in page.read_text()
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
    run = write_fake_run(tmp_path, "locked", "fst", val_accuracy=[0.1, None, 0.3, None, 0.3])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[1:]:  # cycle 0 (steps 1-2) learns within prompts, cycle 1 (steps 3-4) only between them
        locked = row["cycle"] == 1
        row.update(kept_problems=5, grad_norm=1e-4 if locked else 0.5, within_prompt_signal=0.0 if locked else 0.6,
                   within_prompt_variance_share=0.0 if locked else 0.3,
                   member_entropy={"seed": 0.3, "c0-1": 0.001}, member_signal={"seed": 0.1, "c0-1": 0.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    page = report.make_report([run], tmp_path / "out").read_text()
    for plot in ("rl_signal.png", "member_entropy.png", "grad_norm.png"):
        assert (tmp_path / "out" / plot).is_file()
    assert "cycle(s) 1 (0%) trained on almost no within-prompt signal" in page
    assert "cycle(s) 0" not in page
