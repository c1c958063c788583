"""Each package resolves alone with only its own dependencies (pip's real resolver, dry run), and
the builder's wheel carries the repository's HTCondor files (one copy in the tree: condor/)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import idrcell
from idrcell.condor import PACKAGED_FILES, packaged_condor_dir

ROOT = Path(__file__).resolve().parents[2]


def resolve(*package_dirs: str) -> set[str]:
    """Names of every distribution pip would install into an empty environment for these dirs."""
    return set(resolve_report(*package_dirs))


def resolve_report(*package_dirs: str) -> dict[str, dict]:
    """pip's metadata of every distribution it would install for these dirs, by lower-case name."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            "-",
            *(str(ROOT / d) for d in package_dirs),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        pytest.fail(f"pip could not resolve {package_dirs}: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    return {item["metadata"]["name"].lower(): item["metadata"] for item in report["install"]}


def test_builder_installs_without_torch() -> None:
    names = resolve("packages/idrcell-builder")
    assert "idrcell-builder" in names and "aiohttp" in names and "htcondor" in names
    assert "torch" not in names


def test_model_installs_without_network_or_condor_code() -> None:
    names = resolve("packages/chadavit-model")
    assert "chadavit-model" in names and "torch" in names
    assert not names & {"aiohttp", "htcondor", "idrcell-builder"}


def test_bench_pulls_the_model_at_the_same_version() -> None:
    # The bench alone: pip must find the model it pins, and that must be the tree's model.
    installed = resolve_report("packages/chadavit-model", "packages/chadavit-bench")
    assert "idrcell-builder" not in installed
    version = (ROOT / "VERSION").read_text().strip()
    assert installed["chadavit-model"]["version"] == installed["chadavit-bench"]["version"] == version
    pins = [r for r in installed["chadavit-bench"].get("requires_dist", []) if r.startswith("chadavit-model")]
    assert pins == [f"chadavit-model=={version}"], pins


def test_the_builders_wheel_ships_condor_files_that_the_installed_package_finds(tmp_path: Path) -> None:
    pip = [sys.executable, "-m", "pip", "--quiet"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", str(ROOT / "packages/idrcell-builder"), "-w", str(tmp_path / "wheel")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (tmp_path / "wheel").glob("idrcell_builder-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in PACKAGED_FILES:
            shipped = archive.read(f"idrcell/data/condor/{name}")
            assert shipped == (ROOT / "condor" / name).read_bytes(), name

    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    lookup = "from idrcell.condor import packaged_condor_dir; print(packaged_condor_dir())"
    found = subprocess.run(
        [sys.executable, "-c", lookup],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},  # ahead of the editable install
    )
    assert found.returncode == 0, found.stderr
    folder = Path(found.stdout.strip())
    assert folder == site / "idrcell" / "data" / "condor"
    assert (folder / "scrape.sh").stat().st_mode & stat.S_IXUSR  # HTCondor runs it as the executable


def test_an_editable_install_reads_the_repositorys_condor_folder() -> None:
    if not Path(idrcell.__file__).resolve().is_relative_to(ROOT / "packages"):
        pytest.skip("idrcell is installed from a wheel here, not editable from this checkout")
    # `pip install -e` (make install) puts no copy in the package: the repository's files are used.
    assert packaged_condor_dir() == ROOT / "condor"
    assert (ROOT / "condor" / "scrape.sh").stat().st_mode & stat.S_IXUSR
