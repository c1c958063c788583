"""Keys stay within docs/format.md's 88 characters: an image id too long for its key is a named skip.

OMERO image ids are int64; IDR's have 7 digits today. With two 36-character parts (the longest kept
verbatim) a key has room for 14 digits, so ids from 10^14 on would give keys the contract forbids.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from idrcell.build import build
from idrcell.emulator import EmulatorServer, load_catalogue
from idrcell.emulator.catalogue_build import _Ids
from idrcell.experiments import load_experiments
from idrcell.naming import MAX_KEY_LENGTH, KeyTooLongError, is_safe_key, sample_key
from idrcell.shards import read_tar
from idrcell.verify import verify_dataset

LONG_STUDY = "s" * 36
LONG_CONTAINER = "screen" + "a" * 30  # a Screen, 36 characters


@pytest.mark.parametrize("image_id", [10**14, 10**15, 2**63 - 1])
def test_an_id_too_long_for_the_key_is_refused_naming_it(image_id: int) -> None:
    with pytest.raises(KeyTooLongError, match=f"image id {image_id} gives a key of .* more than 88"):
        sample_key(LONG_STUDY, LONG_CONTAINER, image_id)
    # Short names leave room: the same id is a valid key there, unchanged by the limit.
    assert sample_key("idr0002-heriche-condensation", "screenA", image_id).endswith(f"_{image_id}")


def test_the_longest_key_is_accepted_and_verify_agrees_on_the_limit() -> None:
    longest = sample_key(LONG_STUDY, LONG_CONTAINER, 10**14 - 1)
    assert len(longest) == MAX_KEY_LENGTH == 88 and is_safe_key(longest)
    assert not is_safe_key(longest + "9")  # what `idrcell verify` reports as an unsafe key


def test_images_with_ids_too_long_for_their_key_are_skipped_by_name(
    tmp_path: Path, make_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny catalogue with image ids starting 10 below 10^14: the first 10 fit, the rest do not.
    first = 10**14 - 10
    monkeypatch.setitem(_Ids._BASES, "image", first)
    catalogue = load_catalogue("tiny")
    screen = next(item for item in catalogue.screens if item.id == 901)
    listed = sorted(image.id for image in catalogue.container_images(screen))
    assert listed[0] == first and listed[-1] >= 10**14
    experiments = tmp_path / "list.csv"
    experiments.write_text(f"study,container,id,n_images\n{LONG_STUDY},{LONG_CONTAINER},901,{len(listed)}\n")
    with EmulatorServer(catalogue) as server:
        result = build(
            load_experiments(experiments), experiments, tmp_path / "out", make_config(server.base_url)
        )
    assert result.complete, result.stages
    out = tmp_path / "out"
    info = json.loads((out / "dataset.json").read_text())
    (stage,) = info["stages"].values()
    too_long = [i for i in listed if i >= 10**14]
    assert stage["skipped"]["key_too_long"] == len(too_long)
    keys = [name.split(".")[0] for shard in (out / "shards").glob("*.tar") for name, _ in read_tar(shard)]
    assert keys and all(len(key) <= 88 and int(key.rsplit("_", 1)[1]) < 10**14 for key in keys)
    failures = (out / "staging").rglob("failures.jsonl")
    lines = [json.loads(line) for path in failures for line in path.read_text().splitlines()]
    named = [line for line in lines if line["reason"] == "key_too_long"]
    assert len(named) == len(too_long) and f"image id {too_long[0]} gives a key of 89" in str(named)
    report = verify_dataset(out)
    assert report.ok, report.problems
