"""The `chadavit-train` command line. It only parses arguments, calls library functions and reports."""

from __future__ import annotations

import typer

from chadavit import __version__

app = typer.Typer(
    name="chadavit-train",
    help="Pretrain ChAda-ViT with DINO on idrcell-v1 shards, on one CPU or with DDP.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"chadavit-train {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Pretrain ChAda-ViT with DINO on idrcell-v1 shards, on one CPU or with DDP."""
