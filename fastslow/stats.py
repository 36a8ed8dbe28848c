"""Statistics behind the paper's claims (arXiv 2605.12484), as pure functions of curves.

A curve is two equal-length sequences in training order, e.g. (samples, val_accuracy) or (accuracy, kl).
Missing measurements are the caller's business: pass only the points that were measured.

- sample efficiency: samples RL needs to reach its running-peak accuracy / samples FST needs to reach it (or any
  other budget on the x axis: rollouts, seconds), and what a run had at a given budget;
- asymptote: the ScaleRL sigmoid R - R0 = (A - R0) / (1 + (C_mid / C)^B) fitted over training;
- staying near the base model: KL(pi_train || pi_base) of each run at matched validation accuracy;
- continual learning: per-stage accuracy normalised to the stage's peak;
- zero-reward start: the first step whose reward leaves zero;
- mean and spread over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special
from scipy import stats as scipy_stats

from fastslow.errors import FastSlowError

Curve = tuple[Sequence[float], Sequence[float]]


def _as_curve(x: Sequence[float], y: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise FastSlowError(f"{what}: expected two 1-D sequences of equal length, got shapes {x.shape} and {y.shape}")
    if len(x) == 0:
        raise FastSlowError(f"{what}: the curve has no points")
    return x, y


# ---------------------------------------------------------------- mean and spread over seeds


@dataclass(frozen=True)
class Spread:
    """Mean and spread of one measurement over seeds; `ci_low`/`ci_high` is a Student-t interval of the mean."""

    mean: float
    std: float  # sample standard deviation (ddof=1); nan for a single value
    min: float
    max: float
    n: int  # values used
    ci_low: float
    ci_high: float
    dropped: int = 0  # values left out because they were None or not finite (e.g. a target never reached)

    def __str__(self) -> str:
        if self.n == 0:
            return "n/a"
        text = f"{self.mean:.3g}" if self.n == 1 else f"{self.mean:.3g} ± {self.std:.2g} (n={self.n})"
        return text + (f", {self.dropped} n/a" if self.dropped else "")


def summarize(values: Sequence[float | None], confidence: float = 0.95) -> Spread:
    """Mean, standard deviation, min/max and a t-interval of the mean; None and non-finite values are dropped
    (and counted in `dropped`), so a seed that never reached a target does not count as a number."""
    if not 0 < confidence < 1:
        raise FastSlowError(f"confidence: expected a number in (0, 1), got {confidence}")
    kept = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    dropped = len(values) - len(kept)
    n = len(kept)
    if n == 0:
        nan = float("nan")
        return Spread(nan, nan, nan, nan, 0, nan, nan, dropped)
    mean = float(kept.mean())
    if n == 1:
        std, low, high = float("nan"), float("nan"), float("nan")
    else:
        std = float(kept.std(ddof=1))
        half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
        low, high = mean - half, mean + half
    return Spread(mean, std, float(kept.min()), float(kept.max()), n, low, high, dropped)


# ---------------------------------------------------------------- reaching a target


def running_max(values: Sequence[float]) -> np.ndarray:
    """Best value so far at each point (the paper plots validation accuracy this way); NaNs are skipped."""
    return np.fmax.accumulate(np.asarray(values, dtype=float))


def _first_crossing(values: np.ndarray, target: float) -> float | None:
    """Fractional index at which the running max of `values` first reaches `target`, linearly interpolated
    between the two points that bracket it; None if it never does."""
    best = running_max(values)
    reached = np.flatnonzero(best >= target)
    if len(reached) == 0:
        return None
    i = int(reached[0])
    if i == 0:
        return 0.0
    below, above = best[i - 1], best[i]
    return i - 1 + (target - below) / (above - below)


def _at_fraction(x: np.ndarray, where: float) -> float:
    i = int(math.floor(where))
    if i >= len(x) - 1:
        return float(x[-1])
    return float(x[i] + (where - i) * (x[i + 1] - x[i]))


def samples_to_reach(samples: Sequence[float], accuracy: Sequence[float], target: float) -> float | None:
    """Training samples at which the running max of `accuracy` first reaches `target`, linearly interpolated
    between the two measurements that bracket it; None if it never does.

    Raw and running-max accuracy give the same answer: the curve is made monotone first."""
    x, y = _as_curve(samples, accuracy, "samples_to_reach")
    where = _first_crossing(y, target)
    return None if where is None else _at_fraction(x, where)


def sample_efficiency(fst_curve: Curve, rl_curve: Curve) -> float | None:
    """Samples RL needs to reach its peak accuracy / samples FST needs to reach that same accuracy.

    Each curve is (samples, val_accuracy). Above 1 means FST gets there with fewer samples (paper: 3.0x CodeIO,
    1.4x Math, 3.0x HoVer-hard). None when FST never reaches RL's peak or RL never improves on its start;
    inf when FST is already there at the first measurement."""
    rl_samples, rl_accuracy = _as_curve(*rl_curve, "sample_efficiency: rl_curve")
    peak = float(np.nanmax(rl_accuracy))
    rl_needed = samples_to_reach(rl_samples, rl_accuracy, peak)
    fst_needed = samples_to_reach(*fst_curve, peak)
    if fst_needed is None or not rl_needed:
        return None
    return math.inf if fst_needed == 0 else rl_needed / fst_needed


def sample_efficiency_over_seeds(fst_curves: Sequence[Curve], rl_curves: Sequence[Curve]) -> Spread:
    """`sample_efficiency` of each seed's FST run against the same seed's RL run, summarised over seeds.
    Seeds where the ratio is undefined (FST never reached RL's peak) are counted in `dropped`."""
    if len(fst_curves) != len(rl_curves):
        raise FastSlowError(
            f"sample_efficiency_over_seeds: {len(fst_curves)} FST curves but {len(rl_curves)} RL curves")
    return summarize([sample_efficiency(f, r) for f, r in zip(fst_curves, rl_curves)])


def value_at(x: Sequence[float], y: Sequence[float], at: float) -> float | None:
    """The last value measured at or before `at` on the x axis: what a run had once it had spent `at` (a budget in
    problems, rollouts or seconds); None when nothing was measured by then."""
    x, y = _as_curve(x, y, "value_at")
    before = np.flatnonzero(x <= at)
    return None if len(before) == 0 else float(y[before[-1]])


def _last_part_start(x: np.ndarray, last: float) -> float:
    """Where the last `last` of the budget on `x` begins (counted back from the end, so that a point on the boundary
    is not lost to rounding)."""
    return float(x[-1] - last * (x[-1] - x[0]))


def late_gain(x: Sequence[float], y: Sequence[float], last: float = 1 / 3) -> float:
    """How much the running max of `y` rose over the last `last` of the budget on `x`: ~0 once a run has plateaued,
    above the evaluation's noise while it still rises (then a comparison with its peak is one with a moving target)."""
    x, y = _as_curve(x, y, "late_gain")
    best = running_max(y)
    before = value_at(x, best, _last_part_start(x, last))
    return float(best[-1] - before)


@dataclass(frozen=True)
class Trend:
    """A least-squares line through the raw curve over the last part of the budget: how far it rose over that span
    (`rise`) and the standard error of that rise. A running peak creeps up on noise alone; a line through the raw
    points does not, so `rising` (rise above two standard errors) separates a run still learning from one on a
    plateau with a noisy evaluation."""

    rise: float
    stderr: float
    points: int

    @property
    def rising(self) -> bool:
        return self.rise > 2 * self.stderr


def late_trend(x: Sequence[float], y: Sequence[float], last: float = 1 / 3) -> Trend | None:
    """The trend of `y` over the last `last` of the budget on `x`; None with fewer than three points there."""
    x, y = _as_curve(x, y, "late_trend")
    keep = x >= _last_part_start(x, last)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0:
        return None
    fit = scipy_stats.linregress(x, y)
    span = float(x[-1] - x[0])
    return Trend(rise=float(fit.slope) * span, stderr=float(fit.stderr) * span, points=len(x))


def steps_until_nonzero(steps: Sequence[float], reward: Sequence[float], threshold: float = 0.0) -> float | None:
    """First step whose reward exceeds `threshold` (zero-reward start: FST ~step 50, RL ~step 250); None if none."""
    x, y = _as_curve(steps, reward, "steps_until_nonzero")
    above = np.flatnonzero(y > threshold)
    return None if len(above) == 0 else float(x[above[0]])


# ---------------------------------------------------------------- asymptote (ScaleRL sigmoid)


@dataclass(frozen=True)
class SigmoidFit:
    """R(C) = R0 + (A - R0) / (1 + (C_mid / C)^B): A the asymptote, B the steepness, C_mid the midpoint."""

    A: float
    B: float
    C_mid: float
    R0: float
    A_low: float  # t-interval of A from the fit's covariance
    A_high: float

    def __call__(self, c: Sequence[float]) -> np.ndarray:
        return sigmoid(np.asarray(c, dtype=float), self.A, self.B, self.C_mid, self.R0)


def sigmoid(c: np.ndarray, A: float, B: float, C_mid: float, R0: float) -> np.ndarray:
    # 1 / (1 + (C_mid/C)^B) written as expit(B log(C/C_mid)): no overflow, and exactly R0 at C = 0
    with np.errstate(divide="ignore"):
        z = B * np.log(np.asarray(c, dtype=float) / C_mid)
    return R0 + (A - R0) * special.expit(z)


def fit_sigmoid(
    steps: Sequence[float],
    reward: Sequence[float],
    r0: float | None = None,
    a_max: float | None = None,
    confidence: float = 0.95,
) -> SigmoidFit:
    """Fit the ScaleRL curve R - R0 = (A - R0) / (1 + (C_mid / C)^B) to reward (or accuracy) over steps.

    As in ScaleRL, R0 is held fixed: the reward at the first point unless `r0` is given. A is bounded by
    `a_max`, by default 1.0 when every reward lies in [0, 1] (a rate), else unbounded. The interval on A
    comes from the fit's covariance; across seeds, use `asymptote_over_seeds`."""
    c, r = _as_curve(steps, reward, "fit_sigmoid")
    order = np.argsort(c)
    c, r = c[order], r[order]
    if np.any(c < 0):
        raise FastSlowError("fit_sigmoid: steps must be >= 0")
    if len(c) < 4:
        raise FastSlowError(f"fit_sigmoid: need at least 4 points to fit A, B and C_mid, got {len(c)}")
    R0 = float(r[0]) if r0 is None else float(r0)
    if a_max is None:
        a_max = 1.0 if r.min() >= 0 and r.max() <= 1 else math.inf
    c_pos = c[c > 0]
    if len(c_pos) == 0:
        raise FastSlowError("fit_sigmoid: steps must include positive values")
    lower = [min(R0, float(r.min())) - 1e-9, 1e-3, float(c_pos.min()) * 1e-3]
    upper = [a_max, 20.0, float(c.max()) * 1e3]
    if upper[0] <= lower[0]:
        raise FastSlowError(f"fit_sigmoid: a_max ({a_max}) must exceed the lowest reward and R0 ({lower[0]:.4g})")
    # start from the data: A a little above the best reward, C_mid where the curve is half-way there, B = 1
    best = float(r.max())
    a0 = float(np.clip(best + 0.1 * (best - R0) + 1e-6, lower[0] + 1e-9, upper[0]))
    c_mid0 = float(c_pos[np.argmax(r[c > 0] >= R0 + (best - R0) / 2)])

    def model(c, A, B, C_mid):
        return sigmoid(c, A, B, C_mid, R0)

    try:
        params, cov = optimize.curve_fit(model, c, r, p0=[a0, 1.0, c_mid0], bounds=(lower, upper), maxfev=20000)
    except RuntimeError as exc:
        raise FastSlowError(f"fit_sigmoid: the fit did not converge ({exc})") from None
    A, B, C_mid = (float(p) for p in params)
    a_err = float(np.sqrt(cov[0, 0])) if np.isfinite(cov[0, 0]) else math.inf
    half_width = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=max(len(c) - 3, 1))) * a_err
    return SigmoidFit(A, B, C_mid, R0, A - half_width, A + half_width)


def asymptote_over_seeds(curves: Sequence[Curve], **fit_kwargs) -> Spread:
    """The fitted asymptote A of each seed's (steps, reward) curve, summarised over seeds."""
    return summarize([fit_sigmoid(*curve, **fit_kwargs).A for curve in curves])


# ---------------------------------------------------------------- KL at matched accuracy


@dataclass(frozen=True)
class MatchedKL:
    """KL of two runs at the same accuracy levels; `reduction` = 1 - KL_a / KL_b (0.7: run a has 70% less KL)."""

    levels: np.ndarray
    kl_a: np.ndarray
    kl_b: np.ndarray
    reduction: np.ndarray

    @property
    def max_reduction(self) -> float:
        """The paper's "up to X% less KL at matched reward"."""
        finite = self.reduction[np.isfinite(self.reduction)]
        return float(finite.max()) if len(finite) else float("nan")


def kl_when_reaching(accuracy: Sequence[float], kl: Sequence[float], level: float) -> float | None:
    """KL of the policy at the moment its (running-max) accuracy first reaches `level`, interpolated between
    the two checkpoints that bracket it; None if it never does. Points are checkpoints in training order."""
    acc, kl = _as_curve(accuracy, kl, "kl_when_reaching")
    where = _first_crossing(acc, level)
    return None if where is None else _at_fraction(kl, where)


def kl_at_matched_accuracy(curve_a: Curve, curve_b: Curve, levels: Sequence[float] | None = None,
                           n_levels: int = 10) -> MatchedKL:
    """KL(pi_train || pi_base) of runs a (e.g. FST) and b (e.g. RL) at common validation-accuracy levels.

    Each curve is (val_accuracy, kl) per checkpoint in training order. Default levels: `n_levels` evenly spaced
    above the higher of the two starting accuracies up to the lower of the two peaks (both runs reach them)."""
    acc_a, kl_a = _as_curve(*curve_a, "kl_at_matched_accuracy: curve_a")
    acc_b, kl_b = _as_curve(*curve_b, "kl_at_matched_accuracy: curve_b")
    if levels is None:
        start = max(acc_a[0], acc_b[0])
        peak = min(np.nanmax(acc_a), np.nanmax(acc_b))
        levels = np.linspace(start, peak, n_levels + 1)[1:] if peak > start else np.array([])
    levels = np.asarray(levels, dtype=float)

    def kls(acc, kl):
        return np.array([v if (v := kl_when_reaching(acc, kl, level)) is not None else np.nan for level in levels])

    at_a, at_b = kls(acc_a, kl_a), kls(acc_b, kl_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        reduction = np.where(at_b > 0, 1 - at_a / at_b, np.nan)
    return MatchedKL(levels, at_a, at_b, reduction)


# ---------------------------------------------------------------- continual learning


def _stage_index(steps: np.ndarray, stage_boundaries: Sequence[float]) -> np.ndarray:
    bounds = np.asarray(stage_boundaries, dtype=float)
    if np.any(np.diff(bounds) <= 0):
        raise FastSlowError(f"stage_boundaries: expected increasing steps, got {list(stage_boundaries)}")
    # a boundary b ends a stage: steps <= b belong to it, steps > b to the next
    return np.searchsorted(bounds, steps, side="left")


def stage_peaks(accuracy: Sequence[float], stage_boundaries: Sequence[float],
                steps: Sequence[float] | None = None) -> np.ndarray:
    """Best accuracy within each stage (nan for a stage without points). Take the element-wise max over runs
    to normalise every run against the same reference."""
    acc = np.asarray(accuracy, dtype=float)
    x = np.arange(len(acc), dtype=float) if steps is None else _as_curve(steps, acc, "stage_peaks")[0]
    stage = _stage_index(x, stage_boundaries)
    peaks = np.full(len(stage_boundaries) + 1, np.nan)
    for s in range(len(peaks)):
        in_stage = acc[stage == s]
        if len(in_stage) and not np.all(np.isnan(in_stage)):
            peaks[s] = np.nanmax(in_stage)
    return peaks


def normalise_stages(accuracy: Sequence[float], stage_boundaries: Sequence[float],
                     steps: Sequence[float] | None = None, peaks: Sequence[float] | None = None) -> np.ndarray:
    """Accuracy divided by its stage's peak, for a run whose task switches at `stage_boundaries`.

    `stage_boundaries` are the last steps of each stage but the final one (e.g. [200, 400]: steps 1-200 on the
    first task, 201-400 on the second, the rest on the third); without `steps`, they are indices into `accuracy`.
    `peaks` (one per stage) defaults to this run's own per-stage peaks; pass a shared reference (e.g. the max of
    `stage_peaks` over the compared runs) so that a run that stalls stays visibly below 1. A zero peak gives nan."""
    acc = np.asarray(accuracy, dtype=float)
    x = np.arange(len(acc), dtype=float) if steps is None else _as_curve(steps, acc, "normalise_stages")[0]
    if peaks is None:
        peaks = stage_peaks(acc, stage_boundaries, x)
    peaks = np.asarray(peaks, dtype=float)
    if len(peaks) != len(stage_boundaries) + 1:
        raise FastSlowError(f"peaks: expected {len(stage_boundaries) + 1} values (one per stage), got {len(peaks)}")
    reference = peaks[_stage_index(x, stage_boundaries)]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(reference > 0, acc / reference, np.nan)


# ---------------------------------------------------------------- a slow phase without signal

STARVED_SIGNAL = 0.05  # a cycle whose kept problems vary within a member's rollouts this rarely teaches the weights ~nothing
HIGH_ACCURACY = 0.9  # ... which matters only while accuracy has room to grow


def starved_cycles(rows: Sequence[dict], threshold: float = STARVED_SIGNAL,
                   high_accuracy: float = HIGH_ACCURACY) -> dict[int, float]:
    """Cycles whose RL steps trained on (almost) no within-prompt signal while accuracy still had room: cycle -> the
    mean over its steps of `within_prompt_signal` (a step that kept no problem counts 0). Under such a cycle's prompts
    the policy answers each problem the same way every time; rewards may still differ between members, but the
    gradient of a near-certain completion's log-probability is near zero, so the weights barely move.

    That is worth a warning only where the answers are not already right: a cycle counts if its accuracy — the best
    `val_accuracy` measured up to its last step (the deployed prompt's, a running best as the report plots it, so
    that one noisy evaluation does not flip the verdict), or where none was, the mean `reward_mean` of its steps — is
    below `high_accuracy`. A policy that is near-certain and right has little left for the weights to learn (RL's
    own groups go silent the same way once it solves a problem every time)."""
    by_cycle: dict[int, list[float]] = {}
    rewards: dict[int, list[float]] = {}
    last_step: dict[int, int] = {}
    for row in rows:
        rl_step = row.get("kept_problems") is not None and row.get("mode") != "fst-distill"  # (no reward trained on)
        if row.get("step") and "within_prompt_signal" in row and rl_step:
            by_cycle.setdefault(row["cycle"], []).append(row["within_prompt_signal"] or 0.0)
            if row.get("reward_mean") is not None:
                rewards.setdefault(row["cycle"], []).append(row["reward_mean"])
        if row.get("cycle") is not None:
            last_step[row["cycle"]] = max(last_step.get(row["cycle"], 0), row.get("step") or 0)

    def accuracy(cycle: int) -> float | None:
        measured = [row["val_accuracy"] for row in rows
                    if row.get("val_accuracy") is not None and (row.get("step") or 0) <= last_step[cycle]]
        if measured:
            return max(measured)
        return sum(rewards[cycle]) / len(rewards[cycle]) if rewards.get(cycle) else None

    means = {cycle: sum(v) / len(v) for cycle, v in by_cycle.items()}
    return {cycle: mean for cycle, mean in means.items()
            if mean <= threshold and ((acc := accuracy(cycle)) is None or acc < high_accuracy)}


def starvation_warning(cycles: dict[int, float]) -> str | None:
    """One plain sentence about `starved_cycles`, or None."""
    if not cycles:
        return None
    listed = ", ".join(f"{c} ({m:.0%})" for c, m in sorted(cycles.items()))
    return (f"cycle(s) {listed} trained on almost no within-prompt signal (share of kept problems whose rewards varied "
            f"within one member's rollouts) while accuracy was below {HIGH_ACCURACY:.0%}: under these prompts the "
            "policy is near-certain, also where it is wrong, so the weights barely learn. Try loop.rollout_allocation: "
            "signal and loop.keep_signal_member: true (docs/DESIGN.md).")
