"""Rollout reuse (loop.reuse_fast_rollouts): what the fast phase stores, and how an RL step trains on it."""

import math

import pytest
import torch
from doubles import ShortAnswerTask
from test_trl_seam import make_learner

from fastslow import policy
from fastslow.fast.adapter import PolicyAdapter, Rollout
from fastslow.fast.population import Member
from fastslow.fast.reuse import ReusableRollouts
from fastslow.policy import Completion, Sampling, chat_messages
from fastslow.slow import trainer as slow_trainer
from fastslow.tasks import Verdict


def test_sampled_log_probs_are_the_trainers_at_the_sampling_weights(tiny_model_path, tmp_path):
    """A completion's stored log-probs are what the trainer computes for the same tokens and weights (temperature
    applied, top_p not, as TRL does), and its prompt tokens are the trainer's: a reused rollout from the weights of
    the step is exactly on-policy, ratio 1."""
    task = ShortAnswerTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=1,
                           sampling={"temperature": 0.7, "top_p": 0.9})
    trainer, model, tokenizer = learner.trainer, learner.policy, learner.trainer.processing_class
    conversations = [chat_messages(system, p.prompt) for p in task.problems("train", 3, 0)
                     for system in ("Prompt A.", "Answer in one word.")]
    torch.manual_seed(0)
    completions = policy.sample(model, tokenizer, conversations, Sampling(max_new_tokens=6, temperature=0.7, top_p=0.9))
    assert [c.prompt_ids for c in completions] == trainer._tokenize_prompts(conversations)[0]
    assert len({tuple(c.ids) for c in completions}) > 1 and all(len(c.logprobs) == len(c.ids) for c in completions)
    # a completion ends with its first end-of-sequence token, as TRL keeps it (a frequent token plays EOS here)
    sampling, pad = Sampling(max_new_tokens=6), tokenizer.pad_token_id
    torch.manual_seed(1)
    free = policy.sample_ids(model, [c.prompt_ids for c in completions], sampling, pad, eos_ids=[-1])
    stop = max(range(len(tokenizer)), key=[t for ids, _ in free for t in ids].count)
    torch.manual_seed(1)
    cut = policy.sample_ids(model, [c.prompt_ids for c in completions], sampling, pad, eos_ids=[stop])
    assert any(len(ids) < 6 for ids, _ in cut)
    for (ids, logprobs), (free_ids, free_logprobs) in zip(cut, free):
        end = free_ids.index(stop) + 1 if stop in free_ids else 6
        assert ids == free_ids[:end] and logprobs == pytest.approx(free_logprobs[:end], abs=1e-6)

    def right_pad(rows, value):
        width = max(len(r) for r in rows)
        return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows])

    prompt_ids, prompt_mask = policy.shared_prefix.left_pad([c.prompt_ids for c in completions], tokenizer.pad_token_id)
    batch = {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
             "completion_ids": right_pad([c.ids for c in completions], tokenizer.pad_token_id),
             "completion_mask": right_pad([[1] * len(c.ids) for c in completions], 0)}
    with torch.no_grad():
        logps = trainer._completion_logps(learner.model, batch)
    stored = right_pad([c.logprobs for c in completions], 0.0)
    real = batch["completion_mask"].bool()
    assert torch.allclose(logps[real], stored[real], atol=1e-5)


def rollout(problem, system_prompt, reward=0.5, ids=(5, 6)):
    return Rollout(problem, system_prompt, Completion([1, 2], list(ids), [-0.1] * len(ids), "x"), Verdict(reward, ""))


def test_the_store_keeps_the_populations_rollouts_and_hands_each_out_once_to_its_member():
    p0, p1 = ShortAnswerTask().problems("train", 2, 0)
    a, b = Member("a", "Prompt A."), Member("b", "Prompt B.")
    first, second = rollout(p0, a.text), rollout(p0, a.text)
    store = ReusableRollouts([first, rollout(p0, "Not kept."), second, rollout(p1, b.text)], [a, b])
    assert len(store) == 3  # the candidate that did not make the population left nothing
    assert store.take(p0, [a, b, a, b]) == [first, None, second, None]  # in sampling order, per member
    assert store.take(p0, [a, b]) == [None, None]  # taken once
    taken = store.take(p1, [a, b, a, b])
    assert taken[0] is None and taken[1].system_prompt == b.text and taken[2:] == [None, None] and len(store) == 0


def test_a_step_trains_on_the_reused_rollouts_and_samples_only_the_rest(tiny_model_path, tmp_path, monkeypatch):
    task = ShortAnswerTask()
    problems = task.problems("train", 3, 0)
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2, learning_rate=1e-3)
    a, b = Member("a", "Prompt A."), Member("b", "Prompt B.")
    adapter = PolicyAdapter(learner.policy, learner.trainer.processing_class, task, Sampling(max_new_tokens=6))
    adapter.record = []
    adapter.rollouts([(a.text, problems[0]), (a.text, problems[1]), (b.text, problems[0]), (b.text, problems[0]),
                      ("Prompt C.", problems[0])])  # made by the fast phase; C did not make the population
    for r in adapter.record:  # a scripted reward shows which rows kept the fast phase's verdict
        r.verdict = Verdict(0.3 + 0.4 * (r.system_prompt == b.text), "")
    store = ReusableRollouts(adapter.record, [a, b])

    sampled_rows, captured = [], {}
    original_sample = slow_trainer.sample_ids
    monkeypatch.setattr(slow_trainer, "sample_ids",
                        lambda model, prompts, *args, **kw: sampled_rows.append(len(prompts)) or
                        original_sample(model, prompts, *args, **kw))
    original_select = slow_trainer.select_rows
    monkeypatch.setattr(slow_trainer, "select_rows",
                        lambda batch, rows: captured.setdefault("batch", batch) and original_select(batch, rows))
    stats = learner.step(problems, [a, b], store)

    # G = 4, K = 2: two slots per member; problem 0 reuses a's one rollout and b's two, problem 1 a's one
    assert stats.reused_rollouts == 4 and stats.fresh_rollouts == 8 and sampled_rows == [8] and len(store) == 0
    # rows in order, problem by problem, slots a b a b: problem 0's rows 0 (a), 1 and 3 (b) and problem 1's row 4 (a)
    batch, rewards = captured["batch"], learner.trainer.step_rewards
    stored = {0: adapter.record[0], 1: adapter.record[2], 3: adapter.record[3], 4: adapter.record[1]}
    for row, r in stored.items():
        n = len(r.sample.ids)
        assert batch["completion_ids"][row, :n].tolist() == r.sample.ids
        assert torch.allclose(batch["sampling_per_token_logps"][row, :n], torch.tensor(r.sample.logprobs))
        assert rewards[row] == r.verdict.reward
    fresh = [i for i in range(12) if i not in stored]
    assert torch.isnan(batch["sampling_per_token_logps"][fresh, 0]).all()  # ratio 1: sampled by these weights
    assert all(rewards[i] not in (0.3, 0.7) for i in fresh)  # scored by the verifier (multiples of 1/8)
    # the loss ran before the optimizer step, with the weights that sampled the stored rollouts: on-policy (problem
    # 0's rewards vary, so its reused rows are trained on)
    assert math.isclose(stats.importance_ratio_mean, 1.0, abs_tol=1e-4) and stats.importance_capped_share == 0
