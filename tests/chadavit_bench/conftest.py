"""Shared fixtures: one synthetic data root per session and tiny model specs (embed_dim 32, depth 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every synthetic dataset, in its public layout, written once (read-only for the tests)."""
    root = tmp_path_factory.mktemp("synthetic-data")
    write_synthetic(root, config=SyntheticConfig())
    return root
