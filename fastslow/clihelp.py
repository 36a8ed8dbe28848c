"""How the command line's help shows options: a boolean flag bare (`--debug`), as click shows it, not `--debug <bool>`
as typer 0.29 does, which reads as if the flag took a value. Every command and group of `fastslow` uses these
classes (`cls=`)."""

from __future__ import annotations

from typer.core import TyperCommand, TyperGroup


class _BareFlags:
    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:  # the command's flags and its --help
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""  # typer shows the metavar, when set, in place of the type
        return params


class Command(_BareFlags, TyperCommand):
    """A command whose help shows boolean flags bare."""


class Group(_BareFlags, TyperGroup):
    """A group whose help shows boolean flags bare."""
