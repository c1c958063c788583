"""Model specs and the shared feature extractor: shapes, batching, and the on-disk cache."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import chadavit
from chadavit_bench.datasets import LOADERS
from chadavit_bench.embed import EmbedSetting, channel_targets, extract_embeddings
from chadavit_bench.models import ModelSpecError, load_model, parse_model_spec, unique_labels
from chadavit_bench.testing import TINY_CHADAVIT, TINY_IMG_SIZE, TINY_ONECHANNEL


def test_model_specs_cover_directories_checkpoints_and_registry_names(tmp_path: Path) -> None:
    random_spec = parse_model_spec(f"{TINY_CHADAVIT}&seed=3")
    assert random_spec.source == "random" and random_spec.location == "chadavit_petit"
    expected = {"embed_dim": 32, "depth": 2, "num_heads": 2, "img_size": 32, "patch_size": 8, "seed": 3}
    assert random_spec.options == expected
    assert random_spec.label == "random:chadavit_petit#seed3"
    assert parse_model_spec(TINY_ONECHANNEL).label == "onechannel_vit_tiny"
    assert parse_model_spec(f"{TINY_CHADAVIT}&label=mine").label == "mine"

    run = tmp_path / "run1" / "model"
    load_model(random_spec).model.save_pretrained(run)
    assert parse_model_spec(str(run)).label == "run1"  # chadavit-train's RUN/model reads as RUN
    assert parse_model_spec(str(run)).source == "pretrained"
    with pytest.raises(ModelSpecError, match="does not exist"):
        parse_model_spec(str(tmp_path / "missing.ckpt"))
    with pytest.raises(ModelSpecError, match="neither a model directory"):
        parse_model_spec(str(tmp_path / "nothing-here"))
    with pytest.raises(ModelSpecError, match="unknown model"):
        parse_model_spec("random:no_such_model")
    with pytest.raises(ModelSpecError, match="unknown override"):
        load_model(parse_model_spec("random:chadavit_petit?colour=3"))
    labels = [s.label for s in unique_labels([random_spec, random_spec])]
    assert labels == ["random:chadavit_petit#seed3", "random:chadavit_petit#seed3#2"]


def test_seeded_random_init_and_saved_dirs_have_stable_checksums(tmp_path: Path) -> None:
    first = load_model(parse_model_spec(TINY_CHADAVIT))
    again = load_model(parse_model_spec(TINY_CHADAVIT))
    other_seed = load_model(parse_model_spec(f"{TINY_CHADAVIT}&seed=1"))
    assert first.checksum == again.checksum != other_seed.checksum
    first.model.save_pretrained(tmp_path / "saved")
    assert load_model(parse_model_spec(str(tmp_path / "saved"))).checksum == first.checksum


def test_embeddings_have_the_documented_shapes_for_both_architectures(synthetic_root: Path) -> None:
    dataset = LOADERS["bbbc048"](synthetic_root)
    setting = EmbedSetting(img_size=TINY_IMG_SIZE, patch_maps=True)
    for spec, width in ((TINY_CHADAVIT, 32), (TINY_ONECHANNEL, 3 * 32)):
        loaded = load_model(parse_model_spec(spec))
        embeddings = extract_embeddings(loaded.model, loaded.checksum, dataset, setting, None, batch_size=16)
        assert embeddings.cls.shape == (len(dataset), width)
        assert embeddings.tokens.shape == (len(dataset), 32)  # mean of all patch tokens: one token width
        assert embeddings.patch_maps.shape == (len(dataset), 4, 4, 32)  # 32 px / patch 8
        assert embeddings.keys.tolist() == [r.key for r in dataset.records]


def test_batching_does_not_change_embeddings(synthetic_root: Path) -> None:
    """Padding-free inference: an image's embedding does not depend on its batch mates."""
    dataset = LOADERS["cyclops"](synthetic_root).subset(range(10))
    loaded = load_model(parse_model_spec(TINY_CHADAVIT))
    setting = EmbedSetting(img_size=TINY_IMG_SIZE)
    one = extract_embeddings(loaded.model, loaded.checksum, dataset, setting, None, batch_size=1, workers=1)
    many = extract_embeddings(loaded.model, loaded.checksum, dataset, setting, None, batch_size=7, workers=3)
    np.testing.assert_allclose(one.cls, many.cls, atol=1e-5)
    np.testing.assert_allclose(one.tokens, many.tokens, atol=1e-5)


def test_channel_subset_is_taken_by_name_in_the_given_order(synthetic_root: Path) -> None:
    dataset = LOADERS["bbbc021"](synthetic_root).subset(range(4))
    loaded = load_model(parse_model_spec(TINY_CHADAVIT))
    picked = extract_embeddings(
        loaded.model, loaded.checksum, dataset, EmbedSetting(TINY_IMG_SIZE, ("Tubulin", "DAPI")), None
    )
    with torch.inference_mode():
        images = [torch.from_numpy(dataset.read(i)[[1, 0]]) for i in range(4)]
        expected = loaded.model(chadavit.ChannelBatch.from_images(images))
    np.testing.assert_allclose(picked.cls, expected.numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="no channels"):
        extract_embeddings(
            loaded.model, loaded.checksum, dataset, EmbedSetting(TINY_IMG_SIZE, ("GFP",)), None
        )


class CountingModel(torch.nn.Module):
    """Wraps a model and counts forward_features calls, to see the cache at work."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.calls = 0

    def forward_features(self, batch):
        self.calls += 1
        return self.inner.forward_features(batch)


def test_cache_is_keyed_by_weights_data_and_setting(synthetic_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic_root / "nfkb", data / "nfkb")
    dataset = LOADERS["nfkb"](data)
    loaded = load_model(parse_model_spec(TINY_CHADAVIT))
    model = CountingModel(loaded.model)
    cache = tmp_path / "cache"
    setting = EmbedSetting(img_size=TINY_IMG_SIZE)

    first = extract_embeddings(model, loaded.checksum, dataset, setting, cache, batch_size=100)
    assert model.calls == 1 and len(list(cache.glob("nfkb-*.npz"))) == 1
    second = extract_embeddings(model, loaded.checksum, LOADERS["nfkb"](data), setting, cache, batch_size=100)
    assert model.calls == 1  # served from disk
    np.testing.assert_array_equal(first.cls, second.cls)

    extract_embeddings(model, "other-weights", dataset, setting, cache, batch_size=100)
    extract_embeddings(model, loaded.checksum, dataset, EmbedSetting(img_size=16), cache, batch_size=100)
    assert model.calls == 3
    touched = data / "nfkb" / dataset.records[0].files[0]
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file changed on disk
    extract_embeddings(model, loaded.checksum, LOADERS["nfkb"](data), setting, cache, batch_size=100)
    assert model.calls == 4
    assert not list(cache.glob(".*"))  # no temporary files left behind
    with np.load(next(cache.glob("nfkb-*.npz")), allow_pickle=False) as stored:  # no pickle needed
        assert set(stored.files) == {"keys", "cls", "tokens"}


def test_reconstruction_targets_are_one_channel_resized(synthetic_root: Path) -> None:
    dataset = LOADERS["bbbc021"](synthetic_root).subset(range(5))
    targets = channel_targets(dataset, "Actin", 16, None)
    assert targets.shape == (5, 16, 16)
    assert targets.min() >= 0.0 and targets.max() <= 1.0
    pooled = dataset.read(0).reshape(3, 16, 2, 16, 2).mean(axis=(2, 4))  # DAPI, Tubulin, Actin at 16 px
    correlations = [np.corrcoef(targets[0].ravel(), channel.ravel())[0, 1] for channel in pooled]
    assert correlations[2] > 0.97 and correlations[2] == max(correlations)


def test_released_checkpoint_specs_load_student_or_teacher(tmp_path: Path) -> None:
    """A Lightning-style .ckpt like the authors' (tiny shapes): backbone. and momentum_backbone. keys."""
    tiny = {"embed_dim": 32, "depth": 2, "num_heads": 2, "ffn_dim": 64, "img_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    student = chadavit.create_model("chadavit_moyen_v1", **tiny)
    teacher = chadavit.create_model("chadavit_moyen_v1", **tiny)
    state = {f"backbone.{k}": v for k, v in student.state_dict().items()}
    state |= {f"momentum_backbone.{k}": v for k, v in teacher.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "chadavit16-moyen.ckpt")

    default = parse_model_spec(str(tmp_path / "chadavit16-moyen.ckpt"))
    chosen = parse_model_spec(f"{tmp_path / 'chadavit16-moyen.ckpt'}?weights=teacher")
    assert (default.label, chosen.label) == ("chadavit16-moyen", "chadavit16-moyen:teacher")
    loaded_student, loaded_teacher = load_model(default), load_model(chosen)
    batch = [torch.rand(3, 32, 32)]
    with torch.inference_mode():
        torch.testing.assert_close(loaded_student.model(batch), student.eval()(batch))
        torch.testing.assert_close(loaded_teacher.model(batch), teacher.eval()(batch))
    assert loaded_student.checksum != loaded_teacher.checksum
    with pytest.raises(ModelSpecError, match="accepts weights= and num_heads="):
        parse_model_spec(f"{tmp_path / 'chadavit16-moyen.ckpt'}?depth=3")
