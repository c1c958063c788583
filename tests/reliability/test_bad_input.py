"""Bad input through the real command lines: one clear error, a non-zero exit, nothing half-written.

docs/reliability.md lists every case with its command, exit code and message; each test prints its
row (`pytest -s`), which is where those messages come from.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import torch

import chadavit
import idrcell.emulator.server as emulator_server
from chadavit.data.testing import corrupt_member
from chadavit_bench.datasets.synthetic import SyntheticConfig, write_synthetic
from idrcell.emulator import EmulatorServer

TINY_MODEL = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 64}


def run(rel, tool: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(rel.command(tool, *args), capture_output=True, text=True, env=env, timeout=300)


def report(case: str, result: subprocess.CompletedProcess, message: str) -> None:
    print(f"\n| {case} | {result.returncode} | {message} |")


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


# ----- idrcell ---------------------------------------------------------------------------------


def test_a_malformed_experiment_list_names_every_bad_line_and_writes_nothing(
    tmp_path: Path, rel, tiny_emulator_url: str
) -> None:
    listing = tmp_path / "bad.csv"
    listing.write_text("study,container,n_images\nidr0901-emu-mitosis,screenA,many\nidr0902-x,plateB,5\n")
    out = tmp_path / "out"
    result = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=rel.cli_env(tiny_emulator_url))
    message = rel.one_line_error(result)
    assert result.returncode == 2  # a usage error: the list it names is unusable, nothing was done
    assert f"error: 2 problems in {listing}:" in message
    assert "line 2: column 'n_images' must be an integer, got 'many'" in message
    assert "line 3: unknown container kind 'plateB'" in message
    assert not out.exists()
    report("malformed experiment CSV", result, message)


def test_an_unknown_study_is_named_and_a_corrected_row_then_builds(
    tmp_path: Path, rel, tiny_emulator_url: str
) -> None:
    listing, out = tmp_path / "list.csv", tmp_path / "out"
    listing.write_text("study,container,n_images\nidr0901-emu-mitozis,screenA,3\n")  # a typo
    env = rel.cli_env(tiny_emulator_url)
    result = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
    message = rel.one_line_error(result)
    assert result.returncode == 1
    assert "no screen named 'idr0901-emu-mitozis/screenA' on the server" in message
    assert "fix the experiment list" in message and "run the same command again" not in message
    kept = [p.name for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert not kept, kept  # no parameters, listing, journal or sample that would block the fixed row
    report("unknown study", result, message)
    # The same row, now with the screen's id: accepted (not refused as "staged with other parameters").
    listing.write_text("study,container,id,n_images\nidr0901-emu-mitozis,screenA,901,3\n")
    fixed = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
    assert fixed.returncode == 0, fixed.stderr


def test_twelve_channel_and_zero_size_images_are_skipped_and_counted(reference_build: Path) -> None:
    # Both images are in the tiny catalogue's first screen; the reference build ran through the CLI.
    info = json.loads((reference_build / "dataset.json").read_text())
    screen = "idr0901-emu-mitosis_screenA"
    assert info["stages"][screen]["skipped"] == {
        "forbidden": 1,
        "too_many_channels": 1,
        "unreadable_metadata": 1,
    }
    assert info["stages"][screen]["selected"] == 20  # the next images of the order took their places
    log = [json.loads(line) for line in (reference_build / "staging" / screen / "failures.jsonl").open()]
    details = {entry["reason"]: entry["detail"] for entry in log}
    assert details["too_many_channels"].endswith(", 12 channels"), details
    assert details["unreadable_metadata"].startswith("imgData: 0 x 0 px"), details
    print(f"\n| 12 channels | 0 | skipped: too_many_channels; {details['too_many_channels']} |")
    print(f"| 0 x 0 image | 0 | skipped: unreadable_metadata; {details['unreadable_metadata']} |")


def test_a_body_that_is_not_a_jpeg_is_retried_then_reported(tmp_path: Path, rel) -> None:
    listing, out = tmp_path / "list.csv", tmp_path / "out"
    listing.write_text("study,container,id,n_images\nidr0902-emu-organelles,experimentA,902,2\n")
    page = b"<html><body>Service temporarily unavailable</body></html>"
    # The emulator runs in this process: every render answers 200 with an HTML page.
    with (
        mock.patch.object(emulator_server, "encode_jpeg", lambda *args, **kwargs: page),
        EmulatorServer("tiny") as server,
    ):
        args = ["build", "-e", listing, "-o", out, "--retries", "2"]
        result = run(rel, "idrcell", *args, env=rel.cli_env(server.base_url))
    message = rel.one_line_error(result)
    assert result.returncode == 1
    assert "experiment(s) did not finish (idr0902-emu-organelles_experimentA)" in message
    assert "retries: not_jpeg 6" in " ".join(result.stdout.split())  # 2 images x 3 attempts
    staging = out / "staging" / "idr0902-emu-organelles_experimentA"
    failures = [json.loads(line) for line in (staging / "failures.jsonl").open()]
    assert {f["status"] for f in failures} == {"failed"} and len(failures) == 2
    expected = f"last error: not_jpeg: a {len(page)}-byte body of image/jpeg instead of a JPEG"
    assert expected in failures[0]["detail"]
    assert not list((staging / "samples").iterdir()) and not (out / "shards").exists()
    report("render body not a JPEG", result, message + " / failures.jsonl: " + failures[0]["detail"])


def test_a_shard_with_a_corrupt_member_fails_verify_naming_it(
    reference_build: Path, tmp_path: Path, rel
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(reference_build, copy, ignore=shutil.ignore_patterns("staging"))
    key = corrupt_member(copy / "shards" / "idrcell-000002.tar", "c00.png", sample_position=1)
    before = tree(copy)
    result = run(rel, "idrcell", "verify", copy)
    message = rel.one_line_error(result)
    assert result.returncode == 1
    assert f"idrcell-000002.tar: sample '{key}': channel 00 is not a readable PNG (" in message, message
    assert "bytes that are no image" in message
    assert "idrcell-000002.tar: checksum does not match" in message
    assert tree(copy) == before  # verify writes nothing
    report("shard with a corrupt member", result, message)


# ----- chadavit-bench --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-data")
    write_synthetic(root, ["cyclops"], SyntheticConfig(image_size=16))
    return root


def bench(rel, model: str | Path, data_root: Path, out: Path) -> subprocess.CompletedProcess:
    args = ["run", "knn", "-m", model, "--data-root", data_root, "-o", out, "--quick", "-d", "cyclops"]
    args += ["--img-size", "16"]
    return run(rel, "chadavit-bench", *args)


def test_a_model_dir_with_a_wrong_config(tmp_path: Path, bench_root: Path, rel) -> None:
    model_dir = tmp_path / "model"
    chadavit.create_model("chadavit_petit", **TINY_MODEL).save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "embed_dim": 48}))
    out = tmp_path / "out"
    result = bench(rel, model_dir, bench_root, out)
    message = rel.one_line_error(result)
    assert result.returncode == 2
    assert re.search(r"model\.safetensors has \d+ tensors of the wrong shape for chadavit_petit", message)
    assert "(weights != config): " in message and " more" in message and len(message) < 400
    assert not out.exists()
    report("model dir with a wrong config", result, message)


def test_a_released_checkpoint_of_another_architecture(tmp_path: Path, bench_root: Path, rel) -> None:
    # A Lightning file laid out like the authors' release, holding a chadavit_petit (pre-norm) backbone
    # instead of the released post-norm ChAda-ViT.
    petit = chadavit.create_model("chadavit_petit", **TINY_MODEL).state_dict()
    state = {f"{prefix}backbone.{name}": t for name, t in petit.items() for prefix in ("", "momentum_")}
    checkpoint = tmp_path / "other.ckpt"
    torch.save({"epoch": 1, "global_step": 5, "state_dict": state, "hyper_parameters": {}}, checkpoint)
    out = tmp_path / "out"
    result = bench(rel, checkpoint, bench_root, out)
    message = rel.one_line_error(result)
    assert result.returncode == 2
    assert f"{checkpoint} is not a ChAda-ViT backbone: missing keys" in message
    assert not out.exists()
    report("released checkpoint of another architecture", result, message)


def test_a_data_root_with_missing_files(tmp_path: Path, bench_root: Path, rel) -> None:
    root = tmp_path / "data"
    shutil.copytree(bench_root, root)
    victim = next(p for p in sorted((root / "cyclops").rglob("*.tif")))
    victim.unlink()
    out = tmp_path / "out"
    result = bench(rel, "random:chadavit_petit", root, out)
    message = rel.one_line_error(result)
    assert result.returncode == 2
    assert "nothing to run under" in message and "missing under" in message and victim.name in message
    assert not out.exists()
    report("bench data root with missing files", result, message)
