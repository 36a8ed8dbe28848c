"""Re-analyse suite task 6's runs (code over pretraining programs, trained on one H100, 2026-12-06, commit 6b6ace1)
from their metrics, to write each experiment's summary.json (that call kept only the tables) for
benchmarks/suite_pool.py: the experiments' own code, with training replaced by the run directories at hand.
    tar xzf runs_metrics_populations.tgz -C /tmp/s6 && python reanalyse.py /tmp/s6/runs/6 OUT_DIR"""
import sys
from pathlib import Path

from fastslow.experiments import common, run_experiment

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
common.config_hash = lambda config: "HASH"  # the runs' names carry the GPU machine's model fingerprint
common.Experiment.train = lambda self, configs, limit_s=None: [next(runs.glob(c.name.replace("HASH", "*")))
                                                                for c in configs]
common.hardware = lambda: "x86_64, 16 CPU cores, NVIDIA H100 80GB HBM3, torch 2.11.0+cu130"  # where they trained
overrides = {"task": {"name": "code", "args": {"ops": 3, "programs": "train"}, "seed_prompt": "Transform the text."},
             "model.path": "micro-v4", "model.max_new_tokens": 48, "reflection.kind": "local",
             "reflection.model": "micro", "loop.steps": 100}
for name in ("efficiency", "asymptote", "kl"):
    print(run_experiment(name, seeds=3, preset="full", out=out, workers=12, overrides=overrides))
