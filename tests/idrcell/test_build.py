"""Building datasets end to end against the emulator: contents, reruns, faults, kills, hostile names."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from idrcell.build import build
from idrcell.cli import app
from idrcell.dataset import ShardLimits
from idrcell.emulator import EmulatorServer, FaultConfig
from idrcell.experiments import load_experiments
from idrcell.merge import merge_stages
from idrcell.naming import is_safe_key
from idrcell.shards import read_tar
from idrcell.stats import dataset_stats
from idrcell.testpoint import PAUSE_AFTER_VARIABLE, PAUSE_DIR_VARIABLE, REACHED_FILE
from idrcell.verify import verify_dataset


def samples_of(out: Path) -> dict[str, dict]:
    """key -> sample JSON, read from the shards."""
    samples = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        for name, data in read_tar(shard):
            if name.endswith(".json"):
                meta = json.loads(data)
                samples[meta["key"]] = meta
    return samples


def test_a_small_build_holds_what_the_contract_promises(clean_build: Path, tiny_list: Path) -> None:
    report = verify_dataset(clean_build)
    assert report.ok, report.problems
    samples = samples_of(clean_build)
    assert report.samples == len(samples) == 60  # 3 experiments x 20 images
    by_experiment = Counter(meta["study"] for meta in samples.values())
    assert set(by_experiment.values()) == {20}
    assert {meta["n_channels"] for meta in samples.values()} == {1, 3, 10}
    screen = next(m for m in samples.values() if m["study"] == "idr0901-emu-mitosis")
    assert screen["key"] == f"idr0901-emu-mitosis_screenA_{screen['image_id']}"
    assert (
        screen["plate"] and screen["well"][0].isalpha() and screen["field"] >= 1 and screen["dataset"] is None
    )
    assert screen["imaging_method"] == "fluorescence microscopy" and screen["cell_line"] == "HeLa"
    assert [c["index"] for c in screen["channels"]] == [1, 2, 3] and screen["source"][
        "pixels_type"
    ] == "uint16"
    project = next(m for m in samples.values() if m["study"] == "idr0902-emu-organelles")
    assert project["plate"] is None and project["well"] is None and project["dataset"]
    assert project["cell_line"] is None  # missing annotation: null, never guessed
    painting = next(m for m in samples.values() if m["study"] == "idr0903-emu-painting")
    assert painting["imaging_method"] == "fluorescence microscopy; confocal microscopy"  # repeated key
    info = json.loads((clean_build / "dataset.json").read_text())
    skipped = info["stages"]["idr0901-emu-mitosis_screenA"]["skipped"]
    assert skipped == {"forbidden": 1, "too_many_channels": 1, "unreadable_metadata": 1}
    assert info["seed"] == 0 and info["experiments"][0]["study"] == "idr0901-emu-mitosis"
    index = pq.read_table(clean_build / "index.parquet").to_pylist()
    assert sorted(row["key"] for row in index) == sorted(samples)
    stats = dataset_stats(clean_build)
    assert stats["experiments"]["idr0903-emu-painting/screenA"] == {"samples": 20, "channels": 200}
    assert stats["channel_counts"] == {"1": 20, "3": 20, "10": 20}
    assert stats["imaging_methods"]["spinning disk confocal microscopy"] == 20


def test_a_finished_build_run_again_does_nothing(
    clean_build: Path, tiny_list: Path, tiny_emulator: EmulatorServer, snapshot
) -> None:
    before = snapshot(clean_build)
    tiny_emulator.reset_stats()
    runner = CliRunner()
    args = ["build", "-e", str(tiny_list), "-o", str(clean_build), "--base-url", tiny_emulator.base_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Nothing to do" in result.output
    assert sum(tiny_emulator.stats.requests.values()) == 0
    assert snapshot(clean_build) == before
    stats = runner.invoke(app, ["stats", str(clean_build), "--json"])
    assert json.loads(stats.output)["samples"] == 60
    verified = runner.invoke(app, ["verify", str(clean_build)])
    assert verified.exit_code == 0 and "OK: 60 samples" in verified.output


def test_one_stage_job_alone_equals_the_same_experiment_in_a_build(
    clean_build: Path, tiny_list: Path, tiny_emulator: EmulatorServer, tmp_path: Path
) -> None:
    name = "idr0902-emu-organelles_experimentA"
    args = ["stage", "-e", str(tiny_list), "--study", "idr0902-emu-organelles", "--container", "experimentA"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path), "--base-url", tiny_emulator.base_url])
    assert result.exit_code == 0, result.output
    alone, inside = tmp_path / "staging" / name, clean_build / "staging" / name
    assert (alone / "stage.json").read_bytes() == (inside / "stage.json").read_bytes()
    for sample in (inside / "samples").iterdir():
        assert (alone / "samples" / sample.name).read_bytes() == sample.read_bytes()
    assert sorted(p.name for p in (alone / "samples").iterdir()) == sorted(
        p.name for p in (inside / "samples").iterdir()
    )


@pytest.mark.slow
def test_a_build_with_faults_gives_the_same_bytes(
    clean_build: Path, tiny_list: Path, tmp_path: Path, make_config, snapshot
) -> None:
    faults = FaultConfig(rate=0.25, timeout_sleep_s=0.6, backoff_ms=20, retry_after_s=1, seed=11)
    with EmulatorServer("tiny", faults=faults) as server:
        config = make_config(server.base_url, timeout_s=0.4, max_retries=12)
        result = build(load_experiments(tiny_list), tiny_list, tmp_path, config, processes=2)
        injected = server.stats.faults
    assert result.complete, [s.error for s in result.stages]
    assert set(injected) == {"500", "502", "504", "timeout", "truncated", "concurrency", "429"}, injected
    assert sum(sum(s.retries.values()) for s in result.stages) >= sum(injected.values())
    assert snapshot(tmp_path) == snapshot(clean_build)


def test_images_that_keep_failing_hold_their_place_until_a_rerun(
    clean_build: Path, tiny_list: Path, tmp_path: Path, make_config, snapshot
) -> None:
    experiments = load_experiments(tiny_list)
    with EmulatorServer("tiny", faults=FaultConfig(rate=0.3, kinds=("concurrency",), seed=2)) as server:
        hopeless = make_config(server.base_url, max_retries=0)
        first = build(experiments, tiny_list, tmp_path, hopeless)
        assert not first.complete and not (tmp_path / "dataset.json").exists()
        assert sum(s.failed for s in first.stages) > 0
        failures = (tmp_path / "staging" / "idr0901-emu-mitosis_screenA" / "failures.jsonl").read_text()
        assert '"status": "failed"' in failures
        server.set_faults(FaultConfig())
        second = build(experiments, tiny_list, tmp_path, make_config(server.base_url))
    assert second.complete
    assert snapshot(tmp_path) == snapshot(clean_build)


@pytest.mark.slow
def test_sigkill_mid_build_then_rerun_gives_the_same_bytes(
    clean_build: Path, tiny_list: Path, tmp_path: Path, snapshot, env_for
) -> None:
    out = tmp_path / "out"
    # The build parks itself after 8 staged samples (idrcell.testpoint): the kill lands there.
    pause = {PAUSE_AFTER_VARIABLE: "staged:8", PAUSE_DIR_VARIABLE: str(tmp_path / "pause")}
    with EmulatorServer("tiny") as server:
        command = [
            str(Path(sys.executable).parent / "idrcell"),
            "build",
            "-e",
            str(tiny_list),
            "-o",
            str(out),
            "--jobs",
            "2",
        ]
        process = subprocess.Popen(
            command,
            env={**env_for(server.base_url), **pause},
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
        assert len(list(out.glob("staging/*/samples/*.tar"))) == 8
        staged_before = {
            int(line["image_id"])
            for journal in out.glob("staging/*/journal.jsonl")
            for line in map(json.loads, filter(None, journal.read_text().splitlines()))
            if line.get("status") == "staged"
        }
        assert staged_before and not (out / "dataset.json").exists()
        listed_before = {path.parent.name for path in out.glob("staging/*/listing.json")}
        server.reset_stats()
        rerun = subprocess.run(
            command, env=env_for(server.base_url), capture_output=True, text=True, timeout=120
        )
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        fetched_again = {
            int(url.split("/")[3]) for url in server.stats.urls if url.startswith("/webgateway/imgData/")
        }
        listing_urls = {
            "idr0901-emu-mitosis_screenA": "/api/v0/m/screens/901/plates/",
            "idr0902-emu-organelles_experimentA": "/api/v0/m/projects/902/datasets/",
            "idr0903-emu-painting_screenA": "/api/v0/m/screens/903/plates/",
        }
        listed_again = {
            name for name, url in listing_urls.items() if any(u.startswith(url) for u in server.stats.urls)
        }
    assert listed_before and not listed_before & listed_again  # cached listings are not listed again
    assert not staged_before & fetched_again  # nothing it already had was downloaded again
    assert snapshot(out) == snapshot(clean_build)
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert not leftovers


def test_merge_writes_equal_shuffled_shards_and_verify_catches_damage(
    clean_build: Path, tmp_path: Path, tiny_list: Path
) -> None:
    shutil.copytree(clean_build / "staging", tmp_path / "staging")
    result = merge_stages(load_experiments(tiny_list), tmp_path, seed=0, limits=ShardLimits(max_samples=7))
    assert result.summary.shards == 9 and result.summary.samples == 60
    sizes = json.loads((tmp_path / "dataset.json").read_text())["shards"]
    assert {shard["samples"] for shard in sizes} == {6, 7}
    first_shard = [m for m in samples_of(tmp_path).values()][:7]
    assert len({m["study"] for m in first_shard}) > 1  # experiments are mixed across shards
    assert verify_dataset(tmp_path).ok
    # Damage: flip a byte of one shard, drop a channel PNG from another, add an unlisted shard.
    shard0 = tmp_path / "shards" / "idrcell-000000.tar"
    data = bytearray(shard0.read_bytes())
    data[600] ^= 0xFF
    shard0.write_bytes(bytes(data))
    shard1 = tmp_path / "shards" / "idrcell-000001.tar"
    members = read_tar(shard1)
    dropped = next(name for name, _ in members if name.endswith(".c00.png"))
    with tarfile.open(shard1, "w") as archive:
        for name, payload in members:
            if name != dropped:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
    small = io.BytesIO()
    Image.new("L", (100, 100)).save(small, format="PNG")
    with tarfile.open(tmp_path / "shards" / "idrcell-000099.tar", "w") as archive:
        for name, payload in (("bad.key_1.json", b"{}"), ("x_1.c00.png", small.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    problems = "\n".join(verify_dataset(tmp_path).problems)
    assert "idrcell-000000.tar: checksum does not match" in problems
    assert "idrcell-000001.tar: checksum does not match" in problems
    assert "n_channels is" in problems and "PNGs" in problems
    assert "idrcell-000099.tar: not listed in dataset.json" in problems
    assert "unexpected member 'bad.key_1.json'" in problems
    assert "is 100 x 100 L, expected 224 x 224 L" in problems
    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 1


def test_hostile_names_never_escape_the_output_folder(tmp_path: Path, list_path, make_config) -> None:
    hostile = list_path("hostile")
    out = tmp_path / "out"
    with EmulatorServer("hostile") as server:
        result = build(load_experiments(hostile), hostile, out, make_config(server.base_url))
    assert result.complete, [s.error for s in result.stages]
    report = verify_dataset(out)
    assert report.ok and report.samples > 0, report.problems
    samples = samples_of(out)
    assert all(is_safe_key(key) for key in samples)
    assert any("/" in (m["plate"] or "") or "\x00" in (m["image_name"] or "") for m in samples.values())
    for path in out.rglob("*"):
        relative = path.relative_to(out)
        assert all(part.isascii() and ".." not in part and len(part) < 100 for part in relative.parts), (
            relative
        )
    assert not (tmp_path / "tmp").exists()


def test_large_planes_are_fetched_in_tiles(
    clean_build: Path, tiny_list: Path, tmp_path: Path, make_config
) -> None:
    from idrcell.stage import stage_experiment

    (experiment,) = [e for e in load_experiments(tiny_list) if e.container == "experimentA"]
    experiment = replace(experiment, n_images=4)
    with EmulatorServer("tiny") as server:
        config = replace(make_config(server.base_url), plane_limit=100, tile_size=64)
        result = stage_experiment(experiment, tmp_path, config)
        regions = server.stats.requests.get("render_image_region", 0)
    assert result.complete and result.selected == 4 and regions >= 4 * 4
    whole = clean_build / "staging" / experiment.name / "samples"
    for sample in (tmp_path / "staging" / experiment.name / "samples").iterdir():
        tiled_png = read_tar(sample)[1][1]
        whole_png = read_tar(whole / sample.name)[1][1]
        tiled = np.asarray(Image.open(io.BytesIO(tiled_png)), dtype=int)
        reference = np.asarray(Image.open(io.BytesIO(whole_png)), dtype=int)
        assert np.abs(tiled - reference).mean() < 3


def test_list_options_channels_planes_and_short_experiments(
    tiny_emulator: EmulatorServer, tmp_path: Path
) -> None:
    listing = tmp_path / "options.csv"
    listing.write_text(
        "study,container,n_images,channels,z\n"
        "idr0903-emu-painting,screenA,4,3;1,\n"  # two of ten channels, in this order
        "idr0902-emu-organelles,experimentA,500,,2\n",  # z=2 only exists in z-stacks; asks for too many
        encoding="utf-8",
    )
    out = tmp_path / "out"
    args = ["build", "-e", str(listing), "-o", str(out), "--base-url", tiny_emulator.base_url]
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    assert result.exit_code == 0, result.output
    samples = samples_of(out)
    painting = [m for m in samples.values() if m["study"] == "idr0903-emu-painting"]
    assert len(painting) == 4 and all([c["index"] for c in m["channels"]] == [3, 1] for m in painting)
    stacks = [m for m in samples.values() if m["study"] == "idr0902-emu-organelles"]
    catalogue = tiny_emulator.catalogue
    deep = [i for i in catalogue.container_images(catalogue.projects[0]) if i.size_z > 2]
    assert 0 < len(stacks) == len(deep) and all(m["source"]["z"] == 2 for m in stacks)
    info = json.loads((out / "dataset.json").read_text())
    skipped = info["stages"]["idr0902-emu-organelles_experimentA"]["skipped"]
    assert skipped == {
        "plane_out_of_range": len(catalogue.container_images(catalogue.projects[0])) - len(deep)
    }
    assert f"only {len(deep)} usable images of 500" in result.output
