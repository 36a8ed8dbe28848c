"""The README stays true: its config reference is the config's, and CI runs the README's test command."""

import re
from pathlib import Path

from fastslow.config import reference_markdown

ROOT = Path(__file__).parent.parent


def block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {name} -->\n(.*?)<!-- /{name} -->", text, re.S)
    assert match, f"README.md has no {name} block"
    return match.group(1).strip()


def test_config_reference_matches_the_code():
    assert block("config-reference") == reference_markdown()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "eval" in ci
    assert "pytest" in block("test-command") and "pip install" in block("test-command")
