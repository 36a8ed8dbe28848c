"""Test helper: run the FST loop on the tiny model with the scripted reflection LM, in its own process
(so a test can SIGKILL it). Usage: python loop_worker.py CONFIG_JSON [--resume]"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from doubles import ScriptedReflectionLM  # noqa: E402

from fastslow.config import parse_config  # noqa: E402
from fastslow.loop import run  # noqa: E402

if __name__ == "__main__":
    config = parse_config(json.loads(Path(sys.argv[1]).read_text()))
    run(config, resume="--resume" in sys.argv, reflection_lm=ScriptedReflectionLM())
