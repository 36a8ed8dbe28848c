"""Test helper: under DDP, the update's gradient with shared prompt prefixes (two forwards per backward: prefixes,
then rests) equals the gradient of TRL's whole-row pass, and a process holding a single row does not hang the
others. Each process builds its own batch; DDP averages the gradients. From the repository root, on CPU
(tests/test_shared_prefix.py) or GPUs (benchmarks/gpu_ddp.sh):

    PYTHONPATH=tests ACCELERATE_USE_CPU=1 python -m torch.distributed.run --standalone --nproc_per_node 2 \
        tests/ddp_shared_prefix_worker.py [--lora]
"""

import sys
import tempfile
from pathlib import Path

import torch
from doubles import ShortAnswerTask
from test_trl_seam import make_learner
from tiny_model import build_tiny_model

from fastslow import shared_prefix
from fastslow.policy import chat_messages


def main() -> None:
    task = ShortAnswerTask()
    model_dir = Path(tempfile.gettempdir()) / "tiny-shared-prefix"
    lora = {"r": 4} if "--lora" in sys.argv else None
    learner = make_learner(str(build_tiny_model(model_dir)), Path(tempfile.mkdtemp()), task, problems=2, members=2,
                           lora=lora)
    trainer, model, tokenizer = learner.trainer, learner.model, learner.trainer.processing_class
    rank, device = trainer.accelerator.process_index, trainer.accelerator.device
    systems = [f"Answer in lower case, process {rank}.", f"Give only the short final answer, process {rank}."]
    texts = [tokenizer.apply_chat_template(chat_messages(s, p.prompt), tokenize=False, add_generation_prompt=True)
             for p in task.problems("train", 3, rank) for s in systems for _ in range(2)]
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    generator = torch.Generator().manual_seed(rank)
    completions = [torch.randint(5, 40, (n,), generator=generator).tolist() for n in (3, 5, 1, 4, 5, 2) * 2]
    batch = dict(zip(("prompt_ids", "prompt_mask"), shared_prefix.left_pad(prompt_ids, tokenizer.pad_token_id)))
    right = [c[::-1] for c in completions]
    ids, mask = shared_prefix.left_pad(right, tokenizer.pad_token_id)
    batch |= {"completion_ids": ids.flip(1), "completion_mask": mask.flip(1)}
    batch = {k: v.to(device) for k, v in batch.items()}
    grads = []
    for share in (True, False):
        trainer.share_prefixes = share
        model.zero_grad()
        logps = trainer._completion_logps(model, batch)
        trainer.accelerator.backward((logps * batch["completion_mask"]).sum())
        grads.append([p.grad.detach().clone() for p in model.parameters() if p.requires_grad])
    worst = max(float((a - b).abs().max() / b.abs().max().clamp(min=1e-12)) for a, b in zip(*grads))
    print(f"process {rank} of {trainer.accelerator.num_processes} ({type(model).__name__}): largest gradient "
          f"difference shared vs whole rows, relative to the tensor's scale: {worst:.2e}", flush=True)
    assert worst < 1e-3, worst

    # a process left with one row (all its problems dropped) must make the same forward calls as the others
    trainer.share_prefixes = True
    mine = {k: v[:1] for k, v in batch.items()} if rank == 1 else batch
    model.zero_grad()
    trainer.accelerator.backward((trainer._completion_logps(model, mine) * mine["completion_mask"]).sum())
    print(f"process {rank}: the step where process 1 holds one row completed", flush=True)
    trainer.accelerator.wait_for_everyone()
    torch.distributed.destroy_process_group()  # else gloo's threads may abort the interpreter's exit


if __name__ == "__main__":
    main()
