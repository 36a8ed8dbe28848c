"""GGUF files as plain Hugging Face model directories: dequantized once through transformers + gguf, then cached.

transformers reads a .gguf (`from_pretrained(dir, gguf_file=...)`), but the model it returns still carries a GGUF
quantizer: `save_pretrained` refuses it ("not serializable") and Trainer/PEFT take it for a quantized model (no full
fine-tuning). So a GGUF is converted once: every tensor dequantized (`GgufConfig(dequantize=True)`), the quantizer and
its config dropped, and the model, its tokenizer (with the file's chat template) and config saved as an ordinary
model directory (safetensors, the file's own dtype: float32 for quantized weights). Every load after that, in any
process, reads the directory: a plain model, as if from the hub, for training (full or LoRA), export, serve and vLLM.

Cache: $FASTSLOW_CACHE/gguf/<sha256 of the file>, by default ~/.cache/fastslow/gguf/... ($XDG_CACHE_HOME respected).
The conversion is written to a temporary directory beside its place and renamed into it, under a lock file: processes
that load the same file at once convert it once, and a crash leaves no half-written model. Delete a directory to have
it converted again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from fastslow.errors import FastSlowError

MARKER = "fastslow-gguf.json"  # written last: a directory without it is not a finished conversion
_converted: dict[tuple[str, int, int], Path] = {}  # this process's answers, by the file's path, size and mtime


def cache_root() -> Path:
    base = os.environ.get("FASTSLOW_CACHE")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "fastslow"
    return root.expanduser() / "gguf"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def dequantized(gguf: Path, field: str = "model.path") -> Path:
    """The model directory converted from `gguf`: from the cache, or converted now (once, whoever asks at once)."""
    gguf = Path(gguf).expanduser().resolve()
    stat = gguf.stat()
    identity = (str(gguf), stat.st_size, stat.st_mtime_ns)
    if identity in _converted and (_converted[identity] / MARKER).is_file():  # no need to hash 100 MB again
        return _converted[identity]
    key = file_sha256(gguf)
    target = cache_root() / key
    if (target / MARKER).is_file():
        _converted[identity] = target
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent / f"{key}.lock"):
        if (target / MARKER).is_file():  # another process converted it while we waited
            return target
        check_supported(gguf, field)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=target.parent))
        try:
            convert(gguf, tmp, field)
            for path in (tmp, *tmp.iterdir()):  # mkdtemp's directory, and some of what is written in it, is private
                path.chmod(0o755 if path.is_dir() else 0o644)
            (tmp / MARKER).write_text(json.dumps({"source": str(gguf), "sha256": key}, indent=1) + "\n")
            if target.exists():  # left without its marker (copied by hand, or by hand half-deleted)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _converted[identity] = target
    return target


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dequantizable_types() -> list[str]:
    """The GGML tensor types the gguf package can dequantize (what transformers calls on every tensor)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize

    found = []
    for qtype in GGMLQuantizationType:
        if qtype in GGML_QUANT_SIZES:
            try:
                dequantize(np.zeros(GGML_QUANT_SIZES[qtype][1], dtype=np.uint8), qtype)
            except NotImplementedError:
                continue
            found.append(qtype.name)
    return found


def supported_architectures() -> list[str]:
    """The GGUF architectures transformers turns into a model."""
    from transformers.integrations.gguf.utils import GGUF_ARCHS
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted((set(GGUF_SUPPORTED_ARCHITECTURES) | set(GGUF_ARCHS)) - {"general", "tokenizer"})


def check_supported(gguf: Path, field: str) -> None:
    """Refuse, in one line naming the file and what is supported, a GGUF whose tensors cannot be dequantized."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise FastSlowError(f"{field}: {gguf} is a GGUF file; reading it needs the gguf package: "
                            "pip install 'fastslow[gguf]'") from None
    try:
        reader = GGUFReader(gguf)
    except (ValueError, OSError) as exc:
        raise FastSlowError(f"{field}: {gguf} is not a readable GGUF file ({' '.join(str(exc).split())})") from None
    types = sorted({tensor.tensor_type.name for tensor in reader.tensors})
    supported = dequantizable_types()
    unsupported = [t for t in types if t not in supported]
    if unsupported:
        raise FastSlowError(f"{field}: {gguf} has tensors of type {', '.join(unsupported)}, which cannot be "
                            f"dequantized; supported types: {', '.join(supported)}")


def convert(gguf: Path, out: Path, field: str) -> None:
    """Dequantize `gguf` into `out` as a plain model directory with its tokenizer: no quantizer left on the model."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     quantization_config=GgufConfig(dequantize=True))
    except ValueError as exc:
        message = " ".join(str(exc).split())
        if "not supported" in message:
            raise FastSlowError(f"{field}: {gguf}: {message} transformers {transformers.__version__} reads these GGUF "
                                f"architectures: {', '.join(supported_architectures())}") from None
        raise FastSlowError(f"{field}: cannot load a causal LM from {gguf} ({message})") from None
    if getattr(model, "hf_quantizer", None) is not None:  # only where transformers kept blocks packed regardless
        model = model.dequantize()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except (ValueError, KeyError, OSError) as exc:
        raise FastSlowError(f"{field}: cannot read a tokenizer from {gguf} ({' '.join(str(exc).split())})") from None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
