"""`--protocol paper|default`: the authors' kNN sweep, image preparation and BloodMNIST size, end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from chadavit_bench.cli import RunRequest, app
from chadavit_bench.datasets import discover
from chadavit_bench.embed import resize
from chadavit_bench.protocols.knn import KnnConfig, knn_predict, run_knn
from chadavit_bench.protocols.online_probe import OnlineImages, augmented_view, encode, run_online_probe
from chadavit_bench.protocols.paper_heads import PaperHeadConfig, run_linear_mse_regression, warmup_cosine
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE


def test_euclidean_neighbours_vote_by_inverse_distance() -> None:
    train = np.array([[0.0, 0.0], [10.0, 0.0], [10.5, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    # Cosine sees every point on the x axis as the same direction; euclidean sees the nearest.
    query = np.array([[0.1, 0.0]], dtype=np.float32)
    assert knn_predict(train, labels, query, 3, 0.07, 2, distance="euclidean").tolist() == [0]
    with pytest.raises(ValueError, match="kNN distance must be one of"):
        knn_predict(train, labels, query, 1, 0.07, 2, distance="manhattan")


def test_the_sweep_is_never_below_the_fixed_row_and_names_its_cell() -> None:
    rng = np.random.default_rng(0)
    train, query = rng.normal(size=(60, 8)), rng.normal(size=(30, 8))
    train_labels, query_labels = rng.integers(0, 3, 60), rng.integers(0, 3, 30)
    metrics = run_knn(train, train_labels, query, query_labels, 3, KnnConfig(), sweep=True)
    assert metrics["accuracy_best_of_sweep"] >= metrics["accuracy"]
    assert metrics["sweep_best_k"] in KnnConfig().sweep_k
    assert "accuracy_best_of_sweep" not in run_knn(train, train_labels, query, query_labels, 3)


def test_resize_center_crop_is_resize_256_then_the_central_224() -> None:
    image = torch.arange(4 * 256 * 256, dtype=torch.float32).reshape(4, 256, 256).numpy()
    cropped = resize(image, 224, "resize_center_crop")
    assert cropped.shape == (4, 224, 224)
    assert torch.equal(cropped, torch.from_numpy(image)[:, 16:240, 16:240])


def test_a_pinned_size_reads_that_file(synthetic_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(synthetic_root / "bloodmnist", root / "bloodmnist")
    with np.load(root / "bloodmnist" / "bloodmnist.npz") as data:
        side = data["train_images"].shape[1]
        bigger = {k: (np.repeat(np.repeat(v, 2, 1), 2, 2) if "images" in k else v) for k, v in data.items()}
    np.savez(root / "bloodmnist" / "bloodmnist_64.npz", **bigger)  # twice the side: its name is what counts
    default, _ = discover(root, names=["bloodmnist"])
    paper, _ = discover(root, names=["bloodmnist"], sizes=(("bloodmnist", 28),))
    # The default prefers the largest file; the paper's protocol reads the 28 x 28 one (bloodmnist.npz).
    assert default["bloodmnist"].read(0).shape[-1] == 2 * side
    assert paper["bloodmnist"].read(0).shape[-1] == side


def test_the_online_probe_learns_from_augmented_views_deterministically() -> None:
    from chadavit.models import create_model

    torch.manual_seed(0)
    model = create_model(
        "chadavit_petit", embed_dim=32, depth=1, num_heads=2, img_size=32, patch_size=8
    ).eval()
    rng = np.random.default_rng(0)
    # Class 1 images are bright, class 0 dark: any crop of them tells the class.
    labels = np.array([0, 1] * 8)
    noise = rng.uniform(0, 0.05, (16, 2, 40, 40)).astype(np.float32)
    images = [np.float32(0.1 + 0.8 * k) + noise[i] for i, k in enumerate(labels)]
    source = OnlineImages(lambda i: images[i], 32, batch_size=16)
    query = torch.cat(
        [encode(model, [torch.from_numpy(images[i][:, 4:36, 4:36])], "cls", "cpu") for i in range(16)]
    )
    config = PaperHeadConfig(epochs=20, warmup_epochs=1, base_lr=2.0)
    args = (model, source, range(16), labels, query.numpy(), labels, 2, "cls", 0, config)
    first = run_online_probe(*args)
    assert first["accuracy"] == 1.0 and first == run_online_probe(*args)
    view = augmented_view(images[0], 32, torch.Generator().manual_seed(0))
    assert view.shape == (2, 32, 32) and 0.0 <= float(view.min()) <= float(view.max()) <= 1.0


def test_all_tokens_over_the_memory_limit_is_a_listed_skip(synthetic_root: Path, tmp_path: Path) -> None:
    from chadavit_bench.config import BenchConfig
    from chadavit_bench.models import load_model, parse_model_spec
    from chadavit_bench.tasks.base import TaskOutput
    from chadavit_bench.tasks.context import ModelContext

    found, _ = discover(synthetic_root, names=["cyclops"])
    loaded = load_model(parse_model_spec(TINY_CHADAVIT), "cpu")
    for limit, kinds in ((2**30, ["cls", "tokens", "all_tokens"]), (1000, ["cls", "tokens"])):
        config = BenchConfig(img_size=TINY_IMG_SIZE, all_tokens=True, all_tokens_max_bytes=limit, workers=1)
        output = TaskOutput()
        features = dict(
            ModelContext(loaded, found, config, tmp_path).usable_features(
                "cyclops", "knn", "accuracy", output
            )
        )
        assert list(features) == kinds
        if limit == 1000:
            assert "all_tokens: the flattened patch tokens of cyclops take" in output.skips[0].reason
        else:
            n, d = features["all_tokens"].shape
            assert n == len(found["cyclops"]) and d > features["tokens"].shape[1]


def test_the_standard_vit_sees_the_first_three_channels(synthetic_root: Path, tmp_path: Path) -> None:
    from chadavit_bench.config import BenchConfig
    from chadavit_bench.models import load_model, parse_model_spec
    from chadavit_bench.tasks.base import TaskOutput
    from chadavit_bench.tasks.context import ModelContext

    found, _ = discover(synthetic_root, names=["cyclops", "bray"])  # 2 and 5 channels
    spec = "standard_vit_tiny?embed_dim=32&depth=1&num_heads=2&img_size=32&patch_size=8"
    context = ModelContext(
        load_model(parse_model_spec(spec), "cpu"), found, BenchConfig(img_size=32, workers=1), tmp_path
    )
    output = TaskOutput()
    assert list(context.usable_features("cyclops", "knn", "accuracy", output)) == []
    assert output.skips[0].reason.endswith("takes 3-channel images; cyclops has 2")
    features = dict(context.usable_features("bray", "knn", "accuracy", output))
    assert features["cls"].shape == (len(found["bray"]), 32)


def test_the_authors_schedule_and_linear_mse_head() -> None:
    config = PaperHeadConfig()
    lrs = warmup_cosine(config, steps_per_epoch=4)
    assert len(lrs) == 600 and lrs[0] == pytest.approx(1e-5)
    assert lrs.max() == pytest.approx(5e-4 * 64 / 256) and lrs[-1] == pytest.approx(0.0, abs=1e-8)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = x @ np.array([0.5, -1.0, 0.2, 0.0, 0.3, 0.1]) + 2.0
    quick = PaperHeadConfig(epochs=100, base_lr=0.4)
    metrics = run_linear_mse_regression(x[:150], y[:150], x[150:], y[150:], 0, quick)
    assert metrics["r2"] > 0.95
    assert metrics == run_linear_mse_regression(x[:150], y[:150], x[150:], y[150:], 0, quick)


def test_explicit_options_win_over_the_protocol(tmp_path: Path) -> None:
    request = RunRequest(["regression"], ["m"], None, tmp_path, protocol="paper", reconstruction_size=64)
    config = request.config()
    assert (config.regression.head, config.reconstruction.target_size) == ("linear_mse", 64)
    ridge = RunRequest(["regression"], ["m"], None, tmp_path, protocol="paper", regression_head="ridge")
    assert ridge.config().regression.head == "ridge"
    args = ["run", "reconstruction", "-m", "chadavit_petit", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--reconstruction-size", "48"])
    assert result.exit_code == 2 and "--reconstruction-size must be a power of two" in result.output


@pytest.mark.slow
def test_run_all_under_both_protocols(synthetic_root: Path, tmp_path: Path) -> None:
    outputs = {}
    for protocol in ("default", "paper"):
        out = tmp_path / protocol
        result = CliRunner().invoke(
            app,
            ["run-all", "--quick", "--protocol", protocol, "--tasks", "knn,regression,linear",
             "--data-root", str(synthetic_root), "--out", str(out),
             "--img-size", str(TINY_IMG_SIZE), "--workers", "1", "-m", TINY_CHADAVIT,
             "-d", "bloodmnist", "-d", "cyclops", "-d", "nfkb", "--max-images", "40"],
            catch_exceptions=False,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[protocol] = out
    default = pd.read_parquet(outputs["default"] / "results.parquet")
    paper = pd.read_parquet(outputs["paper"] / "results.parquet")
    assert "accuracy_best_of_sweep" not in set(default["metric"])
    # The authors' NF-kB head runs one fit per seed (--quick: 2); ridge has no seed.
    assert set(paper[paper["task"] == "regression"]["seed"]) == {0, 1}
    assert set(default[default["task"] == "regression"]["seed"]) == {0}
    # Every patch token flattened (the paper's "all tokens") is a third feature kind under paper.
    assert set(default["features"]) == {"cls", "tokens"}
    assert set(paper["features"]) == {"cls", "tokens", "all_tokens"}
    # The authors' probe: every fraction and seed, on every feature kind, like the default one.
    linear = ["dataset", "features", "regime", "seed"]
    assert (
        len(paper[(paper["task"] == "linear") & (paper["metric"] == "accuracy")].drop_duplicates(linear))
        == 36
    )
    knn = paper[paper["task"] == "knn"]
    wide = knn.pivot_table(index=["dataset", "features"], columns="metric", values="value")
    assert len(wide) == 6 and bool((wide["accuracy_best_of_sweep"] >= wide["accuracy"]).all())
    for protocol, out in outputs.items():
        config = json.loads((out / "run.json").read_text())["config"]
        assert config["protocol"] == protocol
        assert config["image_prep"] == ("resize_center_crop" if protocol == "paper" else "resize")
        report = (out / "report.md").read_text()
        assert ("Protocol: **paper**" in report) == (protocol == "paper")
        assert ("The authors' probe" in report) == (protocol == "paper")
