"""`--protocol paper|default`: the authors' kNN sweep, image preparation, BloodMNIST size, per-dataset
pixel scaling and probe crops, and the standard ViT on every task, end to end."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from chadavit_bench.cli import RunRequest, app
from chadavit_bench.config import BenchConfig
from chadavit_bench.datasets import discover
from chadavit_bench.embed import resize
from chadavit_bench.imaging import scale_to_unit
from chadavit_bench.intensity import apply_intensity
from chadavit_bench.protocol import apply_protocol
from chadavit_bench.protocols.knn import KnnConfig, knn_predict, run_knn
from chadavit_bench.protocols.online_probe import OnlineImages, augmented_view, encode, run_online_probe
from chadavit_bench.protocols.paper_heads import PaperHeadConfig, run_linear_mse_regression, warmup_cosine
from chadavit_bench.protocols.reconstruction import ReconstructionConfig, run_reconstruction
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE

TINY_STANDARD_VIT = "standard_vit_tiny?embed_dim=32&depth=1&num_heads=2&img_size=32&patch_size=8"


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
    # Each dataset's rows record the pixel scaling of the authors' loader for it (protocol.py).
    stamped = paper[["dataset", "intensity"]].drop_duplicates().set_index("dataset")["intensity"].to_dict()
    assert stamped == {"bloodmnist": "dtype", "cyclops": "clip255", "nfkb": "dtype"}
    assert set(default["intensity"]) == {"dataset"}
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
        datasets = json.loads((out / "run.json").read_text())["datasets"]
        assert datasets["cyclops"]["intensity"] == ("clip255" if protocol == "paper" else "dataset")
        assert config["image_prep"] == ("resize_center_crop" if protocol == "paper" else "resize")
        report = (out / "report.md").read_text()
        assert ("Protocol: **paper**" in report) == (protocol == "paper")
        assert ("The authors' probe" in report) == (protocol == "paper")


def test_the_paper_protocol_scales_each_dataset_as_the_authors_loaders(
    synthetic_root: Path, tmp_path: Path
) -> None:
    paper = apply_protocol(BenchConfig(), "paper")
    modes = {
        name: paper.intensity_for(name) for name in ("bbbc021", "bray", "cyclops", "bloodmnist", "cells")
    }
    # Raw float32 counts (BBBC021, Bray), clipped to 0-255 then / 255 (CyclOPS), ToTensor's / 255
    # (BloodMNIST); a dataset the authors never read (a manifest) keeps the run's mode.
    assert modes == {
        "bbbc021": "raw", "bray": "raw", "cyclops": "clip255", "bloodmnist": "dtype", "cells": "dataset"
    }  # fmt: skip
    assert BenchConfig().intensity_for("bbbc021") == "dataset"
    # An explicit --intensity wins over the protocol, for every dataset.
    request = RunRequest(["knn"], ["m"], None, tmp_path, protocol="paper", intensity="minmax")
    assert request.config().intensity_for("bbbc021") == "minmax"
    assert (
        RunRequest(["knn"], ["m"], None, tmp_path, protocol="paper").config().intensity_for("bbbc021")
        == "raw"
    )
    # What the modes do to the pixels.
    counts = np.array([[[0, 100, 255, 300, 4000]]], dtype=np.uint16)
    expected = np.array([[[0, 100 / 255, 1, 1, 1]]], dtype=np.float32)
    assert np.array_equal(scale_to_unit(counts, "clip255"), expected)
    assert scale_to_unit(counts, "raw").tolist() == [[[0.0, 100.0, 255.0, 300.0, 4000.0]]]
    with pytest.raises(ValueError, match="NaN intensities"):
        scale_to_unit(np.array([[[np.nan, 1.0]]]), "clip255")
    found, _ = discover(synthetic_root, names=["cyclops"])
    raw = apply_intensity(found["cyclops"], "raw").read(0)
    clipped = apply_intensity(found["cyclops"], "clip255").read(0)
    assert np.array_equal(clipped, np.floor(np.clip(raw, 0, 255)) / np.float32(255))


def test_the_online_probe_crops_each_dataset_at_the_authors_scale(
    synthetic_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chadavit_bench.models import load_model, parse_model_spec
    from chadavit_bench.protocols import online_probe
    from chadavit_bench.runner import cap_splits
    from chadavit_bench.tasks import REGISTRY
    from chadavit_bench.tasks.context import ModelContext

    scales: list[tuple[float, float]] = []
    sample = online_probe.sample_geometry

    def recording(generator, n, height, width, scale, config):
        scales.append(tuple(scale))
        return sample(generator, n, height, width, scale, config)

    monkeypatch.setattr(online_probe, "sample_geometry", recording)
    names = ["bloodmnist", "bbbc048", "cells"]
    found, _ = discover(synthetic_root, names=names)
    found = {n: cap_splits(d, 12) for n, d in found.items()}
    config = apply_protocol(BenchConfig(img_size=TINY_IMG_SIZE, workers=1, seeds=1), "paper")
    quick = dataclasses.replace(config.online_probe, epochs=1, warmup_epochs=0)
    config = dataclasses.replace(
        config, fractions=(1.0,), features=("cls",), all_tokens=False, online_probe=quick
    )
    context = ModelContext(load_model(parse_model_spec(TINY_CHADAVIT), "cpu"), found, config, tmp_path)
    used = {}
    for name in names:
        scales.clear()
        output = REGISTRY["linear"].run(context, (name,))
        assert output.rows and len(scales) == len(found[name].indices(found[name].fit_split))
        used[name] = set(scales)
    # classification_dataloader.py: BloodMNIST 0.9-1, BBBC048 0.2-1; anything else their 0.08-1.
    assert used == {"bloodmnist": {(0.9, 1.0)}, "bbbc048": {(0.2, 1.0)}, "cells": {(0.08, 1.0)}}


def test_raw_reconstruction_targets_are_learned_in_their_own_units() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    unit = np.clip(0.5 + 0.15 * np.tanh(x[:, :1, None] + x[:, 1:2, None]) * np.ones((1, 8, 8)), 0, 1)
    unit = unit.astype(np.float32)
    unit[0, 0, 0] = 1.0  # the training maximum: raw / 4095 is then exactly the unit targets
    raw = unit * np.float32(4095)
    config = ReconstructionConfig(target_size=8, epochs=30)
    scaled = run_reconstruction(x[:40], unit[:40], x[40:], unit[40:], 0, config)
    counts = run_reconstruction(x[:40], raw[:40], x[40:], raw[40:], 0, config, unit_range=False)
    # Clipping raw predictions to [0, 1] would make R2 hugely negative; scaled, the fit is the same.
    assert counts["r2"] == pytest.approx(scaled["r2"], abs=1e-3) and scaled["r2"] > 0.5
    assert counts["mse"] == pytest.approx(scaled["mse"] * 4095**2, rel=1e-3)


def test_the_standard_vit_on_reconstruction_and_joint(synthetic_root: Path, tmp_path: Path) -> None:
    from chadavit_bench.models import load_model, parse_model_spec
    from chadavit_bench.tasks import REGISTRY
    from chadavit_bench.tasks.context import ModelContext

    found, _ = discover(synthetic_root, names=["bbbc021", "bray"])  # 3 and 5 channels
    config = BenchConfig(img_size=32, workers=1, seeds=1, features=("cls",))
    context = ModelContext(load_model(parse_model_spec(TINY_STANDARD_VIT), "cpu"), found, config, tmp_path)
    # Reconstruction encodes DAPI + Tubulin: 2 channels, which a 3-channel ViT cannot take: a named skip.
    output = REGISTRY["reconstruction"].run(context, ("bbbc021",))
    assert not output.rows and [s.reason for s in output.skips] == [
        "standard_vit_tiny takes 3-channel images; the reconstruction encodes 2 (DAPI, Tubulin) "
        "to predict Actin"
    ]
    # The joint embedding runs on the first 3 channels of each dataset, and its rows say so.
    output = REGISTRY["joint"].run(context, ("bbbc021", "bray"))
    assert {r.metric for r in output.rows} >= {"compound_transfer_accuracy"}
    assert [(f.dataset, f.reason) for f in output.flags] == [
        (
            "bbbc021+bray",
            "standard_vit_tiny takes 3-channel images: it saw DNA, ER, RNA of the 5 channels of bray",
        )
    ]


def test_the_standard_vit_on_chammi_says_which_channels_it_saw(synthetic_root: Path, tmp_path: Path) -> None:
    from chadavit_bench.models import load_model, parse_model_spec
    from chadavit_bench.tasks import REGISTRY
    from chadavit_bench.tasks.context import ModelContext

    names = ("chammi-allen", "chammi-cp", "chammi-hpa")  # 3, 5 and 4 channels
    found, _ = discover(synthetic_root, names=list(names))
    config = BenchConfig(img_size=32, workers=1, seeds=1, features=("cls",))
    context = ModelContext(load_model(parse_model_spec(TINY_STANDARD_VIT), "cpu"), found, config, tmp_path)
    output = REGISTRY["chammi"].run(context, names)
    assert {r.dataset for r in output.rows} == {*names, "chammi"}
    flagged = {
        f.dataset: f.reason
        for f in output.flags
        if "takes 3-channel images" in f.reason or "saw only" in f.reason
    }
    assert set(flagged) == {"chammi-hpa", "chammi-cp", "chammi"}
    assert flagged["chammi-cp"].endswith("it saw nucleus, er, rna of the 5 channels of chammi-cp")
    assert flagged["chammi"] == "standard_vit_tiny saw only the first channels of chammi-cp, chammi-hpa"
