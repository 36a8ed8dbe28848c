"""The `fastslow` command line: the top floor. Every command is a thin wrapper over a library function;
bad input ends in one red line and exit code 2, never a traceback (unless `fastslow --debug ...`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from fastslow.clihelp import Command, Group
from fastslow.errors import FastSlowError
from fastslow.micro.cli import app as micro_app
from fastslow.serve import MAX_BATCH, MAX_BODY_MB, MAX_QUEUE

console = Console(stderr=True)
DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.yaml"
USER_ERRORS = (FastSlowError, OSError, UnicodeDecodeError, EOFError, ValidationError)


def one_line(exc: BaseException) -> str:
    """What went wrong, naming the file or field: the message of a user error, on one line."""
    if isinstance(exc, ValidationError):
        from fastslow.config import describe_validation_error

        message = describe_validation_error(exc, exc.title)
    elif isinstance(exc, OSError) and exc.filename is not None:
        target = f"{exc.filename} -> {exc.filename2}" if exc.filename2 is not None else exc.filename
        message = f"{target}: {exc.strerror or exc}"
    elif isinstance(exc, UnicodeDecodeError):
        message = f"expected UTF-8 text, found byte 0x{exc.object[exc.start]:02x} at offset {exc.start}"
    elif isinstance(exc, EOFError):
        message = f"unexpected end of a file (empty or truncated?){': ' + str(exc) if str(exc) else ''}"
    else:
        message = str(exc) or type(exc).__name__
    return " ".join(message.split())


class ErrorBoundary(Group):
    """The one place user errors end: every command (the micro ones too) runs inside `invoke`, so a user error
    becomes one red line and exit code 2 before click could turn it into a traceback or a bare "Aborted!"."""

    def invoke(self, ctx):
        from fastslow.stopping import Stopped

        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            if ctx.params.get("debug"):
                raise
            console.print(f"[bold red]error:[/] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except Stopped as stop:  # SIGTERM or SIGINT: the command has cleaned up on its way out (fastslow.stopping)
            if ctx.params.get("debug"):
                raise
            console.print(f"[bold yellow]{escape(str(stop))}[/]", highlight=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None


app = typer.Typer(help="Fast-Slow Training: RL on the weights, GEPA on a population of prompts.", cls=ErrorBoundary,
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)


@app.callback()
def options(debug: Annotated[bool, typer.Option("--debug", envvar="FASTSLOW_DEBUG",
                                                help="show the traceback of an error")] = False) -> None:
    """Fast-Slow Training: RL on the weights, GEPA on a population of prompts."""


app.add_typer(micro_app, name="micro", help="The project's own micro model: pretrain and evaluate it.")


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """--set KEY=VALUE pairs as {dotted key: YAML value}; the key's path is checked where it is applied
    (config.set_dotted), the value here."""
    from fastslow.config import parse_yaml

    overrides = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise FastSlowError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set loop.steps=12")
        overrides[key.strip()] = parse_yaml(value, f"--set {pair}")
    return overrides


Overrides = Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE",
                                                     help="override a config field: --set loop.steps=12")]


@app.command(cls=Command)
def check(config: Annotated[Path, typer.Argument(help="run config (YAML)")], set_: Overrides = None) -> None:
    """Validate CONFIG as `run` does before it loads weights (guards.preflight) and print the resolved config."""
    from fastslow.config import load_config
    from fastslow.guards import preflight
    from fastslow.rundir import RunDir

    cfg = load_config(config, parse_overrides(set_))
    preflight(cfg)
    occupied = RunDir.refusal(cfg)
    if occupied:
        console.print(f"[yellow]note:[/] {escape(occupied)}", highlight=False, soft_wrap=True)
    typer.echo(cfg.to_yaml(), nl=False)


@app.command(cls=Command)
def run(
    config: Annotated[Path, typer.Argument(help="run config (YAML)")],
    resume: Annotated[bool, typer.Option(help="continue the run from its newest checkpoint")] = False,
    set_: Overrides = None,
) -> None:
    """Train: fst (both channels), rl (weights only), gepa (prompts only) or fst-distill (GEPA, then the best prompt
    distilled into the weights), as the config's mode says."""
    from fastslow.config import load_config
    from fastslow.stopping import Stopped, stop_on_signals

    with stop_on_signals():
        cfg = load_config(config, parse_overrides(set_))
        try:
            path = train_with_progress(cfg, resume)
        except Stopped as stop:
            stop.advice = how_to_go_on(cfg, ["fastslow", "run", str(config), *(f"--set={pair}" for pair in set_ or [])])
            raise
    from accelerate import PartialState

    if PartialState().is_main_process:  # under `accelerate launch`, once
        console.print(f"run directory: {path}  (plots: fastslow report {path})")


def how_to_go_on(cfg, command: list[str]) -> str:
    """After a stop: what the run directory kept, and the command that goes on from there."""
    import shlex

    from fastslow.checkpoint import checkpoint_dirs

    kept = checkpoint_dirs(cfg.run_dir / "checkpoints")
    if kept:
        return f"{cfg.run_dir} is kept up to {kept[0].name}; continue with: {shlex.join(command + ['--resume'])}"
    if (cfg.run_dir / "config.yaml").is_file():  # a resumed run stopped before its first checkpoint
        return f"{cfg.run_dir} has no checkpoint yet; start it over with: {shlex.join(command + ['--resume'])}"
    return f"no checkpoint was written, so nothing was kept; start again with: {shlex.join(command)}"


def train_with_progress(cfg, resume: bool = False) -> Path:
    """Run the loop with a rich progress bar, shown from the first metrics row (after all input checks)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fastslow.loop import run as run_loop

    def fmt(value, digits=3):
        return "-" if value is None else f"{value:.{digits}f}"

    progress = Progress(TextColumn("[bold]{task.fields[name]}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("{task.description}"), console=console)
    bar = progress.add_task("", total=cfg.loop.steps, name=f"{cfg.name} ({cfg.mode})")
    last_eval: dict[str, Any] = {}
    cycle_rows: list[dict[str, Any]] = []

    def observe(row: dict[str, Any]) -> None:
        from fastslow.stats import starvation_warning, starved_cycles

        progress.start()
        if row.get("val_accuracy") is not None:
            last_eval.update(row)
        if cycle_rows and row["cycle"] != cycle_rows[-1]["cycle"]:
            cycle_rows.clear()
        cycle_rows.append(row)
        if row["step"] == cfg.loop.steps or row["step"] % cfg.loop.steps_per_cycle == 0:  # the cycle's last step
            warning = starvation_warning(starved_cycles(cycle_rows))
            if warning:
                progress.console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        failures = row.get("reflection_failures")
        progress.update(bar, completed=row["step"], description=(
            f"cycle {row['cycle']}  reward {fmt(row.get('reward_mean'))}  "
            f"val acc {fmt(last_eval.get('val_accuracy'))}  KL {fmt(last_eval.get('kl_base'), 4)}"
            + (f"  [yellow]reflections failed {failures}/{row['reflection_calls']}[/]" if failures else "")))

    try:
        return run_loop(cfg, resume=resume, observer=observe)
    finally:
        progress.stop()


@app.command(cls=Command)
def report(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories")],
    out: Annotated[Path | None, typer.Option(help="where to write the plots and report.html")] = None,
) -> None:
    """Plots and one HTML page comparing runs (accuracy vs samples, reward vs rollouts, KL, entropy, prompts)."""
    from fastslow.report import make_report

    html = make_report(run_dirs, out or run_dirs[0] / "report")
    console.print(f"report: {html}")


@app.command(cls=Command)
def demo(out: Annotated[Path, typer.Option(help="output directory")] = Path("runs/demo")) -> None:
    """FST and RL-only on a micro task with the embedded micro model, on CPU, then a report."""
    from fastslow.demo import run_demo
    from fastslow.stopping import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            html = run_demo(out, train=train_with_progress)
        except Stopped as stop:
            stop.advice = f"the demo's runs so far are in {out}; to start over, remove it and run fastslow demo again"
            raise
    console.print(f"report: {html}")


@app.command(cls=Command)
def experiment(
    name: Annotated[str, typer.Argument(help="efficiency, asymptote, kl, decomposition, ood, plasticity, continual, zero-reward, k-sweep, t-sweep")],
    config: Annotated[Path | None, typer.Option(help="base run config (model, task, reflection); default: micro")] = None,
    seeds: Annotated[int, typer.Option(help="seeds per arm")] = 3,
    preset: Annotated[str, typer.Option(help="small (2 CPU cores, <= 15 min) or full (GPU machine)")] = "small",
    out: Annotated[Path | None, typer.Option(help="experiment directory")] = None,
    workers: Annotated[int | None, typer.Option(help="parallel runs (processes)")] = None,
    runs_from: Annotated[Path | None, typer.Option(help="analyse runs trained elsewhere, found in this folder by "
                                                        "their config: train nothing")] = None,
    set_: Overrides = None,
) -> None:
    """One of the paper's measurements: runs, a markdown table, plots and report.html. --set applies to every run;
    --set experiment.KEY=VALUE sets one of the experiment's settings instead (e.g. experiment.modes, a YAML list), as the
    config file's `experiment:` section does. --runs-from reads the runs of the same command run elsewhere (a GPU
    machine's, copied back without checkpoints: enough for efficiency, asymptote, kl and the sweeps)."""
    from fastslow.experiments import run_experiment

    path = run_experiment(name, config, seeds=seeds, preset=preset, out=out, workers=workers,
                          overrides=parse_overrides(set_), runs_from=runs_from)
    console.print(f"experiment: {path}")


@app.command(cls=Command)
def probe(
    config: Annotated[Path, typer.Argument(help="run config (YAML): its model, task, sampling and reflection LM")],
    problems: Annotated[int | None, typer.Option(help="validation problems (default: task.val_size)", min=1)] = None,
    samples: Annotated[int | None, typer.Option(help="samples per problem (default: eval.samples)", min=1)] = None,
    rewrites: Annotated[int, typer.Option(help="reflection-LM rewrites of the seed prompt to measure", min=0)] = 2,
    json_: Annotated[bool, typer.Option("--json", help="print the measurements as JSON")] = False,
    set_: Overrides = None,
) -> None:
    """Is the task in FST's regime with this model? Before training: accuracy under the seed prompt, the share of
    problems RL learns from, answer entropy, and how far other prompts move them."""
    import json

    from fastslow.config import load_config
    from fastslow.guards import check_model
    from fastslow.probe import format_result, run_probe

    cfg = load_config(config, parse_overrides(set_))
    check_model(cfg)
    result = run_probe(cfg, problems=problems, samples=samples, rewrites=rewrites)
    typer.echo(json.dumps(result.to_dict(), indent=1) if json_ else format_result(result))


@app.command(cls=Command)
def serve(
    model_dir: Annotated[str, typer.Argument(help="a local model directory, a .gguf file, or a short name (micro, "
                                                 "micro-v4, smollm2)")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port", min=0, max=65535)] = 8000,
    max_batch: Annotated[int, typer.Option(help="requests generated together", min=1)] = MAX_BATCH,
    max_queue: Annotated[int, typer.Option(help="requests waiting; more are answered 503", min=1)] = MAX_QUEUE,
    max_body_mb: Annotated[int, typer.Option(help="larger request bodies are answered 413, unread", min=1)] = MAX_BODY_MB,
) -> None:
    """Serve a local model through an OpenAI-compatible /v1/chat/completions (e.g. as a reflection LM)."""
    from fastslow.serve import serve as serve_model

    serve_model(model_dir, host=host, port=port, max_batch=max_batch, max_queue=max_queue, max_body_mb=max_body_mb)


@app.command(cls=Command)
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run directory with a checkpoint")],
    out_dir: Annotated[Path, typer.Argument(help="new directory for the exported model")],
) -> None:
    """A standard HF model directory (LoRA merged) whose chat template defaults to the best evolved prompt."""
    from fastslow.export import export_run

    console.print(f"exported: {export_run(run_dir, out_dir)}")


def leave_process_group() -> None:
    """Under torchrun or `accelerate launch`, tear torch.distributed's process group down before the interpreter does:
    gloo's threads, left to the interpreter's exit, abort the process now and then ("terminate called without an
    active exception": exit -6 instead of the command's own code, 3 in 12 two-process runs on 2 CPU cores)."""
    if "torch.distributed" in sys.modules:  # never imports torch for commands that did not
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def main() -> None:  # console entry point
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # our own progress bar says what is happening
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    import transformers

    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # deprecation notes from our dependencies, not for users
    try:
        app()
    finally:
        leave_process_group()
