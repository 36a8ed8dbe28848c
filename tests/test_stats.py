import math

import numpy as np
import pytest

from fastslow import stats
from fastslow.errors import FastSlowError


def test_running_max_keeps_the_best_so_far_and_skips_nan():
    assert stats.running_max([0.1, 0.3, 0.2, np.nan, 0.5, 0.4]).tolist() == [0.1, 0.3, 0.3, 0.3, 0.5, 0.5]


def test_samples_to_reach_interpolates_between_the_bracketing_points():
    samples = [0, 100, 200, 300]
    accuracy = [0.10, 0.20, 0.40, 0.30]
    assert stats.samples_to_reach(samples, accuracy, 0.30) == pytest.approx(150.0)
    assert stats.samples_to_reach(samples, accuracy, 0.40) == pytest.approx(200.0)
    assert stats.samples_to_reach(samples, accuracy, 0.05) == 0.0  # already there at the start
    assert stats.samples_to_reach(samples, accuracy, 0.41) is None


def test_samples_to_reach_uses_the_running_max_not_a_later_dip():
    # raw accuracy dips to 0.1 before rising; the running max stays at 0.3, so 0.35 lies between 300 and 400
    samples = [0, 100, 200, 300, 400]
    accuracy = [0.0, 0.3, 0.1, 0.3, 0.4]
    assert stats.samples_to_reach(samples, accuracy, 0.35) == pytest.approx(350.0)
    assert stats.samples_to_reach(samples, stats.running_max(accuracy), 0.35) == pytest.approx(350.0)


def test_samples_to_reach_rejects_mismatched_curves():
    with pytest.raises(FastSlowError, match="equal length"):
        stats.samples_to_reach([0, 1, 2], [0.1, 0.2], 0.1)


def test_sample_efficiency_is_rl_samples_over_fst_samples_to_rl_peak():
    rl = ([0, 100, 200, 300], [0.1, 0.2, 0.25, 0.3])  # peak 0.3 at 300 samples
    fst = ([0, 100, 200, 300], [0.1, 0.5, 0.5, 0.5])  # reaches 0.3 half-way to 100 -> 50 samples
    assert stats.sample_efficiency(fst, rl) == pytest.approx(300 / 50)
    slower = ([0, 100, 200, 300], [0.1, 0.1, 0.1, 0.2])
    assert stats.sample_efficiency(slower, rl) is None
    flat_rl = ([0, 100], [0.3, 0.2])  # RL never beats its start: no ratio
    assert stats.sample_efficiency(fst, flat_rl) is None


def test_sample_efficiency_over_seeds_pairs_runs_and_counts_unreached_seeds():
    rl = ([0, 100, 200], [0.0, 0.1, 0.2])  # peak 0.2 at 200
    fst_2x = ([0, 100, 200], [0.0, 0.2, 0.3])  # 100 -> 2.0x
    fst_4x = ([0, 100, 200], [0.0, 0.4, 0.4])  # 50 -> 4.0x
    fst_never = ([0, 100, 200], [0.0, 0.1, 0.1])
    spread = stats.sample_efficiency_over_seeds([fst_2x, fst_4x, fst_never], [rl, rl, rl])
    assert spread.mean == pytest.approx(3.0)
    assert (spread.min, spread.max, spread.n, spread.dropped) == (2.0, 4.0, 2, 1)
    with pytest.raises(FastSlowError, match="2 FST curves but 1 RL"):
        stats.sample_efficiency_over_seeds([fst_2x, fst_4x], [rl])


def test_summarize_gives_mean_std_and_a_t_interval():
    spread = stats.summarize([1.0, 2.0, 3.0, 4.0])
    assert spread.mean == pytest.approx(2.5)
    assert spread.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    half = 3.182446305284263 * spread.std / 2  # t(0.975, df=3) * std / sqrt(4)
    assert (spread.ci_low, spread.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    one = stats.summarize([0.7, None])
    assert (one.mean, one.n, one.dropped) == (0.7, 1, 1) and math.isnan(one.std)
    assert str(stats.summarize([])) == "n/a"


@pytest.mark.parametrize("A, B, C_mid, R0", [(0.474, 1.5, 80.0, 0.19), (0.25, 2.0, 150.0, 0.02), (0.9, 0.8, 40.0, 0.1)])
def test_fit_sigmoid_recovers_known_parameters_from_noisy_curves(A, B, C_mid, R0):
    rng = np.random.default_rng(0)
    steps = np.arange(0, 401, 10.0)
    reward = stats.sigmoid(steps, A, B, C_mid, R0) + rng.normal(0, 0.005, len(steps))
    fit = stats.fit_sigmoid(steps, reward, r0=R0)
    assert fit.A == pytest.approx(A, abs=0.02)
    assert fit.B == pytest.approx(B, rel=0.15)
    assert fit.C_mid == pytest.approx(C_mid, rel=0.1)
    assert fit.A_low < fit.A < fit.A_high and fit.A_high - fit.A_low < 0.05
    assert np.abs(fit(steps) - reward).max() < 0.03


def test_fit_sigmoid_takes_r0_from_the_first_point_and_keeps_a_rate_below_one():
    steps = np.arange(0, 200, 10.0)
    reward = stats.sigmoid(steps, 0.98, 3.0, 60.0, 0.2)
    fit = stats.fit_sigmoid(steps, reward)
    assert fit.R0 == pytest.approx(0.2)
    assert fit.A <= 1.0 and fit.A == pytest.approx(0.98, abs=0.01)


def test_fit_sigmoid_rejects_too_few_points():
    with pytest.raises(FastSlowError, match="at least 4 points"):
        stats.fit_sigmoid([0, 1, 2], [0.1, 0.2, 0.3])


def test_asymptote_over_seeds_summarises_each_seeds_fit():
    steps = np.arange(0, 301, 10.0)
    curves = [(steps, stats.sigmoid(steps, a, 1.5, 60.0, 0.1)) for a in (0.40, 0.50)]
    spread = stats.asymptote_over_seeds(curves)
    assert spread.mean == pytest.approx(0.45, abs=0.01) and spread.n == 2


def test_kl_when_reaching_interpolates_kl_at_the_first_crossing():
    accuracy = [0.1, 0.2, 0.4]
    kl = [0.0, 0.02, 0.06]
    assert stats.kl_when_reaching(accuracy, kl, 0.3) == pytest.approx(0.04)
    assert stats.kl_when_reaching(accuracy, kl, 0.5) is None


def test_kl_at_matched_accuracy_compares_runs_at_common_levels():
    fst = ([0.1, 0.2, 0.3, 0.5], [0.0, 0.01, 0.02, 0.04])  # KL 0.1 per unit of accuracy
    rl = ([0.1, 0.2, 0.3, 0.4], [0.0, 0.03, 0.06, 0.09])  # KL 0.3 per unit of accuracy
    matched = stats.kl_at_matched_accuracy(fst, rl, n_levels=3)
    assert matched.levels == pytest.approx([0.2, 0.3, 0.4])  # above both starts, up to RL's lower peak
    assert matched.kl_a == pytest.approx([0.01, 0.02, 0.03])
    assert matched.kl_b == pytest.approx([0.03, 0.06, 0.09])
    assert matched.reduction == pytest.approx([2 / 3] * 3)
    assert matched.max_reduction == pytest.approx(2 / 3)
    beyond = stats.kl_at_matched_accuracy(fst, rl, levels=[0.45])
    assert np.isnan(beyond.kl_b[0]) and math.isnan(beyond.max_reduction)


def test_normalise_stages_divides_by_each_stages_peak():
    steps = [0, 100, 200, 300, 400, 500, 600]
    accuracy = [0.0, 0.4, 0.5, 0.1, 0.2, 0.3, 0.6]
    # steps <= 200 first task, 201-400 second, the rest third
    normalised = stats.normalise_stages(accuracy, [200, 400], steps=steps)
    assert normalised == pytest.approx([0.0, 0.8, 1.0, 0.5, 1.0, 0.5, 1.0])
    assert stats.stage_peaks(accuracy, [200, 400], steps=steps) == pytest.approx([0.5, 0.2, 0.6])


def test_normalise_stages_against_a_shared_reference_shows_a_stalled_run():
    stalled = stats.normalise_stages([0.4, 0.5, 0.05, 0.1], [1], peaks=[0.5, 0.4])
    assert stalled == pytest.approx([0.8, 1.0, 0.125, 0.25])
    with pytest.raises(FastSlowError, match="one per stage"):
        stats.normalise_stages([0.4, 0.5, 0.1], [1], peaks=[0.5])
    with pytest.raises(FastSlowError, match="increasing"):
        stats.normalise_stages([0.4, 0.5, 0.1], [2, 1])
    assert np.isnan(stats.normalise_stages([0.0, 0.0, 0.3], [1])[0])  # a stage never solved has no scale


def test_steps_until_nonzero_finds_the_first_rewarded_step():
    steps = [0, 10, 20, 30, 40]
    assert stats.steps_until_nonzero(steps, [0, 0, 0, 0.1, 0.2]) == 30.0
    assert stats.steps_until_nonzero(steps, [0, 0.01, 0, 0.1, 0.2], threshold=0.05) == 30.0
    assert stats.steps_until_nonzero(steps, [0, 0, 0, 0, 0]) is None


def test_starved_cycles_flag_cycles_that_trained_on_almost_no_within_prompt_signal():
    from fastslow.stats import starvation_warning, starved_cycles

    rows = [{"step": 0, "cycle": 0, "kept_problems": None, "within_prompt_signal": None},  # evaluation only
            {"step": 1, "cycle": 0, "kept_problems": 5, "within_prompt_signal": 0.4},
            {"step": 2, "cycle": 0, "kept_problems": 0, "within_prompt_signal": None},  # nothing kept: counts 0
            {"step": 3, "cycle": 1, "kept_problems": 9, "within_prompt_signal": 0.0},
            {"step": 4, "cycle": 1, "kept_problems": 0, "within_prompt_signal": None},
            {"step": 5, "cycle": 2, "kept_problems": None, "within_prompt_signal": None}]  # gepa mode: no RL step
    assert starved_cycles(rows) == {1: 0.0}  # cycle 0 averages 0.2
    assert "cycle(s) 1 (0%)" in starvation_warning(starved_cycles(rows))
    assert starvation_warning({}) is None
    assert starved_cycles([{"step": 1, "cycle": 0, "kept_problems": 3}]) == {}  # a run from before the metric


def test_a_starved_cycle_is_warned_about_only_while_accuracy_has_room():
    from fastslow.stats import HIGH_ACCURACY, starved_cycles

    def cycle(accuracy=None, reward=0.5):  # one certain cycle: rewards differ between members, never within one
        return [{"step": 0, "cycle": 0, "kept_problems": None, "within_prompt_signal": None, "val_accuracy": 0.1},
                {"step": 1, "cycle": 0, "kept_problems": 8, "within_prompt_signal": 0.0, "reward_mean": reward},
                {"step": 2, "cycle": 0, "kept_problems": 8, "within_prompt_signal": 0.02, "reward_mean": reward,
                 "val_accuracy": accuracy}]

    assert starved_cycles(cycle(accuracy=0.95)) == {}  # certain and right: nothing for the weights to learn
    assert starved_cycles(cycle(accuracy=HIGH_ACCURACY)) == {}
    assert starved_cycles(cycle(accuracy=0.6)) == {0: pytest.approx(0.01)}  # certain and often wrong: warn
    # the best evaluation so far counts: one noisy evaluation below 0.9 after 0.97 does not flip the verdict
    assert starved_cycles([*cycle(accuracy=0.97), {"step": 3, "cycle": 1, "kept_problems": 8, "within_prompt_signal": 0.0,
                                                  "reward_mean": 0.5, "val_accuracy": 0.89}]) == {}
    # no evaluation in the cycle's rows beyond step 0's: that one counts (here the base model's 0.1)
    assert starved_cycles(cycle(reward=0.97)) == {0: pytest.approx(0.01)}
    # no evaluation at all (the console sees one cycle's rows): the cycle's training reward stands in
    no_eval = [{**row, "val_accuracy": None} for row in cycle(reward=0.97)]
    assert starved_cycles(no_eval) == {}
    assert starved_cycles([{**row, "reward_mean": 0.4} for row in no_eval]) == {0: pytest.approx(0.01)}


def test_value_at_is_the_last_measurement_within_a_budget():
    rollouts, accuracy = [0, 100, 250, 400], [0.1, 0.3, 0.2, 0.6]
    assert stats.value_at(rollouts, accuracy, 249) == 0.3 and stats.value_at(rollouts, accuracy, 250) == 0.2
    assert stats.value_at(rollouts, stats.running_max(accuracy), 250) == 0.3  # the best so far
    assert stats.value_at(rollouts, accuracy, 1000) == 0.6
    assert stats.value_at([5, 10], [0.1, 0.2], 4) is None  # nothing measured by then


def test_late_gain_is_how_far_the_running_peak_rose_over_the_last_third_of_the_budget():
    samples = [0, 100, 200, 300, 400, 500, 600]
    rising = [0.1, 0.3, 0.4, 0.5, 0.5, 0.55, 0.6]  # best 0.5 by 400 (two thirds of 600), 0.6 at the end
    assert stats.late_gain(samples, rising) == pytest.approx(0.1)
    plateaued = [0.1, 0.5, 0.6, 0.55, 0.6, 0.58, 0.59]  # a later dip or tie is not a rise
    assert stats.late_gain(samples, plateaued) == 0.0
    assert stats.late_gain(samples, rising, last=0.5) == pytest.approx(0.1)  # best 0.5 at 300 too
    assert stats.late_gain([0, 300], [0.2, 0.7]) == pytest.approx(0.5)  # nothing measured in between: all of it


def test_late_trend_fits_a_line_through_the_raw_curve_over_the_last_third():
    samples = np.arange(0, 301, 10.0)  # the last third: 200..300, 11 points
    rising = 0.2 + samples / 1000  # a straight line: rises 0.1 over the last third, no scatter
    trend = stats.late_trend(samples, rising)
    assert (trend.rise, trend.points) == (pytest.approx(0.1), 11) and trend.stderr == pytest.approx(0, abs=1e-9)
    assert trend.rising
    # flat but noisy: a new running peak late on (0.62 at the end) yet no trend beyond its standard error
    flat = np.where(np.arange(len(samples)) % 2 == 0, 0.6, 0.5)
    flat[-1] = 0.62
    assert stats.late_gain(samples, flat) > 0
    trend = stats.late_trend(samples, flat)
    assert not trend.rising and trend.stderr > 0 and abs(trend.rise) < 2 * trend.stderr
    assert stats.late_trend([0, 100, 200, 300], [0.1, 0.2, 0.3, 0.4]) is None  # two points in the last third
