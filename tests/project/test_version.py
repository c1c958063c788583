"""One version for three packages: ./VERSION is the only source and every package agrees with it."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import requires, version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPO_VERSION = (ROOT / "VERSION").read_text().strip()
DISTRIBUTIONS = {
    "idrcell-builder": "idrcell",
    "chadavit-model": "chadavit",
    "chadavit-bench": "chadavit_bench",
}
CLIS = ("idrcell", "chadavit-train", "chadavit-bench")


@pytest.mark.parametrize("distribution", sorted(DISTRIBUTIONS))
def test_installed_metadata_and_module_version_match_repo_version(distribution: str) -> None:
    module = __import__(DISTRIBUTIONS[distribution])
    assert version(distribution) == REPO_VERSION
    assert module.__version__ == REPO_VERSION


def test_bench_pins_model_to_exactly_the_same_version() -> None:
    pins = [r for r in requires("chadavit-bench") or [] if r.startswith("chadavit-model")]
    assert pins == [f"chadavit-model=={REPO_VERSION}"]


def test_no_package_hard_codes_a_version() -> None:
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        text = pyproject.read_text()
        assert "dynamic = [" in text and '"version"' in text.split("dynamic = [")[1].split("]")[0]
        assert f'version = "{REPO_VERSION}"' not in text, pyproject


@pytest.mark.parametrize("command", sorted(CLIS))
def test_cli_version_prints_the_repo_version(command: str) -> None:
    exe = Path(sys.executable).parent / command
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"{command} {REPO_VERSION}"
