"""fastslow — Fast-Slow Training (FST) of language models.

Slow weights: the model's parameters, trained by RL (CISPO) on a verifiable reward.
Fast weights: a population of system prompts, evolved by GEPA from rollout feedback.
"""

__version__ = "0.1.0"

import os as _os

# litellm (imported by gepa and by our reflection LM) otherwise tries to download a price list at import time.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
