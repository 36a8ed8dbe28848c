"""`fastslow probe CONFIG`: is this task in FST's regime with this model? Measured before any training.

FST pays where the seed prompt is valid but weak (the paper's tasks start at 2-34%), where RL has a signal from the
first step (problems whose samples differ in reward: RL's group advantages are zero everywhere else), and where the
system prompt moves the model at all (the fast channel's room). On validation problems, under the run's sampling
(model.temperature, top_p, max_new_tokens), `samples` per problem:

- accuracy: the share of a problem's samples that solve it (reward 1), averaged over problems (mean@samples);
- varied: the share of problems whose samples' rewards are not all equal;
- answer entropy: per problem, the entropy (nats) of its samples' answers, averaged: 0 when every sample gives one
  answer (certain, right or wrong), ln(samples) when all differ. An answer is what the task's verifier reads
  (`task.answer_of(completion)`, where the task has it), else the final answer fastslow.tasks.answers extracts;
- answer shift (other prompts): per problem, the total variation distance between the answers under that prompt and
  under the seed prompt, averaged: 0 the same answers, 1 none in common.

The seed prompt is sampled twice: the second sampling ("seed again") is the noise floor of the other rows (two
samplings of one prompt already differ in answers, the more so the more the model hesitates). Other prompts: none
(the chat template's default), the task's own instruction (`task.instruction`, where it has one) and `rewrites`
rewrites of the seed prompt by the run's reflection LM, each GEPA's first proposal: the reflection
template with the seed prompt's rollouts on 3 training problems and their feedback. `prompt_signal` is the seed-prompt
half alone, for the benchmarks that screen candidate tasks (benchmarks/task_suite.py, base_accuracy.py).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch

from fastslow.config import Config
from fastslow.policy import Sampling, chat_messages, sample
from fastslow.tasks import Problem, Task, load_task
from fastslow.tasks.answers import extract_answer

SOLVED = 1.0 - 1e-9  # a reward this high counts as a solution (as in evaluation)
# The paper's regime, as the task suite's rule states it (fastslow.experiments.presets.SUITE_RULE).
REGIME = {"accuracy": (0.02, 0.34), "min_varied": 0.10}
AGAIN = "seed again"
MIN_MOVE = 0.05  # the least accuracy change (or twice its sampling noise, if larger) that counts as the prompt moving it


@dataclass
class PromptRow:
    """What one system prompt gets from the model on the probe's problems."""

    label: str  # seed, seed again, none, instruction, rewrite 1, ...
    prompt: str | None  # None: no system message
    accuracy: float
    varied: float
    answer_entropy: float
    answer_shift: float | None = None  # vs the seed prompt; None for the seed prompt itself
    answers: list[list[str]] = field(default_factory=list, repr=False)


@dataclass
class ProbeResult:
    model: str
    task: str
    problems: int
    samples: int
    rows: list[PromptRow]
    failed: list[str]  # prompts that could not be measured (a failed reflection), each with why
    seconds: float
    placement: str = "system"  # model.prompt_placement: where each prompt went (system message or user turn)

    @property
    def prompt_name(self) -> str:
        return "system prompt" if self.placement == "system" else "user-turn prompt"

    @property
    def seed(self) -> PromptRow:
        return self.rows[0]

    @property
    def again(self) -> PromptRow | None:
        """The seed prompt's second sampling."""
        return next((row for row in self.rows if row.label == AGAIN), None)

    @property
    def others(self) -> list[PromptRow]:
        """The rows of other prompts."""
        return [row for row in self.rows[1:] if row.label != AGAIN]

    def to_dict(self) -> dict:
        rows = [{k: v for k, v in asdict(row).items() if k != "answers"} for row in self.rows]
        return {"model": self.model, "task": self.task, "problems": self.problems, "samples": self.samples,
                "prompt_placement": self.placement, "rows": rows, "failed": self.failed, "verdicts": verdicts(self),
                "in_regime": in_regime(self), "raises": raises(self), "seconds": round(self.seconds, 1)}


def signal(rewards: Sequence[Sequence[float]]) -> tuple[float, float]:
    """(accuracy, varied) of per-problem reward lists."""
    solved = [sum(r >= SOLVED for r in rs) / len(rs) for rs in rewards]
    varied = [max(rs) != min(rs) for rs in rewards]
    return sum(solved) / max(len(solved), 1), sum(varied) / max(len(varied), 1)


def entropy(answers: Sequence[str]) -> float:
    """Entropy (nats) of the empirical distribution of `answers`."""
    counts = Counter(answers).values()
    return -sum(c / len(answers) * math.log(c / len(answers)) for c in counts) if answers else 0.0


def total_variation(a: Sequence[str], b: Sequence[str]) -> float:
    """Total variation distance between the empirical distributions of two answer lists."""
    pa, pb = Counter(a), Counter(b)
    return 0.5 * sum(abs(pa[x] / len(a) - pb[x] / len(b)) for x in pa.keys() | pb.keys())


def measure(model, tokenizer, task: Task, problems: Sequence[Problem], prompt: str | None, samples: int,
            sampling: Sampling, label: str = "seed") -> PromptRow:
    """`samples` completions per problem under the system prompt `prompt`, scored by the task."""
    conversations = [chat_messages(prompt, p.prompt, sampling.prompt_placement) for p in problems for _ in range(samples)]
    texts = [c.text for c in sample(model, tokenizer, conversations, sampling)]
    grouped = [texts[i * samples: (i + 1) * samples] for i in range(len(problems))]
    rewards = [[task.score(p, t).reward for t in ts] for p, ts in zip(problems, grouped)]
    read = getattr(task, "answer_of", extract_answer)
    answers = [[read(t) for t in ts] for ts in grouped]
    accuracy, varied = signal(rewards)
    mean_entropy = sum(entropy(a) for a in answers) / max(len(answers), 1)
    return PromptRow(label, prompt, round(accuracy, 4), round(varied, 4), round(mean_entropy, 4), None, answers)


def shift(row: PromptRow, seed: PromptRow) -> float:
    return round(sum(map(total_variation, row.answers, seed.answers)) / max(len(seed.answers), 1), 4)


def prompt_signal(model, tokenizer, task: Task, prompt: str, problems: int = 64, samples: int = 4,
                  max_new_tokens: int = 24) -> dict[str, float]:
    """What a prompt gives the weights to learn from before any training, on `problems` validation problems (seed
    0) at temperature 1: accuracy, the share of problems whose samples differ in reward, answer entropy."""
    row = measure(model, tokenizer, task, task.problems("val", problems, seed=0), prompt, samples,
                  Sampling(max_new_tokens=max_new_tokens, temperature=1.0))
    return {"accuracy": round(row.accuracy, 3), "problems_with_variance": round(row.varied, 3),
            "answer_entropy": round(row.answer_entropy, 3)}


def rewrite_prompts(reflection_lm, task: Task, model, tokenizer, seed_prompt: str, train: Sequence[Problem],
                    sampling: Sampling, template: str, count: int) -> list[str | Exception]:
    """`count` reflection-LM rewrites of the seed prompt, each from its rollouts on its own 3 training problems with
    the task's feedback (GEPA's first proposal); an entry is the new instruction, or why there is none."""
    from fastslow.fast.records import extract_instruction, reflective_record, render_reflection_prompt

    batches = [train[3 * i: 3 * i + 3] for i in range(count)]
    flat = [p for batch in batches for p in batch]
    conversations = [chat_messages(seed_prompt, p.prompt, sampling.prompt_placement) for p in flat]
    texts = [c.text for c in sample(model, tokenizer, conversations, sampling)]
    records = [reflective_record(p.prompt, t, task.score(p, t).feedback) for p, t in zip(flat, texts)]
    prompts = [render_reflection_prompt(seed_prompt, records[3 * i: 3 * i + 3], template) for i in range(count)]
    rewrites: list[str | Exception] = []
    for answer in ask_all(reflection_lm, prompts):
        instruction = extract_instruction(answer).strip() if isinstance(answer, str) else ""
        rewrites.append(instruction or (answer if isinstance(answer, Exception) else ValueError("no instruction")))
    return rewrites


def ask_all(reflection_lm, prompts: list[str]) -> list[str | Exception]:
    """Each prompt's answer, or the exception it ended in: in one batch where the reflection LM batches
    (fastslow.reflection), else one call each (any callable prompt -> answer)."""
    if hasattr(reflection_lm, "batch_complete"):
        return reflection_lm.batch_complete(prompts)
    answers: list[str | Exception] = []
    for prompt in prompts:
        try:
            answers.append(reflection_lm(prompt))
        except Exception as exc:
            answers.append(exc)
    return answers


def run_probe(config: Config, problems: int | None = None, samples: int | None = None, rewrites: int = 2,
              reflection_lm=None, device=None) -> ProbeResult:
    """Probe `config`'s model and task (see the module's docstring). `reflection_lm`: instead of the config's."""
    from contextlib import nullcontext

    from fastslow.policy import load_model, load_tokenizer
    from fastslow.reflection import LocalReflection, make_reflection_lm

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    task = load_task(config.task.name, **config.task.args)
    seed_prompt = config.task.seed_prompt or task.seed_prompt
    problems = problems or config.task.val_size
    samples = samples or config.eval.samples
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = load_model(config.model.path, config.model.dtype, device).eval().requires_grad_(False)
    tokenizer = load_tokenizer(config.model.path)
    sampling = Sampling.of(config.model)
    val = task.problems("val", problems, config.seed)

    candidates: list[tuple[str, str | None]] = [(AGAIN, seed_prompt), ("none", None)]
    instruction = getattr(task, "instruction", None)
    if isinstance(instruction, str) and instruction != seed_prompt:
        candidates.append(("instruction", instruction))
    failed = []
    if rewrites:
        if reflection_lm is None:
            reflection_lm = make_reflection_lm(config.reflection, config.model.path, device=device,
                                               dtype=config.model.dtype,
                                               chat_template_kwargs=config.model.chat_template_kwargs)
            if config.reflection.kind == "self" and isinstance(reflection_lm, LocalReflection):
                reflection_lm.share_weights(lambda: nullcontext(model))  # the probe never trains: the same weights
        train = task.problems("train", 3 * rewrites, config.seed)
        proposed = rewrite_prompts(reflection_lm, task, model, tokenizer, seed_prompt, train, sampling,
                                   config.reflection.resolved_template(config.model.path), rewrites)
        for i, rewrite in enumerate(proposed, 1):
            if isinstance(rewrite, str):
                candidates.append((f"rewrite {i}", rewrite))
            else:
                failed.append(f"rewrite {i}: {' '.join(str(rewrite).split()) or type(rewrite).__name__}")

    rows = [measure(model, tokenizer, task, val, seed_prompt, samples, sampling, "seed")]
    for label, prompt in candidates:
        row = measure(model, tokenizer, task, val, prompt, samples, sampling, label)
        row.answer_shift = shift(row, rows[0])
        rows.append(row)
    return ProbeResult(config.model.path, config.task.name, len(val), samples, rows, failed,
                       time.perf_counter() - started, config.model.prompt_placement)


def noise(accuracy: float, problems: int, samples: int) -> float:
    """Twice the standard error of a difference of two accuracies measured on independent samples of this size."""
    return 2 * math.sqrt(2 * accuracy * (1 - accuracy) / max(problems * samples, 1))


def room(result: ProbeResult) -> tuple[float, PromptRow | None]:
    """How far another prompt moves accuracy from the seed prompt's, and the prompt that moves it most."""
    others = result.others
    if not others:
        return 0.0, None
    far = max(others, key=lambda r: abs(r.accuracy - result.seed.accuracy))
    return abs(far.accuracy - result.seed.accuracy), far


def threshold(result: ProbeResult) -> float:
    """The least accuracy change that counts as a prompt moving it at the probe's size."""
    return max(MIN_MOVE, noise(result.seed.accuracy, result.problems, result.samples))


def raises(result: ProbeResult) -> bool:
    """Whether a prompt measured raises accuracy above the seed prompt's by more than the noise: on micro-v4's suite
    the tasks where one did are the ones where FST beat RL, on every axis (docs/RESULTS.md, "fastslow probe on the
    suite")."""
    return any(row.accuracy - result.seed.accuracy >= threshold(result) for row in result.others)


def missing(result: ProbeResult) -> list[str]:
    """What the task lacks for FST's regime with this model (empty: in the regime)."""
    (low, high), seed = REGIME["accuracy"], result.seed
    moved, _ = room(result)
    lacks = []
    if not low <= seed.accuracy <= high:
        lacks.append(f"a seed-prompt accuracy in {low:.0%}-{high:.0%}")
    if seed.varied < REGIME["min_varied"]:
        lacks.append(f"RL signal on at least {REGIME['min_varied']:.0%} of problems")
    if moved < threshold(result):
        lacks.append(f"a {result.prompt_name} that moves accuracy")
    return lacks


def in_regime(result: ProbeResult) -> bool:
    return not missing(result)


def verdicts(result: ProbeResult) -> list[str]:
    """The measurements in plain words, most important first."""
    seed, (low, high) = result.seed, REGIME["accuracy"]
    said = []
    if seed.accuracy < low:
        said.append(f"The seed prompt solves {seed.accuracy:.0%} of samples: RL starts from (almost) no reward, the "
                    "zero-reward regime, where only a better prompt gives the weights a start.")
    elif seed.accuracy > high:
        said.append(f"The seed prompt already solves {seed.accuracy:.0%} of samples: above the paper's regime "
                    f"({low:.0%}-{high:.0%}); there is less for either channel to gain.")
    else:
        said.append(f"The seed prompt solves {seed.accuracy:.0%} of samples: valid but weak, the paper's regime "
                    f"({low:.0%}-{high:.0%}).")
    if seed.varied >= REGIME["min_varied"]:
        said.append(f"RL has signal on {seed.varied:.0%} of problems (their samples differ in reward).")
    else:
        said.append(f"RL has signal on only {seed.varied:.0%} of problems (their samples differ in reward): most "
                    "groups will be dropped, and the weights learn little.")
    most = math.log(result.samples)
    said.append(f"Answer entropy {seed.answer_entropy:.2f} nats (0: one answer per problem; {most:.2f}: every sample "
                "a different answer)" + (": the model is near-certain of its answers."
                                        if seed.answer_entropy < 0.1 * most else "."))
    moved, far = room(result)
    if far is None:
        said.append("No other prompt was measured: nothing is known of the fast channel's room.")
    elif moved < threshold(result):
        resampled = (f"; the seed prompt sampled again: {100 * abs(result.again.accuracy - seed.accuracy):.0f}"
                     if result.again else "")
        said.append(f"The {result.prompt_name} moves accuracy by at most {100 * moved:.0f} points over {len(result.others)} "
                    f"other prompts (noise ~{100 * threshold(result):.0f}{resampled}): the fast channel has little room with "
                    "this model.")
    else:
        best = max(result.others, key=lambda r: r.accuracy)
        if raises(result):
            said.append(f"The {result.prompt_name} moves accuracy by up to {100 * moved:.0f} points, and '{best.label}' raises "
                        f"it to {best.accuracy:.0%}: the fast channel has room.")
        else:
            said.append(f"The {result.prompt_name} moves accuracy by up to {100 * moved:.0f} points (down, under "
                        f"'{far.label}': {far.accuracy:.0%}), but none of the prompts measured raises it: the model "
                        f"listens to its {result.prompt_name}; whether a better one exists is for GEPA to find.")
    again = result.again
    if result.others and again is not None:
        shifted = max(row.answer_shift or 0.0 for row in result.others)
        said.append(f"Answers under other prompts differ from the seed prompt's by up to {shifted:.2f} (total variation; "
                    f"the seed prompt sampled again: {again.answer_shift:.2f})"
                    + (": more than resampling alone." if shifted > again.answer_shift + 0.1 else
                       ": close to what resampling alone gives."))
    lacks = missing(result)
    if not lacks and raises(result):
        said.append("In FST's regime: a valid but weak seed prompt, RL signal, and room for the prompt.")
    elif not lacks:
        said.append("In FST's regime by the paper's terms (a valid but weak seed prompt, RL signal, a prompt the model "
                    "listens to), but no prompt measured raises accuracy. On micro-v4's suite such tasks tied RL per "
                    "training problem and lost per rollout: FST paid only where a rewrite raised it (docs/RESULTS.md).")
    elif seed.accuracy < low and lacks[-1] != f"a {result.prompt_name} that moves accuracy":
        said.append("Outside the paper's main regime, but a zero-reward start that prompts move: the fast channel can "
                    "give RL its first rewards (the paper's star-graph case).")
    else:
        said.append(f"Not in FST's regime: it lacks {' and '.join(lacks)}.")
    return said


def format_result(result: ProbeResult) -> str:
    """A markdown table and the verdicts."""
    lines = [f"model {result.model}, task {result.task}: {result.problems} validation problems x {result.samples} "
             f"samples{'' if result.placement == 'system' else ', each prompt at the head of the user turn'}, "
             f"{result.seconds:.0f} s", "",
             f"| prompt | accuracy (mean@{result.samples}) | problems varied | answer entropy (nats) "
             "| answer shift vs seed | text |", "|---|---|---|---|---|---|"]
    for row in result.rows:
        text = f"(no {result.prompt_name})" if row.prompt is None else " ".join(row.prompt.split())
        text = (text[:77] + "...") if len(text) > 80 else text
        shifted = "-" if row.answer_shift is None else f"{row.answer_shift:.2f}"
        lines.append(f"| {row.label} | {100 * row.accuracy:.1f}% | {100 * row.varied:.0f}% | "
                     f"{row.answer_entropy:.2f} | {shifted} | {text.replace('|', '/')} |")
    lines += [""] + [f"failed: {f}" for f in result.failed] + [f"- {v}" for v in verdicts(result)]
    return "\n".join(lines)
