"""The fast phase: one short GEPA round seeded with the whole population (weights frozen).

gepa 0.1.4's `optimize` takes a single seed candidate. To seed it with K prompts we build its state
ourselves (every member re-scored under the current policy, all as roots of the search), save it into a
fresh directory and let `optimize` resume from there. Semi-internal API: gepa is pinned and
tests/test_gepa_seam.py guards this seam.

A fast phase is a function of its job (the weights, population, anchor set, budget and seed: `FastJob`) and the
run's settings (`FastPhaseSettings`) alone: its rollouts are sampled under a generator seeded from the job, so it
computes the same population wherever it runs, in the training process or in a worker beside it
(fastslow.fast.phase).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import gepa
import torch
from gepa.core.state import GEPAState, ValsetEvaluation
from gepa.proposer.reflective_mutation.reflection_lm import StatelessReflectionLM
from gepa.strategies.eval_policy import FullEvaluationPolicy
from gepa.strategies.proposal_sampling import IndependentSampling, SingleMutationSampling

from fastslow.config import Config, GEPAConfig
from fastslow.fast.adapter import COMPONENT, PolicyAdapter, UnshownRollouts
from fastslow.fast.population import Member, signal_member, top_k_from_front
from fastslow.fast.records import resolve_template
from fastslow.fast.reuse import ReusableRollouts
from fastslow.guards import no_instruction
from fastslow.reflection import ReflectionError
from fastslow.tasks import Problem


@dataclass
class FastJob:
    """One cycle's fast phase: what it starts from."""

    cycle: int
    population: list[Member]  # carried from the last cycle, best first (cycle 0: the seed prompt)
    anchors: list[Problem]  # the problems of the cycle's T planned batches
    budget: int  # GEPA metric calls (the cycle's share plus what the last cycle carried over)
    seed: int  # GEPA's and the rollouts' generators
    weights_step: int = 0  # optimizer steps the weights had taken (a step using this population is that much later)
    weights: Path | None = None  # a worker loads them from this checkpoint's model directory; None: the starting weights


@dataclass(frozen=True)
class FastPhaseSettings:
    """How every cycle's fast phase runs, built once from the config (`of`)."""

    gepa: GEPAConfig  # budget, reflection minibatch, proposals per round, re-scoring, skip_repeats
    population_size: int  # K: the top-K of GEPA's front become the population
    template: str  # the reflection prompt template, resolved (fastslow.fast.records)
    keep_signal_member: bool = False  # population.signal_member stays in the population
    keep_rollouts: bool = False  # keep the rollouts under the new population for the RL steps (fastslow.fast.reuse)
    refuse: Callable[[str], str | None] = field(default=no_instruction)  # why a reflection cannot become a prompt

    @classmethod
    def of(cls, config: Config, refuse: Callable[[str], str | None] = no_instruction) -> FastPhaseSettings:
        """`refuse`: fastslow.guards.PromptRoom.refusal (no instruction in it, too long for the context)."""
        return cls(gepa=config.gepa, population_size=config.loop.population_size,
                   template=config.reflection.resolved_template(config.model.path),
                   keep_signal_member=config.loop.keep_signal_member,
                   keep_rollouts=config.mode == "fst" and config.loop.reuse_fast_rollouts, refuse=refuse)


@dataclass
class FastPhaseResult:
    population: list[Member]  # best first
    metric_calls: int  # GEPA scoring rollouts (re-scoring not included)
    budget_spent: int  # metric_calls, plus what the dropped repeats are charged (_BudgetStopper)
    rescore_rollouts: int
    reflection_calls: int
    reflection_failures: int
    reflection_repeats: int  # proposals that repeated their parent's text, dropped before scoring (skip_repeats)
    rounds: int  # GEPA iterations: the fast phase's sequential rounds (_Rounds)
    seconds_reflect: float
    reflection_failed: bool  # every reflection failed: the previous population was kept
    reusable: ReusableRollouts | None = None  # keep_rollouts: the rollouts under the new population's members
    seconds_generate: float = 0.0  # sampling its rollouts
    seconds_score: float = 0.0  # the verifier on them
    seconds: float = 0.0  # the whole fast phase, wall clock, wherever it ran
    weights_step: int = 0  # the job's: optimizer steps the weights it sampled from had taken
    fallback: bool = False  # it did not run (its worker failed): the job's population as it came
    budget: int = 0  # the job's: budget - budget_spent carries over to the next cycle
    seconds_waited: float = 0.0  # overlap: how long the training process waited for it at the cycle boundary
    anchor_rollouts_reused: int = 0  # gepa.reuse_anchor_rollouts: metric calls served by rollouts already sampled

    @property
    def rollouts(self) -> int:
        """Rollouts sampled: GEPA's metric calls (each charged to the budget, reused or not) and the re-score."""
        return self.metric_calls + self.rescore_rollouts - self.anchor_rollouts_reused


class _NoSeedEvaluation(FullEvaluationPolicy):
    """The seeded state already holds every member's scores: don't re-score the seed on resume."""

    def get_seed_eval_batch(self, loader):
        return []


class _BudgetStopper:
    """Stop before an iteration could overrun the budget on its minibatch evaluations (parent and child for
    each of its proposals).

    An accepted child also costs a full anchor-set evaluation, which may run past the budget; the
    loop carries the difference (positive or negative) into the next cycle's budget. `charged()`: calls spent
    without rollouts (a dropped repeat is charged the minibatch evaluation it would have cost, so GEPA runs the
    iterations it would have run and only the rollouts are saved).
    """

    def __init__(self, budget: int, minibatch_size: int, proposals: int = 1, charged: Callable[[], int] = lambda: 0):
        self.budget, self.per_iteration, self.charged = budget, 2 * minibatch_size * proposals, charged

    def __call__(self, state: GEPAState) -> bool:
        return state.total_num_evals + self.charged() + self.per_iteration > self.budget


class _Rounds:
    """A GEPA callback counting the cycle's iterations. Each is a round the next must wait for: the parents' minibatch
    generation, a reflection call, the children's generation, the accepted children's anchor-set generation. Where a
    generation call costs about the same for 3 rows as for 300 (long completions, a GPU), the fast phase's wall clock
    goes with its rounds rather than its rollouts (docs/DESIGN.md, "What FST costs")."""

    def __init__(self):
        self.count = 0

    def on_iteration_start(self, event) -> None:
        self.count += 1


class _CountingReflection:
    """The reflection LM as GEPA calls it, counting calls, failures and seconds. An answer that `refuse` objects to
    (no instruction in it, too long) is a failure like an error. `batch_complete` (one call for an iteration's
    proposals) is offered when the LM has it. A batch with a failed slot raises, and GEPA then asks again one prompt
    at a time: those calls replay what the batch settled (`settled`), so no prompt reaches the LM twice."""

    def __init__(self, reflection_lm: Callable[[str], str], refuse: Callable[[str], str | None]):
        self.reflection_lm, self.refuse, self.calls, self.failures, self.seconds = reflection_lm, refuse, 0, 0, 0.0
        self.settled: dict[str, list[str | Exception]] = {}  # prompt -> outcomes of a failed batch, not yet replayed
        if hasattr(reflection_lm, "batch_complete"):
            self.batch_complete = self._batch_complete

    def _checked(self, answer: str) -> str:
        reason = self.refuse(answer)
        if reason:
            raise ReflectionError(f"reflection answer refused: {reason}")
        return answer

    def __call__(self, prompt: str) -> str:
        if self.settled.get(prompt):  # GEPA asking again after a failed batch: counted when the batch ran
            outcome = self.settled[prompt].pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome
        self.calls += 1
        start = time.perf_counter()
        try:
            return self._checked(self.reflection_lm(prompt))
        except Exception:
            self.failures += 1  # GEPA skips this proposal (raise_on_exception=False)
            raise
        finally:
            self.seconds += time.perf_counter() - start

    def _settle(self, outcome: str | Exception) -> str | Exception:
        try:
            return outcome if isinstance(outcome, Exception) else self._checked(outcome)
        except ReflectionError as error:
            return error

    def _batch_complete(self, messages_list: list[list[dict]]) -> list[str]:
        prompts, self.settled = [m[-1]["content"] for m in messages_list], {}
        start = time.perf_counter()
        try:  # a batch call that raises as a whole counts nothing: GEPA asks again one prompt at a time
            outcomes = [self._settle(o) for o in self.reflection_lm.batch_complete(prompts)]
        finally:
            self.seconds += time.perf_counter() - start
        failed = sum(isinstance(o, Exception) for o in outcomes)
        self.calls, self.failures = self.calls + len(outcomes), self.failures + failed
        if failed:
            for prompt, outcome in zip(prompts, outcomes):
                self.settled.setdefault(prompt, []).append(outcome)
            raise ReflectionError(f"{failed} of {len(outcomes)} batched reflections failed")
        return outcomes


class _NoRepeats(StatelessReflectionLM):
    """GEPA's reflector, less the proposals that repeat the instruction they were asked to improve. GEPA skips a
    proposal with no new text before scoring it; a repeat would be scored on a minibatch at temperature 1, where it
    beats its parent by noise alone about as often as not, and then costs an anchor-set evaluation and a place in the
    population (half the children kept in micro-v4's suite runs, 2026-12-01, repeated their parent). The budget is
    charged for a dropped repeat as if it had been scored (_BudgetStopper): skipping saves rollouts, not iterations."""

    def __init__(self, lm, template: str):
        super().__init__(lm, template)
        self.repeats = 0

    def reflect_many(self, jobs):
        results = super().reflect_many(jobs)
        for (candidate, _, _), (proposal, _) in zip(jobs, results):
            for name, text in list(proposal.new_texts.items()):
                if text.strip() == candidate[name].strip():
                    del proposal.new_texts[name]
                    self.repeats += 1
        return results


class _QuietLogger:
    def log(self, message: str) -> None:
        pass


def rescore(population: Sequence[Member], anchors: Sequence[Problem], adapter: PolicyAdapter) -> list[Member]:
    """Every member's score on every anchor problem under the current weights (one batched generation; as any
    anchor-set evaluation, its rollouts may then serve GEPA's parents: gepa.reuse_anchor_rollouts)."""
    evaluations = adapter.batch_evaluate([({COMPONENT: m.text}, list(anchors)) for m in population])
    return [replace(m, scores={p.id: score for p, score in zip(anchors, evaluation.scores)})
            for m, evaluation in zip(population, evaluations)]


def _valset_evaluation(member: Member, anchors: Sequence[Problem]) -> ValsetEvaluation:
    # GEPA's list loader names problems by position 0..N-1; the driver maps them back to problem ids.
    return ValsetEvaluation(
        outputs_by_val_id={i: None for i in range(len(anchors))},
        scores_by_val_id={i: member.scores[p.id] for i, p in enumerate(anchors)},
    )


def seeded_state(population: Sequence[Member], anchors: Sequence[Problem]) -> GEPAState:
    """A GEPA state holding every (already scored) member as a root of the search."""
    first, *others = population
    state = GEPAState({COMPONENT: first.text}, _valset_evaluation(first, anchors), frontier_type="instance")
    for member in others:
        state.update_state_with_new_program(
            parent_program_idx=[],
            new_program={COMPONENT: member.text},
            valset_evaluation=_valset_evaluation(member, anchors),
            run_dir=None,
            num_metric_calls_by_discovery_of_new_program=0,
        )
    state.num_full_ds_evals = len(population)
    state.total_num_evals = 0  # re-scoring is outside the cycle's budget
    return state


def run_fast_phase(job: FastJob, settings: FastPhaseSettings, adapter: PolicyAdapter,
                   reflection_lm: Callable[[str], str], work_dir: Path) -> FastPhaseResult:
    """Re-score the carried population, run GEPA on the anchor set within the job's budget, and return the top-K of
    the per-instance Pareto front (with `keep_signal_member`, always including the member the weights learn most
    under: population.signal_member). With `keep_rollouts`, also the rollouts sampled under the new population's
    members (fastslow.fast.reuse). With `gepa.skip_repeats`, a proposal whose text is its parent's is dropped before
    GEPA scores it (_NoRepeats). The rollouts draw from a generator seeded by `job.seed`, not the caller's."""
    start, counter = time.perf_counter(), replace(adapter.counter)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(job.seed)
        result = _run_gepa(job, settings, adapter, reflection_lm, work_dir)
    return replace(result, seconds=time.perf_counter() - start, weights_step=job.weights_step, budget=job.budget,
                   seconds_generate=adapter.counter.seconds_generate - counter.seconds_generate,
                   seconds_score=adapter.counter.seconds_score - counter.seconds_score)


def _run_gepa(job: FastJob, settings: FastPhaseSettings, adapter: PolicyAdapter, reflection_lm: Callable[[str], str],
              work_dir: Path) -> FastPhaseResult:
    population, anchors, budget, config = job.population, job.anchors, job.budget, settings.gepa
    minibatch_size, proposals = config.reflection_minibatch_size, config.proposals(budget)
    keep_rollouts = settings.keep_rollouts
    adapter.record = [] if keep_rollouts else None
    adapter.unshown = UnshownRollouts(len(anchors)) if config.reuse_anchor_rollouts else None
    needs_scores = config.rescore_population or any(set(m.scores) != {p.id for p in anchors} for m in population)
    carried = rescore(population, anchors, adapter) if needs_scores else list(population)
    rescore_rollouts = len(population) * len(anchors) if needs_scores else 0

    work_dir.mkdir(parents=True, exist_ok=False)  # fresh per cycle: GEPA ids are positions in this anchor set
    seeded_state(carried, anchors).save(str(work_dir))
    reflection, rounds = _CountingReflection(reflection_lm, settings.refuse), _Rounds()
    template = resolve_template(settings.template)
    reflector = _NoRepeats(reflection, template) if config.skip_repeats else None

    def repeats() -> int:
        return reflector.repeats if reflector else 0

    def charged() -> int:  # a dropped repeat costs the budget the minibatch evaluation it would have had
        return repeats() * minibatch_size
    result = gepa.optimize(
        seed_candidate={COMPONENT: carried[0].text},
        trainset=list(anchors),
        valset=list(anchors),
        adapter=adapter,
        reflection_lm=None if reflector else reflection,
        reflection_strategy=reflector,
        candidate_selection_strategy="pareto",
        frontier_type="instance",
        reflection_minibatch_size=minibatch_size,
        reflection_prompt_template=template,
        sampling_strategy=IndependentSampling(proposals) if proposals > 1 else SingleMutationSampling(),
        stop_callbacks=[_BudgetStopper(budget, minibatch_size, proposals, charged)],
        callbacks=[rounds],
        val_evaluation_policy=_NoSeedEvaluation(),
        run_dir=str(work_dir),
        logger=_QuietLogger(),
        seed=job.seed,
        raise_on_exception=False,
        use_merge=False,
        track_best_outputs=False,
        display_progress_bar=False,
    )

    members = list(carried)
    for idx in range(len(carried), len(result.candidates)):
        parent_idx = next((p for p in result.parents[idx] if p is not None), None)
        members.append(
            Member(
                id=f"c{job.cycle}-{idx}",
                text=result.candidates[idx][COMPONENT],
                parent=members[parent_idx].id if parent_idx is not None else None,
                scores={anchors[i].id: s for i, s in result.val_subscores[idx].items()},
            )
        )
    failed = reflection.calls > 0 and reflection.failures == reflection.calls
    front = {anchors[i].id: idxs for i, idxs in result.per_val_instance_best_candidates.items()}
    keep = signal_member(members) if settings.keep_signal_member else None
    new_population = carried if failed else top_k_from_front(members, front, settings.population_size, keep)
    recorded, adapter.record = adapter.record, None
    reused, adapter.unshown = (adapter.unshown.taken if adapter.unshown else 0), None
    return FastPhaseResult(
        population=sorted(new_population, key=lambda m: -m.mean_score),
        metric_calls=result.total_metric_calls or 0,
        budget_spent=(result.total_metric_calls or 0) + charged(),
        rescore_rollouts=rescore_rollouts,
        anchor_rollouts_reused=reused,
        reflection_calls=reflection.calls,
        reflection_failures=reflection.failures,
        reflection_repeats=repeats(),
        rounds=rounds.count,
        seconds_reflect=reflection.seconds,
        reflection_failed=failed,
        reusable=ReusableRollouts(recorded, new_population) if keep_rollouts else None,
    )
