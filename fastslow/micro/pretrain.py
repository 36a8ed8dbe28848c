"""Pretrain a micro model from scratch on a generated corpus (fastslow.micro.corpus).

A small Qwen3-style causal LM over characters, trained with next-token loss on the assistant answers only.
Runs on one GPU (bf16 autocast), on several through torchrun (data parallel: each rank streams its own
corpus shard), or, slowly, on CPU with the same code. Reproducible from (seed, ranks, workers, steps).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

from fastslow.micro.corpus import CORPORA, KINDS, batches
from fastslow.micro.tokenizer import IM_END, build_tokenizer

# A version names a corpus and a size. v3, ~14M parameters (28 MB saved in bfloat16, run in float32: see
# _run_in_float32): the feasibility runs found program induction (reflection) needs this size (4.8M parameters
# inferred 4% of unseen programs, 14.3M 67%). v4 is a policy only (a separate model reflects), so two thirds of the
# width: ~6.3M parameters, 13 MB; with the reflector (v3's size) that is 40 MB, within the 45 MB the checkpoints may take.
MODEL_SIZES = {
    "v3": dict(hidden_size=384, intermediate_size=1152, num_hidden_layers=8, num_attention_heads=6,
               num_key_value_heads=2, head_dim=64),
    "v4": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=8, num_attention_heads=4,
               num_key_value_heads=2, head_dim=64),
}
MODEL_SIZES["reflector"] = MODEL_SIZES["v3"]  # trained on from v3 (--init fastslow/micro/model)
MODEL_SIZES["reflector2"] = MODEL_SIZES["v3"]  # trained on from the reflector (issue 24)
VERSIONS = tuple(MODEL_SIZES)


def micro_config(tokenizer, version: str = "v3", **overrides) -> Qwen3Config:
    size = {**MODEL_SIZES[version], **overrides}
    return Qwen3Config(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        bos_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        **size,
    )


def answer_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean next-token loss over answer tokens, and the loss summed per kind (for logging) [3 x (sum, count)].

    No attention mask: batches are right-padded, so causal attention never lets a real token see padding.
    """
    logits = model(input_ids=batch["input_ids"], use_cache=False).logits[:, :-1].float()
    targets = batch["labels"][:, 1:]
    token_loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
    token_loss = token_loss.view_as(targets)
    mask = (targets != -100).float()
    per_example = torch.stack([(token_loss * mask).sum(1), mask.sum(1)], dim=1)  # [B, 2]
    by_kind = torch.zeros(len(KINDS), 2, device=per_example.device).index_add_(0, batch["kind"], per_example)
    return (token_loss * mask).sum() / mask.sum(), by_kind.detach()


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _init_distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) when launched by torchrun, else (0, 0, 1)."""
    if "RANK" not in os.environ:
        return 0, 0, 1
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0)), dist.get_world_size()


def recent_step_seconds(step: int, step_times: list[float], warmup: int, log_every: int) -> float:
    """Seconds a step takes now: at `warmup` over the warm-up's second half, later over the last `log_every` steps
    (compilation's first steps left behind)."""
    recent = step_times[warmup // 2 :] if step == warmup else step_times[-log_every:]
    return sum(recent) / len(recent)


def plan_steps(step: int, step_times: list[float], warmup: int, log_every: int, seconds_left: float) -> int:
    """The run's step count for a time budget, planned at `step` from the speed of the recent steps."""
    return step + max(0, int(seconds_left / recent_step_seconds(step, step_times, warmup, log_every) * 0.97))


def _all_reduce(value: torch.Tensor, op=dist.ReduceOp.SUM) -> torch.Tensor:
    """In place over all ranks under torchrun; unchanged in a single process."""
    if dist.is_initialized():
        dist.all_reduce(value, op=op)
    return value


def pretrain(
    out_dir: str | Path,
    steps: int | None = None,
    minutes: float | None = None,
    batch_size: int = 256,
    lr: float = 1.5e-3,
    warmup: int = 300,
    seed: int = 0,
    workers: int | None = None,
    device: str | None = None,
    shard_mb: int | None = None,
    log_every: int = 100,
    init: str | Path | None = None,
    torch_compile: bool = False,
    version: str = "v3",
    **size,
) -> dict:
    """Train for `steps` steps, or for about `minutes` (the step count is then fixed from the speed measured
    over the first `warmup` steps and recorded, so the run can be repeated with `steps`).

    Under torchrun every rank trains on `batch_size` examples per step (the global batch is
    batch_size x ranks) and rank 0 writes the checkpoint. `init` continues from an earlier checkpoint (its
    size, new optimizer state and learning-rate schedule); its pretrain_log.json is kept in the new one.
    `torch_compile` runs each decoder layer through torch.compile (dynamic shapes: batch widths vary). `version`
    picks the corpus and, for fresh weights, the size (MODEL_SIZES; `size` overrides single fields)."""
    if (steps is None) == (minutes is None):
        raise ValueError("give exactly one of steps or minutes")
    started = time.time()
    rank, local_rank, world = _init_distributed()
    main = rank == 0
    device = device or (f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device == "cuda":  # set_device needs an index; each rank takes its own card
        device = f"cuda:{local_rank}"
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    workers = max(1, (os.cpu_count() or 2) // world - 2) if workers is None else workers
    torch.manual_seed(seed)  # the same initial weights on every rank
    torch.backends.cuda.matmul.allow_tf32 = True
    tokenizer = build_tokenizer()
    if init is not None:
        model = Qwen3ForCausalLM.from_pretrained(init, dtype=torch.float32).to(device)
    else:
        model = Qwen3ForCausalLM(micro_config(tokenizer, version, **size)).to(device)
    trained = DistributedDataParallel(model, device_ids=[local_rank] if device.startswith("cuda") else None) if world > 1 else model
    if torch_compile:  # regional: the 8 decoder layers share one compiled graph, so it compiles in seconds
        for layer in model.model.layers:
            layer.compile(dynamic=True)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1,
                                  fused=device.startswith("cuda"))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    if main:
        print(f"micro model: {n_params / 1e6:.2f}M parameters on {world} x {device.split(':')[0]}, "
              f"{workers} data workers per rank, {batch_size * world} examples per step", flush=True)

    total = steps if steps is not None else None
    log, window, step_times = [], torch.zeros(len(KINDS), 2, device=device), []
    model.train()
    loader = iter(batches(seed, batch_size, workers, rank=rank, corpus=version))
    kinds = [kind for kind, weight in zip(KINDS, CORPORA[version]) if weight > 0]  # the kinds this corpus has
    train_started = time.time()
    step = 0
    while total is None or step < total:
        t0 = time.time()
        batch = {k: v.to(device, non_blocking=True) for k, v in next(loader).items()}
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total or 10**9, lr, warmup)
        with autocast:
            loss, by_kind = answer_loss(trained, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        window += by_kind
        step += 1
        step_times.append(time.time() - t0)
        # the step count, from the measured speed: fixed at `warmup`, re-fixed at each log in the first half of the
        # run (a condition on steps, so every rank takes part in the all_reduce): with --compile the first hundreds
        # of steps still recompile for new batch widths (one H100: 162 ms/step over steps 50-100, ~65 from step 400),
        # and a count fixed at `warmup` alone stopped a 4.5-minute run after 2.3 minutes (issue 24's reflector)
        replan = step == warmup or (step > warmup and step % log_every == 0 and step <= total // 2)
        if minutes is not None and replan:
            planned = plan_steps(step, step_times, warmup, log_every, minutes * 60 - (time.time() - started))
            total = int(_all_reduce(torch.tensor(planned, device=device), dist.ReduceOp.MIN).item())  # ranks agree
            if main:
                print(f"{recent_step_seconds(step, step_times, warmup, log_every) * 1000:.0f} ms/step -> {total} "
                      "steps in total", flush=True)
        if step % log_every == 0 or step == total:
            if minutes is not None:  # safety stop if the estimate was off (checked together, so ranks stop together)
                late = torch.tensor(float(time.time() - started > minutes * 60 * 1.1), device=device)
                if _all_reduce(late, dist.ReduceOp.MAX).item() and step != total:
                    if main:
                        print(f"stopped by the time limit at step {step} of {total}", flush=True)
                    total = step
            _all_reduce(window)
            losses = {kind: round((window[i, 0] / window[i, 1].clamp(min=1)).item(), 4)
                      for i, kind in enumerate(KINDS) if kind in kinds}
            row = {"step": step, "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - train_started, 1),
                   **{f"loss_{k}": v for k, v in losses.items()}}
            log.append(row)
            if main:
                print(json.dumps(row), flush=True)
            window.zero_()

    if world > 1:
        # A barrier first lets gloo's worker threads release the last all_reduce's tensors (they need the GIL) before
        # the group can be destroyed; without it the group's destructor can deadlock against them (torch 2.13, gloo).
        dist.barrier()
        del trained
        dist.destroy_process_group()
    if not main:
        return {"rank": rank, "steps": step, "train_seconds": time.time() - train_started}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16)  # stored in bfloat16 to halve the file (<= 30 MB); see _run_in_float32
    model.generation_config = GenerationConfig(
        eos_token_id=model.config.eos_token_id, pad_token_id=tokenizer.pad_token_id, max_new_tokens=64
    )
    model.save_pretrained(out_dir, max_shard_size=f"{shard_mb}MB" if shard_mb else "1GB")
    tokenizer.save_pretrained(out_dir)
    _run_in_float32(out_dir)
    summary = {
        "rank": 0,
        "command": ("" if world == 1 else f"torchrun --nproc-per-node {world} -m ")
                   + f"fastslow micro pretrain --steps {step} --batch-size {batch_size} --lr {lr} --warmup {warmup} "
                   f"--seed {seed} --workers {workers}" + (f" --version {version}" if version != "v3" else "")
                   + (f" --init {init}" if init is not None else "")
                   + (" --compile" if torch_compile else ""),
        "version": version, "parameters": n_params, "steps": step, "batch_size": batch_size, "ranks": world, "lr": lr, "warmup": warmup,
        "seed": seed, "workers": workers, "compile": torch_compile, "device": torch.cuda.get_device_name() if device.startswith("cuda") else platform.processor() or "cpu",
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
        "train_seconds": round(time.time() - train_started, 1), "total_seconds": round(time.time() - started, 1),
        "log": log,
        "init": None if init is None else {"path": str(init), "summary": _earlier_summary(Path(init))},
    }
    (out_dir / "pretrain_log.json").write_text(json.dumps(summary, indent=1))
    return summary


def _earlier_summary(model_dir: Path) -> dict | None:
    log_file = model_dir / "pretrain_log.json"
    return json.loads(log_file.read_text()) if log_file.exists() else None


def _run_in_float32(model_dir: Path) -> None:
    """Mark the checkpoint as a float32 model: `from_pretrained(dtype="auto")` reads config.dtype and upcasts
    the stored bfloat16 weights. A model this small gains nothing from half precision, and RL's small updates
    would round away in bfloat16 weights."""
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text())
    config["dtype"] = "float32"
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def merge_shards(model_dir: str | Path) -> None:
    """Re-save a sharded checkpoint as one model.safetensors (the GPU machine returns files of <= 16 MB)."""
    from safetensors.torch import load_file, save_file

    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if not index.exists():
        return
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    tensors = {}
    for shard in shards:
        tensors.update(load_file(model_dir / shard))
    save_file(tensors, model_dir / "model.safetensors", metadata={"format": "pt"})
    for shard in shards:
        (model_dir / shard).unlink()
    index.unlink()
