"""Atomic, verified checkpoints: weights (safetensors), optimizer and scheduler, RNG states, loop state.

A checkpoint is written into a temporary directory, every file fsynced and listed with its size and sha256 in
`manifest.json`, renamed into place, read back against the manifest, and only then named by `LATEST`; older
checkpoints beyond `checkpoint.keep` are deleted after that. `--resume` takes the newest checkpoint that matches
its manifest and says which damaged ones it skipped: a crash, a full disk or a truncated file at any point
leaves an older intact checkpoint to continue from.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from fastslow.errors import FastSlowError, named_write_error, write_failure
from fastslow.stopping import deferred

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)  # a full disk, as the OS, safetensors and torch.save say it
_STEP_DIR = re.compile(r"step-(\d+)")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` whole or not at all (a stopping signal waits for it: fastslow.stopping)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with deferred():
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # a full disk: the old file stays as it was, and no temp file is left
            tmp.unlink(missing_ok=True)
            raise named_write_error(exc, path) from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Make a file's bytes, or a directory's entries, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_manifest(directory: Path) -> None:
    """List every file under `directory` with its size and sha256 in manifest.json; everything is fsynced."""
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        _fsync(path)
        files[path.relative_to(directory).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    write_text_atomic(directory / MANIFEST, json.dumps({"files": files}, indent=1))
    for sub in [p for p in directory.rglob("*") if p.is_dir()] + [directory]:
        _fsync(sub)


def verify(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be trusted (a missing or damaged file), or None when every file matches its manifest."""
    try:
        files = json.loads((checkpoint / MANIFEST).read_text())["files"]
        for required in ("state.json", "rng.pt"):
            if required not in files:
                return f"its manifest lacks {required}"
        for name, expected in files.items():
            path = checkpoint / name
            if not path.is_file():
                return f"{name} is missing"
            if path.stat().st_size != expected["bytes"]:
                return f"{name} has {path.stat().st_size} bytes, {expected['bytes']} were written"
            if _sha256(path) != expected["sha256"]:
                return f"{name} does not match its checksum"
    except FileNotFoundError:
        return "it is missing" if not checkpoint.is_dir() else f"it has no {MANIFEST}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"its {MANIFEST} is unreadable ({type(exc).__name__})"
    return None


def checkpoint_dirs(root: Path) -> list[Path]:
    """The step-N directories under `root`, newest (highest step) first."""
    found = [p for p in root.glob("step-*") if _STEP_DIR.fullmatch(p.name)] if root.is_dir() else []
    return sorted(found, key=_step, reverse=True)


def _step(checkpoint: Path) -> int:
    return int(checkpoint.name.removeprefix("step-"))


def save_checkpoint(root: Path, step: int, model, trainer_state: dict | None, state: dict[str, Any],
                    keep: int = 2, objects: dict[str, Any] | None = None) -> Path:
    """Write checkpoints/step-<step>/, verify it, point LATEST at it, then keep only the newest `keep`.
    `objects`: more of the loop's state, each pickled into <name>.pt (read_object). A write that fails (a full disk)
    raises FastSlowError and leaves the earlier checkpoints as they were."""
    name = f"step-{step:06d}"
    tmp, final = root / f".tmp-{name}", root / name
    with deferred():  # a stopping signal waits for the checkpoint to be written, verified and named (or discarded)
        try:
            root.mkdir(parents=True, exist_ok=True)
            for stale in root.glob(".tmp-*"):  # left by a crash mid-save; one process writes a run (the run dir lock)
                shutil.rmtree(stale)
            tmp.mkdir()
            if model is not None:
                model.save_pretrained(tmp / "model", safe_serialization=True)
            if trainer_state is not None:
                _torch_save(trainer_state, tmp / "trainer.pt")
            _torch_save(rng_state(), tmp / "rng.pt")
            for object_name, value in (objects or {}).items():
                _torch_save(value, tmp / f"{object_name}.pt")
            (tmp / "state.json").write_text(json.dumps(state, indent=1))
            write_manifest(tmp)
            if final.exists():  # a damaged checkpoint of this step, which the resumed run has now redone
                os.replace(final, root / f".tmp-replaced-{name}")
            os.replace(tmp, final)
            _fsync(root)
            problem = verify(final)
            if problem:
                raise FastSlowError(f"{final}: written, but on reading it back {problem}")
            write_text_atomic(root / "LATEST", name)
        except WRITE_ERRORS as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            intact = next((p.name for p in checkpoint_dirs(root) if p.name != name), None)
            kept = f"{intact} is intact (resume with --resume)" if intact else "no earlier checkpoint exists"
            raise FastSlowError(f"{root}: cannot write checkpoint {name} ({write_failure(exc, root)}); {kept}") from exc
        for old in [p for p in checkpoint_dirs(root) if _step(p) < step][keep - 1:]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
    return final


def save_weights(root: Path, step: int, model) -> Path:
    """The weights alone, into root/step-<step>/ (written beside it, then renamed), the older ones under root removed:
    what an overlap worker loads between checkpoints. Scratch, not a checkpoint: no manifest, no read-back."""
    final, tmp = root / f"step-{step:06d}", root / f".tmp-step-{step:06d}"
    shutil.rmtree(root, ignore_errors=True)  # the worker loaded the previous weights before its job was collected
    with deferred():
        model.save_pretrained(tmp, safe_serialization=True)
        os.replace(tmp, final)
    return final


def _torch_save(obj: Any, path: Path) -> None:
    """torch.save through a Python file: torch's own file writer says only "[enforce fail at inline_container.cc:672]
    unexpected pos" when a write fails; through a Python file its error has the OS's (ENOSPC...) as context."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint LATEST names, if it matches its manifest; else the newest older one that does, with a warning
    naming what was skipped. (A checkpoint newer than LATEST was never confirmed: it is redone.) None when there is
    no checkpoint at all; FastSlowError when there are some but none is intact."""
    candidates, pointer, skipped = checkpoint_dirs(root), root / "LATEST", []
    if pointer.is_file():
        named = pointer.read_bytes().decode("utf-8", "replace").strip()
        names = [p.name for p in candidates]
        if named in names:
            candidates = candidates[names.index(named):]
        else:
            skipped.append(f"LATEST names {named[:40]!r}, which is not a checkpoint here")
    elif not candidates:
        return None
    for path in candidates:
        problem = verify(path)
        if problem is None:
            if skipped:
                log.warning("%s: %s; using %s", root, "; ".join(skipped), path.name)
            return path
        skipped.append(f"{path.name} is damaged ({problem})")
    raise FastSlowError(f"{root}: no intact checkpoint ({'; '.join(skipped)}); start again under another name")


def load_weights(model, model_dir: Path) -> None:
    """Load saved weights into an already built model (full weights or a PEFT adapter)."""
    adapter = model_dir / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(adapter)))
        return
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        from transformers.modeling_utils import load_sharded_checkpoint

        load_sharded_checkpoint(model, str(model_dir))
        return
    weights = load_file(str(model_dir / "model.safetensors"))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = set(getattr(model, "_tied_weights_keys", None) or [])
    if unexpected or [k for k in missing if k not in tied and not k.endswith("lm_head.weight")]:
        raise FastSlowError(f"{model_dir}: checkpoint does not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict | None, dict[str, Any]]:
    """(loop state, trainer state or None, rng state) of a checkpoint directory."""
    state = json.loads((path / "state.json").read_text())
    trainer = torch.load(path / "trainer.pt", weights_only=False) if (path / "trainer.pt").is_file() else None
    rng = torch.load(path / "rng.pt", weights_only=False)
    return state, trainer, rng


def read_object(path: Path, name: str) -> Any:
    """An object save_checkpoint pickled into the checkpoint `path` (None where it holds none)."""
    file = path / f"{name}.pt"
    return torch.load(file, weights_only=False) if file.is_file() else None
