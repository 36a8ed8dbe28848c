"""`fastslow demo`: FST and RL-only on the same micro task and data plan, then a report that says plainly
whether FST is ahead of RL at equal training samples."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastslow.config import Config, load_config
from fastslow.report import load_run, make_report
from fastslow.stats import running_max

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"


def compare_at_equal_samples(fst_dir: Path, rl_dir: Path) -> str:
    """One sentence: best validation accuracy so far of each run at the largest sample count both reached."""
    curves = {}
    for label, path in (("FST", fst_dir), ("RL", rl_dir)):
        run = load_run(path)
        samples, accuracy = run.series("samples", "val_accuracy")
        curves[label] = (list(samples), list(running_max(accuracy)))
    common = min(curves["FST"][0][-1], curves["RL"][0][-1])
    best = {label: max(a for s, a in zip(*curves[label]) if s <= common) for label in curves}
    verdict = "ahead of" if best["FST"] > best["RL"] else ("level with" if best["FST"] == best["RL"] else "NOT ahead of")
    return (f"At {int(common)} training samples FST is {verdict} RL: best validation accuracy so far "
            f"{best['FST']:.3f} (FST) vs {best['RL']:.3f} (RL), mean@4 on {load_run(fst_dir).config['task']['val_size']} "
            "held-out problems.")


def run_demo(out: Path, train: Callable[[Config], Path] | None = None, config_path: Path = DEMO_CONFIG) -> Path:
    """Train FST and RL into out/fst and out/rl, then write out/report.html. Returns the report path."""
    if train is None:
        from fastslow.loop import run as train
    runs = []
    for mode in ("fst", "rl"):
        config = load_config(config_path, {"name": mode, "mode": mode, "output_dir": str(out)})
        runs.append(train(config))
    notes = [compare_at_equal_samples(*runs),
             "Both runs share the seed, the data plan and the starting weights; FST's fast phase costs extra "
             "rollouts (see 'reward vs rollouts') and wall clock (see 'Where a step's time goes'), which the samples "
             "axis does not count."]
    return make_report(runs, out, notes=notes)
