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

    @property
    def mean_score(self) -> float:
        return sum(self.scores.values()) / len(self.scores) if self.scores else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "mean_score": self.mean_score}

    @classmethod
    def from_json(cls, data: Mapping) -> Member:
        return cls(id=data["id"], text=data["text"], parent=data.get("parent"), scores=dict(data.get("scores", {})))


def best(population: Sequence[Member]) -> Member:
    """The member with the highest mean score (the first on ties: populations are kept best first)."""
    return max(population, key=lambda m: m.mean_score)


def top_k_from_front(
    candidates: Sequence[Member], front: Mapping[str, set[int]], k: int
) -> list[Member]:
    """Top-K of the per-instance Pareto front.

    `front` maps each anchor problem to the indices of the candidates that reach the best score on it.
    Candidates on the front are ranked by how many problems they are best on, then by mean score; texts
    that repeat are kept once (GEPA may accept a duplicate). If the front holds fewer than K distinct
    texts, the best remaining candidates by mean score fill the population.
    """
    wins = [0] * len(candidates)
    for indices in front.values():
        for i in indices:
            wins[i] += 1
    on_front = sorted((i for i in range(len(candidates)) if wins[i]), key=lambda i: (-wins[i], -candidates[i].mean_score, i))
    rest = sorted((i for i in range(len(candidates)) if not wins[i]), key=lambda i: (-candidates[i].mean_score, i))
    chosen: list[Member] = []
    texts: set[str] = set()
    for i in on_front + rest:
        if len(chosen) == k:
            break
        if candidates[i].text.strip() not in texts:
            texts.add(candidates[i].text.strip())
            chosen.append(candidates[i])
    return sorted(chosen, key=lambda m: -m.mean_score)


def assign_prompts(population: Sequence[Member], rollouts_per_problem: int) -> list[Member]:
    """Which member each of a problem's G rollouts uses: slot i gets member i mod K (G/K each when K divides G)."""
    return [population[slot % len(population)] for slot in range(rollouts_per_problem)]
