"""Regression tests for the gepa 0.1.4 seam the fast phase relies on: a GEPA state seeded with the whole
population, resumed by `gepa.optimize` without re-scoring the seed, within a budget."""

import pytest
from doubles import (BatchingScriptedReflectionLM, EchoingReflectionLM, ScriptedReflectionLM, SettlingScriptedReflectionLM,
                     ShortAnswerTask)

from fastslow.config import GEPAConfig
from fastslow.fast.adapter import PolicyAdapter
from fastslow.fast.gepa_driver import FastJob, FastPhaseSettings, run_fast_phase, seeded_state
from fastslow.fast.population import Member
from fastslow.policy import Sampling, load_model, load_tokenizer


def test_gepa_version_is_the_pinned_one():
    from importlib.metadata import version

    assert version("gepa") == "0.1.4"


def test_seeded_state_holds_every_member_as_a_root_with_its_scores():
    anchors = ShortAnswerTask().problems("train", 3, 0)
    members = [Member("a", "A", None, {p.id: s for p, s in zip(anchors, [1.0, 0.0, 0.5])}),
               Member("b", "B", None, {p.id: s for p, s in zip(anchors, [0.0, 1.0, 0.5])})]
    state = seeded_state(members, anchors)
    assert [c["system_prompt"] for c in state.program_candidates] == ["A", "B"]
    assert state.prog_candidate_val_subscores == [{0: 1.0, 1: 0.0, 2: 0.5}, {0: 0.0, 1: 1.0, 2: 0.5}]
    assert state.program_at_pareto_front_valset == {0: {0}, 1: {1}, 2: {0, 1}}
    assert state.total_num_evals == 0 and state.is_consistent()


def fast_phase(population, anchors, adapter, reflection, work_dir, *, budget, proposals=1, skip_repeats=False,
               reuse=False):
    """One fast phase of cycle 1 at K = 2, minibatches of 3, the compact template, seed 0."""
    settings = FastPhaseSettings(GEPAConfig(reflection_minibatch_size=3, proposals_per_iteration=proposals,
                                            skip_repeats=skip_repeats, reuse_anchor_rollouts=reuse),
                                 population_size=2, template="compact")
    return run_fast_phase(FastJob(1, population, anchors, budget, seed=0), settings, adapter, reflection, work_dir)


@pytest.fixture
def adapter(tiny_model_path):
    model = load_model(tiny_model_path)
    return PolicyAdapter(model, load_tokenizer(tiny_model_path), ShortAnswerTask(), Sampling(max_new_tokens=8))


def test_adapter_accepts_an_empty_batch_and_scores_pairs(adapter):
    assert adapter.evaluate([], {"system_prompt": "x"}).scores == []
    problems = ShortAnswerTask().problems("train", 2, 0)
    batch = adapter.evaluate(problems, {"system_prompt": "x"}, capture_traces=True)
    assert len(batch.scores) == 2 and all(0 <= s <= 1 for s in batch.scores)
    records = adapter.make_reflective_dataset({"system_prompt": "x"}, batch, ["system_prompt"])["system_prompt"]
    assert set(records[0]) == {"Inputs", "Generated Outputs", "Feedback"}
    assert records[0]["Inputs"] == problems[0].prompt and "characters" in records[0]["Feedback"]


def test_the_fast_phase_samples_as_many_rows_at_once_as_an_rl_step(adapter, monkeypatch):
    """Decoding is latency-bound on a GPU, so the fast phase samples up to an RL step's rows (which the trainer
    samples at once) per generation: 100 rows in one call under 16 problems x 8 rollouts, two at 64 rows a call."""
    from types import SimpleNamespace

    from fastslow import shared_prefix
    from fastslow.fast.adapter import batch_rows

    calls, generate = [], shared_prefix.generate
    monkeypatch.setattr(shared_prefix, "generate",
                        lambda model, prompts, *args, **kwargs: calls.append(len(prompts)) or generate(model, prompts,
                                                                                                        *args, **kwargs))
    pairs = [("Answer.", p) for p in ShortAnswerTask().problems("train", 100, 0)]
    adapter.batch_rows = batch_rows(SimpleNamespace(loop=SimpleNamespace(problems_per_step=16, rollouts_per_problem=8)))
    assert len(adapter.rollouts(pairs)) == 100 and calls == [100]
    calls.clear()
    adapter.batch_rows = 64
    assert len(adapter.rollouts(pairs)) == 100 and calls == [64, 36]


def test_fast_phase_is_seeded_with_the_population_and_keeps_the_budget(adapter, tmp_path):
    anchors = ShortAnswerTask().problems("train", 6, 1)
    population = [Member("seed", "Answer."), Member("c0-1", "Answer tersely.", "seed")]
    reflection = ScriptedReflectionLM()
    result = fast_phase(population, anchors, adapter, reflection, tmp_path / "c1", budget=30)
    assert result.rescore_rollouts == 2 * 6  # both carried members re-scored, outside the budget
    assert result.metric_calls <= 30 + len(anchors)  # at most one anchor-set evaluation past the budget
    assert adapter.counter.rollouts == result.metric_calls + result.rescore_rollouts
    assert 1 <= len(result.population) <= 2
    assert [m.mean_score for m in result.population] == sorted((m.mean_score for m in result.population), reverse=True)
    for member in result.population:
        assert set(member.scores) == {p.id for p in anchors}
        assert member.id in {"seed", "c0-1"} or (member.id.startswith("c1-") and member.parent in {"seed", "c0-1"} | {m.id for m in result.population})
    # the reflection LM saw a parent that is a carried member, in the compact template
    assert reflection.prompts and reflection.prompts[0].startswith("Instruction:")
    assert any(text in reflection.prompts[0] for text in ("Answer.", "Answer tersely."))
    with pytest.raises(FileExistsError):  # a cycle's GEPA directory is never reused (ids are positions)
        fast_phase(population, anchors, adapter, reflection, tmp_path / "c1", budget=30)


@pytest.mark.parametrize("fail_batches", [False, True])
def test_batched_proposals_reflect_once_per_iteration_and_keep_the_budget(adapter, tmp_path, fail_batches):
    anchors = ShortAnswerTask().problems("train", 12, 1)
    population = [Member("seed", "Answer."), Member("c0-1", "Answer tersely.", "seed")]
    reflection = BatchingScriptedReflectionLM(fail_batches=fail_batches)
    result = fast_phase(population, anchors, adapter, reflection, tmp_path / "c1", budget=60, proposals=4)
    assert reflection.batch_sizes and max(reflection.batch_sizes) > 1  # several proposals in one call
    # an iteration costs 2 x 3 x 4 = 24 minibatch rollouts plus an anchor-set evaluation per accepted child (at
    # most 4); one starts only while 24 more fit in the budget of 60, so at most two run
    assert 1 <= len(reflection.batch_sizes) <= 2
    assert result.rounds == len(reflection.batch_sizes)  # one round per iteration, its proposals in one call
    assert 24 * len(reflection.batch_sizes) <= result.metric_calls <= 60 + 4 * len(anchors)
    # every prompt counted once; after a failed batch GEPA asks once per prompt and nothing counts as failed
    assert result.reflection_calls == len(reflection.prompts) == sum(reflection.batch_sizes)
    assert result.reflection_failures == 0


def test_a_batch_with_a_failed_slot_asks_no_prompt_twice_and_keeps_its_answers(adapter, tmp_path):
    anchors = ShortAnswerTask().problems("train", 12, 1)
    population = [Member("seed", "Answer."), Member("c0-1", "Answer tersely.", "seed")]
    reflection = SettlingScriptedReflectionLM()  # every second prompt fails
    result = fast_phase(population, anchors, adapter, reflection, tmp_path / "c1", budget=60, proposals=4)
    # GEPA asks again one prompt at a time after a batch with a failure; those calls replay the batch's outcomes
    assert reflection.batch_sizes and len(reflection.prompts) == sum(reflection.batch_sizes) == result.reflection_calls
    assert result.reflection_failures == result.reflection_calls // 2 and not result.reflection_failed
    # the answered half became children that GEPA scored on their minibatches: 3 rollouts each beside the parents'
    assert result.metric_calls >= 3 * 4 * result.rounds + 3 * (result.reflection_calls - result.reflection_failures)


@pytest.mark.parametrize("skip_repeats", [True, False])
def test_a_proposal_that_repeats_its_parent_is_dropped_before_scoring(adapter, tmp_path, skip_repeats):
    anchors = ShortAnswerTask().problems("train", 6, 1)
    population = [Member("seed", "Answer."), Member("c0-1", "Answer tersely.", "seed")]
    reflection = EchoingReflectionLM()
    result = fast_phase(population, anchors, adapter, reflection, tmp_path / "c1", budget=24,
                        skip_repeats=skip_repeats)
    iterations = result.reflection_calls
    assert iterations >= 2 and result.reflection_failures == 0 and result.rounds == iterations
    assert {m.text for m in result.population} <= {"Answer.", "Answer tersely."}
    if skip_repeats:  # each iteration scores only its parent on the minibatch; no child is scored or kept
        assert result.reflection_repeats == iterations
        assert result.metric_calls == 3 * iterations
        # the budget is charged for each repeat as if it had been scored: GEPA runs the iterations it would have
        assert result.budget_spent == 6 * iterations and 24 - 6 < result.budget_spent <= 24
        assert {m.id for m in result.population} == {"seed", "c0-1"}
    else:  # GEPA scores each repeat on the minibatch too (and on the anchor set when noise gets it accepted)
        assert result.reflection_repeats == 0 and result.budget_spent == result.metric_calls
        assert result.metric_calls >= 2 * 3 * iterations


def test_a_minibatch_evaluation_takes_the_anchor_sets_unshown_rollouts_once(adapter):
    """gepa.reuse_anchor_rollouts: rollouts sampled on the whole anchor set serve later minibatch evaluations of the
    same prompt on the same problems, each once; a minibatch's own rollouts never serve anything."""
    from fastslow.fast.adapter import UnshownRollouts
    from fastslow.fast.gepa_driver import rescore

    anchors = ShortAnswerTask().problems("train", 6, 1)
    adapter.unshown = UnshownRollouts(len(anchors))
    rescore([Member("seed", "Answer.")], anchors, adapter)
    first = adapter.unshown.by_pair[("Answer.", anchors[0].id)][0]
    sampled = adapter.counter.rollouts
    [served] = adapter.batch_evaluate([({"system_prompt": "Answer."}, anchors[:3])])
    assert adapter.counter.rollouts == sampled and served.trajectories[0] is first  # nothing sampled
    [again, child] = adapter.batch_evaluate([({"system_prompt": "Answer."}, anchors[:3]),
                                             ({"system_prompt": "Answer briefly."}, anchors[:3])])
    assert adapter.counter.rollouts == sampled + 6 and again.trajectories[0] is not first  # each is taken once
    assert adapter.unshown.taken == 3
    adapter.batch_evaluate([({"system_prompt": "Answer briefly."}, anchors)])  # an anchor-set evaluation adds its own
    [from_anchor_set] = adapter.batch_evaluate([({"system_prompt": "Answer briefly."}, anchors[:3])])
    assert adapter.counter.rollouts == sampled + 12 and adapter.unshown.taken == 6
    assert from_anchor_set.trajectories[0] is not child.trajectories[0]  # not the minibatch's own


def test_with_reuse_a_rounds_parents_cost_no_rollouts(adapter, tmp_path):
    """One round of 4 proposals on 12 anchors: GEPA's 4 minibatches are disjoint, so every parent's 3 rollouts come
    from the re-score; the budget is charged as before and the rollouts sampled are counted without them."""
    anchors = ShortAnswerTask().problems("train", 12, 1)
    population = [Member("seed", "Answer."), Member("c0-1", "Answer tersely.", "seed")]
    result = fast_phase(population, anchors, adapter, BatchingScriptedReflectionLM(), tmp_path / "c1", budget=24,
                        proposals=4, reuse=True)
    assert result.rounds == 1 and result.anchor_rollouts_reused == 4 * 3
    assert adapter.counter.rollouts == result.rollouts == result.metric_calls + result.rescore_rollouts - 12
    assert adapter.unshown is None  # the store lives for one fast phase
