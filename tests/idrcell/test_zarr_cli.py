"""`idrcell probe` and `--pixel-source` on the command line, against both emulator modes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.emulator import EmulatorServer


def _probe(server: EmulatorServer) -> str:
    result = CliRunner().invoke(
        app, ["probe", "--base-url", server.base_url, "--zarr-base-url", server.zarr_base_url]
    )
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def test_probe_tells_a_classic_server_from_a_2026_one():
    with EmulatorServer("tiny", mode="classic") as server:
        classic = _probe(server)
    with EmulatorServer("tiny", mode="2026") as server:
        moved = _probe(server)
    assert "render_image │ yes" in classic and "auto would use: render" in classic
    assert "render_image │ no │ HTTP 403 (empty body)" in moved and "auto would use: zarr" in moved
    assert "imgData │ no │ 200 with an Exception and no size" in moved
    for output in (classic, moved):
        assert (
            "render_thumbnail │ yes" in output
            and "zarr store │ yes │ listing answers: v0.4/, v0.5/" in output
        )


def test_probe_of_a_dead_server_is_one_error_line_and_exit_1():
    result = CliRunner().invoke(
        app, ["probe", "--base-url", "http://127.0.0.1:9", "--zarr-base-url", "http://127.0.0.1:9/idr/zarr"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("error: http://127.0.0.1:9") and result.output.count("\n") == 1


def test_build_with_pixel_source_zarr_on_the_2026_server(tmp_path: Path):
    with EmulatorServer("tiny", mode="2026") as server:
        listing = tmp_path / "list.csv"
        listing.write_text(server.catalogue.experiments_csv_text(n_images=3), encoding="utf-8")
        args = ["build", "-e", str(listing), "-o", str(tmp_path / "out"), "--base-url", server.base_url]
        rendered = CliRunner().invoke(app, [*args, "--pixel-source", "render"])
        assert rendered.exit_code != 0  # render_image answers 403: nothing can be staged
        built = CliRunner().invoke(
            app, [*args[:4], str(tmp_path / "zarr-out"), *args[5:], "--zarr-base-url", server.zarr_base_url]
        )
        assert built.exit_code == 0, built.output
    assert (tmp_path / "zarr-out" / "dataset.json").is_file()
    bad = CliRunner().invoke(app, [*args, "--pixel-source", "jpeg"])
    assert bad.exit_code == 2 and "--pixel-source must be one of auto, zarr, render" in bad.output
