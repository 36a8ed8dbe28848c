"""Rollout reuse (`loop.reuse_fast_rollouts`): the fast phase's rollouts under the members that make the next
population, kept per (member, anchor problem) for the cycle's RL steps (docs/DESIGN.md).

The fast phase samples with the weights the cycle's first RL step starts from, under the same sampling settings,
so such a rollout is a sample the RL step could have drawn itself for that member's slots: on-policy at the cycle's
first step, a few optimizer steps stale later, which the CISPO ratio against its stored log-probs accounts for.
Rollouts under candidates that did not make the population are not kept (no slot samples their prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastslow.fast.adapter import Rollout
from fastslow.fast.population import Member
from fastslow.tasks import Problem


class ReusableRollouts:
    """Stored rollouts per (member id, problem id), in the order they were sampled; each is taken once."""

    def __init__(self, rollouts: Sequence[Rollout], population: Sequence[Member]):
        member_of = {}
        for member in population:
            member_of.setdefault(member.text, member.id)
        self.stored: dict[tuple[str, str], list[Rollout]] = {}
        for rollout in rollouts:
            if rollout.system_prompt in member_of:
                self.stored.setdefault((member_of[rollout.system_prompt], rollout.problem.id), []).append(rollout)

    def __len__(self) -> int:
        return sum(len(kept) for kept in self.stored.values())

    def take(self, problem: Problem, slots: Sequence[Member]) -> list[Rollout | None]:
        """For each of a problem's slots (the member its rollout uses), a stored rollout of that member on that
        problem, removed from the store, or None where none is left (the slot samples a fresh one)."""
        return [kept.pop(0) if (kept := self.stored.get((member.id, problem.id))) else None for member in slots]
