"""The `idrcell` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import typer

from idrcell import __version__

app = typer.Typer(
    name="idrcell",
    help="Build multi-channel 224 x 224 WebDataset shards from the Image Data Resource (IDR).",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"idrcell {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Build multi-channel 224 x 224 WebDataset shards from the Image Data Resource (IDR)."""
