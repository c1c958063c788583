"""Channel embedding by name: the vocabulary in the model, names at the call, position independence."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest
import torch

import chadavit
from chadavit import ChannelBatch, NamedImage, collate
from chadavit.hub import ModelFileError

VOCAB = ["dna", "actin", "tubulin", "mito"]
NAMES = [["dna", "actin", "tubulin"], ["mito", "dna"], ["tubulin"]]


@pytest.fixture
def name_model(tiny_model):
    return tiny_model(channel_embedding="name", channel_vocab=VOCAB)


def test_permuting_channels_with_their_names_keeps_the_embedding(name_model, random_images) -> None:
    images = random_images([3, 2, 1])
    reference = name_model(images, channel_names=NAMES)
    generator = torch.Generator().manual_seed(1)
    for _ in range(3):
        permuted_images, permuted_names = [], []
        for image, names in zip(images, NAMES, strict=True):
            order = torch.randperm(image.shape[0], generator=generator).tolist()
            permuted_images.append(image[order])
            permuted_names.append([names[i] for i in order])
        moved = name_model(permuted_images, channel_names=permuted_names)
        torch.testing.assert_close(moved, reference, atol=1e-5, rtol=0)


def test_slot_models_do_depend_on_the_order(tiny_model, random_images) -> None:
    """The property above is the name mode's: the paper's slot embedding sees positions."""
    for mode, vocab in (("slot", None), ("slot+name", VOCAB)):
        model = tiny_model(channel_embedding=mode, channel_vocab=vocab)
        image = random_images([3])[0]
        first = model([image], channel_names=[NAMES[0]])
        swapped = model([image[[2, 0, 1]]], channel_names=[[NAMES[0][i] for i in (2, 0, 1)]])
        assert (first - swapped).abs().max() > 1e-4


@pytest.mark.parametrize("mode", ["name", "slot+name"])
def test_padded_and_padding_free_agree_with_names(mode, tiny_model, random_images) -> None:
    model = tiny_model(channel_embedding=mode, channel_vocab=VOCAB)
    images = random_images([3, 2, 1])
    free = model.forward_features(images, channel_names=NAMES)
    padded = model.forward_features(images, padded=True, channel_names=NAMES)
    torch.testing.assert_close(free.cls, padded.cls, atol=1e-5, rtol=0)
    for a, b in zip(free.patch_tokens, padded.patch_tokens, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_names_matter_and_a_batch_carries_them(name_model, random_images) -> None:
    images = random_images([3, 2, 1])
    by_argument = name_model(images, channel_names=NAMES)
    batch = ChannelBatch.from_images(images, NAMES)
    torch.testing.assert_close(name_model(batch), by_argument)
    collated = collate([NamedImage(image, tuple(names)) for image, names in zip(images, NAMES, strict=True)])
    torch.testing.assert_close(name_model(collated), by_argument)
    other = name_model(images, channel_names=[["actin", "dna", "mito"], ["mito", "dna"], ["tubulin"]])
    assert (other[0] - by_argument[0]).abs().max() > 1e-4
    torch.testing.assert_close(other[1:], by_argument[1:])
    # Raw labels go through the built-in table: DAPI is `dna`.
    raw = name_model(images, channel_names=[["DAPI", "Phalloidin", "alpha-tubulin"], *NAMES[1:]])
    torch.testing.assert_close(raw, by_argument)
    # The intermediate layers read the batch's names too.
    last = name_model.get_intermediate_layers(batch, n=1)[0].cls
    torch.testing.assert_close(last, by_argument)


def test_a_name_outside_the_vocabulary_uses_unknown_and_warns_once(name_model, random_images) -> None:
    images = random_images([2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = name_model(images, channel_names=[["dna", "nucleolin"]])
        name_model(images, channel_names=[["dna", "nucleolin"]])
        unknown = name_model(images, channel_names=[["dna", "unknown"]])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "'nucleolin' is not in the vocabulary" in messages[0]
    torch.testing.assert_close(first, unknown)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (None, "embeds channels by name"),
        ([["dna", "actin"]], "channel_names has 1 entries for 2 images"),
        ([["dna"], ["actin"]], "image 0 has 2 channels but 1 channel names"),
        (["dn", "ac"], r"channel_names\[0\] must be a list of names"),
        ([["dna", 3], ["actin"]], r"channel_names\[0\] must hold strings"),
    ],
)
def test_bad_names_are_one_clear_error(name_model, random_images, names, message) -> None:
    with pytest.raises(ValueError, match=message):
        name_model(random_images([2, 1]), channel_names=names)


def test_slot_mode_ignores_names_and_keeps_the_released_layout(tiny_model, random_images) -> None:
    model = tiny_model()
    images = random_images([3, 2])
    torch.testing.assert_close(model(images, channel_names=[["a", "b", "c"], ["d", "e"]]), model(images))
    assert "channel_name_token" not in model.state_dict()
    assert model.config.channel_embedding == "slot"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"channel_embedding": "name"}, "needs a channel_vocab"),
        ({"channel_embedding": "colour", "channel_vocab": VOCAB}, "channel_embedding must be one of"),
        ({"channel_vocab": VOCAB}, "only with channel_embedding 'name'"),
        ({"channel_embedding": "name", "channel_vocab": ["dna", "dna"]}, "more than once"),
        ({"channel_embedding": "name", "channel_vocab": ["unknown"]}, "must not list 'unknown'"),
        ({"channel_embedding": "name", "channel_vocab": "dna"}, "must be a list of non-empty names"),
    ],
)
def test_bad_settings_are_named(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        chadavit.create_model("chadavit_petit", **overrides)


def test_name_mode_is_for_chadavit_only() -> None:
    with pytest.raises(ValueError, match="for the chadavit architecture"):
        chadavit.create_model("onechannel_vit_tiny", channel_embedding="name", channel_vocab=VOCAB)


def test_the_vocabulary_round_trips_through_save_and_load(tmp_path, tiny_model, random_images) -> None:
    model = tiny_model(channel_embedding="slot+name", channel_vocab=VOCAB)
    images = random_images([3, 2, 1])
    model.save_pretrained(tmp_path / "m")
    document = json.loads((tmp_path / "m" / "config.json").read_text())
    assert document["channel_vocab"] == VOCAB and document["channel_embedding"] == "slot+name"
    loaded = chadavit.from_pretrained(tmp_path / "m")
    assert loaded.channel_vocab == ("unknown", *VOCAB)
    torch.testing.assert_close(loaded(images, channel_names=NAMES), model(images, channel_names=NAMES))
    # A config.json whose vocabulary does not match the stored vectors is refused, naming both.
    document["channel_vocab"] = VOCAB[:2]
    (tmp_path / "m" / "config.json").write_text(json.dumps(document))
    with pytest.raises(ModelFileError, match="channel_name_token"):
        chadavit.from_pretrained(tmp_path / "m")


def test_the_docs_example_runs_as_written() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "model.md").read_text()
    section = text.split("## Channel identity", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/model.md", "exec"), scope)  # the project's own doc
    assert scope["cls"].shape == (2, 96)
    torch.testing.assert_close(scope["same"], scope["cls"])
    torch.testing.assert_close(scope["batched"], scope["cls"])
    torch.testing.assert_close(scope["moved"], scope["cls"], atol=1e-5, rtol=0)
