"""The slow-phase objective against hand-computed values."""

import math

import pytest
import torch

from fastslow import policy
from fastslow.evaluation import kl_and_entropy
from fastslow.slow.objective import (ImportanceStats, behaviour_logps, cispo_loss, group_advantages, reverse_kl_loss,
                                     row_weights)


def test_advantages_normalised_once_over_the_whole_group_of_mixed_prompts():
    # one problem, G=4 rollouts: slots 0,2 used prompt A and slots 1,3 prompt B (K=2)
    rewards = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    adv, kept = group_advantages(rewards, eps=0.0)
    std = math.sqrt(((0.25**2) * 3 + 0.75**2) / 3)  # mean 0.75; unbiased std over all G, not per prompt
    assert torch.allclose(adv, torch.tensor([[0.25, -0.75, 0.25, 0.25]]) / std)
    assert kept.tolist() == [True]
    # per-prompt normalisation would have given prompt A's rollouts zero advantage; ours does not
    assert adv[0, 0] > 0 and adv[0, 2] > 0


def test_zero_variance_groups_are_dropped_or_kept_by_setting():
    rewards = torch.tensor([[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    adv, kept = group_advantages(rewards)
    assert kept.tolist() == [False, True, False]
    assert torch.all(adv[0] == 0) and torch.all(adv[2] == 0)
    _, kept_all = group_advantages(rewards, drop_zero_variance=False)
    assert kept_all.tolist() == [True, True, True]


def test_reverse_kl_loss_is_the_exact_per_token_kl_weighted_per_row():
    # vocab of 2; row 0 has 2 tokens, row 1 one token and a padded position (garbage there must not count)
    student = torch.tensor([[[0.5, 0.5], [0.8, 0.2]], [[0.25, 0.75], [0.99, 0.01]]])
    teacher = torch.tensor([[[0.25, 0.75], [0.5, 0.5]], [[0.5, 0.5], [0.01, 0.99]]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    weights = torch.tensor([0.5, 1.0])
    row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75) + 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)
    row1 = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert math.isclose(row0, 0.1438410 + 0.1927448, rel_tol=1e-6)  # the numbers by hand
    logits = student.log().requires_grad_(True)
    loss = reverse_kl_loss(torch.log_softmax(logits, -1), teacher.log(), mask, weights)
    assert math.isclose(float(loss), 0.5 * row0 + row1, rel_tol=1e-6)
    # reverse KL's gradient in the student's logits: p (log p - log q - KL) at each position, times weight and mask;
    # the teacher is a target, never trained
    loss.backward()
    kl = (student * (student.log() - teacher.log())).sum(-1, keepdim=True)
    expected = student * (student.log() - teacher.log() - kl) * (mask * weights[:, None]).unsqueeze(-1)
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert not reverse_kl_loss(student.log(), teacher.log().requires_grad_(True), mask, weights).requires_grad


def test_row_weights_average_tokens_per_problem_then_over_kept_problems():
    kept = torch.tensor([True, False, True])
    tokens = torch.tensor([2.0, 2.0, 5.0, 5.0, 1.0, 3.0])  # G=2 rows per problem
    w = row_weights(kept, tokens, total_kept_groups=2)
    assert torch.allclose(w, torch.tensor([1 / 8, 1 / 8, 0, 0, 1 / 8, 1 / 8]))
    # summing w * tokens over a kept problem gives 1 / (kept problems)
    assert math.isclose(float((w * tokens)[:2].sum()), 0.5)


def test_cispo_truncates_the_importance_ratio_above_only_and_stops_its_gradient():
    logps = torch.log(torch.tensor([[0.5, 0.5]])).requires_grad_()
    old = torch.log(torch.tensor([[0.1, 0.4]]))  # ratios 5.0 (capped to 4.0) and 1.25 (kept)
    adv, mask, w = torch.tensor([2.0]), torch.ones(1, 2), torch.tensor([1.0])
    loss = cispo_loss(logps, old, adv, mask, w, importance_cap=4.0)
    expected = -(4.0 * 2.0 * math.log(0.5) + 1.25 * 2.0 * math.log(0.5))
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(logps.grad, torch.tensor([[-8.0, -2.5]]))  # d/dlogp = -sg(min(rho, cap)) * A
    # a small ratio is NOT clipped from below (CISPO has no lower bound)
    low = cispo_loss(logps.detach(), torch.log(torch.tensor([[5.0, 5.0]])), adv, mask, w)
    assert math.isclose(low.item(), -(2 * 0.1 * 2.0 * math.log(0.5)), rel_tol=1e-5)


def test_reused_rows_are_weighted_by_their_stored_log_probs_and_fresh_rows_by_ratio_one():
    # row 0 reuses a stored rollout sampled with probabilities 0.25 and 0.8 (now 0.5 and 0.4); row 1 is fresh
    # (NaN: no sampler log-probs, TRL's convention), its last token is padding
    logps = torch.log(torch.tensor([[0.5, 0.4], [0.3, 0.2]])).requires_grad_()
    stored = torch.tensor([[math.log(0.25), math.log(0.8)], [math.nan, 0.0]])
    mask, adv, w = torch.tensor([[1.0, 1.0], [1.0, 0.0]]), torch.tensor([1.0, -1.0]), torch.tensor([1.0, 1.0])
    old = behaviour_logps(logps, stored)
    assert torch.equal(old[1, 0], logps[1, 0].detach()) and torch.equal(old[0], stored[0])
    loss = cispo_loss(logps, old, adv, mask, w, importance_cap=4.0)
    expected = -(2.0 * math.log(0.5) + 0.5 * math.log(0.4)) + 1.0 * math.log(0.3)  # ratios 2.0, 0.5; fresh 1
    assert math.isclose(loss.item(), expected, rel_tol=1e-6)
    loss.backward()
    assert torch.allclose(logps.grad, torch.tensor([[-2.0, -0.5], [1.0, 0.0]]))
    assert torch.equal(behaviour_logps(logps, None), logps.detach())  # no stored rows at all: on-policy

    stats = ImportanceStats()  # over the stored tokens only: ratios 2.0 and 0.5, none above a cap of 1.5 but one
    stats.add(logps, stored, mask, cap=1.5)
    assert (stats.ratio_sum, stats.capped, stats.tokens) == (pytest.approx(2.5), 1, 2)
    stats.add(logps, None, mask, cap=1.5)  # a loss call without sampler log-probs adds nothing
    assert stats.tokens == 2


def test_cispo_kl_term_is_k3_to_the_reference_and_masked():
    logps = torch.log(torch.tensor([[0.5, 0.9]]))
    ref = torch.log(torch.tensor([[0.25, 0.1]]))
    mask = torch.tensor([[1.0, 0.0]])
    loss = cispo_loss(logps, logps, torch.tensor([0.0]), mask, torch.tensor([1.0]), ref_logps=ref, kl_coef=0.5)
    delta = math.log(0.25 / 0.5)
    assert math.isclose(loss.item(), 0.5 * (math.exp(delta) - delta - 1), rel_tol=1e-6)


class _FixedDistribution(torch.nn.Module):
    """A 'model' whose next-token distribution is softmax(scale * log probs) at every position (for the KL
    estimator): every hidden state is 1, its output embeddings map it to log(probs), and a `scale` other than 1
    transforms the logits after them, as soft-capping models do."""

    def __init__(self, probs, scale: float = 1.0):
        super().__init__()
        self.lm_head = torch.nn.Linear(1, len(probs), bias=False)
        self.lm_head.weight.data = torch.log(probs).unsqueeze(1)
        self.scale = scale

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, attention_mask=None, logits_to_keep=0):
        hidden = torch.ones(*input_ids.shape, 1)[:, -logits_to_keep:]
        return type("Out", (), {"logits": self.lm_head(hidden) * self.scale})()


@pytest.mark.parametrize("scale", [1.0, 2.0], ids=["projected-hidden-states", "transformed-logits"])
def test_kl_and_entropy_are_the_exact_per_token_values(scale):
    from contextlib import nullcontext

    from tiny_model import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    vocab = len(tokenizer)
    p = torch.full((vocab,), 0.5 / (vocab - 1)); p[0] = 0.5
    q = torch.full((vocab,), 1.0 / vocab)
    kl, entropy = kl_and_entropy(_FixedDistribution(p, scale), lambda: nullcontext(_FixedDistribution(q, scale)),
                                 tokenizer, [[{"role": "user", "content": "hi"}]] * 2, ["abc", "d"])
    p, q = torch.softmax(scale * p.log(), 0), torch.softmax(scale * q.log(), 0)
    expected_kl = float((p * (p.log() - q.log())).sum())
    expected_entropy = float(-(p * p.log()).sum())
    assert math.isclose(kl, expected_kl, rel_tol=1e-5)
    assert math.isclose(entropy, expected_entropy, rel_tol=1e-5)


def test_reward_signal_splits_kept_problems_by_where_their_rewards_vary():
    from fastslow.slow.objective import reward_signal

    members = torch.tensor([0, 0, 1, 1])  # G=4: slots 0, 1 under member 0; slots 2, 3 under member 1
    rewards = torch.tensor([
        [1.0, 1.0, 0.0, 0.0],  # varies only between members
        [1.0, 0.0, 1.0, 1.0],  # varies within member 0
        [0.0, 0.0, 0.0, 0.0],  # dropped: no variance at all
    ])
    signal = reward_signal(rewards, members)
    assert signal["within_prompt_signal"] == 0.5  # 1 of the 2 kept problems
    # within-member sums of squares: 0 + (0.5 for [1, 0]); around the group mean: 1.0 + 0.75
    assert math.isclose(signal["within_prompt_variance_share"], 0.5 / 1.75, rel_tol=1e-6)
    none_kept = reward_signal(torch.zeros(2, 4), members)
    assert none_kept == {"within_prompt_signal": None, "within_prompt_variance_share": None}


def test_within_prompt_variance_averages_per_problem_sample_variances():
    from fastslow.slow.objective import within_prompt_variance

    # [1, 0]: variance 0.5; [1, 1, 1]: 0; [0.5]: one reward, left out
    assert math.isclose(within_prompt_variance([[1.0, 0.0], [1.0, 1.0, 1.0], [0.5]]), 0.25)
    assert within_prompt_variance([[1.0], []]) is None


def test_member_baseline_removes_the_part_of_the_advantage_a_members_rollouts_share():
    members = torch.tensor([0, 1, 0, 1])  # G=4, K=2: slots 0, 2 member 0; slots 1, 3 member 1
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0],   # member 0 varies (1, 0), member 1 does not
                            [1.0, 0.0, 1.0, 0.0]])  # the members differ, each is certain: no within-member signal
    adv, kept = group_advantages(rewards, eps=0.0, member_of_slot=members)
    std0 = float(rewards[0].std())
    assert torch.allclose(adv[0], torch.tensor([0.5, 0.0, -0.5, 0.0]) / std0)  # around member 0's mean 0.5
    assert torch.all(adv[1] == 0) and kept.tolist() == [True, False]
    problem_adv, problem_kept = group_advantages(rewards, eps=0.0)  # the paper's baseline keeps both
    assert problem_kept.tolist() == [True, True] and problem_adv[0, 1] < 0  # member 1's rollout pushed down


def test_kl_and_entropy_in_chunks_of_positions_equal_those_of_whole_distributions(tiny_model_path, monkeypatch):
    """Two positions at a time, against each row's whole logits in a forward of its own (no padding)."""
    from contextlib import nullcontext

    model, tokenizer = policy.load_model(tiny_model_path).eval(), policy.load_tokenizer(tiny_model_path)
    base = policy.load_model(tiny_model_path).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in base.parameters():
            p.add_(0.02 * torch.randn_like(p))
    conversations = [policy.chat_messages("Answer.", q) for q in ("abc", "hello there", "x")]
    completions = ["defg", "a", "a longer answer"]
    kl_sum = entropy_sum = tokens = 0.0
    for conversation, completion in zip(conversations, completions):
        prompt = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + tokenizer(completion)["input_ids"] + [tokenizer.eos_token_id]])
        with torch.no_grad():
            log_p, log_q = (torch.log_softmax(m(input_ids=ids).logits[0, len(prompt) - 1 : -1], -1) for m in (model, base))
        kl_sum += float((log_p.exp() * (log_p - log_q)).sum())
        entropy_sum += float(-(log_p.exp() * log_p).sum())
        tokens += log_p.shape[0]

    monkeypatch.setattr(policy, "CHUNK_ELEMENTS", 3 * len(tokenizer) * 2)  # 3 rows x 2 positions
    distributions = policy.completion_distributions(model, tokenizer, conversations, completions)
    assert distributions.project is model.get_output_embeddings()  # hidden states, projected a chunk at a time
    assert len(distributions.chunks()) == 8  # the longest completion: 15 characters and EOS
    kl, entropy = kl_and_entropy(model, lambda: nullcontext(base), tokenizer, conversations, completions)
    assert kl > 0 and math.isclose(kl, kl_sum / tokens, rel_tol=1e-4)
    assert math.isclose(entropy, entropy_sum / tokens, rel_tol=1e-4)
