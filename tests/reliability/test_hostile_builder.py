"""Hostile input for the builder, round two: decompression bombs, empty results, numbers that are not
numbers, answers without limits or with the wrong shape, and paths that are not what they claim.

Every case runs the real `idrcell` command (or `chadavit-train`) against the emulator, which runs in
this process so that a test can make one of its answers hostile. Each test names the case of
docs/reliability.md it proves; each failed on the code before these fixes (a traceback, an exit 0
for an empty result, or NaN written as JSON).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from PIL import Image

import idrcell.emulator.marshal as emulator_marshal
import idrcell.emulator.server as emulator_server
from chadavit.data.shards import RawSample, SampleError, decode_sample
from chadavit.data.testing import write_shards
from chadavit.train.testing import tiny_cli_args
from idrcell.build import build
from idrcell.client import ClientConfig
from idrcell.dataset import INDEX_SCHEMA
from idrcell.emulator import EmulatorServer
from idrcell.experiments import load_experiments
from idrcell.listing import STUDY_INFO_NS
from idrcell.stage import StageConfig

BOMB_SIDE = 60_000  # 3.6 gigapixels: 3.6 GB as 8-bit grey once decoded


# ----- helpers ---------------------------------------------------------------------------------


def bomb_png(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A small PNG whose header (IHDR, with a valid CRC) claims `width x height` pixels."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def bomb_jpeg(width: int = BOMB_SIDE, height: int = BOMB_SIDE) -> bytes:
    """A small, complete JPEG (SOI ... EOI) whose frame header claims `width x height` pixels."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def run(rel, tool: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(rel.command(tool, *args), capture_output=True, text=True, env=env, timeout=300)


def no_traceback(result: subprocess.CompletedProcess) -> str:
    """stdout + stderr as one line, asserted to hold no Python traceback."""
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]
    return " ".join((result.stdout + " " + result.stderr).split())


def replace_member(dataset: Path, shard_name: str, suffix: str, data: bytes, position: int = 0) -> str:
    """Put `data` in place of one sample's `suffix` member and fix the shard's sha256 in dataset.json,
    so that only the member's content is wrong; return the sample's key."""
    shard = dataset / "shards" / shard_name
    with tarfile.open(shard, "r:") as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    keys = list(dict.fromkeys(name.split(".", 1)[0] for name, _ in members))
    key = keys[position]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            content = data if name == f"{key}.{suffix}" else content
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    info_path = dataset / "dataset.json"
    info = json.loads(info_path.read_text())
    for record in info["shards"]:
        if record["name"] == shard_name:
            record["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()
            record["bytes"] = shard.stat().st_size
    info_path.write_text(json.dumps(info))
    return key


def copy_dataset(reference: Path, target: Path) -> Path:
    shutil.copytree(reference, target, ignore=shutil.ignore_patterns("staging"))
    return target


def write_list(path: Path, *rows: str) -> Path:
    path.write_text("study,container,id,n_images,channels\n" + "".join(row + "\n" for row in rows))
    return path


def patched_handler(name: str, replacement):
    """Patch one route handler of the emulator (before the server starts; routes bind at start).

    `replacement(request, normal)` returns the answer, or None for the normal one; `normal()` is
    the emulator's own answer to the request.
    """
    original = getattr(emulator_server._Emulator, name)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        answer = await replacement(request, lambda: original(self, request))
        return answer if answer is not None else await original(self, request)

    return mock.patch.object(emulator_server._Emulator, name, handler)


def first_image_only(answer):
    """A handler replacement that answers `answer(request)` for the first image id it sees only."""
    chosen: list[str] = []

    async def replacement(request: web.Request, normal):
        image_id = request.match_info["id"]
        if not chosen:
            chosen.append(image_id)
        return answer(request) if image_id == chosen[0] else None

    replacement.chosen = chosen  # type: ignore[attr-defined]
    return replacement


def staged_samples(out: Path, experiment: str) -> list[dict]:
    """Every KEY.json staged for an experiment, parsed as strict JSON."""
    records = []
    for sample in sorted((out / "staging" / experiment / "samples").glob("*.tar")):
        with tarfile.open(sample) as tar:
            for member in tar:
                if member.name.endswith(".json"):
                    text = tar.extractfile(member).read()  # type: ignore[union-attr]
                    records.append(json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in JSON")))
    return records


def failures(out: Path, experiment: str) -> list[dict]:
    path = out / "staging" / experiment / "failures.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ----- 2. decompression bombs -----------------------------------------------------------------


def test_a_render_bomb_is_skipped_counted_and_named_and_a_rerun_has_nothing_to_do(
    tmp_path: Path, rel
) -> None:
    listing = write_list(tmp_path / "list.csv", "idr0902-emu-organelles,experimentA,902,3,")
    out = tmp_path / "out"
    bomb = first_image_only(lambda request: web.Response(body=bomb_jpeg(), content_type="image/jpeg"))
    with patched_handler("render_image", bomb), EmulatorServer("tiny") as server:
        env = rel.cli_env(server.base_url)
        first = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
        again = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
    text = no_traceback(first)
    assert first.returncode == 0, text
    assert "oversized_pixels 1" in text
    info = json.loads((out / "dataset.json").read_text())
    stage = info["stages"]["idr0902-emu-organelles_experimentA"]
    assert stage["selected"] == 3 and stage["skipped"] == {"oversized_pixels": 1}
    (logged,) = failures(out, "idr0902-emu-organelles_experimentA")
    assert logged["reason"] == "oversized_pixels" and logged["image_id"] == int(bomb.chosen[0])
    assert f"image {bomb.chosen[0]}: channel 1: the JPEG header declares 60000 x 60000 px" in logged["detail"]
    assert again.returncode == 0 and "Nothing to do" in no_traceback(again)
    print(f"\n| render bomb | 0 | skipped: oversized_pixels 1; {logged['detail']} |")


def test_verify_names_a_bomb_png_without_decoding_it(reference_build: Path, tmp_path: Path, rel) -> None:
    copy = copy_dataset(reference_build, tmp_path / "copy")
    key = replace_member(copy, "idrcell-000001.tar", "c00.png", bomb_png(), position=1)
    result = run(rel, "idrcell", "verify", copy)
    text = no_traceback(result)
    assert result.returncode == 1, text
    expected = (
        f"idrcell-000001.tar: sample '{key}': channel 00 is not a readable PNG (the PNG header declares"
    )
    assert expected in text and "60000 x 60000 px" in text
    print(f"\n| verify: a bomb PNG | 1 | {text[-300:]} |")


def test_training_skips_a_bomb_png_naming_the_sample(tmp_path: Path, rel) -> None:
    raw = RawSample("idr0001-x_screenA_7", "idrcell-000000.tar", 0, {"json": b'{"n_channels": 1}'})
    raw.members["c00.png"] = bomb_png()
    with pytest.raises(SampleError, match=r"sample 'idr0001-x_screenA_7': c00.png declares 60000 x 60000"):
        decode_sample(raw, image_size=64)
    data = tmp_path / "data"
    write_shards(data, [4, 4], channel_counts=(1, 2), image_size=64)
    shard = sorted((data / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]
    key = members[0][0].split(".", 1)[0]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            content = bomb_png() if name == f"{key}.c00.png" else content
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    trained = run(rel, "chadavit-train", *tiny_cli_args(data, tmp_path / "run", epochs=1))
    text = no_traceback(trained)
    assert trained.returncode == 0, text
    assert key in text and "declares 60000 x 60000" in text  # the skip names the sample
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_import_hf_skips_and_names_bombs_twelve_channels_huge_ids_and_garbage(tmp_path: Path, rel) -> None:
    rng = np.random.default_rng(0)
    good = _png(rng.integers(0, 255, (224, 224), dtype=np.uint8))
    huge = 10**30
    files = {
        "part_0/screen_5_1_0.png": good,
        "part_0/screen_5_1_1.png": good,
        "part_0/screen_5_2_0.png": bomb_png(),  # a decompression bomb
        **{f"part_0/screen_5_3_{c}.png": good for c in range(12)},  # 12 channels: the format allows 10
        f"part_0/screen_5_{huge}_0.png": good,  # an id that no int64 holds
        "part_1/screen_5_4_0.png": b"<html>not a png</html>",
    }
    for relative, content in files.items():
        path = tmp_path / "hf" / "imgs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    out = tmp_path / "out"
    result = run(rel, "idrcell", "import-hf", tmp_path / "hf", "-o", out)
    text = no_traceback(result)
    assert result.returncode == 0, text
    assert "skipped screen_5_3: screen 5 image 3: 12 channels, more than the 10 the format allows" in text
    assert f"screen 5 image {huge}: an id above 2^63 - 1" in text
    assert "part_0/screen_5_2_0.png: the PNG header declares 60000 x 60000 px" in text
    assert "part_1/screen_5_4_0.png: 22 bytes that are no PNG or JPEG" in text
    info = json.loads((out / "dataset.json").read_text())
    assert info["counts"]["samples"] == 1 and len(info["skipped"]) == 4
    assert run(rel, "idrcell", "verify", out).returncode == 0
    # Nothing usable at all: an error, and no shard of empty tars is left behind.
    (tmp_path / "hf" / "imgs" / "part_0" / "screen_5_1_0.png").write_bytes(bomb_png())
    (tmp_path / "hf" / "imgs" / "part_0" / "screen_5_1_1.png").unlink()
    empty = run(rel, "idrcell", "import-hf", tmp_path / "hf", "-o", tmp_path / "empty")
    assert empty.returncode != 0 and "nothing to import" in no_traceback(empty)
    assert not list((tmp_path / "empty").rglob("*.tar"))
    print(f"\n| import-hf: bomb, 12 channels, id 10^30, garbage | 0 | {text[-400:]} |")


# ----- 3. an empty result is an error ------------------------------------------------------------


def test_an_experiment_that_yields_nothing_fails_naming_why_and_a_fixed_row_then_builds(
    tmp_path: Path, rel, tiny_emulator_url: str
) -> None:
    # Channel 11 of the tiny catalogue's 10-channel screen: every image lacks it.
    listing = write_list(tmp_path / "list.csv", "idr0903-emu-painting,screenA,903,3,11")
    out = tmp_path / "out"
    env = rel.cli_env(tiny_emulator_url)
    result = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
    text = no_traceback(result)
    assert result.returncode == 1, text
    assert "idr0903-emu-painting/screenA: none of its" in text and "(skipped: missing_channel" in text
    assert "Wrote 0 samples" not in text and not (out / "dataset.json").exists()
    print(f"\n| channels column asks for channel 11 of 10 | 1 | {text[-300:]} |")
    # The same row as a condor stage job: bad input, so exit 2 and HTCondor holds it (no retry loop).
    args = ["stage", "-e", listing, "--study", "idr0903-emu-painting", "--container", "screenA"]
    staged = run(rel, "idrcell", *args, "-o", tmp_path / "job", env=env)
    assert staged.returncode == 2 and "(skipped: missing_channel" in no_traceback(staged)
    write_list(listing, "idr0903-emu-painting,screenA,903,3,10;1")  # the corrected row, same OUT
    fixed = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=env)
    assert fixed.returncode == 0, no_traceback(fixed)
    assert json.loads((out / "dataset.json").read_text())["counts"]["samples"] == 3


def test_plates_whose_ids_are_strings_make_an_empty_experiment_that_says_so(tmp_path: Path, rel) -> None:
    original = emulator_marshal.plate

    def string_ids(base, item):
        answer = original(base, item)
        return {**answer, "@id": str(answer["@id"])}

    listing = write_list(tmp_path / "list.csv", "idr0901-emu-mitosis,screenA,901,3,")
    with mock.patch.object(emulator_marshal, "plate", string_ids), EmulatorServer("tiny") as server:
        result = run(
            rel, "idrcell", "build", "-e", listing, "-o", tmp_path / "out", env=rel.cli_env(server.base_url)
        )
    text = no_traceback(result)
    assert result.returncode == 1, text
    assert "the server lists no image under screen 901" in text
    assert "malformed item(s) were left out (e.g. plate" in text and "has an @id that is a string" in text
    print(f"\n| plate ids are strings | 1 | {text[-300:]} |")


def test_verify_refuses_an_empty_dataset(tmp_path: Path, rel) -> None:
    out = tmp_path / "empty"
    (out / "shards").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([], schema=INDEX_SCHEMA), out / "index.parquet")
    info = {"schema": "idrcell-v1", "shards": [], "counts": {"samples": 0, "shards": 0, "channels": 0}}
    (out / "dataset.json").write_text(json.dumps(info))
    result = run(rel, "idrcell", "verify", out)
    text = no_traceback(result)
    assert result.returncode == 1 and "the dataset holds no sample" in text, text
    assert "OK" not in text


# ----- 4. values that are not numbers ----------------------------------------------------------


def test_nan_and_overflowing_numbers_from_the_server_are_nulled_counted_and_never_written(
    tmp_path: Path, rel
) -> None:
    original = emulator_marshal.img_data

    def hostile(catalogue, item):
        answer = original(catalogue, item)
        channels = answer["channels"]
        channels[0]["emissionWave"] = math.nan
        channels[1]["emissionWave"] = 10**400  # an OverflowError for float()
        channels[2]["window"]["start"] = math.inf
        return answer

    listing = write_list(tmp_path / "list.csv", "idr0901-emu-mitosis,screenA,901,2,")
    out = tmp_path / "out"
    with mock.patch.object(emulator_marshal, "img_data", hostile), EmulatorServer("tiny") as server:
        result = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=rel.cli_env(server.base_url))
    text = no_traceback(result)
    assert result.returncode == 0, text
    assert "channel 1 emissionWave is nan, not a finite number" in text  # the warning, per image
    records = staged_samples(out, "idr0901-emu-mitosis_screenA")  # strict JSON, or the test fails
    assert len(records) == 2
    for record in records:
        first, second, third = record["channels"]
        assert first["emission_wavelength"] is None and second["emission_wavelength"] is None
        assert third["window"] is None and first["window"] is not None
    nulled = [f for f in failures(out, "idr0901-emu-mitosis_screenA") if f["status"] == "nulled"]
    assert (
        len(nulled) == 2
        and "channel 2 emissionWave is 100000000000...(401 characters)" in nulled[0]["detail"]
    )
    stage = json.loads((out / "staging" / "idr0901-emu-mitosis_screenA" / "stage.json").read_text())
    assert stage["nulled_values"] == 2
    # ... and the summary says so: the table's `nulled` column and the totals line
    assert "nulled" in text and "images with nulled values 2;" in " ".join(text.split())
    assert run(rel, "idrcell", "verify", out).returncode == 0
    print(f"\n| emissionWave NaN and 10^400, window start Infinity | 0 | {nulled[0]['detail']} |")


def test_verify_rejects_json_that_is_not_strict(reference_build: Path, tmp_path: Path, rel) -> None:
    copy = copy_dataset(reference_build, tmp_path / "copy")
    with tarfile.open(copy / "shards" / "idrcell-000000.tar") as tar:
        member = next(m for m in tar if m.name.endswith(".json"))
        meta = json.loads(tar.extractfile(member).read())  # type: ignore[union-attr]
    meta["channels"][0]["emission_wavelength"] = math.nan
    key = replace_member(copy, "idrcell-000000.tar", "json", json.dumps(meta).encode())
    result = run(rel, "idrcell", "verify", copy)
    text = no_traceback(result)
    assert result.returncode == 1, text
    assert f"sample '{key}': the JSON record does not parse (NaN is not JSON" in text


# ----- 6. answers without limits or with the wrong shape ---------------------------------------


def test_answers_past_the_size_cap_are_skipped_unread(tmp_path: Path) -> None:
    cap = 100_000
    seen: list[str] = []

    async def oversized(request: web.Request, normal) -> web.StreamResponse | None:
        image_id = request.match_info["id"]
        if image_id not in seen:
            seen.append(image_id)
        if seen.index(image_id) >= 2:
            return None
        body = (await normal()).body
        padded = body + b" " * 10 * cap  # still valid JSON, ten times the cap
        if seen.index(image_id) == 0:  # the size is declared in Content-Length
            return web.Response(body=padded, content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})  # chunked, no length
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(padded), 8192):
            await response.write(padded[start : start + 8192])
        await response.write_eof()
        return response

    listing = write_list(tmp_path / "list.csv", "idr0902-emu-organelles,experimentA,902,3,")
    with patched_handler("img_data", oversized), EmulatorServer("tiny") as server:
        client = ClientConfig(
            base_url=server.base_url, timeout_s=5, backoff_base_s=0.01, max_response_bytes=cap
        )
        result = build(load_experiments(listing), listing, tmp_path / "out", StageConfig(client=client))
    assert result.complete
    (stage,) = result.stages
    assert stage.skipped == {"response_too_large": 2} and stage.selected == 3
    logged = {
        f["image_id"]: f["detail"] for f in failures(tmp_path / "out", "idr0902-emu-organelles_experimentA")
    }
    assert "bytes, above the cap of 100000 bytes" in logged[int(seen[0])]
    assert "goes on past 100000 bytes" in logged[int(seen[1])]
    # Read no further than the cap: two capped answers, then three images' small JSON and pixels.
    assert stage.downloaded_bytes < 2 * cap + 3 * 100_000, stage.downloaded_bytes


def test_a_listing_whose_total_count_overflows_fails_the_experiment_naming_it(tmp_path: Path, rel) -> None:
    async def overflowing(request: web.Request, normal) -> web.Response:
        page = json.loads((await normal()).body)
        text = json.dumps(page).replace(f'"totalCount": {page["meta"]["totalCount"]}', '"totalCount": 1e400')
        return web.Response(text=text, content_type="application/json")

    listing = write_list(tmp_path / "list.csv", "idr0901-emu-mitosis,screenA,901,2,")
    with patched_handler("screen_plates", overflowing), EmulatorServer("tiny") as server:
        result = run(
            rel, "idrcell", "build", "-e", listing, "-o", tmp_path / "out", env=rel.cli_env(server.base_url)
        )
    text = no_traceback(result)
    assert result.returncode == 1, text
    assert "idr0901-emu-mitosis/screenA: the server answered a malformed listing" in text
    assert "a listing without data/meta.totalCount/meta.limit" in text


def test_a_malformed_study_annotation_is_ignored_with_a_warning(tmp_path: Path, rel) -> None:
    original = emulator_marshal.annotations

    def malformed(item):
        answer = original(item)
        broken = {"ns": STUDY_INFO_NS, "link": "x", "values": 5}
        return {**answer, "annotations": [broken, {"ns": STUDY_INFO_NS, "values": 5}, *answer["annotations"]]}

    listing = write_list(tmp_path / "list.csv", "idr0901-emu-mitosis,screenA,901,2,")
    out = tmp_path / "out"
    with mock.patch.object(emulator_marshal, "annotations", malformed), EmulatorServer("tiny") as server:
        result = run(rel, "idrcell", "build", "-e", listing, "-o", out, env=rel.cli_env(server.base_url))
    text = no_traceback(result)
    assert result.returncode == 0, text
    assert "annotation 0: link is a string ('x'), expected an object" in text
    assert "annotation 1: values is a number (5), expected a list" in text
    (record, _) = staged_samples(out, "idr0901-emu-mitosis_screenA")
    assert record["imaging_method"] is not None  # from the well-formed annotation
    print(f"\n| study annotation link 'x', values 5 | 0 | {text[:300]} |")


# ----- 8. one line where a traceback was -------------------------------------------------------


def test_paths_that_are_not_what_they_claim_get_one_line(
    reference_build: Path, tmp_path: Path, rel, tiny_emulator_url: str
) -> None:
    env = rel.cli_env(tiny_emulator_url)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = {
        "experiment list is a directory": (
            ["build", "-e", tmp_path, "-o", tmp_path / "out"],
            2,
            "it is a directory, not a CSV file",
        ),
        "build OUT is a file": (
            ["build", "-e", rel.TINY_LIST, "-o", a_file],
            2,
            f"the output folder {a_file} is a file",
        ),
        "import-hf OUT is a file": (["import-hf", tmp_path, "-o", a_file], 2, "is a file"),
    }
    for case, (args, code, expected) in cases.items():
        result = run(rel, "idrcell", *args, env=env)
        text = no_traceback(result)
        assert result.returncode == code and expected in text, (case, text)
        assert "run the same command again" not in text, case
        print(f"\n| {case} | {code} | {text[-200:]} |")
    assert a_file.read_text() == "not a folder"


@pytest.mark.parametrize(
    "case",
    [
        "a dataset.json that is a list",
        "a dataset.json of wrong types",
        "a shard that is a directory",
        "a file",
    ],
)
def test_verify_names_what_is_wrong_with_a_damaged_dataset(
    case: str, reference_build: Path, tmp_path: Path, rel
) -> None:
    copy = copy_dataset(reference_build, tmp_path / "copy")
    info_path = copy / "dataset.json"
    target = copy
    if case == "a dataset.json that is a list":
        info_path.write_text("[1, 2]")
        expected = "dataset.json: holds list, not an object"
    elif case == "a dataset.json of wrong types":
        info = json.loads(info_path.read_text())
        info["counts"] = "many"
        info["shards"][0]["samples"] = "4"
        info["shards"][1] = {"name": 5}
        info_path.write_text(json.dumps(info))
        expected = "'counts' is 'many', not an object"
    elif case == "a shard that is a directory":
        shard = copy / "shards" / "idrcell-000003.tar"
        shard.unlink()
        shard.mkdir()
        expected = "shards/idrcell-000003.tar: not a file"
    else:
        target = copy / "index.parquet"
        expected = "not a directory"
    from idrcell.verify import verify_dataset

    report = verify_dataset(target)  # the library, whatever the CLI checks first
    assert not report.ok and any(expected in problem for problem in report.problems), report.problems
    result = run(rel, "idrcell", "verify", target)
    assert result.returncode in (1, 2) and expected in no_traceback(result)
