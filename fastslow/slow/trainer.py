"""The slow phase on TRL's GRPOTrainer: one CISPO update per planned batch, rollouts spread over the population.

TRL does generation, reward calls, reference log-probs, accelerate/DDP/DeepSpeed/FSDP wrapping, LoRA
through peft, the optimizer and the scheduler. We keep three things in our hands (docs/DESIGN.md):
1. the data: the loop hands each step its planned problems and the population; every problem becomes G
   rows whose system prompts cycle through the K members (G/K each);
2. the advantages: normalised once per problem over all G rows, zero-variance groups dropped
   (fastslow.slow.objective), instead of TRL's keep-everything;
3. the loss aggregation: token mean per problem, then mean over problems (TRL's CISPO averages over
   all tokens of the batch).
Problems whose G rewards are all equal carry no gradient, so their rows leave the batch before the reference
and policy passes (TRL would run both over every row): on the micro task that is most of an update's cost.
Every row's prompt starts with a member's system prompt, so sampling and both passes run each shared prefix once
(fastslow.shared_prefix). Both passes go through the rows in micro-batches of `rl.micro_batch_rows`, the policy
pass accumulating the gradient for the one optimizer step, so memory grows with the micro-batch, not the batch.
With loop.reuse_fast_rollouts a row may instead carry a rollout the fast phase sampled
(fastslow.fast.reuse): its tokens, reward and the sampler's log-probs, which become CISPO's pi_old.
Private TRL seams used (trl pinned, tests/test_trl_seam.py, tests/test_shared_prefix.py):
`_generate_and_score_completions` (and that it reads `self.beta` to decide on reference log-probs),
`_generate_single_turn`, `_prepare_inputs`, `_compute_loss`, `_get_per_token_logps_and_entropies` and the
`fused_lm_head` forward TRL patches into the model (it never builds the [rows, tokens, vocab] logits).
Mode fst-distill reuses all of it but the rollouts' rewards: `SlowLearner.distill_step` samples G completions per
problem under the seed prompt and the loss is the reverse KL to the starting weights under the best prompt
(docs/DESIGN.md).
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.utils.checkpoint
from accelerate import PartialState
from accelerate.utils import DistributedType
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import pad as trl_pad

from fastslow import shared_prefix
from fastslow.engine import reload_weights
from fastslow.config import Config
from fastslow.errors import FastSlowError
from fastslow.fast.adapter import Rollout
from fastslow.fast.population import Member, assign_prompts
from fastslow.fast.reuse import ReusableRollouts
from fastslow.policy import (Sampling, chat_messages, next_token_distributions, peft_lora, prompt_token_ids,
                             sample_ids)
from fastslow.slow.objective import (ImportanceStats, behaviour_logps, cispo_loss, group_advantages, reverse_kl_loss,
                                     reward_signal, row_weights, within_prompt_variance)
from fastslow.tasks import Problem, Task

log = logging.getLogger(__name__)


class FSTGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the paper's advantages and CISPO aggregation."""

    def __init__(self, *args, sampling: Sampling, advantage_eps: float = 1e-4, drop_zero_variance: bool = True,
                 micro_batch_rows: int = 8, **kwargs):
        super().__init__(*args, **kwargs)
        self.sampling = sampling  # the fast phase's and evaluation's (fastslow.policy.Sampling.of(config.model))
        self.share_prefixes = sampling.share_prefixes
        self.advantage_eps, self.drop_zero_variance = advantage_eps, drop_zero_variance
        self.micro_batch_rows = micro_batch_rows
        self.member_of_slot: torch.Tensor | None = None  # set per step for the `member` advantage baseline
        self.step_rewards: list[float] = []  # this process's rewards, in row order (filled by the reward function)
        self.step_entropies: list[tuple[float, int]] = []  # per row: (summed token entropy, tokens), in row order
        self.reused_rows: list[Rollout | None] = []  # per row: the fast-phase rollout it reuses (SlowLearner.step)
        self.importance = ImportanceStats()
        self.frozen_base = None  # full fine-tuning without a reference model: the starting weights (SlowLearner)
        self.kept_groups = 0
        self.seconds_rollouts = 0.0
        self.seconds_reference = 0.0
        if self.use_vllm and self.vllm_mode == "colocate":
            self.vllm_generation.sync_weights = partial(reload_in_place, self.vllm_generation,
                                                        self.vllm_generation.sync_weights)

    def _generate_and_score_completions(self, inputs):
        self.step_rewards, self.step_entropies = [], []
        self.reused_rows = [row.get("reused") for row in inputs]
        start = time.perf_counter()
        kl_coef, self.beta = self.beta, 0.0  # TRL would take reference log-probs of every row; we do, below, of kept rows
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            self.beta = kl_coef
        G = self.num_generations
        rewards = torch.tensor(self.step_rewards, dtype=torch.float32, device=out["advantages"].device).view(-1, G)
        advantages, kept = group_advantages(rewards, self.advantage_eps, self.drop_zero_variance,
                                            None if self.member_of_slot is None else self.member_of_slot.to(rewards.device))
        self.kept_groups = int(self.accelerator.gather(kept.sum().unsqueeze(0)).sum())
        tokens = out["completion_mask"].sum(dim=1).float()
        # DDP averages gradients over processes; scale back up so the loss is the mean over ALL kept problems.
        out["row_weight"] = row_weights(kept, tokens, self.kept_groups) * self.accelerator.num_processes
        out["advantages"] = advantages.flatten()
        rows = kept.repeat_interleave(G)
        if not rows.any():  # one row of weight 0 still takes part in DDP/FSDP's gradient exchange
            rows[0] = True
        out = select_rows(out, rows)
        self.seconds_reference = 0.0
        if self.beta:
            started = time.perf_counter()
            out["ref_per_token_logps"] = self._reference_logps(out)
            self.seconds_reference = time.perf_counter() - started
        self.seconds_rollouts = time.perf_counter() - start  # generation + reward calls + reference log-probs
        return out

    @contextmanager
    def _starting_weights(self, model):
        """A module computing π_base, the starting weights, as TRL takes them: its reference model, or for LoRA the
        policy `model` with its adapters off (through the wrapped model, so ZeRO-3 gathers the weights), else the
        frozen copy SlowLearner keeps (on the main process for evaluation; on every process for fst-distill)."""
        if self.ref_model is not None:
            yield self.ref_model
        elif hasattr(self.accelerator.unwrap_model(model), "disable_adapter"):
            with self.accelerator.unwrap_model(model).disable_adapter():
                yield model
        else:
            yield self.frozen_base

    @torch.no_grad()
    def _reference_logps(self, batch) -> torch.Tensor:
        """Log-probs of the completions under the starting weights."""
        logps = torch.zeros(batch["completion_mask"].shape, device=batch["completion_mask"].device)
        with self._starting_weights(self.model) as model:
            for rows, part in self._micro_batches(batch):
                part_logps = self._completion_logps(model, part)
                logps[rows, : part_logps.shape[1]] = part_logps[: len(rows)]  # (a filler row has no place)
        return logps

    def training_step(self, model, inputs, num_items_in_batch=None):
        """TRL's step (generate, score, one loss over the batch), with the policy pass in micro-batches."""
        model.train()
        batch = self._prepare_inputs(inputs)
        loss = self._accumulate_gradient(model, batch)
        self._step += 1  # TRL's counter of training steps (it picks the buffered generation batch)
        return loss

    def _accumulate_gradient(self, model, batch) -> torch.Tensor:
        """Backpropagate the batch's loss one micro-batch at a time; the gradients add up in the parameters'
        `.grad`. Row weights make the loss a plain sum over rows, so any split of the rows gives the gradient of
        the whole batch. Processes exchange gradients only in the last backward (DDP, FSDP; DeepSpeed steps
        there), as transformers' Trainer does for gradient accumulation. Returns the loss."""
        parts = self._micro_batches(batch)
        deepspeed = self.accelerator.distributed_type == DistributedType.DEEPSPEED
        loss = torch.zeros((), device=self.accelerator.device)
        for i, (_, part) in enumerate(parts):
            last = i == len(parts) - 1
            self.accelerator.sync_gradients = last  # DeepSpeed reduces and steps only when it is set
            with nullcontext() if last or deepspeed else self.accelerator.no_sync(model):
                with self.compute_loss_context_manager():
                    part_loss = self.compute_loss(model, part)
                self.accelerator.backward(part_loss)
            loss += part_loss.detach()
        return loss

    def _micro_batches(self, batch) -> list[tuple[torch.Tensor, dict]]:
        """The batch's rows in micro-batches of at most `micro_batch_rows`: (row indices, rows) each. Rows are
        ordered by prompt first, so a micro-batch's rows share prompt prefixes (a member's system prompt). Every
        process makes as many micro-batches as the process that needs the most: DDP, FSDP and DeepSpeed exchange
        buffers, weights or gradients in forward and backward calls, and processes keep different numbers of rows
        once zero-variance problems are dropped. A process with fewer rows than micro-batches fills the rest with
        a row of weight 0."""
        n = batch["completion_ids"].shape[0]
        needed = torch.tensor([math.ceil(n / self.micro_batch_rows)], device=self.accelerator.device)
        count = int(self.accelerator.gather(needed).max())
        host_ids, host_mask = batch["prompt_ids"].cpu(), batch["prompt_mask"].bool().cpu()
        order = sorted(range(n), key=lambda i: host_ids[i][host_mask[i]].tolist())
        device, parts = batch["completion_ids"].device, []
        for rows in torch.tensor(order, device=device).tensor_split(count):
            rows = rows.sort().values
            selected = torch.zeros(n, dtype=torch.bool, device=device)
            selected[rows if len(rows) else 0] = True  # an empty micro-batch: row 0, with weight 0
            part = select_rows(batch, selected)
            if not len(rows):
                part["row_weight"] = torch.zeros_like(part["row_weight"])
            parts.append((rows, part))
        return parts

    @property
    def _sharing(self) -> bool:
        """Whether shared prompt prefixes run once. Not under DeepSpeed or FSDP: their hooks gather weights in each
        forward and expect every process to make the same calls, and sampling makes one call more when its batch
        shares a prefix."""
        sharded = self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP)
        return self.share_prefixes and not sharded

    def _completion_logps(self, model, batch) -> torch.Tensor:
        """Per-token log-probs of the batch's completions [rows, completion width], by TRL's fused log-prob forward.
        Each prompt prefix that rows share (a member's system prompt) goes through the model once, gradient
        included (fastslow.shared_prefix); gradient checkpointing keeps TRL's whole-row pass. The choice depends on
        settings, never on the batch: DDP broadcasts buffers in every forward, so all processes must make the same
        calls, also one whose batch is a single row."""
        prompt_ids, prompt_mask = batch["prompt_ids"], batch["prompt_mask"]
        completion_ids, completion_mask = batch["completion_ids"], batch["completion_mask"]
        width = completion_ids.size(1)
        if not self._sharing or self.args.gradient_checkpointing:
            input_ids = torch.cat([prompt_ids, completion_ids], dim=1)
            attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
            return self._get_per_token_logps_and_entropies(model, input_ids, attention_mask, width)[0]
        host_ids, host_mask = prompt_ids.cpu(), prompt_mask.bool().cpu()  # one device sync, not one per row
        prompts = [ids[mask].tolist() for ids, mask in zip(host_ids, host_mask)]
        with self.accelerator.autocast():
            rows = shared_prefix.prefill(model, prompts, self._tokenizer.pad_token_id)
            labels = torch.cat([torch.full_like(rows.uncached_ids, -100),  # only the completion tokens are scored
                                completion_ids.masked_fill(completion_mask == 0, -100)], dim=1)
            out = shared_prefix.forward_rest(model, rows, completion_ids, completion_mask, labels=labels,
                                             fused_lm_head=True)
        return out.log_probs[:, -width:]

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """The rows' completions: a reused fast-phase rollout's where `SlowLearner.step` gave one, the rest sampled.
        The log-probs are the sampler's where known (reused rows, vLLM) and None (ratio 1) for rows the current
        weights sampled here; TRL turns None into NaN (fastslow.slow.objective.behaviour_logps)."""
        reused = self.reused_rows or [None] * len(prompt_ids)
        fresh = [i for i, rollout in enumerate(reused) if rollout is None]
        entropies: list[float] = []  # of the fresh rows; none from vLLM
        sampled, sampled_logprobs = self._sample([prompt_ids[i] for i in fresh], images, multimodal_fields,
                                                 has_tool_images, entropies)
        self._record_entropies(reused, fresh, sampled, entropies)
        if len(fresh) == len(prompt_ids):
            return sampled, sampled_logprobs
        completions, logprobs = [None] * len(prompt_ids), [None] * len(prompt_ids)
        for i, rollout in enumerate(reused):
            if rollout is not None:
                if list(rollout.sample.prompt_ids) != list(prompt_ids[i]):
                    raise FastSlowError("a reused rollout's prompt tokens differ from the trainer's; set "
                                        "loop.reuse_fast_rollouts: false and report the tokenizer")
                completions[i], logprobs[i] = rollout.sample.ids, rollout.sample.logprobs
        for n, i in enumerate(fresh):
            completions[i] = sampled[n]
            logprobs[i] = sampled_logprobs[n] if sampled_logprobs else [None] * len(sampled[n])
        return completions, logprobs

    def _record_entropies(self, reused, fresh, sampled, entropies) -> None:
        """`step_entropies`, in row order: (summed token entropy of π_θ, tokens) of each row where known (a fresh HF
        sample, a reused rollout the fast phase sampled through HF); (0, 0) elsewhere (vLLM)."""
        rows = [(r.sample.entropy, len(r.sample.ids)) if r is not None and r.sample.entropy is not None else (0.0, 0)
                for r in reused]
        if entropies:
            for n, i in enumerate(fresh):
                rows[i] = (entropies[n], len(sampled[n]))
        self.step_entropies.extend(rows)

    def _sample(self, prompt_ids, images, multimodal_fields, has_tool_images, entropies: list[float]):
        """HF sampling through fastslow.policy.sample_ids, the fast phase's and evaluation's sampler (each prefix the
        rows share computed once); vLLM, continuous batching and images stay with TRL, vLLM with one request per row
        (TRL's server mode would sample a group's G completions from its first row's prompt)."""
        if self.use_vllm or self.use_transformers_continuous_batching or images is not None or multimodal_fields:
            if not prompt_ids and not self.use_vllm:
                return [], None
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, 1, has_tool_images)
        with (  # entered by every process, also one with nothing to sample: ZeRO-3 gathers the weights here
            unwrap_model_for_generation(
                self.model_wrapped, self.accelerator, gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            sampled = sample_ids(model, prompt_ids, replace(self.sampling, share_prefixes=self._sharing),
                                 self._tokenizer.pad_token_id, self.eos_token_ids,
                                 entropies=entropies) if prompt_ids else []
        return [ids for ids, _ in sampled], None

    def _compute_loss(self, model, inputs):
        if "teacher_prompt_ids" in inputs:  # SlowLearner.distill_step's batch
            return self._distill_loss(model, inputs)
        logps = self._completion_logps(model, inputs)
        old_logps = behaviour_logps(logps, inputs.get("sampling_per_token_logps"))
        self.importance.add(logps, inputs.get("sampling_per_token_logps"), inputs["completion_mask"], self.epsilon_high)
        return cispo_loss(
            logps,
            old_logps,
            inputs["advantages"],
            inputs["completion_mask"],
            inputs["row_weight"],
            importance_cap=self.epsilon_high,
            ref_logps=inputs.get("ref_per_token_logps"),
            kl_coef=self.beta,
        )

    def _distill_loss(self, model, inputs) -> torch.Tensor:
        """FST-distill: the rows' weighted sum of the exact per-token reverse KL(π_θ(· | seed prompt) ‖ π_base(· |
        teacher prompt)) at their completion positions (objective.reverse_kl_loss); the teacher is the starting
        weights, a fixed target (docs/DESIGN.md). The full next-token distributions exist one chunk of positions at a
        time, and each chunk's are recomputed in backward (activation checkpointing) instead of kept, so no
        [rows, tokens, vocab] tensor lives through the step."""
        completion_ids, completion_mask = inputs["completion_ids"], inputs["completion_mask"]

        def distributions(module, prompt_ids, prompt_mask):
            head = self.accelerator.unwrap_model(module).get_output_embeddings()
            return next_token_distributions(module, torch.cat([prompt_ids, completion_ids], dim=1),
                                            torch.cat([prompt_mask, completion_mask], dim=1), completion_mask, head)

        with self.accelerator.autocast():
            with torch.no_grad(), self._starting_weights(model) as base:
                teacher = distributions(base, inputs["teacher_prompt_ids"], inputs["teacher_prompt_mask"])
            student = distributions(model, inputs["prompt_ids"], inputs["prompt_mask"])

            def chunk_loss(student_states, teacher_states, mask):
                with torch.no_grad(), self._starting_weights(model):  # its output embeddings too (LoRA may adapt them)
                    teacher_logps = torch.log_softmax(teacher.project(teacher_states).float(), dim=-1)
                student_logps = torch.log_softmax(student.project(student_states).float(), dim=-1)
                return reverse_kl_loss(student_logps, teacher_logps, mask, inputs["row_weight"])

            return sum(torch.utils.checkpoint.checkpoint(chunk_loss, student.states[:, positions],
                                                         teacher.states[:, positions], student.mask[:, positions],
                                                         use_reentrant=False)
                       for positions in student.chunks())


LEFT_PADDED = {"prompt_": "prompt_mask", "teacher_prompt_": "teacher_prompt_mask"}  # column prefix -> its mask


def reload_in_place(generation, load_one_by_one) -> None:
    """vLLM colocate: hand the engine the policy's weights through vLLM's in-place reload (fastslow.engine.
    reload_weights); TRL's own sync (`load_one_by_one`) where vLLM has none."""
    reload_weights(generation.llm, generation._iter_named_params, load_one_by_one)


def select_rows(batch: dict, rows: torch.Tensor) -> dict:
    """The batch restricted to `rows` (a bool mask over its rows), without the padding columns only the dropped
    rows needed: prompts (and FST-distill's teacher prompts) are left-padded, completions and the per-token tensors
    aligned with them right-padded."""
    n, completion_width = rows.shape[0], batch["completion_ids"].shape[1]
    first = {}
    for prefix, mask in LEFT_PADDED.items():
        if mask in batch:
            used = batch[mask][rows].any(dim=0).nonzero()
            first[prefix] = int(used.min()) if len(used) else batch[mask].shape[1] - 1
    completion_used = batch["completion_mask"][rows].any(dim=0).nonzero()
    last = int(completion_used.max()) + 1 if len(completion_used) else 1
    selected = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == n:
            value = value[rows]
            prefix = next((p for p in first if key.startswith(p)), None)
            if prefix is not None:
                value = value[:, first[prefix]:]
            elif value.dim() == 2 and value.shape[1] == completion_width:
                value = value[:, :last]
        selected[key] = value
    return selected


@dataclass
class StepStats:
    reward_mean: float
    rollouts: int  # rows trained on: G per problem
    kept_problems: int
    loss: float
    grad_norm: float  # of the policy gradient, before clipping
    within_prompt_signal: float | None  # fastslow.slow.objective.reward_signal
    within_prompt_variance_share: float | None
    member_entropy: dict[str, float]  # member id -> mean token entropy of its rollouts this step (nats/token)
    member_signal: dict[str, float | None]  # member id -> within-prompt reward variance of its rollouts this step
    seconds_generate: float
    seconds_score: float
    seconds_update: float
    seconds_reference: float = 0.0  # log-probs of the kept rows under the starting weights (rl.kl_coef > 0)
    reused_rollouts: int = 0  # of `rollouts`, taken from the fast phase (the rest were sampled by this step)
    reused_reward_mean: float | None = None  # their mean reward (against reward_mean: GEPA's selection bias)
    importance_ratio_mean: float | None = None  # pi_theta / pi_old over tokens with sampler log-probs (None: none)
    importance_capped_share: float | None = None  # share of those tokens whose ratio exceeded rl.importance_cap
    distill_kl: float | None = None  # fst-distill: reverse KL(student || teacher) per token, before the update

    @property
    def fresh_rollouts(self) -> int:
        return self.rollouts - self.reused_rollouts

    def metrics(self) -> dict:
        """The step's columns of metrics.jsonl (`rollouts` is a counter the loop keeps)."""
        columns = {key: value for key, value in asdict(self).items() if key != "rollouts"}
        return columns | {"fresh_rollouts": self.fresh_rollouts}


def enable_activation_checkpointing(model, kwargs: dict | None) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them (for a peft model, on its base
    model). `activation_checkpointing_enable` from transformers 5.2x on, `gradient_checkpointing_enable` before."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs or None)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs or None)


def grpo_config(config: Config, output_dir: Path) -> GRPOConfig:
    rl, loop, model, engine = config.rl, config.loop, config.model, config.engine
    return GRPOConfig(
        output_dir=str(output_dir),
        loss_type="cispo",
        epsilon_high=rl.importance_cap,  # TRL's cap is ABSOLUTE; unset it falls back to 0.2 (LIBRARIES.md)
        beta=rl.kl_coef,
        scale_rewards="group",
        num_generations=loop.rollouts_per_problem,
        per_device_train_batch_size=loop.problems_per_step * loop.rollouts_per_problem,  # set per process below
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=model.max_new_tokens,
        temperature=model.temperature,
        top_p=model.top_p,
        top_k=0,
        chat_template_kwargs=model.chat_template_kwargs or None,
        learning_rate=rl.learning_rate,
        adam_beta1=rl.adam_betas[0],
        adam_beta2=rl.adam_betas[1],
        weight_decay=rl.weight_decay,
        warmup_steps=rl.warmup_steps,
        lr_scheduler_type="constant_with_warmup",
        max_grad_norm=rl.max_grad_norm,
        max_steps=loop.steps,
        bf16=rl.bf16,
        use_cpu=rl.bf16 and not torch.cuda.is_available(),  # transformers refuses bf16 on a CPU unless told so
        gradient_checkpointing=rl.gradient_checkpointing,
        disable_dropout=True,
        shuffle_dataset=False,
        remove_unused_columns=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        log_completions=False,
        seed=config.seed,
        ddp_find_unused_parameters=False,
        use_vllm=engine.kind == "vllm",  # fastslow.engine
        vllm_mode=engine.vllm_mode,
        vllm_server_base_url=engine.server_url,
        vllm_gpu_memory_utilization=engine.gpu_memory_utilization,
        vllm_max_model_length=engine.max_model_len,
        # CISPO's own ratio is pi_theta / pi_vllm, capped (objective.behaviour_logps), not TRL's second one
        vllm_importance_sampling_correction=False,
    )


def member_signal(rewards: torch.Tensor, slots: list[Member], problems: list[Problem]) -> dict[str, float | None]:
    """rewards [problems, G]. Member id -> within-prompt reward variance of its rollouts (objective.
    within_prompt_variance): per problem, its rollouts' rewards plus the score the fast phase measured for it on
    that anchor problem, a rollout of the same prompt a few steps earlier, so one RL rollout is enough."""
    result = {}
    for member_id in dict.fromkeys(m.id for m in slots):
        member = next(m for m in slots if m.id == member_id)
        columns = [i for i, m in enumerate(slots) if m.id == member_id]
        samples = [([member.scores[p.id]] if p.id in member.scores else []) + rewards[row, columns].tolist()
                   for row, p in enumerate(problems)]
        result[member_id] = within_prompt_variance(samples)
    return result


def member_entropy(entropies: torch.Tensor, slots: list[Member]) -> dict[str, float]:
    """entropies [groups, G, 2]: each rollout's (summed token entropy, tokens); slots: the member of each of the G
    slots. Returns member id -> mean token entropy over all its rollouts' tokens (nats/token)."""
    result = {}
    for member_id in dict.fromkeys(m.id for m in slots):
        mine = entropies[:, [i for i, m in enumerate(slots) if m.id == member_id]].reshape(-1, 2).sum(dim=0)
        result[member_id] = float(mine[0] / mine[1]) if mine[1] else None
    return result


class SlowLearner:
    """Owns the trainable weights. `step(problems, population)` is one RL step of the slow phase;
    `distill_step(problems, student, teacher)` one FST-distill step instead."""

    def __init__(self, config: Config, model, tokenizer, task: Task, work_dir: Path):
        self.config, self.task = config, task
        self.problems: dict[str, Problem] = {}
        self.seconds_score = 0.0
        lora = config.model.lora
        peft_config = peft_lora(lora)
        # Full fine-tuning without the KL term has no reference model, and evaluation's KL needs the starting weights:
        # one frozen copy, where evaluation runs (the main process), taken before TRL patches the model's forward (a
        # copy of the patched model would run the patched original's weights, the live ones).
        # fst-distill's teacher needs them on every process.
        keep_base = lora is None and config.rl.kl_coef == 0 and (PartialState().is_main_process
                                                                 or config.mode == "fst-distill")
        frozen_base = copy.deepcopy(model).requires_grad_(False).eval() if keep_base else None
        args = grpo_config(config, work_dir)
        self.trainer = FSTGRPOTrainer(
            model=model,
            reward_funcs=[self.reward],
            args=args,
            train_dataset=Dataset.from_list([{"prompt": chat_messages("", "")}]),  # unused: the loop feeds the data
            processing_class=tokenizer,
            peft_config=peft_config,
            advantage_eps=config.rl.advantage_eps,
            drop_zero_variance=config.rl.drop_zero_variance,
            sampling=Sampling.of(config.model),
            micro_batch_rows=config.rl.micro_batch_rows,
        )
        world = self.trainer.accelerator.num_processes
        if config.loop.problems_per_step % world:
            raise FastSlowError(
                f"loop.problems_per_step ({config.loop.problems_per_step}) must be divisible by the number of processes ({world})"
            )
        self.model = self._prepare(config.loop.steps)
        self.trainer.frozen_base = frozen_base.to(self.trainer.accelerator.device) if frozen_base is not None else None

    def _prepare(self, total_steps: int):
        """What transformers' Trainer does before its first step: optimizer, scheduler, accelerate wrapping."""
        trainer = self.trainer
        from transformers.trainer_callback import TrainerState

        trainer.state = TrainerState()
        trainer.current_gradient_accumulation_steps = 1
        if trainer.args.gradient_checkpointing:  # transformers' Trainer turns it on in train(), which we never call
            enable_activation_checkpointing(trainer.model, trainer.args.gradient_checkpointing_kwargs)
        if hasattr(trainer, "_prepare_for_training"):  # transformers >= 5.2x: handles DeepSpeed/FSDP too
            model, _ = trainer._prepare_for_training(total_steps, None, None)
        else:
            trainer.create_optimizer_and_scheduler(num_training_steps=total_steps)
            model, trainer.optimizer = trainer.accelerator.prepare(trainer.model, trainer.optimizer)
            trainer.model_wrapped = model
        return model

    @property
    def policy(self):
        """The unwrapped model, for generation and evaluation."""
        return self.trainer.accelerator.unwrap_model(self.model)

    def base_weights(self):
        """A context yielding a module that computes π_base (the starting weights): for evaluation's KL and the
        `self` reflection LM. No copy of its own where the run has one: TRL's reference model, or for LoRA the
        policy with its adapters off; else (full fine-tuning, kl_coef 0) the frozen copy."""
        return self.trainer._starting_weights(self.policy)

    def reward(self, prompts, completions, problem_id, reused, **kwargs) -> list[float]:
        """The verifier's reward of each row; a reused rollout keeps the one the fast phase measured."""
        start = time.perf_counter()
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        rewards = [rollout.verdict.reward if rollout else self.task.score(self.problems[pid], text).reward
                   for pid, text, rollout in zip(problem_id, texts, reused)]
        self.trainer.step_rewards.extend(rewards)
        self.seconds_score += time.perf_counter() - start
        return rewards

    def step(self, problems: list[Problem], population: list[Member],
             reusable: ReusableRollouts | None = None) -> StepStats:
        """One RL step: G rollouts per problem (G/K per member, taken first from `reusable`, the fast phase's
        rollouts under those members), advantages per problem, one optimizer step."""
        trainer, accelerator = self.trainer, self.trainer.accelerator
        G = self.config.loop.rollouts_per_problem
        slots = assign_prompts(population, G, self.config.loop.rollout_allocation)
        # every process takes from its own copy of the store for ALL the step's problems, so the copies stay equal
        reused = {p.id: reusable.take(p, slots) if reusable else [None] * G for p in problems}
        mine = self._my_share(problems)
        self.problems = {p.id: p for p in mine}
        rows = [
            {"prompt": chat_messages(member.text, p.prompt, self.config.model.prompt_placement), "problem_id": p.id,
             "member_id": member.id, "reused": rollout}
            for p in mine
            for member, rollout in zip(slots, reused[p.id])
        ]
        member_of_slot = torch.tensor([next(k for k, m in enumerate(population) if m is slot) for slot in slots])
        trainer.member_of_slot = member_of_slot if self.config.rl.advantage_baseline == "member" else None
        self.seconds_score = 0.0
        trainer.importance = ImportanceStats()
        start = time.perf_counter()
        loss = trainer.training_step(self.model, rows, None)
        grad_norm = self._optimizer_step()
        done = time.perf_counter()
        device = accelerator.device
        rewards = accelerator.gather(torch.tensor(trainer.step_rewards, device=device)).float().cpu()
        entropies = accelerator.gather(torch.tensor(trainer.step_entropies, device=device, dtype=torch.float64))
        signal = reward_signal(rewards.view(-1, G), member_of_slot)
        importance = trainer.importance
        ratio_sum, capped, tokens = accelerator.gather(torch.tensor(
            [[importance.ratio_sum, importance.capped, importance.tokens]], dtype=torch.float64,
            device=device)).sum(0).tolist()
        reused_rewards = [rollout.verdict.reward for taken in reused.values() for rollout in taken if rollout]
        return StepStats(
            reward_mean=float(rewards.mean()),
            rollouts=len(problems) * G,
            kept_problems=trainer.kept_groups,
            loss=float(loss),
            grad_norm=float(grad_norm),
            within_prompt_signal=signal["within_prompt_signal"],
            within_prompt_variance_share=signal["within_prompt_variance_share"],
            member_entropy=member_entropy(entropies.cpu().view(-1, G, 2), slots) if entropies.numel() else {},
            member_signal=member_signal(rewards.view(-1, G), slots, problems),
            seconds_generate=trainer.seconds_rollouts - self.seconds_score - trainer.seconds_reference,
            seconds_reference=trainer.seconds_reference,
            seconds_score=self.seconds_score,
            seconds_update=(done - start) - trainer.seconds_rollouts,
            reused_rollouts=len(reused_rewards),
            reused_reward_mean=sum(reused_rewards) / len(reused_rewards) if reused_rewards else None,
            importance_ratio_mean=ratio_sum / tokens if tokens else None,
            importance_capped_share=capped / tokens if tokens else None,
        )

    def distill_step(self, problems: list[Problem], student: Member, teacher: Member) -> StepStats:
        """One FST-distill step: G completions per problem sampled by the student, π_θ under `student`'s prompt (the
        seed prompt), and one optimizer step on the exact per-token reverse KL(π_θ(· | student) ‖ π_base(· | teacher))
        at their positions (the teacher: the starting weights under the population's best prompt), token mean per
        problem, then mean over problems. Rewards are measured (reward_mean), never trained on."""
        trainer, accelerator = self.trainer, self.trainer.accelerator
        G, tokenizer = self.config.loop.rollouts_per_problem, trainer.processing_class
        rows = [p for p in self._my_share(problems) for _ in range(G)]

        def prompts(member: Member) -> list[list[int]]:
            placement = self.config.model.prompt_placement
            return prompt_token_ids(tokenizer, [chat_messages(member.text, p.prompt, placement) for p in rows],
                                    self.config.model.chat_template_kwargs or None)

        student_ids, teacher_ids = prompts(student), prompts(teacher)
        self.model.train()
        start, entropies = time.perf_counter(), []
        completions, _ = trainer._sample(student_ids, None, None, False, entropies)
        generated = time.perf_counter()
        texts = tokenizer.batch_decode(completions, skip_special_tokens=True)
        rewards = [self.task.score(p, text).reward for p, text in zip(rows, texts)]
        scored = time.perf_counter()
        device, pad = accelerator.device, tokenizer.pad_token_id
        batch = {"completion_ids": trl_pad([torch.tensor(c, dtype=torch.long) for c in completions], pad),
                 "completion_mask": trl_pad([torch.ones(len(c), dtype=torch.long) for c in completions], 0)}
        for name, ids in (("prompt", student_ids), ("teacher_prompt", teacher_ids)):
            batch[f"{name}_ids"], batch[f"{name}_mask"] = shared_prefix.left_pad(ids, pad)
        batch = {key: value.to(device) for key, value in batch.items()}
        tokens = batch["completion_mask"].sum(dim=1).float()
        # as the RL step's: token mean per problem, mean over ALL processes' problems (DDP averages gradients)
        batch["row_weight"] = row_weights(torch.ones(len(rows) // G, dtype=torch.bool, device=device), tokens,
                                          len(problems)) * accelerator.num_processes
        loss = trainer._accumulate_gradient(self.model, batch)
        grad_norm = self._optimizer_step()
        done = time.perf_counter()
        distill_kl = float(accelerator.gather(loss.unsqueeze(0)).sum()) / accelerator.num_processes
        rewards = accelerator.gather(torch.tensor(rewards, device=device)).float().cpu()
        entropy = accelerator.gather(torch.tensor([[sum(entropies), float(tokens.sum())]], dtype=torch.float64,
                                                  device=device)).sum(0).tolist()
        return StepStats(
            reward_mean=float(rewards.mean()), rollouts=len(problems) * G, kept_problems=len(problems),
            loss=distill_kl, grad_norm=float(grad_norm), within_prompt_signal=None, within_prompt_variance_share=None,
            member_entropy={student.id: entropy[0] / entropy[1]} if entropies and entropy[1] else {},
            member_signal={}, seconds_generate=generated - start, seconds_score=scored - generated,
            seconds_update=done - scored, distill_kl=distill_kl,
        )

    def _my_share(self, problems: list[Problem]) -> list[Problem]:
        """This process's problems: each process takes whole problems (whole groups)."""
        accelerator = self.trainer.accelerator
        share = len(problems) // accelerator.num_processes
        return problems[accelerator.process_index * share : (accelerator.process_index + 1) * share]

    def _optimizer_step(self) -> float:
        """Clip, step the optimizer and the scheduler, hand vLLM the new weights. Returns the gradient norm before
        clipping (an infinite bound measures it and changes nothing). A gradient with a NaN or an infinity in it
        skips the optimizer's step, with a warning: stepping would write it into every weight (Adam's moments
        too): the run would die at its next sampling ("probability tensor contains either inf, nan or element < 0")
        and every later checkpoint would hold the NaNs. The norm is global, so every process skips together."""
        trainer = self.trainer
        grad_norm = float(trainer.accelerator.clip_grad_norm_(self.model.parameters(),
                                                              self.config.rl.max_grad_norm or float("inf")))
        if math.isfinite(grad_norm):
            trainer.optimizer.step()
        else:
            log.warning("RL step %d: the policy gradient's norm is %s; the update is skipped (the weights and the "
                        "optimizer's state are unchanged)", trainer.state.global_step + 1, grad_norm)
        with warnings.catch_warnings():  # the schedule keeps counting steps; PyTorch's warning on a skip is expected
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler.step\(\)` before")
            trainer.lr_scheduler.step()
        self.model.zero_grad()
        trainer.state.global_step += 1
        self.sync_engine()
        return grad_norm

    # --- checkpointing (the loop decides when; fastslow.checkpoint decides where) ---
    def optimizer_state(self) -> dict:
        return {"optimizer": self.trainer.optimizer.state_dict(), "scheduler": self.trainer.lr_scheduler.state_dict(),
                "global_step": self.trainer.state.global_step}

    def load_optimizer_state(self, state: dict) -> None:
        """After the checkpoint's weights were loaded into the policy: optimizer, scheduler, step, vLLM's weights."""
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.lr_scheduler.load_state_dict(state["scheduler"])
        self.trainer.state.global_step = state["global_step"]
        self.sync_engine()

    def sync_engine(self) -> None:
        """With vLLM (engine.kind), hand it the policy's current weights, on every process: GEPA and evaluation,
        which sample on rank 0 only, then see the weights the next RL step starts from (TRL would sync lazily,
        before its own next generation, and now skips that)."""
        trainer = self.trainer
        if trainer.use_vllm and trainer._last_loaded_step != trainer.state.global_step:
            trainer.vllm_generation.sync_weights()
            trainer._last_loaded_step = trainer.state.global_step
