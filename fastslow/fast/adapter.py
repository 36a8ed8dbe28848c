"""GEPA adapter over the current policy: a candidate is {"system_prompt": text}; scoring it on a problem is
one rollout of the policy under that system prompt, scored by the task's verifier. With `record` set, every
rollout is also kept there (loop.reuse_fast_rollouts: the slow phase may train on them)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gepa.core.adapter import EvaluationBatch

from fastslow.fast.records import reflective_record
from fastslow.policy import Completion, Sampling, chat_messages, sample
from fastslow.tasks import Problem, Task, Verdict

COMPONENT = "system_prompt"


@dataclass
class Rollout:
    problem: Problem
    system_prompt: str
    sample: Completion  # token ids and the sampler's log-probs
    verdict: Verdict

    @property
    def completion(self) -> str:
        return self.sample.text


class UnshownRollouts:
    """Rollouts this fast phase sampled on the whole anchor set (the population's re-score, GEPA's anchor-set
    evaluations of new members), not yet shown in a minibatch evaluation (gepa.reuse_anchor_rollouts). The weights do
    not move within a fast phase, so such a rollout is a sample of the same prompt on the same problem from the same
    policy as a new one would be; each is taken once. A minibatch evaluation's own rollouts never come back here:
    GEPA keeps a child for its minibatch scores, so they are not a fair sample of it."""

    def __init__(self, anchors: int):
        self.anchors, self.taken = anchors, 0
        self.by_pair: dict[tuple[str, str], deque[Rollout]] = defaultdict(deque)

    def add(self, rollouts: Iterable[Rollout]) -> None:
        for rollout in rollouts:
            self.by_pair[(rollout.system_prompt, rollout.problem.id)].append(rollout)

    def take(self, prompt: str, problem: Problem) -> Rollout | None:
        waiting = self.by_pair.get((prompt, problem.id))
        if not waiting:
            return None
        self.taken += 1
        return waiting.popleft()


@dataclass
class RolloutCounter:
    rollouts: int = 0
    seconds_generate: float = 0.0
    seconds_score: float = 0.0


def batch_rows(config) -> int:
    """Rows the fast phase samples in one generation: an RL step's, which the trainer samples at once, so they fit.
    Decoding is latency-bound on a GPU, so a call costs about the same whatever its rows: on one H100 a
    Qwen3-1.7B-shaped policy sampled 512 tokens for 64 rows in 22.0 s and for 32 in 23.6 s, and a population's
    96-row rescoring, split at 64 rows, took both (issue 23)."""
    return config.loop.problems_per_step * config.loop.rollouts_per_problem


class PolicyAdapter:
    """GEPAAdapter: scores prompts with the policy as it is now (its weights move between cycles)."""

    propose_new_texts = None  # gepa 0.1.4 looks this attribute up; None means "use the reflection LM"

    def __init__(self, model, tokenizer, task: Task, sampling: Sampling, counter: RolloutCounter | None = None,
                 engine=None, batch_rows: int = 64):
        self.model, self.tokenizer, self.task, self.sampling = model, tokenizer, task, sampling
        self.engine = engine  # fastslow.engine (None: transformers on `model`)
        self.batch_rows = batch_rows  # rows per generation (transformers; an engine batches on its own)
        self.counter = counter or RolloutCounter()
        self.record: list[Rollout] | None = None  # a list: every rollout is appended to it
        self.unshown: UnshownRollouts | None = None  # gepa.reuse_anchor_rollouts: set by the fast phase

    def rollouts(self, pairs: Sequence[tuple[str, Problem]]) -> list[Rollout]:
        """One batched generation for many (system prompt, problem) pairs, then the verifier on each."""
        if not pairs:
            return []
        start = time.perf_counter()
        conversations = [chat_messages(prompt, problem.prompt, self.sampling.prompt_placement)
                         for prompt, problem in pairs]
        completions = sample(self.model, self.tokenizer, conversations, self.sampling, batch_size=self.batch_rows,
                             engine=self.engine)
        scored = time.perf_counter()
        rollouts = [Rollout(problem, prompt, c, self.task.score(problem, c.text))
                    for (prompt, problem), c in zip(pairs, completions)]
        if self.record is not None:
            self.record.extend(rollouts)
        self.counter.rollouts += len(pairs)
        self.counter.seconds_generate += scored - start
        self.counter.seconds_score += time.perf_counter() - scored
        return rollouts

    # --- GEPAAdapter protocol ---
    def evaluate(self, batch: list[Problem], candidate: dict[str, str], capture_traces: bool = False) -> EvaluationBatch:
        return self.batch_evaluate([(candidate, batch)])[0]

    def batch_evaluate(self, items: list[tuple[dict[str, str], list[Problem]]]) -> list[EvaluationBatch]:
        """Many (candidate, minibatch) pairs in one generation call: GEPA scores parents and children together. With
        `unshown` set, a minibatch evaluation first takes the rollouts the fast phase already has for its pairs (so a
        round's parents usually need no generation call), and an evaluation on the whole anchor set adds its own."""
        pairs = [(candidate[COMPONENT], problem) for candidate, batch in items for problem in batch]
        store = self.unshown
        whole = [store is not None and len(batch) >= store.anchors for _, batch in items for _ in batch]
        taken = [None if store is None or on_all else store.take(*pair) for pair, on_all in zip(pairs, whole)]
        fresh = iter(self.rollouts([pair for pair, rollout in zip(pairs, taken) if rollout is None]))
        all_rollouts = [rollout or next(fresh) for rollout in taken]
        if store is not None:
            store.add(rollout for rollout, on_all in zip(all_rollouts, whole) if on_all)
        rollouts = iter(all_rollouts)
        results = []
        for _, batch in items:
            mine = [next(rollouts) for _ in batch]
            results.append(
                EvaluationBatch(
                    outputs=[r.completion for r in mine],
                    scores=[r.verdict.reward for r in mine],
                    trajectories=mine,
                )
            )
        return results

    def make_reflective_dataset(
        self, candidate: dict[str, str], eval_batch: EvaluationBatch, components_to_update: list[str]
    ) -> dict[str, list[dict[str, str]]]:
        records = [
            reflective_record(r.problem.prompt, r.completion, r.verdict.feedback) for r in eval_batch.trajectories or []
        ]
        return {component: records for component in components_to_update}
