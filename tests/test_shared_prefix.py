"""Computing each shared prompt prefix once: the plan, and sampling that matches plain `generate`."""

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from doubles import ShortAnswerTask
from test_trl_seam import make_learner
from trl import GRPOTrainer

from fastslow import shared_prefix
from fastslow.errors import FastSlowError
from fastslow.policy import Sampling, chat_messages, generate, load_model, load_tokenizer
from fastslow.shared_prefix import plan_prefixes
from fastslow.tasks.micro import StringProgramTask

SYSTEMS = ["Reverse the letters, then keep every other letter.",
           "Sort the letters, then double each letter.",
           "Swap each pair of letters, then move the first 2 letters to the end."]


def test_rows_group_by_shared_prefix_and_each_keeps_a_token_to_start_from():
    a, b = [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]
    plan = plan_prefixes([a, [9, 9, 9], b, a])
    assert sorted(map(sorted, plan.groups)) == [[0, 2, 3], [1]]
    assert dict(zip(map(min, plan.groups), plan.lengths)) == {0: 5, 1: 2}  # a lone row is its own prefix minus 1
    assert plan.shared_rows == 3
    identical = plan_prefixes([a, a])
    assert identical.groups == [[0, 1]] and identical.lengths == [5]  # the last token is left to compute


def test_a_group_must_share_at_least_half_of_its_longest_prompt():
    header = [1, 2]  # e.g. a chat template's opening, shared by every prompt
    long_tails = [header + [3] * 8, header + [4] * 8]
    assert plan_prefixes(long_tails).shared_rows == 0  # sharing 2 of 10 tokens would pad each rest to 8
    assert plan_prefixes([header + [3] * 8, header + [3] * 7 + [4]]).shared_rows == 2


def computed_tokens(prompts, groups, lengths) -> int:
    return sum(length + sum(len(prompts[r]) - length for r in group) for group, length in zip(groups, lengths))


def runs(items):
    """Every split of `items` into consecutive runs."""
    for cuts in range(2 ** (len(items) - 1)):
        groups, current = [], [items[0]]
        for i, item in enumerate(items[1:]):
            if cuts >> i & 1:
                groups.append(current)
                current = []
            current.append(item)
        yield groups + [current]


def test_the_plan_is_the_cheapest_split_of_the_sorted_prompts():
    """Against brute force over every split of the sorted prompts into runs (random prompts of tokens 1 and 2, so
    prefixes often match)."""
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        prompts = [torch.randint(1, 3, (int(n),), generator=generator).tolist()
                   for n in torch.randint(2, 8, (6,), generator=generator)]
        best = None
        for groups in runs(sorted(range(len(prompts)), key=lambda i: prompts[i])):
            shared = [min(min(shared_prefix.common_prefix(prompts[g[0]], prompts[r]) for r in g),
                          min(len(prompts[r]) for r in g) - 1) for g in groups]
            if all(len(g) == 1 or s >= 0.5 * max(len(prompts[r]) for r in g) for g, s in zip(groups, shared)):
                cost = computed_tokens(prompts, groups, shared)
                best = cost if best is None else min(best, cost)
        plan = plan_prefixes(prompts)
        assert sorted(r for g in plan.groups for r in g) == list(range(len(prompts)))
        for group, length in zip(plan.groups, plan.lengths):
            assert all(prompts[r][:length] == prompts[group[0]][:length] and len(prompts[r]) > length for r in group)
        assert computed_tokens(prompts, plan.groups, plan.lengths) == best


def test_greedy_sampling_with_shared_prefixes_equals_plain_generate():
    model, tokenizer = load_model("micro").eval(), load_tokenizer("micro")
    problems = StringProgramTask(program_seed=3).problems("train", 6, 0)
    conversations = [chat_messages(system, p.prompt) for p in problems for system in SYSTEMS] + [
        chat_messages(None, "abc")]  # a row that shares nothing
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len(plan_prefixes(ids).groups) == 4

    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        plain = model.generate(**encoded, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.batch_decode(plain[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    got = generate(model, tokenizer, conversations, Sampling(max_new_tokens=12, temperature=0), batch_size=8)
    assert got == expected
    assert len(set(expected)) > 10  # real, varied answers, not one degenerate string


@pytest.mark.parametrize("share", [True, False])
def test_sampling_on_a_gpu_runs_attention_without_cudnn(monkeypatch, share):
    """cuDNN attention builds a graph for every new (rows, key length), so each decoding step of a batch size not
    sampled before paid one (shared_prefix.decoding_attention). The GPU branch is taken here on the CPU, to see what
    every forward of sampling runs under; a CPU leaves the flags alone."""
    flags = torch.backends.cuda
    with shared_prefix.decoding_attention(torch.device("cpu")):
        assert flags.cudnn_sdp_enabled()
    with shared_prefix.decoding_attention(torch.device("cuda")):
        assert not flags.cudnn_sdp_enabled() and flags.flash_sdp_enabled() and flags.mem_efficient_sdp_enabled()
    assert flags.cudnn_sdp_enabled()  # restored

    model, tokenizer = load_model("micro").eval(), load_tokenizer("micro")
    seen, devices, real = [], [], shared_prefix.decoding_attention
    model.register_forward_pre_hook(lambda *_: seen.append(flags.cudnn_sdp_enabled()))
    monkeypatch.setattr(shared_prefix, "decoding_attention",
                        lambda device: devices.append(device.type) or real(torch.device("cuda")))
    conversations = [chat_messages(system, "abc") for system in SYSTEMS for _ in range(2)]
    generate(model, tokenizer, conversations, Sampling(max_new_tokens=6, temperature=0, share_prefixes=share))
    assert devices == ["cpu"]  # the rows' own device decides
    assert len(seen) >= 2 and not any(seen)  # prefill and decoding steps alike
    assert flags.cudnn_sdp_enabled()


def test_rl_rollouts_with_shared_prefixes_equal_trls_generation(tiny_model_path, tmp_path):
    """The trainer's generation seam returns what TRL's own transformers path returns (greedy, so comparable)."""
    task = ShortAnswerTask()
    learner = make_learner(tiny_model_path, tmp_path, task, problems=3, members=2)
    trainer, tokenizer = learner.trainer, learner.trainer.processing_class
    trainer.generation_config.do_sample = False  # TRL's sampler and ours (fastslow.policy.sample_ids) greedy
    trainer.sampling = dataclasses.replace(trainer.sampling, temperature=0)
    texts = [tokenizer.apply_chat_template(chat_messages(system, p.prompt), tokenize=False, add_generation_prompt=True)
             for p in task.problems("train", 3, 0) for system in SYSTEMS[:2] for _ in range(2)]
    prompt_ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert shared_prefix.plan_prefixes(prompt_ids).shared_rows == 12
    ours, _ = trainer._generate_single_turn(prompt_ids, None, {}, 4)
    theirs, _ = GRPOTrainer._generate_single_turn(trainer, prompt_ids, None, {}, 4)
    assert ours == theirs


class CacheIgnoringModel(torch.nn.Module):
    """Test double: a causal LM whose forward drops a KV cache passed to it."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config = model, model.config

    def forward(self, cache=None, **kwargs):
        return self.inner(**kwargs)


def test_a_model_that_ignores_the_cache_is_an_error_not_a_wrong_result():
    model, tokenizer = load_model("micro").eval(), load_tokenizer("micro")
    prompts = [tokenizer(SYSTEMS[0] + tail, add_special_tokens=False)["input_ids"] for tail in ("abc", "de")]
    rows = shared_prefix.prefill(model, prompts, tokenizer.pad_token_id)
    completions, mask = torch.tensor([[5, 6], [7, 8]]), torch.ones(2, 2, dtype=torch.long)
    shared_prefix.forward_rest(model, rows, completions, mask)  # the real model extends the cache
    rows = shared_prefix.prefill(model, prompts, tokenizer.pad_token_id)
    with pytest.raises(FastSlowError, match="model.share_prefixes"):
        shared_prefix.forward_rest(CacheIgnoringModel(model), rows, completions, mask)


@pytest.mark.slow
@pytest.mark.parametrize("flags", [[], ["--lora"]], ids=["full", "lora"])
def test_under_ddp_the_shared_pass_gives_the_whole_row_gradient(tmp_path, flags):
    """Two CPU processes (gloo): DDP sees two forwards (prefixes, then rests) before one backward; micro-batches
    agree in number across processes that keep different numbers of rows, also in a whole step with the member
    baseline (tests/ddp_shared_prefix_worker.py)."""
    root = Path(__file__).parent.parent
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join([str(root / "tests"), str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(root / "tests" / "ddp_shared_prefix_worker.py"), *flags],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("of 2 (DistributedDataParallel)") == 2  # both processes compared (lines may interleave)
    assert done.stdout.count("holds one row completed") == 2
    assert done.stdout.count("rows: largest gradient difference micro-batches vs one pass") == 4  # process 1 keeping 5 rows, then 1, on both
    assert done.stdout.count("member baseline: largest gradient difference") == 2
