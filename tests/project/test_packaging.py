"""Each package resolves alone with only its own dependencies (pip's real resolver, dry run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def resolve(*package_dirs: str) -> set[str]:
    """Names of every distribution pip would install into an empty environment for these dirs."""
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
    return {item["metadata"]["name"].lower() for item in report["install"]}


def test_builder_installs_without_torch() -> None:
    names = resolve("packages/idrcell-builder")
    assert "idrcell-builder" in names and "aiohttp" in names and "htcondor" in names
    assert "torch" not in names


def test_model_installs_without_network_or_condor_code() -> None:
    names = resolve("packages/chadavit-model")
    assert "chadavit-model" in names and "torch" in names
    assert not names & {"aiohttp", "htcondor", "idrcell-builder"}


def test_bench_pulls_the_model_at_the_same_version() -> None:
    names = resolve("packages/chadavit-model", "packages/chadavit-bench")
    assert {"chadavit-model", "chadavit-bench"} <= names
    assert "idrcell-builder" not in names
