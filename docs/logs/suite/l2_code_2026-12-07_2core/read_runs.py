"""How docs/RESULTS.md's L2 paragraph (code over held-out programs, 200 steps, 2 CPU cores) read RL's plateau over
its first 100 and all 200 steps, and claim 1 against RL's 200-step peak, before FST's runs had finished (claim 1 was
final once FST had passed that peak). `efficiency` gave the same claim 1 once they finished
(docs/results/suite-plateau-2core-v4/); the 100-step half of RL's plateau is read only here.

    mkdir -p /tmp/l2 && tar xJf docs/logs/suite/l2_code_2026-12-07_2core/runs_metrics_populations.txz -C /tmp/l2
    python docs/logs/suite/l2_code_2026-12-07_2core/read_runs.py /tmp/l2
"""
import sys
from pathlib import Path

import numpy as np

from fastslow import stats
from fastslow.experiments.common import AXES, axis_curve

runs = Path(sys.argv[1])
fst, rl = sorted(runs.glob("code-fst-*")), sorted(runs.glob("code-rl-*"))
for run in rl:
    x, y = map(np.asarray, axis_curve(run, "samples"))
    half = x <= x[-1] / 2
    for name, keep in (("100 steps", half), ("200 steps", np.ones_like(half))):
        trend = stats.late_trend(x[keep], y[keep])
        print(f"{run.name} {name}: peak {100 * y[keep].max():.1f}%, running-peak gain over the last third "
              f"{100 * stats.late_gain(x[keep], y[keep]):.1f} points, trend {100 * trend.rise:+.1f} ± "
              f"{100 * trend.stderr:.1f}{' (rising)' if trend.rising else ''}")
for axis in AXES:
    ratios = [stats.sample_efficiency(axis_curve(f, axis), axis_curve(r, axis)) for f, r in zip(fst, rl)]
    print(f"claim 1, {axis}: {stats.summarize(ratios)} per seed {[round(r, 2) for r in ratios if r]}")
