"""Test helper: under DDP, the update's gradient with shared prompt prefixes (two forwards per backward: prefixes,
then rests) equals the gradient of TRL's whole-row pass; a process holding a single row does not hang the others;
the update in micro-batches gives the one-pass gradient while processes keep different numbers of rows, with
every process making the same forward calls and gradients exchanged once; and so does a whole RL step with the member
advantage baseline, whose dropped problems leave the processes different numbers of rows. Each process builds its own batch; DDP
averages the gradients. From the repository root, on CPU (tests/test_shared_prefix.py) or GPUs
(`bash benchmarks/gpu.sh ddp_smoke`):

    PYTHONPATH=tests ACCELERATE_USE_CPU=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/ddp_shared_prefix_worker.py [--lora]
"""

import sys
import tempfile
from pathlib import Path

import pytest
import torch
from doubles import ShortAnswerTask
from test_trl_seam import gradients, make_learner, script_rewards, synthetic_batch
from tiny_model import build_tiny_model
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from fastslow.fast.population import Member
from fastslow.slow.trainer import select_rows

# rewards of each process's 2 problems x G=4 rollouts; slots 0 and 2 are member a's, 1 and 3 member b's. Under the
# member baseline process 0 keeps both problems (8 rows), process 1 only its second (4 rows): its first varies only
# between the members
STEP_REWARDS = {0: [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0], 1: [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]}


def largest_difference(grads, reference) -> float:
    """The largest gradient difference, relative to each tensor's scale."""
    return max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) for a, b in zip(grads, reference))


def main() -> None:
    task = ShortAnswerTask()
    model_dir = Path(tempfile.gettempdir()) / "tiny-shared-prefix"
    lora = {"r": 4} if "--lora" in sys.argv else None
    model_path = str(build_tiny_model(model_dir))
    learner = make_learner(model_path, Path(tempfile.mkdtemp()), task, problems=2, members=2, lora=lora)
    trainer, model, tokenizer = learner.trainer, learner.model, learner.trainer.processing_class
    accelerator = trainer.accelerator
    rank, device = accelerator.process_index, accelerator.device
    exchanges, forwards = [], []  # gradient buckets all-reduced, and forward calls through DDP
    model.register_comm_hook(None, lambda state, bucket: exchanges.append(1) or allreduce_hook(state, bucket))
    model.register_forward_pre_hook(lambda *_: forwards.append(1))
    systems = [f"Answer in lower case, process {rank}.", f"Give only the short final answer, process {rank}."]
    batch = synthetic_batch(tokenizer, task.problems("train", 3, rank), systems, seed=rank)
    batch = {k: v.to(device) for k, v in batch.items()}
    grads = []
    for share in (True, False):
        trainer.share_prefixes = share
        model.zero_grad()
        logps = trainer._completion_logps(model, batch)
        accelerator.backward((logps * batch["completion_mask"]).sum())
        grads.append(gradients(model))
    worst = largest_difference(*grads)
    print(f"process {rank} of {accelerator.num_processes} ({type(model).__name__}): largest gradient "
          f"difference shared vs whole rows, relative to the tensor's scale: {worst:.2e}", flush=True)
    assert worst < 1e-3, worst

    # a process left with one row (all its problems dropped) must make the same forward calls as the others
    trainer.share_prefixes = True
    mine = {k: v[:1] for k, v in batch.items()} if rank == 1 else batch
    model.zero_grad()
    accelerator.backward((trainer._completion_logps(model, mine) * mine["completion_mask"]).sum())
    print(f"process {rank}: the step where process 1 holds one row completed", flush=True)

    # micro-batches of 4 rows: process 0 keeps 12 rows (3 micro-batches), process 1 keeps 5 (2 would do) or 1
    for kept in (5, 1):
        rows = torch.arange(12, device=device) < (kept if rank == 1 else 12)
        mine = select_rows(batch, rows)
        results = []
        for micro_batch_rows in (4, 100):
            trainer.micro_batch_rows = micro_batch_rows
            model.zero_grad()
            exchanges.clear(), forwards.clear()
            loss = trainer._accumulate_gradient(model, mine)
            results.append((gradients(model), len(exchanges), len(forwards)))
        (micro, micro_exchanges, micro_forwards), (whole, whole_exchanges, whole_forwards) = results
        forwards_everywhere = accelerator.gather(torch.tensor([micro_forwards], device=device)).tolist()
        worst = largest_difference(micro, whole)
        print(f"process {rank}, process 1 keeping {kept} rows: largest gradient difference micro-batches vs one pass "
              f"{worst:.2e}; forward calls per process {forwards_everywhere} (one pass: {whole_forwards}); "
              f"gradient buckets exchanged {micro_exchanges} (one pass: {whole_exchanges})", flush=True)
        assert worst < 1e-5, worst
        assert forwards_everywhere == [3 * whole_forwards] * 2  # 3 micro-batches everywhere, of the same calls
        assert micro_exchanges == whole_exchanges > 0  # only the last micro-batch's backward exchanges gradients
        assert float(loss) != 0
    member_baseline_step(model_path, task, lora, rank)
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()  # else gloo's threads may abort the interpreter's exit


def member_baseline_step(model_path: str, task, lora, rank: int) -> None:
    """One RL step (sampling, rewards, reference and policy passes, optimizer step) with rl.advantage_baseline
    member, in micro-batches of 3 rows (process 0 needs 3 for its 8 rows, process 1 2 for its 4) and in one pass,
    from the same weights and rollouts: the optimizer steps on the same gradient, every process making the same
    forward calls."""
    results = []
    with pytest.MonkeyPatch.context() as patch:
        script_rewards(patch, lambda rows: STEP_REWARDS[rank][:rows])
        for micro_batch_rows in (3, 100):
            learner = make_learner(model_path, Path(tempfile.mkdtemp()), task, problems=4, members=2, lora=lora,
                                   advantage_baseline="member", micro_batch_rows=micro_batch_rows)
            accelerator, policy, seen, forwards = learner.trainer.accelerator, learner.policy, [], []
            learner.trainer.optimizer.optimizer.register_step_pre_hook(lambda *_: seen.append(gradients(policy)))
            learner.model.register_forward_pre_hook(lambda *_: forwards.append(1))
            torch.manual_seed(0)  # the same rollouts for both
            stats = learner.step(task.problems("train", 4, 0), [Member("a", "Prompt A."), Member("b", "Prompt B.")])
            assert stats.kept_problems == 3, stats.kept_problems
            counts = accelerator.gather(torch.tensor([len(forwards)], device=accelerator.device)).tolist()
            results.append((seen[0], counts))
    (micro, micro_counts), (whole, whole_counts) = results
    worst = largest_difference(micro, whole)
    print(f"process {rank}, member baseline: largest gradient difference of the step in micro-batches vs one pass "
          f"{worst:.2e}; forward calls per process {micro_counts} (one pass: {whole_counts})", flush=True)
    assert worst < 1e-5, worst
    assert micro_counts == [3 * whole_counts[0]] * 2 and whole_counts[0] == whole_counts[1] > 0


if __name__ == "__main__":
    main()
