"""`idrcell import-images`: per-channel files, stacks and tape images read back pixel-exact after the
documented window and resize; same bytes on a rerun, after SIGKILL and from CSV or parquet; safe
keys; every bad input one line with nothing written."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tifffile
from PIL import Image
from skimage.transform import resize
from typer.testing import CliRunner

from idrcell.cli import app
from idrcell.import_images import import_images
from idrcell.shards import read_tar
from idrcell.testpoint import PAUSE_AFTER_VARIABLE, PAUSE_DIR_VARIABLE, REACHED_FILE
from idrcell.verify import verify_dataset

runner = CliRunner()


def samples(out: Path) -> dict[str, tuple[dict, list[np.ndarray]]]:
    """Every sample of a dataset: key -> (KEY.json, channel planes)."""
    found: dict[str, tuple[dict, list[np.ndarray]]] = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        for name, data in read_tar(shard):
            key, suffix = name.split(".", 1)
            if suffix == "json":
                found[key] = (json.loads(data), [])
            else:
                found[key][1].append(np.asarray(Image.open(io.BytesIO(data))))
    return found


def snapshot(out: Path) -> dict[str, bytes]:
    files = [*sorted((out / "shards").glob("*.tar")), out / "index.parquet", out / "dataset.json"]
    return {str(path.relative_to(out)): path.read_bytes() for path in files}


def expected(plane: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """The documented pixels: window (default 0.1-99.9 percentiles) to 0..255, then resize to 224."""
    low, high = window if window is not None else np.percentile(plane.astype(np.float64), [0.1, 99.9])
    scaled = np.clip((plane.astype(np.float32) - np.float32(low)) / np.float32(high - low), 0, 1)
    eight = np.rint(scaled * 255.0).astype(np.uint8)
    if eight.shape == (224, 224):
        return eight
    resized = resize(
        eight.astype(np.float32), (224, 224), order=1, mode="reflect", anti_aliasing=True, preserve_range=True
    )
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


@pytest.fixture
def collection(tmp_path: Path) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """A folder of images in every supported form, its manifest, and each row's source planes."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "collection"
    (folder / "sub dir").mkdir(parents=True)
    planes: dict[str, list[np.ndarray]] = {}
    # Per-channel files: a 16-bit TIFF and an 8-bit PNG, non-square; odd file names.
    dna = rng.integers(100, 4000, (300, 260), dtype=np.uint16)
    gfp = rng.integers(0, 255, (300, 260), dtype=np.uint8)
    tifffile.imwrite(folder / "sub dir" / "wéird name.DNA.tif", dna)
    Image.fromarray(gfp).save(folder / "sub dir" / "x..gfp.png")
    planes["files"] = [dna, gfp]
    # A (C, H, W) stack and an (H, W, C) stack of floats.
    chw = rng.integers(0, 60000, (3, 180, 200), dtype=np.uint16)
    tifffile.imwrite(folder / "chw.tiff", chw, photometric="minisblack")
    planes["chw"] = list(chw)
    hwc = rng.normal(10.0, 3.0, (240, 240, 2)).astype(np.float32)
    tifffile.imwrite(folder / "hwc.tif", hwc)
    planes["hwc"] = [hwc[..., 0], hwc[..., 1]]
    # A tape image, four channels 64 px wide side by side (CHAMMI's layout).
    tape = rng.integers(0, 255, (64, 256), dtype=np.uint8)
    Image.fromarray(tape).save(folder / "tape.png")
    planes["tape"] = [tape[:, k * 64 : (k + 1) * 64] for k in range(4)]
    rows = [
        {
            "key": "files",
            "channels": '["sub dir/wéird name.DNA.tif", "sub dir/x..gfp.png"]',
            "label": "mitotic",
            "split": "train",
            "group": "plate 1",
            "channel_names": "DNA;GFP",
            "channel_width": "",
            "layout": "",
            "window_start": "",
            "window_end": "",
        },
        {
            "key": "chw",
            "channels": "chw.tiff",
            "label": "interphase",
            "split": "train",
            "group": "",
            "channel_names": "",
            "channel_width": "",
            "layout": "",
            "window_start": "0;1000;0",
            "window_end": "65535;30000;5000",
        },
        {
            "key": "hwc",
            "channels": "hwc.tif",
            "label": "mitotic",
            "split": "test",
            "group": "",
            "channel_names": "['a', 'b']",
            "channel_width": "",
            "layout": "hwc",
            "window_start": "",
            "window_end": "",
        },
        {
            "key": "tape",
            "channels": "tape.png",
            "label": "",
            "split": "test",
            "group": "",
            "channel_names": "",
            "channel_width": "64",
            "layout": "",
            "window_start": "",
            "window_end": "",
        },
    ]
    write_csv(folder / "images.csv", rows)
    return folder / "images.csv", planes


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_every_form_reads_back_pixel_exact_and_verifies(tmp_path: Path, collection) -> None:
    manifest, planes = collection
    out = tmp_path / "out"
    result = runner.invoke(app, ["import-images", str(manifest), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert verify_dataset(out).ok
    by_name = {meta["image_name"]: (meta, pngs) for meta, pngs in samples(out).values()}
    assert sorted(by_name) == ["chw", "files", "hwc", "tape"]
    windows = {"chw": [(0.0, 65535.0), (1000.0, 30000.0), (0.0, 5000.0)]}
    for name, source in planes.items():
        meta, pngs = by_name[name]
        assert len(pngs) == meta["n_channels"] == len(source)
        for index, (plane, png) in enumerate(zip(source, pngs, strict=True)):
            given = windows[name][index] if name in windows else None
            np.testing.assert_array_equal(png, expected(plane, given), err_msg=f"{name} channel {index}")
            low, high = given or np.percentile(plane.astype(np.float64), [0.1, 99.9])
            assert meta["channels"][index]["window"] == pytest.approx([low, high])
    files = by_name["files"][0]
    assert (files["label"], files["split"], files["group"]) == ("mitotic", "train", "plate 1")
    assert [c["label"] for c in files["channels"]] == ["DNA", "GFP"]
    assert files["source"] == {"width": 260, "height": 300, "pixels_type": "uint16", "z": None, "t": None}
    assert [c["label"] for c in by_name["hwc"][0]["channels"]] == ["a", "b"]
    assert by_name["tape"][0]["label"] is None and by_name["chw"][0]["group"] is None
    # Keys never carry a file name: `<study>_images_<row>`.
    assert sorted(meta["key"] for meta, _ in by_name.values()) == [f"images_images_{i}" for i in range(4)]


def test_split_filter_rerun_and_parquet_give_the_same_bytes(tmp_path: Path, collection) -> None:
    manifest, _ = collection
    first = import_images(manifest, tmp_path / "a", split="train")
    assert first.summary.samples == 2 and not first.already_done
    again = import_images(manifest, tmp_path / "a", split="train")
    assert again.already_done
    import_images(manifest, tmp_path / "b", split="train")
    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    # The same rows as parquet, with list columns: the same dataset, byte for byte.
    import csv

    with open(manifest, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["channels"] = (
            json.loads(row["channels"]) if row["channels"].startswith("[") else [row["channels"]]
        )
    parquet = manifest.with_suffix(".parquet")
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    import_images(parquet, tmp_path / "c", split="train", study="images")
    as_parquet, as_csv = snapshot(tmp_path / "c"), snapshot(tmp_path / "a")
    del as_parquet["dataset.json"], as_csv["dataset.json"]  # it names the manifest file
    assert as_parquet == as_csv
    # Decoding in 2 processes changes nothing.
    import_images(manifest, tmp_path / "e", split="train", jobs=2)
    assert snapshot(tmp_path / "e") == snapshot(tmp_path / "a")
    # Another seed shuffles differently.
    import_images(manifest, tmp_path / "d", split="train", seed=1)
    assert snapshot(tmp_path / "d") != snapshot(tmp_path / "a")


def test_dtype_window_keeps_8_bit_pixels_as_they_are(tmp_path: Path, collection) -> None:
    manifest, planes = collection
    import_images(manifest, tmp_path / "out", window_mode="dtype")
    by_name = {meta["image_name"]: (meta, pngs) for meta, pngs in samples(tmp_path / "out").values()}
    tape_meta, tape = by_name["tape"]
    assert [c["window"] for c in tape_meta["channels"]] == [[0.0, 255.0]] * 4
    np.testing.assert_array_equal(tape[0], expected(planes["tape"][0], (0.0, 255.0)))


def test_a_sigkilled_import_rerun_gives_the_bytes_of_a_clean_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "many"
    folder.mkdir()
    rows = []
    for i in range(12):
        tifffile.imwrite(
            folder / f"{i}.tif",
            rng.integers(0, 4095, (3, 100, 100), dtype=np.uint16),
            photometric="minisblack",
        )
        rows.append({"channels": f"{i}.tif", "label": str(i % 3)})
    write_csv(folder / "many.csv", rows)
    command = [
        str(Path(sys.executable).parent / "idrcell"),
        "import-images",
        str(folder / "many.csv"),
        "--max-shard-samples",
        "2",
    ]
    killed = tmp_path / "killed"
    # The import parks itself after 7 samples (idrcell.testpoint), in the middle of its 4th shard.
    pause = {PAUSE_AFTER_VARIABLE: "sharded:7", PAUSE_DIR_VARIABLE: str(tmp_path / "pause")}
    process = subprocess.Popen(
        [*command, "--out", str(killed)],
        env={**os.environ, **pause},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "pause" / REACHED_FILE).exists():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    temporary, *complete = sorted(path.name for path in (killed / "shards").iterdir())  # "." sorts first
    assert complete == [f"idrcell-00000{i}.tar" for i in range(3)], complete
    assert temporary.startswith(".idrcell-000003.tar.tmp-"), temporary
    assert not (killed / "dataset.json").exists()  # an interrupted import is never taken as complete
    assert subprocess.run([*command, "--out", str(killed)], capture_output=True).returncode == 0
    assert subprocess.run([*command, "--out", str(tmp_path / "clean")], capture_output=True).returncode == 0
    assert snapshot(killed) == snapshot(tmp_path / "clean")
    assert verify_dataset(killed).ok


def run_bad(manifest: Path, out: Path, *extra: str):
    result = runner.invoke(app, ["import-images", str(manifest), "--out", str(out), *extra])
    return result, [line for line in result.stderr.splitlines() if line.strip()]


def test_manifest_problems_are_usage_errors_listed_one_line_each_with_nothing_written(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "ok.png")
    outside = tmp_path / "outside.png"
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(outside)
    rows = [
        {"key": "a", "channels": "ok.png", "channel_width": ""},
        {"key": "a", "channels": "ok.png", "channel_width": ""},  # duplicate key
        {"key": "b", "channels": "missing.png", "channel_width": ""},
        {"key": "c", "channels": "../outside.png", "channel_width": ""},
        {"key": "d", "channels": "ok.png", "channel_width": "wide"},
        {"key": "e", "channels": "", "channel_width": ""},
    ]
    write_csv(folder / "bad.csv", rows)
    out = tmp_path / "out"
    result, lines = run_bad(folder / "bad.csv", out)
    assert result.exit_code == 2
    assert len(lines) == 5 and all(line.startswith("error: bad.csv: row ") for line in lines), lines
    for needle in (
        "key 'a' is also the key of row 0",
        "no such file missing.png",
        "../outside.png leaves the manifest's folder",
        "channel_width 'wide'",
        "lists no channel files",
    ):
        assert sum(needle in line for line in lines) == 1, (needle, lines)
    assert not out.exists()
    # --allow-outside reads the file outside the folder.
    write_csv(folder / "outside.csv", [{"channels": str(outside)}])
    assert run_bad(folder / "outside.csv", out)[0].exit_code == 2 and not out.exists()
    result, _ = run_bad(folder / "outside.csv", out, "--allow-outside")
    assert result.exit_code == 0 and verify_dataset(out).ok
    # A manifest that is no table, and one without a channels column.
    (folder / "none.csv").write_text("label\nx\n")
    result, lines = run_bad(folder / "none.csv", tmp_path / "o2")
    assert result.exit_code == 2 and lines == [
        "error: " + str(folder / "none.csv") + ": a manifest needs a `channels` column (the channel files)"
    ]
    result, lines = run_bad(folder / "bad.txt", tmp_path / "o2")
    assert result.exit_code == 2 and len(lines) == 1 and not (tmp_path / "o2").exists()


def test_images_that_cannot_be_read_are_skipped_by_name_and_all_bad_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)).save(folder / "ok.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(folder / "small.png")
    Image.fromarray(np.zeros((20, 100), np.uint8)).save(folder / "tape.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    rows = [
        {"channels": "ok.png", "channel_width": ""},
        {"channels": "broken.png", "channel_width": ""},
        {"channels": "ok.png;small.png", "channel_width": ""},
        {"channels": "tape.png", "channel_width": "30"},
    ]
    write_csv(folder / "some.csv", rows)
    out = tmp_path / "out"
    result, lines = run_bad(folder / "some.csv", out)
    assert result.exit_code == 0
    skipped = [line for line in lines if line.startswith("skipped ")]
    assert len(skipped) == 3, lines
    assert any("broken.png" in line for line in skipped)
    assert any("channels of different sizes" in line for line in skipped)
    assert any("width 100 is not a multiple of channel_width 30" in line for line in skipped)
    info = json.loads((out / "dataset.json").read_text())
    assert info["counts"]["samples"] == 1 and len(info["skipped"]) == 3
    assert verify_dataset(out).ok
    result, parallel = run_bad(folder / "some.csv", tmp_path / "parallel", "--jobs", "2")
    assert result.exit_code == 0 and sorted(parallel) == sorted(lines)  # the same skips from workers
    assert snapshot(tmp_path / "parallel") == snapshot(out)
    write_csv(folder / "all_bad.csv", rows[1:])
    result, lines = run_bad(folder / "all_bad.csv", tmp_path / "none")
    assert result.exit_code == 2 and lines[-1].startswith("error: nothing to import")
    assert (
        not list((tmp_path / "none").glob("shards/*.tar"))
        and not (tmp_path / "none" / "dataset.json").exists()
    )
