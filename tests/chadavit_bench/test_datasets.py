"""Each adapter reads its public layout (written by the synthetic generator) and fails clearly without it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from chadavit_bench.datasets import LOADERS, DatasetFormatError, DatasetNotFoundError, discover, load_manifest
from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic
from chadavit_bench.imaging import read_channels

EXPECTED = {
    # name: (kind, channel names, number of classes, splits present)
    "bloodmnist": ("classification", ("red", "green", "blue"), 8, {"train", "val", "test"}),
    "cyclops": ("classification", ("gfp", "rfp"), 17, {"train", "val"}),
    "bbbc048": ("classification", ("Ch3", "Ch4", "Ch6"), 7, {"train", "val"}),
    "nfkb": ("regression", ("red", "green", "blue"), 0, {"train", "val"}),
    "bbbc021": ("reconstruction", ("DAPI", "Tubulin", "Actin"), 0, {"train", "val"}),
    "bray": ("joint", ("DNA", "ER", "RNA", "AGP", "Mito"), 0, {"train"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_adapter_reads_its_layout(synthetic_root: Path, name: str) -> None:
    kind, channels, n_classes, splits = EXPECTED[name]
    dataset = LOADERS[name](synthetic_root)
    assert dataset.kind == kind
    assert dataset.channel_names == channels
    assert len(dataset.class_names) == n_classes
    assert {r.split for r in dataset.records} == splits
    for index in (0, len(dataset) - 1):
        image = dataset.read(index)
        assert image.shape == (len(channels), 32, 32)
        assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0 and image.max() > 0
    if kind == "classification":
        labels = dataset.labels(range(len(dataset)))
        per_class = SyntheticConfig().train_per_class
        assert (
            np.bincount(labels[dataset.indices("train")], minlength=n_classes).tolist()
            == [per_class] * n_classes
        )
    if kind == "regression":
        assert np.all(np.isfinite(dataset.targets(range(len(dataset)))))
    if name in ("bbbc021", "bray"):
        assert set(dataset.groups(range(len(dataset)))) == {"DMSO", "taxol", "nocodazole", "cytochalasin B"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_missing_data_names_the_expected_files(tmp_path: Path, name: str) -> None:
    with pytest.raises(DatasetNotFoundError) as error:
        LOADERS[name](tmp_path)
    message = str(error.value)
    assert message.startswith(name) and str(tmp_path / name) in message


def test_packaged_reference_splits_are_used_when_the_root_has_none(tmp_path: Path) -> None:
    """Without split CSVs in ROOT/cyclops, the shipped reference splits (22532 + 5634 rows) are read."""
    (tmp_path / "cyclops").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"56332 of 56332 channel files") as error:
        LOADERS["cyclops"](tmp_path)
    # The first reference row is VACUOLARMEMBRANE 24466; its gfp file comes first (fixed order).
    assert "VACUOLARMEMBRANE/VACUOLARMEMBRANE_24466_gfp.tif" in str(error.value)
    with pytest.raises(DatasetNotFoundError, match=r"4133_Ch3\.ome\.jpg"):
        LOADERS["bbbc048"](tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"256x256/0/170721_L02_3_1206_882\.png"):
        LOADERS["nfkb"](tmp_path)


def test_cyclops_channel_order_is_gfp_then_rfp_whatever_the_set_order(synthetic_root: Path) -> None:
    dataset = LOADERS["cyclops"](synthetic_root)
    split_text = (synthetic_root / "cyclops" / "train.csv").read_text()
    assert "{'rfp', 'gfp'}" in split_text  # the file lists rfp first
    record = dataset.records[0]
    gfp = tifffile.imread(synthetic_root / "cyclops" / record.files[0])
    assert record.files[0].endswith("_gfp.tif") and record.files[1].endswith("_rfp.tif")
    scaled = gfp / np.iinfo(gfp.dtype).max  # read alone: by its dtype (intensity.py fits the window)
    np.testing.assert_allclose(dataset.read(0)[0], scaled, atol=1e-6)


def test_discover_reports_found_and_missing(synthetic_root: Path, tmp_path: Path) -> None:
    partial = tmp_path / "root"
    shutil.copytree(synthetic_root / "cyclops", partial / "cyclops")
    found, missing = discover(partial)
    assert list(found) == ["cyclops"]
    chammi = {"chammi-allen", "chammi-hpa", "chammi-cp"}
    assert set(missing) == {"bloodmnist", "bbbc048", "nfkb", "bbbc021", "bray", *chammi}
    assert "bloodmnist.npz" in missing["bloodmnist"]
    found_all, missing_all = discover(synthetic_root)
    assert set(found_all) == {*EXPECTED, "cells", *chammi} and not missing_all


def _write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def test_manifest_csv_and_parquet_spellings(tmp_path: Path) -> None:
    for i in range(4):
        _write_png(tmp_path / "img" / f"{i}_a.png", 10 * i)
        _write_png(tmp_path / "img" / f"{i}_b.png", 255)
    rows = [
        {"channels": json.dumps([f"img/{i}_a.png", f"img/{i}_b.png"]), "label": "ab"[i % 2], "split": "train"}
        for i in range(3)
    ]
    rows.append({"channels": "img/3_a.png; img/3_b.png", "label": "b", "split": "test"})
    pd.DataFrame(rows).to_csv(tmp_path / "mine.csv", index=False)
    dataset = load_manifest(tmp_path / "mine.csv")
    assert dataset.name == "mine" and dataset.kind == "classification"
    assert dataset.class_names == ("a", "b") and dataset.labels(range(4)).tolist() == [0, 1, 0, 1]
    assert dataset.channel_names == ("c0", "c1") and dataset.eval_split == "test"
    np.testing.assert_allclose(dataset.read(3)[:, 0, 0], [30 / 255, 1.0], atol=1e-6)

    table = pd.DataFrame(
        {
            "channels": [[f"img/{i}_a.png"] for i in range(4)],
            "target": [0.5, 1.5, 2.5, 3.5],
            "split": ["train", "train", "val", "val"],
            "channel_names": [["dna"]] * 4,
        }
    )
    table.to_parquet(tmp_path / "reg.parquet")
    regression = load_manifest(tmp_path / "reg.parquet")
    assert regression.kind == "regression" and regression.channel_names == ("dna",)
    assert regression.targets(regression.indices("val")).tolist() == [2.5, 3.5]


def test_manifest_errors_name_the_problem(tmp_path: Path) -> None:
    pd.DataFrame({"files": ["x.png"], "label": [0], "split": ["train"]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    with pytest.raises(DatasetFormatError, match="`channels` column"):
        load_manifest(tmp_path / "a.csv")
    pd.DataFrame({"channels": ["x.png"], "label": [0], "split": ["train"]}).to_csv(
        tmp_path / "b.csv", index=False
    )
    with pytest.raises(
        DatasetNotFoundError, match=r"1 of 1 channel files listed in .*b\.csv are missing .*/x\.png"
    ):
        load_manifest(tmp_path / "b.csv")
    pd.DataFrame({"channels": ["x.png"], "label": [0], "split": ["dev"]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    with pytest.raises(DatasetFormatError, match="unknown split values"):
        load_manifest(tmp_path / "c.csv")


def test_pixel_scaling_rule(tmp_path: Path) -> None:
    """Each channel file by `--intensity`: its dtype's range, a fitted window, or per-image min-max."""
    from chadavit.preprocess import Window

    Image.fromarray(np.array([[0, 51], [102, 255]], dtype=np.uint8)).save(tmp_path / "a.png")
    tifffile.imwrite(tmp_path / "b.tif", np.array([[100, 200], [300, 500]], dtype=np.uint16))
    paths = [tmp_path / "a.png", tmp_path / "b.tif"]
    image = read_channels(paths, "dtype")  # uint8 / 255, uint16 / 65535
    np.testing.assert_allclose(image[0], [[0, 0.2], [0.4, 1.0]], atol=1e-6)
    np.testing.assert_allclose(image[1], np.array([[100, 200], [300, 500]]) / 65535, atol=1e-6)
    windowed = read_channels(paths, "dataset", Window(low=(0.0, 100.0), high=(255.0, 900.0)))
    np.testing.assert_allclose(windowed[1], [[0, 0.125], [0.25, 0.5]], atol=1e-6)  # one window per channel
    minmax = read_channels([str(p) for p in paths], "minmax")  # str paths too
    np.testing.assert_allclose(minmax[1], [[0, 0.25], [0.5, 1.0]], atol=1e-6)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_synthetic_data_are_byte_identical_for_a_seed(tmp_path: Path) -> None:
    small = SyntheticConfig(image_size=16, train_per_class=1, eval_per_class=1, regression_images=4,
                            reconstruction_images=4, bray_images=4)  # fmt: skip
    write_synthetic(tmp_path / "a", config=small)
    write_synthetic(tmp_path / "b", config=small)
    write_synthetic(tmp_path / "c", config=SyntheticConfig(**{**small.__dict__, "seed": 1}))
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_synthetic_targets_are_the_documented_functions_of_the_pixels(synthetic_root: Path) -> None:
    """NF-kB = nuclear / cytoplasmic red; BBBC021 Actin = clip(1.6 x Tubulin x (1 - DAPI)) of one cell."""
    bbbc021 = LOADERS["bbbc021"](synthetic_root)
    for index in range(3):
        raw = [
            tifffile.imread(bbbc021.root / f).astype(np.float64) / 4095 - 0.01
            for f in bbbc021.records[index].files
        ]
        # docs/bench.md's formula, written out here (not the generator's function): clipped to [0, 1].
        dapi, tubulin, actin = raw
        np.testing.assert_allclose(actin, np.clip(1.6 * tubulin * (1.0 - dapi), 0.0, 1.0), atol=2e-3)
        assert actin.max() > 0.2  # a target with signal, not an all-dark plane that fits any formula
        # A single-cell crop: the DNA's centre of mass lies within the central 20 % of the image.
        size = raw[0].shape[0]
        weights = np.clip(raw[0], 0, None)
        yy, xx = np.indices(raw[0].shape)
        centre = np.array([(yy * weights).sum(), (xx * weights).sum()]) / weights.sum()
        assert np.all(np.abs(centre - (size - 1) / 2) <= 0.1 * size + 0.5)
    nfkb = LOADERS["nfkb"](synthetic_root)
    targets = nfkb.targets(range(len(nfkb)))
    assert targets.min() < 0.6 < 1.5 < targets.max()  # a real spread of ratios to regress


def test_pretraining_corpus_is_trainer_readable_and_seeded(tmp_path: Path) -> None:
    """`synthetic --pretraining-images`: idrcell shards of 1 to 5 channels the trainer decodes."""
    from chadavit.data.shards import decode_sample, iter_raw_samples, list_shards
    from chadavit_bench.datasets.synthetic import write_pretraining_shards

    keys = write_pretraining_shards(tmp_path / "a", 30, size=16, seed=0, shard_size=8)
    write_pretraining_shards(tmp_path / "b", 30, size=16, seed=0, shard_size=8)
    assert len(keys) == 30 and _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    shards = list_shards(tmp_path / "a")
    assert [s.name for s in shards] == [f"idrcell-{i:06d}.tar" for i in range(4)]
    decoded = [decode_sample(raw, 16) for shard in shards for raw in iter_raw_samples(shard)]
    assert [sample.key for sample in decoded] == keys
    counts = {int(sample.pixels.shape[0]) for sample in decoded}
    assert {2, 3, 5} <= counts <= {1, 2, 3, 4, 5}  # cells of 1-5 channels, NF-kB/BBBC021 3, Bray 5
    write_pretraining_shards(tmp_path / "c", 30, size=16, seed=1, shard_size=8)
    assert _tree_digest(tmp_path / "c") != _tree_digest(tmp_path / "a")
