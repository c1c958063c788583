"""`chadavit-bench run-all --quick` end to end: two tiny models on every synthetic dataset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from chadavit_bench.cli import app
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE, TINY_ONECHANNEL

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OUTPUTS = ("results.parquet", "results.csv", "summary.csv", "report.md", "report.html", "run.json")
FIGURES = (
    "fig1_scores.png",
    "fig4_low_data.png",
    "fig5_joint_embedding.png",
    "fig3_attention_random_chadavit_petit-",
    "fig3_attention_onechannel_vit_tiny-",
)


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def quick_run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench-out")
    result = invoke(
        "run-all", "--quick", "--data-root", str(synthetic_root), "--out", str(out),
        "--img-size", str(TINY_IMG_SIZE), "--workers", "1", "-m", TINY_CHADAVIT, "-m", TINY_ONECHANNEL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_all_writes_every_output(quick_run: tuple[Path, str]) -> None:
    out, output = quick_run
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    for prefix in FIGURES:
        assert any(name.startswith(prefix) for name in figures), (prefix, figures)

    results = pd.read_parquet(out / "results.parquet")
    # The measurement, then the settings that shaped it (the 8-column table became 13 when rows
    # started recording their settings: issue "results that remember how they were made").
    assert list(results.columns) == [
        "model",
        "dataset",
        "task",
        "features",
        "regime",
        "seed",
        "metric",
        "value",
        "img_size",
        "intensity",
        "protocol",
        "seeds",
        "model_checksum",
    ]
    assert set(results["img_size"]) == {TINY_IMG_SIZE} and set(results["seeds"]) == {2}
    run_checksums = {m["label"]: m["checksum"] for m in json.loads((out / "run.json").read_text())["models"]}
    assert dict(results[["model", "model_checksum"]].drop_duplicates().to_numpy()) == run_checksums
    assert results.equals(pd.read_csv(out / "results.csv"))
    assert set(results["model"]) == {"random:chadavit_petit", "onechannel_vit_tiny"}
    tasks = set(map(tuple, results[["task", "dataset"]].drop_duplicates().to_numpy()))
    for dataset in ("bloodmnist", "cyclops", "bbbc048", "cells"):
        assert {("knn", dataset), ("linear", dataset)} <= tasks
    assert {("regression", "nfkb"), ("reconstruction", "bbbc021"), ("joint", "bbbc021+bray")} <= tasks
    linear = results[(results["task"] == "linear") & (results["metric"] == "accuracy")]
    assert sorted(linear["regime"].unique()) == [0.01, 0.1, 1.0]
    assert sorted(linear["seed"].unique()) == [0, 1]  # --quick: 2 seeds
    assert set(linear["features"]) == {"cls", "tokens"}

    # The numbers mean something: finite, and every accuracy or F1 a fraction, every error >= 0.
    values = results.set_index(["model", "dataset", "task", "features", "regime", "seed", "metric"])["value"]
    assert np.isfinite(values.to_numpy(dtype=float)).all(), values[~np.isfinite(values.to_numpy(dtype=float))]
    fractions = values[values.index.get_level_values("metric").str.contains("accuracy|f1")]
    assert len(fractions) > 0 and fractions.between(0.0, 1.0).all(), fractions[~fractions.between(0.0, 1.0)]
    errors = values[values.index.get_level_values("metric").str.contains("mse")]
    assert (errors >= 0).all(), errors[errors < 0]
    r2 = values[values.index.get_level_values("metric") == "r2"]
    assert (r2 <= 1.0).all(), r2[r2 > 1.0]
    pearson = values[values.index.get_level_values("metric") == "pearson"]
    assert pearson.between(-1.0, 1.0).all(), pearson

    summary = pd.read_csv(out / "summary.csv")
    assert {"mean", "std", "n_seeds"} <= set(summary.columns)
    assert np.isfinite(summary[["mean", "std"]].to_numpy(dtype=float)).all()
    assert set(summary.loc[summary["task"] == "linear", "n_seeds"]) == {2}

    run = json.loads((out / "run.json").read_text())
    assert [m["label"] for m in run["models"]] == ["random:chadavit_petit", "onechannel_vit_tiny"]
    # The one-channel baseline's width depends on the channel count: no joint space, said so.
    assert any(s["task"] == "joint" and s["model"] == "onechannel_vit_tiny" for s in run["skipped"])
    assert (
        "skipped joint on bbbc021+bray for onechannel_vit_tiny: bbbc021 and bray embeddings differ in width"
        in " ".join(output.split())
    )

    markdown = (out / "report.md").read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (out / link).is_file(), link
    assert "## Joint embedding (Figure 5)" in markdown and "## Attention maps (Figure 3)" in markdown


def test_report_html_opens_in_headless_chromium(quick_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = quick_run
    html = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)=["'](?!data:)""", html), "the report must not load external files"
    expected_images = len(list((out / "figures").glob("*.png")))
    assert html.count('<img src="data:image/png;base64,') == expected_images
    if CHROMIUM is None:
        # CI (.ci/run sets CI) must open the report: there a missing browser is a failure.
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed, and CI is set: .ci/run should have installed it")
        pytest.skip("chromium is not installed (.ci/run installs it)")
    # A copy with a probe that records, after load, how many images decoded and any page error.
    probe = """<script>
    window.__errors = [];
    window.addEventListener('error', e => window.__errors.push(String(e.message || 'resource error')), true);
    window.addEventListener('load', () => {
      const images = Array.from(document.images);
      const decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
      const marker = document.createElement('pre');
      marker.id = 'probe';
      marker.textContent = JSON.stringify({images: images.length, decoded: decoded, errors: window.__errors});
      document.body.appendChild(marker);
    });
    </script>"""
    page = tmp_path / "report-probe.html"
    page.write_text(html.replace("<head>", "<head>" + probe, 1))
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", "--dump-dom", page.as_uri(),
    ]  # fmt: skip
    browser = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert browser.returncode == 0, browser.stderr[-2000:]
    console = [line for line in browser.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    found = re.search(r'<pre id="probe">([^<]*)</pre>', browser.stdout)
    assert found, browser.stdout[-2000:]
    state = json.loads(found.group(1))
    assert state == {"images": expected_images, "decoded": expected_images, "errors": []}


def test_report_command_rebuilds_the_same_report(quick_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("cache"))
    (copy / "report.md").unlink()
    (copy / "report.html").unlink()
    shutil.rmtree(copy / "figures")
    result = invoke("report", str(copy))
    assert result.exit_code == 0, result.output
    assert (copy / "report.md").read_text() == (out / "report.md").read_text()
    assert (copy / "report.html").read_text() == (out / "report.html").read_text()
    missing = invoke("report", str(tmp_path / "nothing"))
    assert missing.exit_code == 2 and "no results.parquet" in missing.output


def test_run_one_task_merges_and_reports_what_was_skipped(
    quick_run: tuple[Path, str], synthetic_root: Path, tmp_path: Path
) -> None:
    out, _ = quick_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    partial = tmp_path / "partial"
    shutil.copytree(synthetic_root / "cyclops", partial / "cyclops")
    before = pd.read_parquet(copy / "results.parquet")
    result = invoke(
        "run", "knn", "--quick", "--data-root", str(partial), "--out", str(copy),
        "--img-size", str(TINY_IMG_SIZE), "-m", f"{TINY_CHADAVIT}&seed=7",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "skipped knn on bloodmnist: bloodmnist: expected one of" in text
    assert "skipped knn on bbbc048" in text
    after = pd.read_parquet(copy / "results.parquet")
    new = after[after["model"] == "random:chadavit_petit#seed7"]
    assert set(new["task"]) == {"knn"} and set(new["dataset"]) == {"cyclops"}
    assert len(after) == len(before) + len(new)  # earlier rows kept


def test_user_errors_are_one_sentence_and_exit_2(synthetic_root: Path, tmp_path: Path) -> None:
    bad_model = invoke(
        "run-all", "--data-root", str(synthetic_root), "--out", str(tmp_path / "a"), "-m", "nope"
    )
    assert bad_model.exit_code == 2 and "neither a model directory" in bad_model.output
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = invoke("run-all", "--data-root", str(empty), "--out", str(tmp_path / "b"), "-m", TINY_CHADAVIT)
    assert nothing.exit_code == 2 and "nothing to run" in nothing.output
    assert not (tmp_path / "b").exists()  # nothing half-written
    bad_task = invoke(
        "run", "dance", "--data-root", str(synthetic_root), "--out", str(tmp_path / "c"), "-m", "x"
    )
    assert bad_task.exit_code == 2 and "unknown task" in bad_task.output


def test_same_inputs_and_seeds_give_identical_results(synthetic_root: Path, tmp_path: Path) -> None:
    frames = []
    for name in ("a", "b"):
        result = invoke(
            "run", "linear", "--quick", "--dataset", "bbbc048", "--data-root", str(synthetic_root),
            "--out", str(tmp_path / name), "--img-size", str(TINY_IMG_SIZE), "-m", TINY_CHADAVIT,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        frames.append(pd.read_parquet(tmp_path / name / "results.parquet"))
    assert set(frames[0]["dataset"]) == {"bbbc048"}
    pd.testing.assert_frame_equal(frames[0], frames[1])
