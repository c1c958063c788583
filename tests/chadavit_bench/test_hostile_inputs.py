"""Hostile input to chadavit-bench: one line naming the bad thing, the right exit code, never silence.

Exit codes (the three CLIs' convention): 2 when an input the user named is unusable and nothing
was evaluated, 1 when the run started and failed. Degenerate evaluations run, and say so.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import chadavit
from chadavit_bench import runner
from chadavit_bench.cli import app
from chadavit_bench.datasets import DatasetFormatError, bloodmnist, load_manifest, nfkb
from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic
from chadavit_bench.results import Row, to_frame, write_tables
from chadavit_bench.runjson import write_run_json
from chadavit_bench.tasks.checks import constant_target, one_class
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE, TINY_INTERCHANNEL


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cyclops (a public layout) and the `cells` manifest, small images (read-only for the tests)."""
    root = tmp_path_factory.mktemp("hostile-data")
    write_synthetic(root, ["cyclops", "manifest"], SyntheticConfig(image_size=16))
    return root


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def knn(root: Path, out: Path, *more: str | Path, model: str = TINY_CHADAVIT):
    return invoke(
        "run", "knn", "--quick", "--data-root", root, "--out", out, "--img-size", TINY_IMG_SIZE,
        "--workers", "1", "-m", model, *more,
    )  # fmt: skip


def error_line(result, code: int) -> str:
    """The one error line of a refused command, checked: exit code, no traceback, `error:` first."""
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "error: " in text, text
    return text[text.index("error: ") :]


def manifest_copy(root: Path, tmp_path: Path, name: str = "mine") -> tuple[Path, pd.DataFrame]:
    """A writable copy of the `cells` manifest (its image paths made absolute), and its table."""
    table = pd.read_csv(root / "manifests" / "cells.csv")
    table["channels"] = [
        json.dumps([str(root / "manifests" / f) for f in json.loads(cell)]) for cell in table["channels"]
    ]
    return tmp_path / f"{name}.csv", table


# ----- inconsistent inputs are errors ----------------------------------------------------------


def test_an_npz_with_more_images_than_labels_is_refused(tmp_path: Path) -> None:
    write_synthetic(tmp_path, ["bloodmnist"], SyntheticConfig(image_size=8))
    path = tmp_path / "bloodmnist" / "bloodmnist.npz"
    arrays = dict(np.load(path))
    arrays["train_labels"] = arrays["train_labels"][:5]
    np.savez(path, **arrays)
    with pytest.raises(DatasetFormatError) as raised:
        bloodmnist.load(tmp_path)
    n_train = len(arrays["train_images"])
    assert str(raised.value) == (
        f"bloodmnist: {path}: train_images holds {n_train} images but train_labels 5 labels; "
        "they must match one to one"
    )
    # Named on the command line, it stops the run before anything is evaluated.
    result = knn(tmp_path, tmp_path / "out", "-d", "bloodmnist")
    assert "train_images holds" in error_line(result, 2)
    assert not (tmp_path / "out").exists()


def test_an_npz_that_is_not_an_archive_is_named_without_pickle_advice(tmp_path: Path) -> None:
    (tmp_path / "bloodmnist").mkdir()
    path = tmp_path / "bloodmnist" / "bloodmnist.npz"
    path.write_bytes(b"\x80\x04garbage")
    with pytest.raises(DatasetFormatError, match="is not an npz") as raised:
        bloodmnist.load(tmp_path)
    assert "pickle" not in str(raised.value)


def test_labels_only_in_the_train_rows_name_the_first_unlabelled_row(root: Path, tmp_path: Path) -> None:
    path, table = manifest_copy(root, tmp_path)
    first_val = int(np.flatnonzero(table["split"] != "train")[0])
    table.loc[table["split"] != "train", "label"] = None
    table.to_csv(path, index=False)
    with pytest.raises(DatasetFormatError) as raised:
        load_manifest(path)
    count = int((table["split"] != "train").sum())
    assert str(raised.value) == (
        f"{path}: {count} row(s) (first: row {first_val}, split {table['split'][first_val]}) have no label; "
        "every row needs one"
    )


@pytest.mark.parametrize("bad", ["many", "1e400", "nan"])
def test_a_regression_target_that_is_no_finite_number_is_named(root: Path, tmp_path: Path, bad: str) -> None:
    path, table = manifest_copy(root, tmp_path)
    table = table.drop(columns=["label"]).assign(target=0.5)
    table["target"] = table["target"].astype(object)
    table.loc[3, "target"] = bad  # text, a number past float64, not a number: none may reach a regression
    table.to_csv(path, index=False)
    with pytest.raises(DatasetFormatError) as raised:
        load_manifest(path)
    assert str(raised.value) == (
        f"{path}: 1 row(s) (first: row 3, split {table['split'][3]}) have no finite number in `target`"
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty channel list", "lists no channel files"),
        ("mixed channel counts", "rows have different channel counts [3, 4]"),
        ("TRAIN split", "unknown split values ['TRAIN']"),
        ("missing image file", "channel files listed in"),
        ("no evaluation rows", "needs train rows and val or test rows; its splits are ['train']"),
        ("not a file", "a manifest must be a file"),
        ("absent", "expected a manifest file at"),
    ],
)
def test_a_broken_manifest_named_by_the_user_is_an_error(
    root: Path, tmp_path: Path, case: str, expected: str
) -> None:
    path, table = manifest_copy(root, tmp_path)
    if case == "empty channel list":
        table.loc[3, "channels"] = "[]"
    elif case == "mixed channel counts":
        table.loc[3, "channels"] = json.dumps(json.loads(table.loc[3, "channels"])[:3])
    elif case == "TRAIN split":
        table.loc[0, "split"] = "TRAIN"
    elif case == "no evaluation rows":
        table["split"] = "train"
    elif case == "missing image file":
        table.loc[2, "channels"] = json.dumps([str(tmp_path / "gone.png")] * 4)
    if case == "not a file":
        path.mkdir()
    elif case != "absent":
        table.to_csv(path, index=False)
    result = knn(root, tmp_path / "out", "--manifest", path)
    message = error_line(result, 2)
    assert str(path) in message and expected in message, message
    assert not (tmp_path / "out").exists()


def test_an_unknown_dataset_name_is_an_error(root: Path, tmp_path: Path) -> None:
    result = knn(root, tmp_path / "out", "-d", "cyclops", "-d", "cyclopz")
    assert "--dataset 'cyclopz' is neither a dataset" in error_line(result, 2)


# ----- what could not be used is listed, never dropped -------------------------------------------


def test_a_broken_manifest_in_the_data_root_is_a_listed_skip(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(root, data)
    (data / "manifests" / "broken.csv").write_text("key,channels,label,split\na,[],x,train\n")
    out = tmp_path / "out"
    alone = error_line(knn(data, out, "-d", "broken"), 2)  # named, and nothing else to run
    assert "nothing to run under" in alone and "* on broken: " in alone and "lists no channel files" in alone
    result = knn(data, out)  # found by itself: the others run, this one is listed
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    broken = [s for s in run["skipped"] if s["dataset"] == "broken"]
    assert broken == [
        {
            "task": "*",
            "dataset": "broken",
            "model": "*",
            "reason": f"{data / 'manifests' / 'broken.csv'}: row 0 lists no channel files",
        }
    ]
    assert "skipped broken: " in " ".join(result.output.split())
    assert "| * | broken | * |" in (out / "report.md").read_text()


# ----- degenerate evaluations are flagged ------------------------------------------------------


def test_a_single_class_dataset_is_flagged_in_results_report_and_output(root: Path, tmp_path: Path) -> None:
    path, table = manifest_copy(root, tmp_path, "oneclass")
    table["label"] = "dividing"
    table.to_csv(path, index=False)
    out = tmp_path / "out"
    result = knn(root, out, "--manifest", path, "-d", "oneclass")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert (
        "warning knn on oneclass for random:chadavit_petit (cls): the fit split holds a single class" in text
    )
    run = json.loads((out / "run.json").read_text())
    assert {(w["dataset"], w["features"]) for w in run["warnings"]} == {
        ("oneclass", "cls"),
        ("oneclass", "tokens"),
    }
    summary = pd.read_csv(out / "summary.csv")
    accuracy = summary[summary["metric"] == "accuracy"]
    assert (accuracy["mean"] == 1.0).all()  # the number a single class gives...
    assert accuracy["warning"].str.contains("single class").all()  # ...is never shown without a word
    report = (out / "report.md").read_text()
    assert "## Warnings" in report and "1.000 ⚠" in report


def test_a_model_with_nan_embeddings_reports_nan_and_a_warning(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_load = runner.load_model

    def nan_model(spec, device):  # a model whose every output is NaN, however it was made
        loaded = real_load(spec, device)
        with torch.no_grad():
            loaded.model.cls_token.fill_(float("nan"))
        return loaded

    monkeypatch.setattr(runner, "load_model", nan_model)
    out = tmp_path / "out"
    result = knn(root, out, "-d", "cyclops")
    assert result.exit_code == 0, result.output
    assert "are not finite (NaN or inf): not evaluated" in " ".join(result.output.split())
    results = pd.read_parquet(out / "results.parquet")
    assert results["value"].isna().all() and set(results["metric"]) == {"accuracy"}
    report = (out / "report.md").read_text()
    assert "## Warnings" in report and "n/a ⚠" in report
    assert "Headline scores" not in report  # no score drawn from a number that is not one


# ----- files and folders that cannot be used ----------------------------------------------------


def test_an_out_that_is_a_file_or_under_a_file_is_refused(root: Path, tmp_path: Path) -> None:
    afile = tmp_path / "results.txt"
    afile.write_text("mine")
    assert "is a file; give a folder" in error_line(knn(root, afile, "-d", "cyclops"), 2)
    assert f"cannot be created: {afile} is a file" in error_line(knn(root, afile / "sub", "-d", "cyclops"), 2)
    assert afile.read_text() == "mine"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "cannot be read as a parquet table"),
        (b"PAR1 this is not parquet", "cannot be read as a parquet table"),
        ("wrong types", "column 'seed' must hold numbers"),
    ],
)
def test_a_damaged_results_table_is_named_by_report_compare_and_run(
    root: Path, tmp_path: Path, content: bytes | str, expected: str
) -> None:
    out = tmp_path / "out"
    write_tables(out, to_frame([Row("m", "d", "knn", "cls", 1.0, 0, "accuracy", 0.5)]))
    path = out / "results.parquet"
    if content == "wrong types":
        frame = pd.read_parquet(path)
        frame["seed"] = ["zero"]
        frame.to_parquet(path)
    else:
        path.write_bytes(content)
    for result in (
        invoke("report", out),
        invoke("compare", out, "m", "n"),
        knn(root, out, "-d", "cyclops"),  # refused before any work: the merge would fail at the end
    ):
        message = error_line(result, 2)
        assert str(path) in message and expected in message, message


def test_a_damaged_run_json_is_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tables(out, to_frame([Row("m", "d", "knn", "cls", 1.0, 0, "accuracy", 0.5)]))
    (out / "run.json").write_text("[1, 2]")
    assert f"{out / 'run.json'} must hold a JSON object, not a list" in error_line(invoke("report", out), 2)
    (out / "run.json").write_text('{"models": [{"label": "m"}]}')
    assert "every entry of 'models' must be an object with label" in error_line(invoke("report", out), 2)


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100])
def test_an_empty_or_garbage_safetensors_is_one_line(root: Path, tmp_path: Path, content: bytes) -> None:
    model_dir = tmp_path / "model"
    chadavit.create_model("chadavit_petit", embed_dim=32, depth=2, num_heads=2).save_pretrained(model_dir)
    (model_dir / "model.safetensors").write_bytes(content)
    message = error_line(knn(root, tmp_path / "out", "-d", "cyclops", model=str(model_dir)), 2)
    assert str(model_dir / "model.safetensors") in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("size", ["20", "4"])
def test_an_img_size_the_model_cannot_encode_is_refused_before_any_work(
    root: Path, tmp_path: Path, size: str
) -> None:
    # The inter-channel ViT (any size: it resizes) comes first; the refusal of the second model, whose
    # patch is 8 px, must still come before the first model evaluates anything.
    out = tmp_path / "out"
    result = knn(root, out, "-d", "cyclops", "--img-size", size, "-m", TINY_CHADAVIT, model=TINY_INTERCHANNEL)
    message = error_line(result, 2)
    assert f"--img-size {size} cannot be used with random:chadavit_petit: chadavit_petit needs" in message
    assert "multiples of its patch size 8" in message
    assert not out.exists()


def test_an_image_that_breaks_mid_run_exits_1_naming_it(root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(root / "cyclops", data / "cyclops")
    victim = sorted((data / "cyclops").rglob("*.tif"))[0]
    victim.write_bytes(b"not a tiff")  # present (the dataset loads), unreadable (the run fails)
    message = error_line(knn(data, tmp_path / "out"), 1)
    # Read first when the intensity window is fitted on the fit split (--intensity dataset, the default).
    assert "cyclops: fitting --intensity dataset failed: cannot read image file" in message
    assert str(victim) in message


# ----- JSON is strict -------------------------------------------------------------------------------


def test_run_json_is_strict_json_with_non_finite_values_nulled_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        write_run_json(tmp_path, {"config": {"lr": math.nan, "sizes": [1.0, math.inf]}})

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    document = json.loads((tmp_path / "run.json").read_text(), parse_constant=refuse)
    assert document == {"config": {"lr": None, "sizes": [1.0, None]}}
    assert "config.lr is nan, written as null" in caplog.text and "config.sizes[1] is inf" in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_absent_device_is_one_line(root: Path, tmp_path: Path) -> None:
    message = error_line(knn(root, tmp_path / "out", "-d", "cyclops", "--device", "cuda"), 2)
    assert "--device 'cuda': cannot place random:chadavit_petit there" in message
    assert not (tmp_path / "out").exists()


def test_compare_csv_into_a_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tables(out, to_frame([Row("m", "d", "knn", "cls", 1.0, 0, "accuracy", 0.5)]))
    result = invoke("compare", out, "m", "m", "--csv", tmp_path)
    assert f"--csv {tmp_path} must be a file in an existing folder" in error_line(result, 2)


def test_degenerate_splits_are_named() -> None:
    names = ("a", "b")
    assert one_class(np.array([0, 1]), np.array([1, 0]), names) is None
    assert "the fit split holds a single class ('b')" in one_class(np.array([1, 1]), np.array([0, 1]), names)
    assert "the eval split holds a single class ('a')" in one_class(np.array([0, 1]), np.array([0, 0]), names)
    assert constant_target(np.array([0.1, 0.2]), np.array([0.3, 0.4])) is None
    assert "the eval split's target is constant (0.5)" in constant_target(
        np.array([0.1, 0.2]), np.array([0.5, 0.5])
    )


@pytest.mark.parametrize(
    ("ratio", "expected"), [("nan", "is not a finite number"), (None, "is not a number")]
)
def test_an_nfkb_split_with_a_missing_or_nan_ratio_is_refused(
    tmp_path: Path, ratio: str | None, expected: str
) -> None:
    write_synthetic(tmp_path, ["nfkb"], SyntheticConfig(image_size=8))
    split = tmp_path / "nfkb" / "single_ratio_images_train.csv"
    lines = split.read_text().splitlines()
    cat, image_name, _ = lines[1].split(",")
    lines[1] = f"{cat},{image_name},{ratio}" if ratio is not None else f"{cat},{image_name}"
    split.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetFormatError, match=expected) as raised:
        nfkb.load(tmp_path)
    assert str(split) in str(raised.value)
