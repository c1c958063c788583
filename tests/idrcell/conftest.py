"""Shared helpers of the builder tests: emulator-backed configs, a clean reference build, byte snapshots."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

import pytest

from idrcell.build import build
from idrcell.client import ClientConfig
from idrcell.emulator import EmulatorServer
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig


def packaged_list(name: str) -> Path:
    """Path of an experiment list shipped with the emulator's builtin catalogues."""
    return Path(str(resources.files("idrcell").joinpath("data", f"experiments_{name}.csv")))


def fast_config(base_url: str, **client_overrides: object) -> StageConfig:
    """A stage config for tests: short timeouts and backoffs so that faults cost milliseconds."""
    client = ClientConfig(
        base_url=base_url, timeout_s=1.0, backoff_base_s=0.01, backoff_max_s=2.0, max_retries=8
    )
    return StageConfig(client=replace(client, **client_overrides))  # type: ignore[arg-type]


def dataset_snapshot(out: Path) -> dict[str, bytes]:
    """Every byte of a finished dataset: shards, index.parquet and dataset.json."""
    files = [*sorted((out / "shards").glob("*.tar")), out / "index.parquet", out / "dataset.json"]
    return {str(path.relative_to(out)): path.read_bytes() for path in files}


def cli_env(base_url: str) -> dict[str, str]:
    import os

    return {**os.environ, "IDR_BASE_URL": base_url, "COLUMNS": "200"}


@pytest.fixture(scope="session")
def make_config():
    return fast_config


@pytest.fixture(scope="session")
def snapshot():
    return dataset_snapshot


@pytest.fixture(scope="session")
def list_path():
    return packaged_list


@pytest.fixture(scope="session")
def env_for():
    return cli_env


@pytest.fixture(scope="session")
def tiny_list() -> Path:
    return packaged_list("tiny")


@pytest.fixture(scope="session")
def tiny_emulator():
    """One fault-free emulator for the whole session; tests that need faults start their own."""
    with EmulatorServer("tiny") as server:
        yield server


@pytest.fixture(scope="session")
def clean_build(
    tmp_path_factory: pytest.TempPathFactory, tiny_list: Path, tiny_emulator: EmulatorServer
) -> Path:
    """The reference: the tiny list built once without faults or interruptions, seed 0."""
    out = tmp_path_factory.mktemp("clean")
    result = build(load_experiments(tiny_list), tiny_list, out, fast_config(tiny_emulator.base_url))
    assert result.complete, result.stages
    return out
