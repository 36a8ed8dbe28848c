"""Pareto top-K, G/K prompt assignment, the data plan and anchor sets, against hand-made cases."""

import pytest

from fastslow.data import DataPlan
from fastslow.errors import FastSlowError
from fastslow.fast.population import Member, assign_prompts, best, top_k_from_front
from fastslow.tasks import Problem


def member(i, scores, text=None):
    return Member(f"m{i}", text or f"prompt {i}", None, dict(zip("abcd", scores)))


def test_top_k_prefers_the_pareto_front_then_mean_score():
    candidates = [
        member(0, [1, 0, 0, 0]),  # best on a only
        member(1, [0, 1, 1, 0]),  # best on b and c
        member(2, [0.5, 0.5, 0.5, 0.9]),  # highest mean, best on d
        member(3, [0.9, 0.9, 0.9, 0.8]),  # high mean but on no front instance... (ties below)
    ]
    front = {"a": {0}, "b": {1}, "c": {1}, "d": {2}}
    top = top_k_from_front(candidates, front, k=2)
    assert [m.id for m in top] == ["m2", "m1"]  # m1 wins 2 instances, then m0/m2 (1 each) by mean: m2
    assert top[0].mean_score >= top[1].mean_score  # returned best first
    top3 = top_k_from_front(candidates, front, k=3)
    assert {m.id for m in top3} == {"m0", "m1", "m2"}  # everyone on the front before m3
    assert [m.id for m in top_k_from_front(candidates, front, k=4)][0] == "m3"  # filled by mean, sorted best first


def test_top_k_drops_duplicate_texts():
    candidates = [member(0, [1, 0, 0, 0], "same"), member(1, [0, 1, 0, 0], "same "), member(2, [0, 0, 1, 0])]
    top = top_k_from_front(candidates, {"a": {0}, "b": {1}, "c": {2}}, k=3)
    assert sorted(m.text.strip() for m in top) == ["prompt 2", "same"]


def test_rollouts_split_g_over_k_prompts():
    population = [Member(f"p{i}", f"t{i}") for i in range(4)]
    slots = assign_prompts(population, 8)
    assert [m.id for m in slots] == ["p0", "p1", "p2", "p3"] * 2  # each member exactly G/K = 2 times
    assert [m.id for m in assign_prompts(population[:1], 8)] == ["p0"] * 8


def test_best_is_highest_mean():
    assert best([member(0, [0, 0, 0, 1]), member(1, [1, 1, 0, 0])]).id == "m1"


def problems(n):
    return [Problem(f"q{i}", f"x{i}", "") for i in range(n)]


def test_data_plan_is_deterministic_and_anchor_set_is_the_next_t_batches():
    plan = DataPlan(problems(10), problems_per_step=3, steps_per_cycle=2, seed=7)
    again = DataPlan(problems(10), problems_per_step=3, steps_per_cycle=2, seed=7)
    assert [p.id for p in plan.batch(1)] == [p.id for p in again.batch(1)]
    epoch0 = [p.id for s in (1, 2, 3) for p in plan.batch(s)]
    assert len(set(epoch0)) == 9  # 3 full batches per epoch, no repeats, the last partial chunk dropped
    epoch1 = [p.id for s in (4, 5, 6) for p in plan.batch(s)]
    assert len(set(epoch1)) == 9 and epoch1 != epoch0  # a new epoch: a fresh shuffle of the same problems
    anchors = plan.anchor_set(cycle=1, last_step=100)  # cycle 1 = steps 3 and 4 (4 starts epoch 1)
    in_order = list(dict.fromkeys(p.id for p in plan.batch(3) + plan.batch(4)))
    assert [p.id for p in anchors] == in_order  # plan order, each problem once
    assert {p.id for p in anchors} == {p.id for p in plan.batch(3)} | {p.id for p in plan.batch(4)}
    assert list(plan.cycle_steps(2, last_step=5)) == [5]  # the last cycle is cut at the last step
    assert plan.cycle_of(1) == 0 and plan.cycle_of(2) == 0 and plan.cycle_of(3) == 1


def test_data_plan_rejects_too_few_problems_and_duplicate_ids():
    with pytest.raises(FastSlowError, match="problems_per_step"):
        DataPlan(problems(2), problems_per_step=3, steps_per_cycle=2)
    with pytest.raises(FastSlowError, match="unique"):
        DataPlan(problems(3) + problems(3), problems_per_step=3, steps_per_cycle=2)


def test_signal_allocation_gives_each_member_one_rollout_and_the_rest_by_measured_variance():
    locked = [Member("a", "A", signal=0.0), Member("b", "B", signal=0.0), Member("seed", "S", signal=0.2)]
    # G=8: one each (3), the other 5 all to the only member whose rewards varied
    assert [m.id for m in assign_prompts(locked, 8, "signal")] == ["a", "b"] + ["seed"] * 6
    mixed = [Member("a", "A", signal=0.3), Member("b", "B", signal=0.1), Member("c", "C"), Member("d", "D", signal=0.0)]
    # the unmeasured c counts as the mean of the measured (0.4 / 3): shares of the 4 spare slots are
    # 4 * (0.3, 0.1, 0.1333, 0) / 0.5333 = 2.25, 0.75, 1.0, 0 -> 1 + (2, 0, 1, 0), and the one left goes to the
    # largest remainder (b's 0.75)
    counts = [m.id for m in assign_prompts(mixed, 8, "signal")]
    assert counts == ["a", "a", "a", "b", "b", "c", "c", "d"]
    # nothing measured, or no variance anywhere: the paper's even split
    even = [Member(f"p{i}", f"t{i}") for i in range(4)]
    assert [m.id for m in assign_prompts(even, 8, "signal")] == [m.id for m in assign_prompts(even, 8)]
    flat = [Member(f"p{i}", f"t{i}", signal=0.0) for i in range(4)]
    assert [m.id for m in assign_prompts(flat, 8, "signal")] == ["p0", "p1", "p2", "p3"] * 2


def test_signal_member_is_the_seed_until_measured_then_the_most_variable_member():
    from fastslow.fast.population import signal_member

    unmeasured = [member(0, [1, 1, 1, 1]), Member("seed", "S")]
    assert signal_member(unmeasured) == 1
    measured = [Member("a", "A", signal=0.0), Member("seed", "S", signal=0.05), Member("c", "C", signal=0.2)]
    assert signal_member(measured) == 2
    assert signal_member([Member("a", "A", signal=0.0), Member("seed", "S", signal=0.0)]) is None


def test_top_k_keeps_the_signal_member_whatever_its_rank():
    candidates = [member(0, [1, 0, 0, 0]), member(1, [0, 1, 1, 0]), member(2, [0.5, 0.5, 0.5, 0.9]),
                  member(3, [0, 0, 0, 0])]  # m3 wins nothing and has the lowest mean
    front = {"a": {0}, "b": {1}, "c": {1}, "d": {2}}
    assert "m3" not in {m.id for m in top_k_from_front(candidates, front, k=2)}
    kept = top_k_from_front(candidates, front, k=2, keep=3)
    assert {m.id for m in kept} == {"m3", "m1"}  # the kept one, then the front's best


def test_member_signal_survives_the_checkpoint_format():
    m = Member("c0-1", "text", "seed", {"q": 1.0}, signal=0.125)
    assert Member.from_json(m.to_json()) == m
