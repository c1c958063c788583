"""`idrcell emulator`: serve a catalogue as an offline IDR until interrupted (registered in idrcell/cli.py).

Heavy imports (aiohttp, scikit-image) happen inside the command so that `idrcell --help` stays fast.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from idrcell.atomic import atomic_write_text
from idrcell.emulator.faults import DEFAULT_TIMEOUT_SLEEP_S

if TYPE_CHECKING:
    from idrcell.emulator.catalogue import Catalogue

_KINDS = "500,502,504,timeout,truncated,concurrency,429"


def emulator_command(
    catalogue: Annotated[
        str,
        typer.Option(
            "--catalogue", "-c", help="Builtin catalogue (demo, tiny, hostile) or a JSON catalogue spec file."
        ),
    ] = "demo",
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port).")
    ] = 8080,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the catalogue's sizes and pixels, and of the faults.")
    ] = 0,
    fault_rate: Annotated[
        float,
        typer.Option(
            "--fault-rate", min=0.0, max=1.0, help="Probability that a request gets a transient fault."
        ),
    ] = 0.0,
    fault_kinds: Annotated[
        str, typer.Option("--fault-kinds", help="Comma-separated fault kinds to draw from.")
    ] = _KINDS,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, help="Delay added to every request.")
    ] = 0.0,
    timeout_sleep_s: Annotated[
        float,
        typer.Option(
            "--timeout-sleep",
            min=0.0,
            help="Seconds a 'timeout' fault stalls before answering 504 (a shorter client timeout fires "
            "first).",
        ),
    ] = DEFAULT_TIMEOUT_SLEEP_S,
    max_limit: Annotated[
        int, typer.Option("--max-limit", min=1, help="The JSON API's maxLimit (IDR uses 1000).")
    ] = 500,
    require_session: Annotated[
        bool,
        typer.Option(
            "--require-session/--no-require-session",
            help="Answer 403 'Not logged in' until a client has visited /webclient/ for its session cookie.",
        ),
    ] = True,
    mode: Annotated[
        str,
        typer.Option(
            "--mode",
            help="classic: the classic web API renders JPEGs. 2026: as the IDR since its move to OME-Zarr "
            "(render_image 403, imgData answers an Exception); the Zarr stores under /idr/zarr/ in both.",
        ),
    ] = "classic",
    experiments_out: Annotated[
        Path | None,
        typer.Option(
            "--experiments-out", help="Also write an experiment list naming every container of the catalogue."
        ),
    ] = None,
) -> None:
    """Serve an offline, IDR-compatible web API (JSON API, imgData, render_image) until Ctrl-C."""
    from idrcell.emulator.catalogue import CatalogueSpecError, load_catalogue
    from idrcell.emulator.faults import FaultConfig
    from idrcell.emulator.server import EmulatorServer

    errors = Console(stderr=True)
    console = Console()
    try:
        faults = FaultConfig(
            rate=fault_rate,
            kinds=tuple(kind.strip() for kind in fault_kinds.split(",") if kind.strip()),
            latency_s=latency_ms / 1000.0,
            timeout_sleep_s=timeout_sleep_s,
            seed=seed,
        )
        loaded = load_catalogue(catalogue, seed=seed)
    except (CatalogueSpecError, ValueError) as error:
        errors.print(f"[red]error:[/red] {error}", highlight=False, markup=True)
        raise typer.Exit(2) from None  # exit codes: README.md, "Exit codes"
    if mode not in ("classic", "2026"):
        errors.print(f"[red]error:[/red] --mode must be classic or 2026, got {mode!r}", highlight=False)
        raise typer.Exit(2)
    server = EmulatorServer(
        loaded,
        faults,
        host=host,
        port=port,
        max_limit=max_limit,
        require_session=require_session,
        mode=mode,
    )
    try:
        if experiments_out is not None:
            try:
                atomic_write_text(experiments_out, loaded.experiments_csv_text())
            except OSError as error:
                raise OSError(f"cannot write --experiments-out {experiments_out}: {error.strerror}") from None
        server.start()
    except OSError as error:  # an unwritable --experiments-out, a --host/--port that cannot be bound
        errors.print(f"[red]error:[/red] {error}", highlight=False)
        raise typer.Exit(2) from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        images = len(loaded.images)
        # First line is stable for scripts: the base URL is its last word.
        summary = f"{len(loaded.containers)} experiments, {images} images"
        typer.echo(f"Serving catalogue {loaded.name!r} ({summary}) at {server.base_url}")
        console.print(f"Mode {mode}; OME-Zarr stores at {server.zarr_base_url}", highlight=False)
        console.print(_catalogue_table(loaded))
        if fault_rate > 0 or latency_ms > 0:
            console.print(
                f"Faults: rate {fault_rate} over {', '.join(faults.kinds)}; latency {latency_ms} ms"
            )
        console.print("Press Ctrl-C to stop.")
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        stats = server.stats
        console.print(
            f"Served {sum(stats.requests.values())} requests; faults injected: {stats.faults or 'none'}"
        )


def _catalogue_table(catalogue: Catalogue) -> Table:
    table = Table(title=f"catalogue {catalogue.name}")
    for column in ("kind", "id", "name", "images", "channels", "imaging method", "403"):
        table.add_column(column)
    for container in catalogue.containers:
        images = catalogue.container_images(container)
        channels = sorted({image.size_c for image in images})
        table.add_row(
            container.kind,
            str(container.id),
            container.name if len(container.name) <= 60 else container.name[:57] + "...",
            str(len(images)),
            ",".join(map(str, channels)),
            "; ".join(container.annotation_values("Imaging Method")) or "-",
            str(sum(image.forbidden for image in images)),
        )
    return table
