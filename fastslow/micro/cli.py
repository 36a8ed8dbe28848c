"""`fastslow micro ...`: pretrain the micro model and measure what it can do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from fastslow.clihelp import Command, Group
from fastslow.errors import FastSlowError

app = typer.Typer(help="The project's own micro model: pretrain and evaluate it.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False, cls=Group)


@app.command(cls=Command)
def pretrain(
    out: Annotated[Path, typer.Option(help="where to write the checkpoint")] = Path("runs/micro-model"),
    steps: Annotated[Optional[int], typer.Option(help="optimizer steps (reproducible)")] = None,
    minutes: Annotated[Optional[float], typer.Option(help="train for about this long instead of --steps")] = None,
    batch_size: Annotated[int, typer.Option(help="examples per step")] = 256,
    lr: Annotated[float, typer.Option(help="peak AdamW learning rate")] = 1.5e-3,
    warmup: Annotated[int, typer.Option(help="linear warm-up steps (speed is measured over them with --minutes)")] = 300,
    seed: Annotated[int, typer.Option(help="seeds the weights and the corpus")] = 0,
    workers: Annotated[Optional[int], typer.Option(help="corpus worker processes (default: cores - 2)")] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda if available)")] = None,
    shard_mb: Annotated[Optional[int], typer.Option(help="split model.safetensors into shards of this size")] = None,
    init: Annotated[Optional[Path], typer.Option(help="continue from this checkpoint instead of fresh weights")] = None,
    torch_compile: Annotated[bool, typer.Option("--compile", help="compile the decoder layers (torch.compile)")] = False,
    version: Annotated[str, typer.Option(help="corpus and size: v3 (an exact executor that reflects, 14M), v4 (a fallible "
                                                 "policy, 6M), reflector (v3's size, mostly reflection) or "
                                                 "reflector2 (the reflector's, string programs first)")] = "v3",
) -> None:
    """Train a micro model from scratch on the generated corpus."""
    from fastslow.micro.pretrain import VERSIONS
    from fastslow.micro.pretrain import pretrain as run_pretrain

    if (steps is None) == (minutes is None):
        raise FastSlowError("pretrain: give exactly one of --steps or --minutes")  # one line, from `fastslow`
    if version not in VERSIONS:
        raise FastSlowError(f"pretrain --version: expected one of {VERSIONS}, got {version!r}")
    summary = run_pretrain(out, steps=steps, minutes=minutes, batch_size=batch_size, lr=lr, warmup=warmup, seed=seed,
                           workers=workers, device=device, shard_mb=shard_mb, init=init, torch_compile=torch_compile,
                           version=version)
    if summary["rank"] == 0:
        typer.echo(f"wrote {out} after {summary['steps']} steps in {summary['train_seconds']:.0f} s")


@app.command("eval", cls=Command)
def evaluate(
    model: Annotated[str, typer.Option(help="model directory, or 'micro' / 'micro-v4' for a shipped checkpoint")] = "micro",
    n: Annotated[int, typer.Option(help="problems (or reflection cases) per measurement")] = 100,
    seed: Annotated[int, typer.Option(help="seeds the held-out programs and problems")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of a table")] = False,
    device: Annotated[Optional[str], typer.Option(help="cuda or cpu (default: cuda if available)")] = None,
    reflector: Annotated[Optional[str], typer.Option(help="a separate reflection model to measure "
                                                          "(reflector_improves)")] = None,
) -> None:
    """Measure the model's abilities on held-out programs: instruction following, reflection, ..."""
    from fastslow.micro.evaluate import evaluate_micro, format_table

    results = evaluate_micro(model, n=n, seed=seed, device=device, reflector_path=reflector)
    typer.echo(json.dumps(results["summary"]) if as_json else format_table(results))
