"""The slow-phase objective as the paper states it, in plain tensors (unit-tested against hand values).

- Advantages are normalised ONCE per problem over all G rollouts, whatever prompt each rollout used:
  A_i = (r_i - mean_G) / (std_G + eps).
- Groups whose G rewards are all equal carry no signal and are dropped (no resampling).
- CISPO: loss = -E[ sg(min(rho_t, cap)) * A * log pi(y_t) ], rho_t = pi_theta(y_t) / pi_old(y_t) the token
  importance ratio, truncated above only; plus beta * KL to the starting weights (k3 estimator, as TRL). pi_old is
  the sampler's log-prob where it is known (a reused fast-phase rollout, vLLM), else the current weights' (ratio 1).
- Token losses are averaged per problem (over its kept rollouts' tokens), then over kept problems.
- FST-distill (mode fst-distill) replaces CISPO by the exact per-token reverse KL(pi_student || pi_teacher) over the
  vocabulary, the same aggregation (reverse_kl_loss).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4, drop_zero_variance: bool = True,
                     member_of_slot: torch.Tensor | None = None):
    """rewards [groups, G] -> (advantages [groups, G], kept [groups] bool).

    `member_of_slot` [G] (the `member` baseline, rl.advantage_baseline): each rollout's baseline is the mean of its
    own member's rollouts on the problem instead of the whole group's; the scale stays the group's std. The part
    of the group advantage that a member's rollouts share, (mean_member - mean_G) / std_G, multiplies the score
    function of that member's samples, whose expectation is zero: it adds variance and no signal. A problem whose
    rewards vary only between members then has all-zero advantages and is dropped like a zero-variance group."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(mean)
    baseline = mean
    if member_of_slot is not None:
        baseline = torch.empty_like(rewards)
        for member in member_of_slot.unique():
            slots = member_of_slot == member
            baseline[:, slots] = rewards[:, slots].mean(dim=1, keepdim=True)
    advantages = (rewards - baseline) / (std + eps)
    varied = ~torch.isclose(std.squeeze(1), torch.zeros_like(std.squeeze(1)))
    if member_of_slot is not None:
        varied &= advantages.abs().amax(dim=1) > 0
    kept = varied if drop_zero_variance else torch.ones_like(varied)
    return advantages, kept


def row_weights(kept: torch.Tensor, tokens_per_row: torch.Tensor, total_kept_groups: int) -> torch.Tensor:
    """Weight of each rollout's summed token loss so that the loss is the mean over kept problems of each
    problem's token mean. kept [groups], tokens_per_row [groups * G] -> [groups * G]."""
    groups = kept.shape[0]
    tokens_per_group = tokens_per_row.view(groups, -1).sum(dim=1).clamp(min=1)
    per_group = kept.float() / (tokens_per_group * max(total_kept_groups, 1))
    return per_group.repeat_interleave(tokens_per_row.shape[0] // groups)


def cispo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor,
    importance_cap: float = 4.0,
    ref_logps: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    """logps/old_logps/ref_logps/mask [B, L]; advantages/weights [B]. Returns the scalar loss."""
    ratio = torch.exp(logps - old_logps)
    per_token = -torch.clamp(ratio, max=importance_cap).detach() * advantages.unsqueeze(1) * logps
    if ref_logps is not None and kl_coef:
        delta = ref_logps - logps
        per_token = per_token + kl_coef * (torch.exp(delta) - delta - 1)
    return ((per_token * mask).sum(dim=1) * weights).sum()


def reverse_kl_loss(student_logps: torch.Tensor, teacher_logps: torch.Tensor, mask: torch.Tensor,
                    weights: torch.Tensor) -> torch.Tensor:
    """FST-distill's loss: sum over rows of weight * sum over tokens of KL(p_student || p_teacher) at that position,
    exact over the vocabulary: sum_v p_s(v) (log p_s(v) - log p_t(v)). student_logps/teacher_logps [B, L, V]
    (log-softmax; the teacher's carry no gradient), mask [B, L], weights [B] (row_weights: token mean per problem,
    then mean over problems). Additive over positions, so a loss over chunks of positions is the sum of the chunks'."""
    per_token = (student_logps.exp() * (student_logps - teacher_logps.detach())).sum(dim=-1)
    return ((per_token * mask).sum(dim=1) * weights).sum()


def reward_signal(rewards: torch.Tensor, member_of_slot: torch.Tensor) -> dict[str, float | None]:
    """Where a step's learning signal comes from. rewards [groups, G]; member_of_slot [G]: which member made each
    slot's rollout. Among kept problems (rewards vary over the G rollouts):
    - `within_prompt_signal`: the share whose rewards vary within at least one member's rollouts. A problem whose
      rewards differ only between members, each member's rollouts all alike, trains the weights only through
      log-probs of completions the policy already makes with certainty under that member's prompt;
    - `within_prompt_variance_share`: the within-member part of the kept problems' reward variance (sum of squares
      around each member's mean over the sum around the group's mean); 1 - it is the between-member part.
    Both None when no problem is kept."""
    members = member_of_slot.unique()
    kept = rewards.std(dim=1) > 0 if rewards.shape[1] > 1 else torch.zeros(rewards.shape[0], dtype=torch.bool)
    if not kept.any():
        return {"within_prompt_signal": None, "within_prompt_variance_share": None}
    rewards = rewards[kept]
    within_varies = torch.zeros(rewards.shape[0], dtype=torch.bool)
    within_ss = torch.zeros(rewards.shape[0])
    for member in members:
        slots = rewards[:, member_of_slot == member]
        within_ss += ((slots - slots.mean(dim=1, keepdim=True)) ** 2).sum(dim=1)
        if slots.shape[1] > 1:
            within_varies |= slots.std(dim=1) > 0
    total_ss = ((rewards - rewards.mean(dim=1, keepdim=True)) ** 2).sum(dim=1)
    return {"within_prompt_signal": float(within_varies.float().mean()),
            "within_prompt_variance_share": float(within_ss.sum() / total_ss.sum())}


def within_prompt_variance(samples: list[list[float]]) -> float | None:
    """The mean, over problems with at least two rewards, of the unbiased variance of one member's rewards on a
    problem (`samples[problem]`); None when no problem has two. Zero means the member answers every problem the
    same way each time: a policy-gradient step has nothing to learn from under that prompt."""
    variances = [torch.tensor(s, dtype=torch.float64).var().item() for s in samples if len(s) > 1]
    return sum(variances) / len(variances) if variances else None


def behaviour_logps(logps: torch.Tensor, sampled: torch.Tensor | None) -> torch.Tensor:
    """pi_old per token [B, L]: the sampler's log-probs `sampled` where known, the current ones (detached: ratio 1)
    where `sampled` is NaN or absent (rows the current weights sampled; TRL's convention)."""
    current = logps.detach()
    return current if sampled is None else torch.where(torch.isnan(sampled), current, sampled)


@dataclass
class ImportanceStats:
    """How off-policy an update is: the token ratios pi_theta / pi_old over the tokens whose sampler log-probs are
    known, summed, counted above the cap, and counted; accumulated over a step's loss calls."""

    ratio_sum: float = 0.0
    capped: int = 0
    tokens: int = 0

    @torch.no_grad()
    def add(self, logps: torch.Tensor, sampled: torch.Tensor | None, mask: torch.Tensor, cap: float) -> None:
        if sampled is None:
            return
        known = mask.bool() & ~torch.isnan(sampled)
        ratio = torch.exp(logps.detach()[known] - sampled[known])
        self.ratio_sum += float(ratio.sum())
        self.capped += int((ratio > cap).sum())
        self.tokens += int(known.sum())
