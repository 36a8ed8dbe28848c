"""Regression tests for the private TRL 1.16.0 seams the slow phase relies on (trl is pinned for this)."""

import math

import pytest
import torch
from doubles import ConstantRewardTask, ShortAnswerTask

import trl
from fastslow import shared_prefix
from fastslow.config import parse_config
from fastslow.fast.population import Member
from fastslow.policy import chat_messages, load_model, load_tokenizer
from fastslow.slow.objective import group_advantages
from fastslow.slow import trainer as slow_trainer
from fastslow.slow.trainer import FSTGRPOTrainer, SlowLearner


def test_trl_version_is_the_pinned_one():
    assert trl.__version__ == "1.16.0"


def make_learner(model_path, work_dir, task, problems: int, members: int, lora: dict | None = None,
                 sampling: dict | None = None, **rl) -> SlowLearner:
    """A slow learner on the tiny model: G = 4 rollouts per problem, a constant learning rate."""
    config = parse_config({
        "model": {"path": model_path, "max_new_tokens": 6, **({"lora": lora} if lora else {}), **(sampling or {})},
        "loop": {"steps": 2, "problems_per_step": problems, "rollouts_per_problem": 4, "population_size": members},
        "rl": {"warmup_steps": 0, **rl},
    })
    return SlowLearner(config, load_model(model_path), load_tokenizer(model_path), task, work_dir)


SYSTEMS = ["Answer with the single word that the question asks for, in lower case.",
           "Think about the question, then give only the final short answer."]


def synthetic_batch(tokenizer, problems, systems=SYSTEMS, copies: int = 2, seed: int = 0) -> dict:
    """An update batch without sampling: each problem under each system prompt `copies` times, random completions
    of varied lengths (right-padded), random advantages and row weights."""
    prompts = [tokenizer.apply_chat_template(chat_messages(system, p.prompt), tokenize=False, add_generation_prompt=True)
               for p in problems for system in systems for _ in range(copies)]
    prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    generator = torch.Generator().manual_seed(seed)
    completions = [torch.randint(5, 40, (int(n),), generator=generator).tolist()
                   for n in torch.randint(1, 6, (len(prompts),), generator=generator)]
    prompt_ids, prompt_mask = shared_prefix.left_pad(prompt_ids, tokenizer.pad_token_id)
    # completions are right-padded: pad the reversed rows on the left, then flip
    completion_ids, completion_mask = shared_prefix.left_pad([c[::-1] for c in completions], tokenizer.pad_token_id)
    return {"prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
            "completion_ids": completion_ids.flip(1), "completion_mask": completion_mask.flip(1),
            "advantages": torch.randn(len(prompts), generator=generator),
            "row_weight": torch.rand(len(prompts), generator=generator) / 10}


def gradients(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]


def script_rewards(monkeypatch, rewards_for) -> None:
    """The step's rewards become rewards_for(number of rows); SlowLearner.reward's bookkeeping still runs."""
    original_reward = SlowLearner.reward

    def scripted(self, prompts, completions, problem_id, **kwargs):
        original_reward(self, prompts, completions, problem_id, **kwargs)
        rewards = rewards_for(len(completions))
        self.trainer.step_rewards[-len(rewards):] = rewards
        return rewards

    monkeypatch.setattr(SlowLearner, "reward", scripted)


def test_one_step_uses_each_rows_prompt_and_the_papers_objective(tiny_model_path, tmp_path, monkeypatch):
    task = ShortAnswerTask()
    seen_prompts, captured = [], {}
    original_reward = SlowLearner.reward

    def spy_reward(self, prompts, completions, problem_id, **kwargs):
        seen_prompts.extend(p[0]["content"] for p in prompts)  # the system message of each row
        captured.setdefault("member_ids", []).extend(kwargs["member_id"])
        return original_reward(self, prompts, completions, problem_id, **kwargs)

    original_loss = FSTGRPOTrainer._compute_loss

    def spy_loss(self, model, inputs):
        loss = original_loss(self, model, inputs)
        captured["inputs"], captured["loss"] = inputs, loss.detach()
        return loss

    monkeypatch.setattr(SlowLearner, "reward", spy_reward)
    monkeypatch.setattr(FSTGRPOTrainer, "_compute_loss", spy_loss)
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2, learning_rate=1e-3, kl_coef=0.05)
    population = [Member("a", "Prompt A."), Member("b", "Prompt B.")]
    learner.step(task.problems("train", 3, 0), population)

    # G/K rollouts per member, cycling by slot within each problem's group of G
    assert seen_prompts == ["Prompt A.", "Prompt B."] * 6
    assert captured["member_ids"] == ["a", "b"] * 6

    # advantages: normalised once over each group of G, only kept groups train (TRL shuffles rows: multisets)
    rewards = torch.tensor(learner.trainer.step_rewards).view(3, 4)
    expected_adv, kept = group_advantages(rewards)
    inputs = captured["inputs"]
    if kept.any():
        assert sorted(inputs["advantages"].tolist()) == sorted(expected_adv[kept].flatten().tolist())

    # row weights: sum over rows of weight * tokens = 1 (mean over kept problems of per-problem token means)
    tokens = inputs["completion_mask"].sum(1)
    if kept.any():
        assert math.isclose(float((inputs["row_weight"] * tokens).sum()), 1.0, rel_tol=1e-5)

    # TRL's per-token log-probs (fed to our CISPO loss) are those of a plain forward pass
    model = learner.policy
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    L = inputs["completion_ids"].shape[1]
    logps_now = torch.log_softmax(logits[:, -L:], -1).gather(-1, inputs["completion_ids"].unsqueeze(-1)).squeeze(-1)
    seam_logps, _, _ = learner.trainer._get_per_token_logps_and_entropies(model, ids, mask, L)
    real = inputs["completion_mask"].bool()  # (padding after an early end-of-sequence is masked out of the loss)
    assert torch.allclose(seam_logps[real], logps_now[real], atol=1e-4)  # TRL's log-prob seam = a plain forward
    with torch.no_grad():  # and so are ours, which compute each shared prompt prefix once
        assert torch.allclose(learner.trainer._completion_logps(model, inputs)[real], logps_now[real], atol=1e-4)
    assert "ref_per_token_logps" in inputs  # KL to the starting weights is computed by TRL's reference model


def test_problems_without_reward_variance_leave_the_batch_without_changing_the_update(tiny_model_path, tmp_path,
                                                                                       monkeypatch):
    task = ShortAnswerTask()
    # problem 0: every rollout scores the same, so it carries no signal; the others vary
    script_rewards(monkeypatch, lambda rows: [0.5] * 4 + [float(i % 2) for i in range(rows - 4)])
    captured = {}
    original_select = slow_trainer.select_rows

    def spy_select(batch, rows):  # the first call drops the problems (micro-batches are selected after)
        selected = original_select(batch, rows)
        if "rows" not in captured:
            captured["full"], captured["rows"], captured["selected"] = batch, rows, selected
        return selected

    pass_rows = []  # rows of every reference and policy pass
    original_pass = FSTGRPOTrainer._completion_logps

    def spy_pass(self, model, batch):
        pass_rows.append(batch["completion_ids"].shape[0])
        return original_pass(self, model, batch)

    monkeypatch.setattr(slow_trainer, "select_rows", spy_select)
    monkeypatch.setattr(FSTGRPOTrainer, "_completion_logps", spy_pass)
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2, learning_rate=1e-3, kl_coef=0.05)
    learner.step(task.problems("train", 3, 0), [Member("a", "Prompt A."), Member("b", "Prompt B.")])
    assert pass_rows == [8, 8]  # the reference pass and the policy pass see only the kept problems' rows

    full, selected, rows = captured["full"], captured["selected"], captured["rows"]
    assert rows.tolist() == [False] * 4 + [True] * 8 and learner.trainer.kept_groups == 2
    assert selected["completion_ids"].shape[0] == 8
    assert selected["prompt_mask"][:, 0].any() and selected["completion_mask"][:, -1].any()  # no all-padding column

    # the loss and its gradient are those of the whole batch, where the dropped rows weigh 0
    trainer, model = learner.trainer, learner.model
    full["ref_per_token_logps"] = trainer._reference_logps(full)
    gradients = []
    for batch in (full, selected):
        model.zero_grad()
        loss = trainer._compute_loss(model, batch)
        loss.backward()
        gradients.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (full_loss, full_grads), (selected_loss, selected_grads) = gradients
    assert abs(float(full_loss)) > 0 and torch.allclose(full_loss, selected_loss, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(full_grads, selected_grads))


def test_bf16_on_cpu_autocasts_the_step_and_keeps_float32_weights(tiny_model_path, tmp_path, monkeypatch):
    task = ShortAnswerTask()
    script_rewards(monkeypatch, lambda rows: [float(i % 2) for i in range(rows)])  # every group varies: it trains
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=1, learning_rate=1e-2, bf16=True)
    autocast_seen = []
    learner.policy.model.layers[0].register_forward_pre_hook(
        lambda module, args: autocast_seen.append(torch.is_autocast_enabled("cpu")))
    before = [p.detach().clone() for p in learner.policy.parameters()]
    learner.step(task.problems("train", 2, 0), [Member("a", "Answer.")])
    assert autocast_seen and all(autocast_seen)  # generation, and the policy pass of the update
    assert all(p.dtype == torch.float32 for p in learner.policy.parameters())  # master weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))


def test_a_step_where_no_problem_has_reward_variance_changes_nothing(tiny_model_path, tmp_path):
    task = ConstantRewardTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=1, learning_rate=1e-2, kl_coef=0.05)
    before = [p.detach().clone() for p in learner.policy.parameters()]
    stats = learner.step(task.problems("train", 2, 0), [Member("a", "Answer.")])
    assert stats.kept_problems == 0 and stats.loss == 0.0 and stats.rollouts == 8
    assert all(torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))  # one zero-weight row ran


@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_shared_prefix_log_probs_and_gradients_equal_trls_whole_row_pass(tiny_model_path, tmp_path, monkeypatch, lora):
    """The update's log-probs run each shared system prompt once; values and gradients match TRL's pass."""
    task = ShortAnswerTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2, lora=lora)
    trainer, model, tokenizer = learner.trainer, learner.model, learner.trainer.processing_class
    batch = synthetic_batch(tokenizer, task.problems("train", 3, 0))
    plan = shared_prefix.plan_prefixes([ids[mask.bool()].tolist() for ids, mask in zip(batch["prompt_ids"],
                                                                                      batch["prompt_mask"])])
    assert len(plan.groups) == 2 and plan.shared_rows == 12  # one group per system prompt
    real = batch["completion_mask"].bool()

    prefills = []
    original_prefill = shared_prefix.prefill
    monkeypatch.setattr(shared_prefix, "prefill", lambda *a, **k: prefills.append(1) or original_prefill(*a, **k))
    results = []
    for share in (True, False):  # False: TRL's whole-row pass
        trainer.share_prefixes = share
        model.zero_grad()
        logps = trainer._completion_logps(model, batch)
        (logps * real * torch.linspace(0.5, 1.5, logps.shape[1])).sum().backward()
        results.append((logps.detach(), gradients(model)))
    assert len(prefills) == 1  # the shared pass ran once, the whole-row pass never
    (shared_logps, shared_grads), (whole_logps, whole_grads) = results
    # TRL's pass counts left pads in the positions and ours does not; RoPE is relative, but its angles are float32,
    # so the two differ by rounding (~1e-6 of the scale here, also in float64)
    assert torch.allclose(shared_logps[real], whole_logps[real], atol=1e-4)
    assert all((a - b).abs().max() <= 1e-4 * b.abs().max() for a, b in zip(shared_grads, whole_grads))
    assert any(g.abs().sum() > 0 for g in shared_grads)


def test_a_step_reports_where_its_signal_comes_from(tiny_model_path, tmp_path, monkeypatch):
    """within_prompt_signal, member_signal, member_entropy and grad_norm of one step, on scripted rewards. G=4 over
    two members: slots 0 and 2 are member a's, 1 and 3 member b's."""
    task = ShortAnswerTask()
    # problem 0 varies only between the members; problem 1 varies within member a's rollouts (1, 0)
    script_rewards(monkeypatch, lambda rows: [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=2, learning_rate=1e-3)
    problems = task.problems("train", 2, 0)
    a = Member("a", "Prompt A.", scores={problems[0].id: 1.0, problems[1].id: 1.0})  # the fast phase's rollouts
    stats = learner.step(problems, [a, Member("b", "Prompt B.")])
    assert stats.kept_problems == 2 and stats.within_prompt_signal == 0.5
    # a: problem 0 rewards (1 [fast phase], 1, 1) -> 0, problem 1 (1, 1, 0) -> 1/3; b: (0, 0) -> 0, (1, 1) -> 0
    assert math.isclose(stats.member_signal["a"], 1 / 6, rel_tol=1e-6) and stats.member_signal["b"] == 0.0
    assert set(stats.member_entropy) == {"a", "b"} and all(0 < h < math.log(200) for h in stats.member_entropy.values())
    assert stats.grad_norm > 0
    assert {"within_prompt_signal", "member_entropy", "member_signal", "grad_norm"} <= set(stats.metrics())


def test_a_gradient_with_a_nan_skips_the_update_and_the_next_step_trains(tiny_model_path, tmp_path, monkeypatch,
                                                                          caplog):
    """A NaN in the gradient must not reach the weights or Adam's moments (the run would die at its next sampling);
    the step says so in one warning, and the following step updates as usual."""
    task = ShortAnswerTask()
    script_rewards(monkeypatch, lambda rows: [1.0, 0.0] * (rows // 2))
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=1, learning_rate=1e-2)
    original_step, poisoned = FSTGRPOTrainer.training_step, []

    def poison_once(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        if not poisoned:
            next(p for p in self.model.parameters() if p.grad is not None).grad[0].fill_(float("nan"))
            poisoned.append(True)
        return loss

    monkeypatch.setattr(FSTGRPOTrainer, "training_step", poison_once)
    problems, members = task.problems("train", 2, 0), [Member("a", "Answer.")]
    before = [p.detach().clone() for p in learner.policy.parameters()]
    with caplog.at_level("WARNING", logger="fastslow.slow.trainer"):
        stats = learner.step(problems, members)
    assert math.isnan(stats.grad_norm) and stats.kept_problems == 2
    assert all(torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))
    assert not learner.trainer.optimizer.state  # Adam's moments were never written
    assert [r.message for r in caplog.records if "update is skipped" in r.message][0].startswith("RL step 1:")
    stats = learner.step(problems, members)
    assert math.isfinite(stats.grad_norm) and stats.grad_norm > 0
    assert not all(torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))
    assert all(torch.isfinite(p).all() for p in learner.policy.parameters())


def test_entropy_recorder_measures_each_rows_next_token_entropy():
    from fastslow.policy import EntropyRecorder

    recorder = EntropyRecorder()
    uniform, certain = torch.zeros(1, 4), torch.tensor([[0.0, -1e9, -1e9, -1e9]])
    recorder(None, torch.cat([uniform, certain]))  # step 1: row 0 uniform over 4 tokens, row 1 certain
    recorder(None, torch.cat([certain, uniform]))  # step 2
    sums = recorder.row_sums([2, 1])  # row 1 ended after its first token
    assert math.isclose(sums[0], math.log(4), rel_tol=1e-6) and math.isclose(sums[1], 0.0, abs_tol=1e-6)


def test_member_baseline_drops_problems_that_vary_only_between_members(tiny_model_path, tmp_path, monkeypatch):
    task = ShortAnswerTask()
    script_rewards(monkeypatch, lambda rows: [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])  # as above: 0 between, 1 within
    learner = make_learner(tiny_model_path, tmp_path, task, problems=2, members=2, learning_rate=1e-3,
                           advantage_baseline="member")
    before = [p.detach().clone() for p in learner.policy.parameters()]
    stats = learner.step(task.problems("train", 2, 0), [Member("a", "Prompt A."), Member("b", "Prompt B.")])
    assert stats.kept_problems == 1 and stats.within_prompt_signal == 0.5  # the signal metric still sees both
    assert any(not torch.equal(a, b) for a, b in zip(before, learner.policy.parameters()))


@pytest.mark.parametrize("share", [True, False], ids=["shared-prefixes", "whole-rows"])
@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_the_update_in_micro_batches_equals_the_one_pass_update(tiny_model_path, tmp_path, monkeypatch, lora, share):
    """Reference log-probs, loss and gradient of 12 rows in micro-batches of at most 5 (which do not divide them)
    equal those of one pass over the 12."""
    task = ShortAnswerTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2, lora=lora, kl_coef=0.05,
                           micro_batch_rows=5)
    trainer, model = learner.trainer, learner.model
    trainer.share_prefixes = share
    if lora:  # adapters that differ from the base, so that the KL term and every adapter matrix carry gradient
        torch.manual_seed(0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.data.normal_(0, 0.1)
    batch = synthetic_batch(trainer.processing_class, task.problems("train", 3, 0))
    pass_rows = []
    original_pass = FSTGRPOTrainer._completion_logps
    monkeypatch.setattr(FSTGRPOTrainer, "_completion_logps",
                        lambda self, m, b: pass_rows.append(b["completion_ids"].shape[0]) or original_pass(self, m, b))
    results = []
    for rows in (5, 100):
        trainer.micro_batch_rows = rows
        batch["ref_per_token_logps"] = trainer._reference_logps(batch)
        model.zero_grad()
        loss = trainer._accumulate_gradient(model, batch)
        results.append((batch["ref_per_token_logps"], loss, gradients(model)))
    assert pass_rows == [4, 4, 4] * 2 + [12, 12]  # reference, then policy: 3 micro-batches, then one pass
    (ref_micro, loss_micro, grads_micro), (ref_whole, loss_whole, grads_whole) = results
    real = batch["completion_mask"].bool()
    assert torch.allclose(ref_micro[real], ref_whole[real], atol=1e-5) and (ref_micro[~real] == 0).all()
    assert abs(float(loss_whole)) > 0 and torch.allclose(loss_micro, loss_whole, atol=1e-6)
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(grads_micro, grads_whole))
    assert all(g.abs().sum() > 0 for g in grads_whole)


def test_a_step_in_micro_batches_gives_the_one_pass_gradient(tiny_model_path, tmp_path, monkeypatch):
    """A whole RL step (sampling, rewards, reference pass, update) with rl.micro_batch_rows 5 for its 12 rows:
    the optimizer steps on the gradient of the one-pass step."""
    task = ShortAnswerTask()
    script_rewards(monkeypatch, lambda rows: [float(i % 2) for i in range(rows)])  # every problem is kept
    pass_rows, seen = [], []
    original_pass = FSTGRPOTrainer._completion_logps
    monkeypatch.setattr(FSTGRPOTrainer, "_completion_logps",
                        lambda self, m, b: pass_rows.append(b["completion_ids"].shape[0]) or original_pass(self, m, b))
    for rows in (5, 64):
        learner = make_learner(tiny_model_path, tmp_path / str(rows), task, problems=3, members=2, learning_rate=1e-3,
                               micro_batch_rows=rows)
        policy = learner.policy
        learner.trainer.optimizer.optimizer.register_step_pre_hook(lambda *_: seen.append(gradients(policy)))
        torch.manual_seed(0)  # the same rollouts for both
        stats = learner.step(task.problems("train", 3, 0), [Member("a", "Prompt A."), Member("b", "Prompt B.")])
        assert stats.kept_problems == 3
    assert pass_rows == [4] * 6 + [12] * 2  # reference and policy passes: in 3 micro-batches, then in one
    micro, whole = seen
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(micro, whole))
    assert any(g.abs().sum() > 0 for g in whole)


@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_gradient_checkpointing_keeps_fewer_activations_and_the_same_gradient(tiny_model_path, tmp_path, lora):
    """rl.gradient_checkpointing: transformers' Trainer turns it on in train(), which the learner never calls, so it
    must be on in the learner's own update: its forward keeps fewer bytes for backward, with the same gradient."""
    task = ShortAnswerTask()
    results = []
    for checkpointing in (False, True):
        learner = make_learner(tiny_model_path, tmp_path / str(checkpointing), task, problems=2, members=2, lora=lora,
                               gradient_checkpointing=checkpointing)
        trainer, model = learner.trainer, learner.model
        trainer.share_prefixes = False  # checkpointing takes TRL's whole-row pass: compare it with itself
        batch = synthetic_batch(trainer.processing_class, task.problems("train", 2, 0))
        saved = []

        def keep(tensor):
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        model.train()
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            loss = trainer.compute_loss(model, batch)
        trainer.accelerator.backward(loss)
        results.append((sum(saved), gradients(model)))
    (bytes_kept, grads_kept), (bytes_checkpointed, grads_checkpointed) = results
    assert bytes_checkpointed < 0.5 * bytes_kept, (bytes_checkpointed, bytes_kept)
    assert all(torch.allclose(a, b, atol=1e-6, rtol=1e-4) for a, b in zip(grads_checkpointed, grads_kept))


def prompt_kl(student_model, teacher_model, tokenizer, problems, student: str, teacher: str,
              completions: list[str]) -> float:
    """Token mean of the exact KL(π_student(· | student prompt) ‖ π_teacher(· | teacher prompt)) on fixed completions."""
    from fastslow.policy import completion_distributions

    with torch.no_grad():
        p = completion_distributions(student_model, tokenizer, [chat_messages(student, x.prompt) for x in problems],
                                     completions)
        q = completion_distributions(teacher_model, tokenizer, [chat_messages(teacher, x.prompt) for x in problems],
                                     completions)
        log_p, log_q = p.log_probs(slice(None)), q.log_probs(slice(None))
        return float(((log_p.exp() * (log_p - log_q)).sum(-1) * p.mask).sum() / p.mask.sum())


@pytest.mark.parametrize("lora", [None, {"r": 4}], ids=["full", "lora"])
def test_distill_steps_move_the_student_under_the_seed_prompt_toward_the_teacher(tiny_model_path, tmp_path, lora):
    """The student (the weights under the seed prompt) moves toward the teacher, the starting weights under the best
    prompt, on held-out problems; the teacher itself stays where it was."""
    task = ShortAnswerTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=4, members=1, lora=lora,
                           learning_rate=1e-2 if lora else 1e-3)
    tokenizer, problems = learner.trainer.processing_class, task.problems("train", 4, 0)
    student, teacher = Member("seed", "Answer."), Member("c0-1", SYSTEMS[1])
    start = load_model(tiny_model_path)
    probe = task.problems("val", 6, 1)  # held out: the weights learn the prompt, not these problems
    completions = ["abc", "a b", "xyz.", "hello", "q", "no"]

    def to_teacher():  # (the student's KL to the teacher, the teacher's KL to the starting weights)
        with learner.base_weights() as base:  # with LoRA: the policy itself, adapters off
            frozen = prompt_kl(base, start, tokenizer, probe, teacher.text, teacher.text, completions)
        return prompt_kl(learner.policy, start, tokenizer, probe, student.text, teacher.text, completions), frozen

    before, _ = to_teacher()
    torch.manual_seed(0)
    reported = [learner.distill_step(problems, student, teacher) for _ in range(6)]
    after, teacher_moved = to_teacher()
    assert before > 0.1 and after < 0.75 * before
    assert teacher_moved < 1e-6
    assert all(math.isfinite(s.distill_kl) and s.distill_kl > 0 for s in reported)
    assert reported[-1].distill_kl < reported[0].distill_kl
    first = reported[0]
    assert first.rollouts == 16 and first.kept_problems == 4 and first.loss == first.distill_kl
    assert set(first.member_entropy) == {"seed"} and 0 <= first.reward_mean <= 1


def test_a_distill_step_in_micro_batches_and_chunks_gives_the_one_pass_gradient(tiny_model_path, tmp_path,
                                                                               monkeypatch):
    """rl.micro_batch_rows 5 for 12 rows (teacher prompts trimmed per micro-batch), and chunks of one position at a
    time: the same gradient as one pass over the whole distributions, and the same reported KL."""
    from fastslow import policy

    task, seen, reported = ShortAnswerTask(), [], []
    for rows, chunk in ((5, 1), (64, 2**26)):
        monkeypatch.setattr(policy, "CHUNK_ELEMENTS", chunk)
        learner = make_learner(tiny_model_path, tmp_path / str(rows), task, problems=3, members=1,
                               micro_batch_rows=rows)
        model = learner.policy
        learner.trainer.optimizer.optimizer.register_step_pre_hook(lambda *_: seen.append(gradients(model)))
        torch.manual_seed(0)  # the same completions for both
        reported.append(learner.distill_step(task.problems("train", 3, 0), Member("seed", "Answer."),
                                             Member("c0-1", SYSTEMS[0])).distill_kl)
    micro, whole = seen
    assert all((a - b).abs().max() <= 1e-5 * b.abs().max() for a, b in zip(micro, whole))
    assert any(g.abs().sum() > 0 for g in whole)
    assert math.isclose(reported[0], reported[1], rel_tol=1e-5)
