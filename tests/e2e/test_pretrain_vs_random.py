"""`scripts/pretrain_vs_random.py --size small`: synthetic corpus -> DINO -> run-all -> compare, CI-sized."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = {
    *(
        f"{name} {probe}"
        for name in ("bloodmnist", "cyclops", "bbbc048", "cells")
        for probe in ("kNN acc.", "linear acc.")
    ),
    "nfkb R2",
    "bbbc021 recon. R2",
    "bbbc021+bray compound transfer",
    "chammi score",
}


@pytest.mark.slow
def test_pretraining_experiment_compares_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "signal"
    argv = [
        sys.executable,
        str(ROOT / "scripts" / "pretrain_vs_random.py"),
        "--size",
        "small",
        "--out",
        str(out),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # The model was pretrained on the unlabelled corpus with the settings the docs describe.
    config = yaml.safe_load((out / "run" / "config.yaml").read_text())
    assert config["data_dir"].endswith("data/pretraining") and config["dino"]["centering"] == "sinkhorn_knopp"
    assert (out / "run" / "model" / "config.json").is_file()
    # Every headline benchmark compared, with a verdict per row and the sentence the docs quote.
    comparison = pd.read_csv(out / "comparison.csv")
    assert set(comparison["benchmark"]) == BENCHMARKS
    assert set(comparison["outcome"]) <= {"win", "loss", "tie"}
    assert ((comparison["difference"] - (comparison["model"] - comparison["baseline"])).abs() < 1e-9).all()
    assert "pretrained beats random-init on" in " ".join(result.stdout.split())
