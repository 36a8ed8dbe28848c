"""Test helper: under DDP, the update's gradient with shared prompt prefixes (two forwards per backward: prefixes,
then rests) equals the gradient of TRL's whole-row pass; a process holding a single row does not hang the others;
and the update in micro-batches gives the one-pass gradient while processes keep different numbers of rows, with
every process making the same forward calls and gradients exchanged once. Each process builds its own batch; DDP
averages the gradients. From the repository root, on CPU (tests/test_shared_prefix.py) or GPUs
(benchmarks/gpu_ddp.sh):

    PYTHONPATH=tests ACCELERATE_USE_CPU=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/ddp_shared_prefix_worker.py [--lora]
"""

import sys
import tempfile
from pathlib import Path

import torch
from doubles import ShortAnswerTask
from test_trl_seam import gradients, make_learner, synthetic_batch
from tiny_model import build_tiny_model
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from fastslow.slow.trainer import select_rows


def largest_difference(grads, reference) -> float:
    """The largest gradient difference, relative to each tensor's scale."""
    return max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) for a, b in zip(grads, reference))


def main() -> None:
    task = ShortAnswerTask()
    model_dir = Path(tempfile.gettempdir()) / "tiny-shared-prefix"
    lora = {"r": 4} if "--lora" in sys.argv else None
    learner = make_learner(str(build_tiny_model(model_dir)), Path(tempfile.mkdtemp()), task, problems=2, members=2,
                           lora=lora)
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
    accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()  # else gloo's threads may abort the interpreter's exit


if __name__ == "__main__":
    main()
