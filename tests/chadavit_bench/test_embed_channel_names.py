"""The bench hands each dataset's channel names to the model: a name-embedding model reads them."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import chadavit
from chadavit_bench.datasets.base import DownstreamDataset, Record
from chadavit_bench.datasets.bbbc021 import CHANNEL_NAMES as BBBC021
from chadavit_bench.datasets.bloodmnist import CHANNEL_NAMES as BLOODMNIST
from chadavit_bench.datasets.bray import CHANNEL_NAMES as BRAY
from chadavit_bench.datasets.chammi import SUBDATASETS
from chadavit_bench.datasets.cyclops import CHANNEL_NAMES as CYCLOPS
from chadavit_bench.embed import EmbedSetting, extract_embeddings

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 32}


@dataclass
class InMemory(DownstreamDataset):
    """Images held in memory (one per record), for a test without files."""

    images: tuple[np.ndarray, ...] = ()

    def _read(self, record: Record) -> np.ndarray:
        return self.images[int(record.key)]


def _dataset(names: tuple[str, ...], images: list[np.ndarray]) -> InMemory:
    records = [Record(key=str(i), split="train", label=i % 2) for i in range(len(images))]
    return InMemory("toy", Path("."), "classification", names, records, ("a", "b"), images=tuple(images))


def test_a_name_model_embeds_the_datasets_channels_by_their_names() -> None:
    torch.manual_seed(0)
    model = chadavit.create_model(
        "chadavit_petit", channel_embedding="name", channel_vocab=["dna", "tubulin", "actin"], **TINY
    ).eval()
    rng = np.random.default_rng(0)
    images = [rng.random((3, 32, 32), dtype=np.float32) for _ in range(4)]
    setting = EmbedSetting(img_size=32)
    as_is = extract_embeddings(model, "m", _dataset(BBBC021, images), setting, None, workers=1)
    # The same images with their channels stored in another order, named accordingly: same features.
    order = [2, 0, 1]
    moved = _dataset(tuple(BBBC021[i] for i in order), [image[order] for image in images])
    reordered = extract_embeddings(model, "m", moved, setting, None, workers=1)
    np.testing.assert_allclose(reordered.cls, as_is.cls, atol=1e-5)
    # Named otherwise, the model sees other channels.
    renamed = extract_embeddings(
        model, "m", _dataset(("actin", "dna", "tubulin"), images), setting, None, workers=1
    )
    assert np.abs(renamed.cls - as_is.cls).max() > 1e-4


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (BBBC021, ["dna", "tubulin", "actin"]),
        (BRAY, ["dna", "er", "rna", "agp", "mito"]),
        (CYCLOPS, ["gfp", "rfp"]),
        (BLOODMNIST, ["red", "green", "blue"]),
        *[(sub.channels, None) for sub in SUBDATASETS],
    ],
)
def test_the_datasets_channel_names_are_all_known(names, expected) -> None:
    canonical = [chadavit.channels.canonical_name(name) for name in names]
    assert "unknown" not in canonical, dict(zip(names, canonical, strict=True))
    if expected is not None:
        assert canonical == expected


def test_slot_models_are_unchanged_by_the_names() -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", **TINY).eval()
    images = [np.random.default_rng(1).random((3, 32, 32), dtype=np.float32)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        named = extract_embeddings(
            model, "m", _dataset(BBBC021, images), EmbedSetting(img_size=32), None, workers=1
        )
    direct = model([torch.from_numpy(images[0])])
    np.testing.assert_allclose(named.cls, direct.detach().numpy(), atol=1e-5)
