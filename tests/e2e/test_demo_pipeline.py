"""The main job end to end, CI-sized: `scripts/demo.py --size small` runs every stage of `make demo`."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_pipeline_builds_trains_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--size", "small", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # The dataset: every demo experiment staged, verified, 1 to 10 channels.
    dataset = json.loads((out / "idrcell" / "dataset.json").read_text())
    index = pd.read_parquet(out / "idrcell" / "index.parquet")
    assert index["study"].nunique() == 7 and len(index) == 7 * 8
    assert index["n_channels"].min() == 1 and index["n_channels"].max() == 10
    assert index["imaging_method"].nunique() >= 3
    assert len(dataset["shards"]) >= 1

    # The pretrained model was exported and loads.
    import chadavit

    model = chadavit.from_pretrained(out / "run" / "model")
    assert model.config.name == "chadavit_petit"

    # Pretraining ran: every logged loss finite, and the export is trained weights, not the
    # initialisation (the run's initial teacher rebuilt from its own config and seed).
    from chadavit.ssl.dino import build_networks
    from chadavit.train.config import load_config
    from chadavit.train.metrics import read_metrics

    losses = [record["loss"] for record in read_metrics(out / "run")]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert min(losses[len(losses) // 2 :]) < losses[0], f"the DINO loss never fell below its start: {losses}"
    initial = build_networks(load_config(out / "run" / "config.yaml"))[1].backbone.state_dict()
    trained = model.state_dict()
    moved = [name for name, tensor in trained.items() if not torch.equal(tensor, initial[name])]
    assert len(moved) >= 0.5 * len(trained), f"only {len(moved)} of {len(trained)} tensors moved"

    # The report compares the pretrained model with its random init on every benchmark, CHAMMI
    # included, and opens with compare's verdict and what the demo is.
    summary = pd.read_csv(out / "bench" / "summary.csv")
    assert set(summary["model"]) == {"pretrained", "random-init"}
    # Every summary number means something: finite, accuracies, F1 and CHAMMI scores in [0, 1].
    assert np.isfinite(summary["mean"].to_numpy(dtype=float)).all(), summary[~np.isfinite(summary["mean"])]
    fractions = summary.loc[summary["metric"].str.contains("accuracy|f1|chammi_score"), "mean"]
    assert len(fractions) > 0 and fractions.between(0.0, 1.0).all(), fractions
    comparison = pd.read_csv(out / "comparison.csv")
    benchmarks = set(comparison["benchmark"])
    assert any(b.startswith("chammi") for b in benchmarks) and any(b.startswith("cells") for b in benchmarks)
    assert len(benchmarks) >= 10 and set(comparison["outcome"]) <= {"win", "loss", "tie"}
    assert np.isfinite(comparison.select_dtypes("number").to_numpy(dtype=float)).all()
    markdown = (out / "bench" / "report.md").read_text()
    verdict = markdown.index("pretrained beats random-init on")
    assert verdict < markdown.index("This is `make demo`") < markdown.index("## Models")
    assert "scripts/pretrain_vs_random.py" in markdown
    html = (out / "bench" / "report.html").read_text()
    assert "<img" in html and "report.html" in result.stdout
    # The terminal ends with the verdict line, the same sentence as the report's.
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("pretrained beats random-init on") and last in markdown
