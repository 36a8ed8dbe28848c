"""Where a model comes from: the names `model.path`, `reflection.model` (local) and `fastslow serve` accept, resolved
to what transformers and vLLM load, a Hugging Face model directory or a hub id.

- `micro`, `micro-v4`: the micro models this project trains and ships (fastslow/micro/model*, docs/MICRO.md);
- a local Hugging Face model directory, as it is;
- anything else: a hub id.

The bottom floor: every floor that loads or names a model asks here, and this module imports nothing of fastslow but
its error type.
"""

from __future__ import annotations

from pathlib import Path

from fastslow.errors import FastSlowError

MICRO_DIR = Path(__file__).parent / "micro"
# Shipped checkpoints by short name: micro (the default: v3 trained on as v4's reflector; follows instructions exactly
# and reflects) and micro-v4 (a fallible policy that does not reflect; pair it with `reflection: {kind: local, model:
# micro}`). docs/MICRO.md.
MICRO_MODELS = {"micro": MICRO_DIR / "model", "micro-v4": MICRO_DIR / "model-v4"}
SHORT_NAMES = tuple(MICRO_MODELS)


def resolve_model_path(path: str, field: str = "model.path") -> str:
    """What transformers loads for `path`: a model directory (a short name's or a local one) or a hub id.
    `field` names the config field in errors."""
    if path in MICRO_MODELS:
        if not (MICRO_MODELS[path] / "config.json").is_file():
            raise FastSlowError(f"{field}: {path!r} has no checkpoint in this installation ({MICRO_MODELS[path]}); "
                                "docs/MICRO.md says how to train it")
        return str(MICRO_MODELS[path])
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise FastSlowError(f"{field}: {local} has no config.json; expected a Hugging Face model directory")
        return str(local)
    if path.startswith((".", "/", "~")) or path.count("/") > 1:
        raise FastSlowError(f"{field}: {path} does not exist; expected a model directory, a hub id or "
                            f"one of {', '.join(SHORT_NAMES)}")
    return path


def display_name(path: str) -> str:
    """A short name as it is; otherwise the model's directory or file name."""
    return path if path in SHORT_NAMES else Path(path.rstrip("/")).name


def hub_id(path: str) -> str | None:
    """The hub model `path` is (a hub id), for a model card's base_model; None if unknown."""
    if path in MICRO_MODELS or Path(path).expanduser().exists():
        return None
    return path


def is_micro(path: str | None) -> bool:
    """A micro model: trained on the compact reflection template (fastslow.fast.records)."""
    return path in MICRO_MODELS
