"""Outputs are shareable: under umask 022 a model directory and a dataset are readable by everyone.

Files written whole-or-not-at-all go through a temporary name; a temporary made by `mkstemp` is
mode 0600, which would leave a colleague on the same cluster unable to read the result. Both packages'
atomic writers create the temporary like `open()` does, so the user's umask decides.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
import torch

from chadavit import create_model, from_pretrained, save_pretrained
from idrcell.build import build
from idrcell.client import ClientConfig
from idrcell.emulator import EmulatorServer
from idrcell.experiments import load_experiments
from idrcell.stage import StageConfig

READABLE_BY_ALL = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def unreadable_by_others(root: Path) -> list[str]:
    """Every file under `root` lacking read permission for group or others, with its mode."""
    return [
        f"{path.relative_to(root)} {stat.filemode(path.stat().st_mode)}"
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.stat().st_mode & READABLE_BY_ALL != READABLE_BY_ALL
    ]


@pytest.mark.usefixtures("umask_022")
def test_exported_model_directory_is_readable_by_group_and_others(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("chadavit_petit", depth=1, img_size=32)
    directory = save_pretrained(model, tmp_path / "model")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    assert unreadable_by_others(directory) == []
    from_pretrained(directory)  # and it is still a loadable model


@pytest.mark.usefixtures("umask_022")
def test_built_dataset_is_readable_by_group_and_others(tmp_path: Path) -> None:
    experiments = Path(str(resources.files("idrcell").joinpath("data", "experiments_tiny.csv")))
    out = tmp_path / "dataset"
    with EmulatorServer("tiny") as server:
        client = ClientConfig(base_url=server.base_url, timeout_s=5.0, backoff_base_s=0.01)
        result = build(load_experiments(experiments), experiments, out, StageConfig(client=client))
    assert result.complete, result.stages
    assert list((out / "shards").glob("*.tar")) and (out / "dataset.json").is_file()
    assert unreadable_by_others(out) == []
