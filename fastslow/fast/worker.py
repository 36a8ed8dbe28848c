"""The overlap schedule's worker process (fastslow.fast.phase.OverlapFastPhase): it holds its own copy of the policy,
the task and the reflection LM, and runs one fast phase per job it is sent, on the weights the job names.

It writes nothing but GEPA's scratch directories, and ends with its parent: on a `None` job, or as soon as it sees
the training process gone (a SIGKILLed run leaves no worker behind).
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
from contextlib import contextmanager


def serve(spec, jobs, results) -> None:
    """The worker's main: build everything once, then answer jobs until told to stop."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the trainer stops us
    try:
        fast = build_fast_phase(spec)
    except Exception as exc:  # the run stops with this line at its next collection (OverlapFastPhase.result)
        results.put(("start failed", _failure(exc)[1]))
        return
    parent, loaded = multiprocessing.parent_process(), None
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return
            continue
        if job is None:
            return
        try:
            job = pickle.loads(job)  # the job as it was when started (fastslow.fast.phase.OverlapFastPhase.start)
            if job.weights != loaded:
                fast.load(job.weights)
                loaded = job.weights
            results.put(("done", fast.run(job)))
        except Exception as exc:
            results.put(_failure(exc))


def _failure(exc: Exception) -> tuple[str, str]:
    from fastslow.errors import FastSlowError
    from fastslow.reflection import one_line

    return ("user error" if isinstance(exc, FastSlowError) else "error"), one_line(exc)


class WorkerFastPhase:
    """The policy at a checkpoint's weights, and the sync fast phase run on it."""

    def __init__(self, spec):
        import torch

        from fastslow import engine
        from fastslow.fast.adapter import PolicyAdapter, batch_rows
        from fastslow.fast.phase import FastPhase
        from fastslow.policy import Sampling, load_model, load_tokenizer, peft_lora
        from fastslow.tasks import load_task

        config = spec.config
        if spec.threads:
            torch.set_num_threads(spec.threads)
        if spec.device:
            torch.cuda.set_device(spec.device)
        # with vLLM the engine samples, from its own copy of the weights; this one only loads checkpoints
        self.vllm = engine.vllm_engine(config) if config.engine.kind == "vllm" else None
        model = load_model(config.model.path, config.model.dtype, None if self.vllm else spec.device)
        model.requires_grad_(False).eval()
        if config.model.lora is not None:  # the trainer's adapters, so its checkpoints load as they are
            from peft import get_peft_model

            model = get_peft_model(model, peft_lora(config.model.lora))
        self.model = model
        reflection = spec.reflection_lm
        if reflection is None:
            from fastslow.reflection import LocalReflection, make_reflection_lm

            reflection = make_reflection_lm(config.reflection, config.model.path, device=spec.device)
            if config.reflection.kind == "self" and config.model.lora is not None:
                reflection.share_weights(self.starting_weights)  # else it loads its own copy of model.path
            if isinstance(reflection, LocalReflection):
                reflection.load()  # now, beside the training process's start, not in the first cycle's wait
        task = load_task(config.task.name, **config.task.args)
        adapter = PolicyAdapter(model, load_tokenizer(config.model.path), task, Sampling.of(config.model),
                                engine=self.vllm, batch_rows=batch_rows(config))
        self.phase = FastPhase(spec.settings, adapter, reflection, spec.scratch)

    @contextmanager
    def starting_weights(self):
        with self.model.disable_adapter():
            yield self.model

    def load(self, weights) -> None:
        """The job's weights: a checkpoint's model directory (None, the starting weights, is what it holds at first)."""
        from fastslow.checkpoint import load_weights

        if weights is None:
            raise RuntimeError("a worker cannot go back to the starting weights once it has loaded others")
        load_weights(self.model, weights)
        if self.vllm is not None:
            from fastslow.engine import reload_weights

            llm = self.vllm.llm
            reload_weights(llm, self.named_weights, lambda: llm.llm_engine.model_executor.driver_worker.model_runner
                           .model.load_weights(weights=self.named_weights()))

    def named_weights(self):
        """The weights under the checkpoint's names, LoRA adapters merged in (as TRL hands them to vLLM)."""
        model = self.model
        if not hasattr(model, "merge_adapter"):
            yield from ((name, p.data) for name, p in model.named_parameters())
            return
        model.merge_adapter()
        try:
            for name, p in model.named_parameters():
                name = name.removeprefix("base_model.model.").replace(".base_layer", "")
                if model.prefix not in name and "original_module" not in name:
                    yield name.replace("modules_to_save.default.", ""), p.data
        finally:
            model.unmerge_adapter()

    def run(self, job):
        import torch

        self.phase.start(job)
        try:
            return self.phase.result()
        finally:  # the blocks its decoding cached go back to the card, for the trainer's update while this one waits
            if torch.cuda.is_initialized():
                torch.cuda.empty_cache()


def build_fast_phase(spec) -> WorkerFastPhase:
    import os
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")
    return WorkerFastPhase(spec)
