"""Re-analyse smollm2 task 1's runs (trained on the GPU, 2026-12-06, commit 5de396a) from their metrics, after the fix
of the seconds axis for resumed runs: the experiments' own code, with training replaced by the run directories at hand.
    python reanalyse.py RUNS_DIR OUT_DIR"""
import sys
from pathlib import Path

from fastslow.experiments import common, run_experiment

runs, out = Path(sys.argv[1]), Path(sys.argv[2])
common.config_hash = lambda config: "HASH"  # the runs' names carry the GPU machine's model fingerprint
common.Experiment.train = lambda self, configs, limit_s=None: [next(runs.glob(c.name.replace("HASH", "*")))
                                                                for c in configs]
common.hardware = lambda: "x86_64, 16 CPU cores, NVIDIA H100 80GB HBM3, torch 2.11.0+cu130"  # where they trained
overrides = {"task": {"name": "compare", "args": {"digits": 2}, "seed_prompt": "Solve the task."},
             "model.path": "/tmp/smollm2/smollm2.gguf", "reflection.kind": "self", "task.train_size": 384,
             "experiment.modes": ["fst", "rl"], "loop.steps": 48}
for name in ("efficiency", "asymptote", "kl"):
    print(run_experiment(name, config_path="configs/smollm2-text.yaml", seeds=3, preset="full", out=out,
                         workers=12, overrides=overrides))
