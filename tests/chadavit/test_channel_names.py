"""Channel labels -> canonical names: the built-in table, a user's table, and `unknown` for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chadavit.channels import (
    UNKNOWN,
    ChannelNormaliser,
    ChannelTableError,
    build_vocabulary,
    canonical_name,
    read_channel_table,
)

DATA = Path(__file__).parent / "data"


def test_real_idr_labels_map_the_stain_and_leave_filter_names_unknown() -> None:
    labels = json.loads((DATA / "idr_channel_labels.json").read_text())["labels"]
    # DAPI is a DNA stain; "FITC-FilterWheel" names a filter (how it was imaged), not what it shows.
    assert [canonical_name(label) for label in labels] == ["dna", UNKNOWN, UNKNOWN]


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("Hoechst 33342", "dna"),
        ("DRAQ5", "dna"),
        ("  dapi ", "dna"),
        ("DAPI (405 nm)", "dna"),
        ("DAPI cycle 3", "dna"),
        ("Phalloidin-Alexa Fluor 568", "actin"),
        ("WGA AF555", "membrane"),
        ("EGFP", "gfp"),
        ("mNeonGreen", "gfp"),
        ("MitoTracker Deep Red", "mito"),
        ("Concanavalin A", "er"),
        ("SYTO 14", "rna"),
        ("Phalloidin/WGA", "agp"),
        ("alpha-tubulin", "tubulin"),
        ("Phase contrast", "phase"),
    ],
)
def test_common_stains_and_reporters(label: str, name: str) -> None:
    assert canonical_name(label) == name


@pytest.mark.parametrize("label", ["Cy5", "Ch3", "488", "channel 1", "", "GFP-ish", None, 3])
def test_labels_that_say_nothing_of_the_content_are_unknown(label: object) -> None:
    assert canonical_name(label) == UNKNOWN


def test_a_user_table_adds_names_and_takes_labels_over(tmp_path: Path) -> None:
    table = tmp_path / "vocab.yaml"
    table.write_text("nucleolus: [fibrillarin]\nmy dna: [dapi]\n")
    normaliser = ChannelNormaliser.with_file(table)
    assert normaliser("Fibrillarin") == "nucleolus"
    assert normaliser("DAPI") == "my dna"  # the user's entry wins
    assert normaliser("Hoechst") == "dna"  # the rest of the built-in table stays
    json_table = tmp_path / "vocab.json"
    json_table.write_text(json.dumps({"dna": ["my stain"]}))
    assert ChannelNormaliser.with_file(json_table)("My_Stain") == "dna"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dna, actin]", "non-empty mapping"),
        ("{}", "non-empty mapping"),
        ("unknown: [x]", "reserved"),
        ("DNA: [x]", "must be written as 'dna'"),
        ("dna: dapi", "list of non-empty strings"),
        ("dna: [dapi]\nnucleus: [DAPI]", "listed under 'dna' and 'nucleus'"),
        ("dna: [dapi", "not valid yaml"),
    ],
)
def test_bad_tables_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "vocab.yaml"
    path.write_text(text)
    with pytest.raises(ChannelTableError, match=message) as caught:
        read_channel_table(path)
    assert str(path) in str(caught.value)


def test_a_missing_table_is_named(tmp_path: Path) -> None:
    with pytest.raises(ChannelTableError, match=r"cannot read channel table .*nope\.yaml"):
        ChannelNormaliser.with_file(tmp_path / "nope.yaml")


def test_vocabulary_keeps_names_seen_often_enough_most_frequent_first() -> None:
    names = ["dna"] * 5 + ["actin"] * 3 + ["tubulin"] * 3 + ["mito"] + [UNKNOWN] * 9
    assert build_vocabulary(names, min_count=2) == ("dna", "actin", "tubulin")
    assert build_vocabulary(names, min_count=1) == ("dna", "actin", "tubulin", "mito")
