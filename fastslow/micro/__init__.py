"""The micro world: a character-level chat model this project trains from scratch and ships in micro/model.

It follows instructions of a small language of string programs (fastslow.micro.language), writes better
instructions from failures with feedback (so it can act as its own reflection LM), and runs fast on CPU.
"""

from pathlib import Path

MICRO_MODEL_DIR = Path(__file__).parent / "model"
# Shipped checkpoints by short name: micro (the default: v3 trained on as v4's reflector; follows instructions exactly
# and reflects) and micro-v4 (a fallible policy that does not reflect; pair it with `reflection: {kind: local, model:
# micro}`). docs/MICRO.md.
MICRO_MODELS = {"micro": MICRO_MODEL_DIR, "micro-v4": MICRO_MODEL_DIR.parent / "model-v4"}
