"""The `chadavit-bench` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import typer

from chadavit_bench import __version__

app = typer.Typer(
    name="chadavit-bench",
    help="Evaluate channel-adaptive microscopy encoders on downstream biological tasks.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chadavit-bench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Evaluate channel-adaptive microscopy encoders on downstream biological tasks."""
