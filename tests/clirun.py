"""Test helpers for the command line: run `python -m fastslow` in a subprocess (from tests/, so that configs can
name the test doubles' tasks), write configs, and check that an error is one line and files are untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import yaml

TESTS = Path(__file__).parent


def fastslow(*args, cwd=TESTS, env=None, timeout=300, **popen):
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent), **(env or {})}
    return subprocess.run([sys.executable, "-m", "fastslow", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout, **popen)


def write(tmp_path, data, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def assert_user_error(result, *fragments, alone=True):
    """Exit code 2, no traceback, and one `error:` line naming `fragments`: the only line on stderr, or with
    `alone` False the last one (a run that fails mid-way has printed its progress line before)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert not alone or len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], result.stderr


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under `root`, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def tiny_run(tmp_path, model_path, **over):
    """A one-step rl run of the tiny model (seconds)."""
    data = {"name": "r", "output_dir": str(tmp_path / "runs"), "mode": "rl",
            "model": {"path": model_path, "max_new_tokens": 4},
            "task": {"name": "doubles:ShortAnswerTask", "train_size": 8, "val_size": 2},
            "loop": {"steps": 1, "steps_per_cycle": 1, "problems_per_step": 2, "rollouts_per_problem": 2,
                     "population_size": 1},
            "eval": {"samples": 1, "kl_prompts": 1}}
    data.update(over)
    return data


def on_a_small_disk(tmp_path, megabytes: int, code: str, *args, timeout=600) -> subprocess.CompletedProcess:
    """Run Python `code` with sys.argv[1] a fresh tmpfs of `megabytes` MB: a real full disk (the kernel's ENOSPC), in
    a private mount namespace (`unshare -rm`, no root needed), gone when the code ends, so `code` checks the files
    itself and prints what the test asserts. Skips the test where such namespaces are not allowed."""
    import pytest

    mount = tmp_path / "small-disk"
    mount.mkdir()
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {mount}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (unshare -rm: {probe.stderr.strip()[:200]})")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    script = f'mount -t tmpfs -o size={megabytes}m tmpfs "$1" && exec "$0" -c "$2" "$1" "${{@:3}}"'
    return subprocess.run(["unshare", "-rm", "bash", "-c", script, sys.executable, str(mount), code, *map(str, args)],
                          capture_output=True, text=True, cwd=TESTS, env=env, timeout=timeout)
