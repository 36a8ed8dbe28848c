"""benchmarks/train_reflector.py's rule for replacing the shipped reflector, and how it packs the checkpoint, on
hand-made evaluations (the training and evaluations themselves run on the GPU; smoke-tested on CPU by hand)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "train_reflector.py"
spec = importlib.util.spec_from_file_location("train_reflector", SCRIPT)
train_reflector = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train_reflector)


def with_v4(improves):
    return {"summary": {"reflector_improves": improves}, "rows": []}


def alone(**changes):
    """A reflector's own evaluation rows: v3's abilities as today's shipped reflector has them, with `changes`."""
    scores = {("strings, held-out programs", "instruction"): 1.0, ("strings, pretraining programs (2-3 ops)", "instruction"): 0.95,
              ("counting", "instruction"): 1.0, ("cipher (best expressible instruction)", "instruction"): 0.3,
              ("stargraph", "instruction"): 1.0, ("strings, held-out programs", "seed prompt"): 0.02,
              ("stargraph", "seed prompt"): 0.0}
    for key, value in changes.items():
        scores[{"pretraining": ("strings, pretraining programs (2-3 ops)", "instruction"),
                "seed": ("strings, held-out programs", "seed prompt"),
                "star_seed": ("stargraph", "seed prompt")}[key]] = value
    return {"summary": {}, "rows": [[name, prompt, score, 100] for (name, prompt), score in scores.items()]}


def test_a_better_reflector_that_keeps_v3s_abilities_replaces_todays():
    decided = train_reflector.verdict(with_v4(0.81), with_v4(0.69), alone(pretraining=0.93), alone())
    assert decided == {**decided, "replace": True, "why_not": []}  # 0.93 is within 0.03 of 0.95


@pytest.mark.parametrize("new, changes, reason", [
    (0.69, {}, "reflector_improves 0.690 is not above today's 0.690"),
    (0.85, {"pretraining": 0.90}, "strings, pretraining programs (2-3 ops) (instruction) fell from 0.95 to 0.90"),
    (0.85, {"seed": 0.2}, "strings, held-out programs (seed prompt) is 0.20, above 0.15"),
    (0.85, {"star_seed": 0.01}, "stargraph (seed prompt) is 0.01, above 0.00"),
])
def test_a_reflector_that_is_not_better_or_loses_an_ability_does_not(new, changes, reason):
    decided = train_reflector.verdict(with_v4(new), with_v4(0.69), alone(**changes), alone())
    assert not decided["replace"] and decided["why_not"] == [reason]


def test_the_checkpoint_travels_back_in_parts_that_cat_and_tar_restore(tmp_path, monkeypatch):
    checkpoint = tmp_path / "work" / "reflector"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(bytes(range(256)) * 40)  # 10 kB
    (checkpoint / "config.json").write_text("{}")
    monkeypatch.setattr(train_reflector, "PART_BYTES", 4096)
    out = tmp_path / "out"
    out.mkdir()
    parts = train_reflector.pack(checkpoint, out)
    sizes = [(out / p).stat().st_size for p in parts]
    assert len(parts) > 2 and parts == [f"reflector.tar.part-a{c}" for c in "abcdefgh"[:len(parts)]]
    assert all(size == 4096 for size in sizes[:-1]) and 0 < sizes[-1] <= 4096
    restored = tmp_path / "restored"
    restored.mkdir()
    subprocess.run(f"cat {out}/reflector.tar.part-* | tar -x -C {restored}", shell=True, check=True)
    assert (restored / "reflector" / "model.safetensors").read_bytes() == bytes(range(256)) * 40
    assert (restored / "reflector" / "config.json").read_text() == "{}"


def test_the_script_answers_help():
    run = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "--minutes" in run.stdout and "reflector2" in run.stdout
