"""`idrcell emulator` serves until SIGTERM, prints its URL first, and refuses bad input in one sentence."""

from __future__ import annotations

import asyncio
import csv
import signal
import subprocess
import sys
import threading

import aiohttp
from typer.testing import CliRunner

from idrcell.cli import app

RUN_CLI = "import sys; from idrcell.cli import app; sys.exit(app())"


def _cli(*args: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN_CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


async def _screen_names(base_url: str) -> list[str]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        async with session.get(f"{base_url}/webclient/?experimenter=-1") as response:
            assert response.status == 200
        async with session.get(f"{base_url}/api/v0/m/screens/") as response:
            return [screen["Name"] for screen in (await response.json())["data"]]


def test_emulator_command_serves_the_catalogue_until_terminated(tmp_path):
    listing = tmp_path / "tiny.csv"
    process = _cli("emulator", "--catalogue", "tiny", "--port", "0", "--experiments-out", str(listing))
    watchdog = threading.Timer(60, process.kill)  # never hang the suite
    watchdog.start()
    try:
        first_line = process.stdout.readline()
        assert first_line.startswith("Serving catalogue 'tiny'"), first_line + process.stderr.read()
        base_url = first_line.split()[-1]
        assert base_url.startswith("http://127.0.0.1:")
        names = asyncio.run(_screen_names(base_url))
        assert names == ["idr0901-emu-mitosis/screenA", "idr0903-emu-painting/screenA"]
        rows = list(csv.DictReader(listing.read_text().splitlines()))
        assert {(r["study"], r["id"]) for r in rows} >= {("idr0901-emu-mitosis", "901")}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        watchdog.cancel()
        process.kill()
    assert process.returncode == 0
    assert "Served 2 requests" in output


def test_emulator_command_rejects_unknown_catalogues_and_fault_kinds():
    runner = CliRunner()
    for args, expected in (
        (("--catalogue", "nowhere"), "neither a builtin"),
        (("--catalogue", "tiny", "--fault-kinds", "500,teapot"), "unknown fault kind"),
    ):
        result = runner.invoke(app, ["emulator", *args, "--port", "0"])
        assert result.exit_code == 2 and expected in " ".join(result.output.split()), result.output
