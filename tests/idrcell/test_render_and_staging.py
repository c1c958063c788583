"""Pixels (decode, anti-aliased resize, stable PNG), safe keys, and the staging journal's repairs."""

from __future__ import annotations

import io
import json
import string

import numpy as np
import pytest
from PIL import Image

from idrcell.journal import JournalEntry, StagingDir
from idrcell.naming import is_safe_key, sample_key
from idrcell.render import IMAGE_SIZE, PixelError, is_complete_jpeg, render_channel
from idrcell.shards import sample_members, tar_bytes


def jpeg(plane: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(plane).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.mode == "L"
        return np.asarray(image)


def test_resize_is_anti_aliased_and_the_png_is_stable() -> None:
    # A one-pixel checkerboard: plain subsampling would alias it to all-black or all-white.
    checker = ((np.indices((1120, 1120)).sum(axis=0) % 2) * 255).astype(np.uint8)
    source = jpeg(checker, quality=100)
    png = render_channel([(0, 0, source)], 1120, 1120)
    plane = decode_png(png)
    assert plane.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert abs(float(plane.mean()) - 127.5) < 6 and plane.std() < 12
    assert render_channel([(0, 0, source)], 1120, 1120) == png  # same input, same bytes


def test_non_square_fields_are_resized_not_cropped_and_tiles_stitch() -> None:
    plane = np.zeros((300, 600), dtype=np.uint8)
    plane[:, 300:] = 200  # right half bright
    whole = decode_png(render_channel([(0, 0, jpeg(plane))], 600, 300))
    assert whole[:, :100].mean() < 10 and whole[:, 124:].mean() > 190
    tiles = [(x, 0, jpeg(plane[:, x : x + 256])) for x in range(0, 600, 256)]
    stitched = decode_png(render_channel(tiles, 600, 300))
    assert np.abs(stitched.astype(int) - whole.astype(int)).mean() < 1.5


def test_cut_jpegs_are_detected() -> None:
    data = jpeg(np.full((64, 64), 90, dtype=np.uint8))
    assert is_complete_jpeg(data) and not is_complete_jpeg(data[: len(data) // 2])
    with pytest.raises(PixelError):
        render_channel([(0, 0, b"\xff\xd8 not a jpeg \xff\xd9")], 64, 64)


@pytest.mark.parametrize(
    "study",
    [
        "../../etc/passwd",
        "/abs/path",
        "a.b.c",
        "nul\x00byte",
        "細胞-🧫",
        "x" * 500,
        "",
        "-leading",
        "ok-name",
    ],
)
def test_keys_are_safe_whatever_the_names(study: str) -> None:
    key = sample_key(study, "screen/A..", 1938559)
    assert is_safe_key(key), key
    assert "." not in key and "/" not in key and key.endswith("_1938559")


# docs/format.md, checked without the production pattern: only A-Z a-z 0-9 - _, at most 88 characters.
KEY_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize("image_id", [0, 1938559, 10**13 - 1, 10**14 - 1])
@pytest.mark.parametrize("container", ["screenA", "c" * 36, "x" * 37, "細胞/../" * 20])
@pytest.mark.parametrize("study", ["idr0002-heriche-condensation", "s" * 36, "s" * 500, "a.b\x00c"])
def test_keys_keep_the_documented_length_and_characters(study: str, container: str, image_id: int) -> None:
    key = sample_key(study, container, image_id)
    assert len(key) <= 88, (len(key), key)
    assert set(key) <= KEY_CHARACTERS, set(key) - KEY_CHARACTERS
    # With its longest member name it still fits a 100-byte USTAR name field.
    assert len(f"{key}.c11.png".encode("ascii")) <= 100


def test_different_unsafe_names_never_share_a_key() -> None:
    names = ["a/b", "a-b", "a.b", "a_b", "a b", "a\x00b"]
    keys = {sample_key(name, "screenA", 1) for name in names}
    assert len(keys) == len(names)
    assert (
        sample_key("idr0002-heriche-condensation", "screenA", 5) == "idr0002-heriche-condensation_screenA_5"
    )


def _staged_sample(staging: StagingDir, image_id: int) -> None:
    key = f"s_c_{image_id}"
    meta = {"key": key, "image_id": image_id, "n_channels": 1}
    png = render_channel([(0, 0, jpeg(np.zeros((32, 32), dtype=np.uint8)))], 32, 32)
    staging.sample_path(image_id).write_bytes(tar_bytes(sample_members(key, meta, [png])))


def test_the_journal_repairs_what_a_kill_leaves(tmp_path) -> None:
    staging = StagingDir(tmp_path / "exp")
    with staging.locked():
        staging.open_journal()
        _staged_sample(staging, 1)
        staging.record(JournalEntry(1, "staged", key="s_c_1", n_channels=1))
        staging.record(JournalEntry(2, "skipped", reason="forbidden"))
        staging.record(JournalEntry(3, "staged", key="s_c_3", n_channels=1))  # its file is gone
        staging.close_journal()
    _staged_sample(staging, 4)  # renamed into place just before the kill, never journaled
    staging.sample_path(5).write_bytes(b"garbage")  # cannot happen with atomic writes; dropped anyway
    with open(staging.journal_file, "a", encoding="utf-8") as handle:
        handle.write('{"image_id": 6, "sta')  # a line cut by SIGKILL
    (staging.samples / ".7.tar.tmp-123-0").write_bytes(b"half")  # a temporary file of a killed writer
    reopened = StagingDir(tmp_path / "exp")
    with reopened.locked():
        entries = reopened.open_journal()
    assert sorted(entries) == [1, 2, 4]
    assert entries[4] == JournalEntry(4, "staged", key="s_c_4", n_channels=1)
    assert not staging.sample_path(5).exists()
    assert not list(staging.samples.glob(".*tmp*"))
    lines = [json.loads(line) for line in staging.journal_file.read_text().splitlines()]
    assert sorted(line["image_id"] for line in lines) == [1, 2, 4]


def test_a_stage_refuses_to_continue_with_other_parameters(tmp_path) -> None:
    staging = StagingDir(tmp_path / "exp")
    with staging.locked():
        staging.check_params({"seed": 0, "experiment": {"n_images": "20"}})
        staging.check_params({"seed": 0, "experiment": {"n_images": "20"}})
        with pytest.raises(ValueError, match="different parameters"):
            staging.check_params({"seed": 1, "experiment": {"n_images": "20"}})
