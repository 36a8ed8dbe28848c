"""Checkpoints: the newest `checkpoint.keep` kept, each with a manifest of checksums; a damaged newest checkpoint is
skipped (saying so) for the newest intact one; a full disk mid-save leaves the earlier checkpoint as it was."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from clirun import TESTS, assert_user_error, fastslow, snapshot, tiny_run, write

import fastslow.loop as loop
from fastslow.checkpoint import MANIFEST, latest_checkpoint
from fastslow.config import parse_config
from fastslow.errors import FastSlowError


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_path):
    """A finished rl run of three one-step cycles that keeps two checkpoints."""
    root = tmp_path_factory.mktemp("finished")
    data = tiny_run(root, tiny_model_path, checkpoint={"keep": 2},
                    loop={"steps": 3, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2,
                          "population_size": 1})
    return loop.run(parse_config(data)), data


def copy_run(finished_run, tmp_path):
    """A copy of the finished run under tmp_path/runs, its stored config pointing there; returns (run dir, config)."""
    path, data = finished_run
    data = {**data, "output_dir": str(tmp_path / "runs")}
    shutil.copytree(path, tmp_path / "runs" / path.name)
    (tmp_path / "runs" / path.name / "config.yaml").write_text(parse_config(data).to_yaml())
    return tmp_path / "runs" / path.name, data


def test_checkpoint_every_other_cycle_and_always_at_the_last_step(tmp_path, tiny_model_path):
    data = tiny_run(tmp_path, tiny_model_path, checkpoint={"every": 2, "keep": 5},
                    loop={"steps": 5, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2,
                          "population_size": 1})
    path = loop.run(parse_config(data))
    assert sorted(p.name for p in (path / "checkpoints").glob("step-*")) == ["step-000002", "step-000004",
                                                                            "step-000005"]
    assert latest_checkpoint(path / "checkpoints").name == "step-000005"


def test_the_newest_checkpoints_are_kept_each_with_the_checksums_of_its_files(finished_run):
    checkpoints = finished_run[0] / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["LATEST", "step-000002", "step-000003"]
    assert (checkpoints / "LATEST").read_text() == "step-000003"
    files = json.loads((checkpoints / "step-000003" / MANIFEST).read_text())["files"]
    assert {"model/model.safetensors", "trainer.pt", "rng.pt", "state.json"} <= set(files)
    for name, entry in files.items():
        data = (checkpoints / "step-000003" / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated weights": lambda c: truncate(c / "model" / "model.safetensors"),
    "flipped byte in the weights": lambda c: flip_a_byte(c / "model" / "model.safetensors"),
    "truncated state": lambda c: truncate(c / "state.json"),
    "truncated optimizer": lambda c: truncate(c / "trainer.pt"),
    "truncated rng": lambda c: truncate(c / "rng.pt"),
    "empty rng": lambda c: (c / "rng.pt").write_bytes(b""),
    "missing model folder": lambda c: shutil.rmtree(c / "model"),
    "garbage manifest": lambda c: (c / MANIFEST).write_bytes(b"\x00\xffnot json"),
    "missing manifest": lambda c: (c / MANIFEST).unlink(),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(finished_run, tmp_path, caplog, damage):
    root = tmp_path / "checkpoints"
    shutil.copytree(finished_run[0] / "checkpoints", root)
    DAMAGE[damage](root / "step-000003")
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(root) == root / "step-000002"
    assert "step-000003 is damaged" in caplog.text and "using step-000002" in caplog.text


def test_a_garbage_latest_falls_back_to_the_newest_intact_checkpoint(finished_run, tmp_path, caplog):
    root = tmp_path / "checkpoints"
    shutil.copytree(finished_run[0] / "checkpoints", root)
    (root / "LATEST").write_bytes(b"\x00\xff../../etc/passwd")
    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(root) == root / "step-000003"
    assert "LATEST names" in caplog.text and "not a checkpoint here" in caplog.text


def test_resume_says_which_checkpoint_it_skipped_and_redoes_its_steps(finished_run, tmp_path):
    run_dir, data = copy_run(finished_run, tmp_path)
    truncate(run_dir / "checkpoints" / "step-000003" / "model" / "model.safetensors")
    result = fastslow("run", write(tmp_path, data), "--resume")
    assert result.returncode == 0, result.stderr
    assert "step-000003 is damaged (model/model.safetensors has" in result.stderr
    assert "using step-000002" in result.stderr
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2, 3]
    assert latest_checkpoint(run_dir / "checkpoints") == run_dir / "checkpoints" / "step-000003"  # written anew


def test_resume_with_no_intact_checkpoint_is_one_line_and_changes_nothing(finished_run, tmp_path):
    run_dir, data = copy_run(finished_run, tmp_path)
    (run_dir / "checkpoints" / "step-000003" / "rng.pt").write_bytes(b"")
    shutil.rmtree(run_dir / "checkpoints" / "step-000002" / "model")
    before = snapshot(run_dir)
    result = fastslow("run", write(tmp_path, data), "--resume")
    assert_user_error(result, "no intact checkpoint", "step-000003 is damaged (rng.pt has 0 bytes",
                      "step-000002 is damaged (model/")
    assert snapshot(run_dir) == before


FULL_DISK = """
import resource, sys
from pathlib import Path
from fastslow.checkpoint import save_checkpoint
from fastslow.errors import FastSlowError
from fastslow.policy import load_model

root, model = Path(sys.argv[1]), load_model(sys.argv[2])
save_checkpoint(root, 1, None, None, {"step": 1})  # small: no weights
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # from here on, as on a full disk
try:
    save_checkpoint(root, 2, model, None, {"step": 2})
except FastSlowError as exc:
    print(exc)
"""


def test_a_full_disk_mid_checkpoint_leaves_the_earlier_one_as_it_was(tmp_path, tiny_model_path):
    root = tmp_path / "checkpoints"
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(root), tiny_model_path], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "cannot write checkpoint step-000002" in result.stdout and "step-000001 is intact" in result.stdout
    assert sorted(p.name for p in root.iterdir()) == ["LATEST", "step-000001"]  # no half-written step-2 left
    assert (root / "LATEST").read_text() == "step-000001"
    assert latest_checkpoint(root) == root / "step-000001"


def test_checkpoints_but_none_intact_is_an_error_not_a_fresh_start(tmp_path):
    (tmp_path / "step-000004").mkdir()
    with pytest.raises(FastSlowError, match="no intact checkpoint .*step-000004 is damaged .*no manifest.json"):
        latest_checkpoint(tmp_path)
    assert latest_checkpoint(tmp_path / "none") is None
