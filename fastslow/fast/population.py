"""The population of prompts (the fast weights) and how the next one is taken from GEPA's Pareto front."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

SEED_ID = "seed"


@dataclass
class Member:
    id: str
    text: str
    parent: str | None = None
    scores: dict[str, float] = field(default_factory=dict)  # problem id -> score on the cycle's anchor set
    # within-prompt reward variance its rollouts showed in the last slow phase (None: not measured yet); what the
    # weights can learn under this prompt (fastslow.slow.objective.within_prompt_variance)
    signal: float | None = None

    @property
    def mean_score(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "mean_score": self.mean_score}

    @classmethod
    def from_json(cls, data: Mapping) -> Member:
        return cls(id=data["id"], text=data["text"], parent=data.get("parent"), scores=dict(data.get("scores", {})),
                   signal=data.get("signal"))


def best(population: Sequence[Member]) -> Member:
    """The member with the highest mean score (the first on ties: populations are kept best first)."""
    return max(population, key=lambda m: m.mean_score)


def top_k_from_front(
    candidates: Sequence[Member], front: Mapping[str, set[int]], k: int, keep: int | None = None
) -> list[Member]:
    """Top-K of the per-instance Pareto front.

    `front` maps each anchor problem to the indices of the candidates that reach the best score on it.
    Candidates on the front are ranked by how many problems they are best on, then by mean score; texts
    that repeat are kept once (GEPA may accept a duplicate). If the front holds fewer than K distinct
    texts, the best remaining candidates by mean score fill the population. `keep` (a candidate index) is
    chosen first, whatever its rank (`signal_member`).
    """
    wins = [0] * len(candidates)
    for indices in front.values():
        for i in indices:
            wins[i] += 1
    on_front = sorted((i for i in range(len(candidates)) if wins[i]), key=lambda i: (-wins[i], -candidates[i].mean_score, i))
    rest = sorted((i for i in range(len(candidates)) if not wins[i]), key=lambda i: (-candidates[i].mean_score, i))
    chosen: list[Member] = []
    texts: set[str] = set()
    for i in ([keep] if keep is not None else []) + on_front + rest:
        if len(chosen) == k:
            break
        if candidates[i].text.strip() not in texts:
            texts.add(candidates[i].text.strip())
            chosen.append(candidates[i])
    return sorted(chosen, key=lambda m: -m.mean_score)


def signal_member(candidates: Sequence[Member]) -> int | None:
    """The candidate the weights can learn most under: the highest measured within-prompt reward variance, if any
    was measured and is above zero; before anything is measured, the seed prompt (the prompt the run was given)."""
    measured = [i for i, m in enumerate(candidates) if m.signal is not None]
    if not measured:
        return next((i for i, m in enumerate(candidates) if m.id == SEED_ID), None)
    best_index = max(measured, key=lambda i: (candidates[i].signal, -i))
    return best_index if candidates[best_index].signal > 0 else None


def assign_prompts(population: Sequence[Member], rollouts_per_problem: int, allocation: str = "even") -> list[Member]:
    """Which member each of a problem's G rollouts uses.

    even (the paper): slot i gets member i mod K, so G/K each when K divides G.
    signal: every member gets one rollout and the other G - K go to members in proportion to their measured
    within-prompt reward variance (`Member.signal`; a member not measured yet counts as the mean of those that
    were). A member whose rollouts are all alike teaches the weights nothing more from a second one. If no member
    has shown any variance, the split is even."""
    K, G = len(population), rollouts_per_problem
    signals = [m.signal for m in population]
    measured = [s for s in signals if s is not None]
    if allocation == "even" or K >= G or not any(s > 0 for s in measured):
        return [population[slot % K] for slot in range(G)]
    prior = sum(measured) / len(measured)
    weights = [prior if s is None else s for s in signals]
    shares = [(G - K) * w / sum(weights) for w in weights]
    counts = [1 + int(share) for share in shares]
    by_remainder = sorted(range(K), key=lambda i: (-(shares[i] - int(shares[i])), i))
    for i in by_remainder[: G - sum(counts)]:  # largest remainders first, ties to the better member
        counts[i] += 1
    return [member for member, count in zip(population, counts) for _ in range(count)]
