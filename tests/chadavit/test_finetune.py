"""The fine-tuning API (timm / DINOv2 names) and the docs/model.md example, run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import chadavit
from chadavit import ChannelBatch

ROOT = Path(__file__).resolve().parents[2]
TINY = {"embed_dim": 32, "depth": 3, "num_heads": 2, "img_size": 32, "patch_size": 8}


def test_the_docs_fine_tuning_example_runs_and_learns() -> None:
    text = (ROOT / "docs" / "model.md").read_text()
    section = text.split("## Fine-tuning", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/model.md", "exec"), scope)  # the project's own doc
    model, images, labels = scope["model"], scope["images"], scope["labels"]
    assert scope["logits"].shape == (8, 3)
    assert scope["embedding"].shape == (8, model.num_features)
    assert [f.cls.shape for f in scope["last_two"]] == [(8, 32), (8, 32)]
    # 15 steps on 8 images whose class is their brightness: the head learns it.
    assert scope["losses"][-1] < 0.6 * scope["losses"][0], scope["losses"]
    assert (scope["logits"].argmax(1) == labels).float().mean() >= 0.75
    assert torch.equal(model(images), scope["logits"])


def test_num_features_is_the_embedding_width_for_every_architecture() -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    for name, overrides in (
        ("chadavit_petit", TINY),
        ("interchannel_vit_moyen", {**TINY, "patch_size": 32}),  # one token per channel
    ):
        model = chadavit.create_model(name, **overrides).eval()
        assert model(images).shape == (2, model.num_features)
    one = chadavit.create_model("onechannel_vit_tiny", **TINY).eval()
    with pytest.raises(ValueError, match="C x 32 wide"):
        _ = one.num_features
    one.reset_classifier(4, num_channels=3)
    assert one.num_features == 3 * 32
    assert one(images).shape == (2, 4)
    assert one.forward_head(one.forward_features(images), pre_logits=True).shape == (2, 96)
    with pytest.raises(ValueError, match="head expects 3"):
        one(torch.rand(2, 2, 32, 32))


def test_reset_classifier_and_create_model_num_classes() -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", num_classes=5, **TINY).eval()
    batch = [torch.rand(1, 32, 32), torch.rand(4, 32, 32)]  # mixed channel counts still work
    assert model(batch).shape == (2, 5)
    embedding = model.forward_head(model.forward_features(batch), pre_logits=True)
    torch.testing.assert_close(model.head(embedding), model(batch))
    model.reset_classifier(0)
    torch.testing.assert_close(model(batch), embedding, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="non-negative integer"):
        model.reset_classifier(-1)


def test_a_fine_tuned_model_saves_and_loads_with_its_head(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", num_classes=3, **TINY).eval()
    images = torch.rand(2, 2, 32, 32)
    model.save_pretrained(tmp_path / "m")
    again = chadavit.from_pretrained(tmp_path / "m")
    assert again.num_classes == 3
    torch.testing.assert_close(again(images), model(images))


def test_get_intermediate_layers_matches_forward_features_at_the_last_block() -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", **TINY).eval()
    batch = [torch.rand(2, 32, 32), torch.rand(3, 32, 32)]
    with torch.no_grad():
        layers = model.get_intermediate_layers(batch, n=2)
        full = model.forward_features(batch)
        picked = model.get_intermediate_layers(batch, n=[0], norm=False)
    assert len(layers) == 2
    torch.testing.assert_close(layers[-1].cls, full.cls)
    for mine, theirs in zip(layers[-1].patch_tokens, full.patch_tokens, strict=True):
        torch.testing.assert_close(mine, theirs)
    assert [p.shape for p in layers[0].patch_tokens] == [(2, 4, 4, 32), (3, 4, 4, 32)]
    assert not torch.allclose(picked[0].cls, layers[0].cls)  # un-normed block 0 differs
    with pytest.raises(ValueError, match=r"n must pick blocks among 0\.\.2"):
        model.get_intermediate_layers(batch, n=4)


def test_a_batch_tensor_is_accepted_and_a_channel_batch_prints_short() -> None:
    torch.manual_seed(0)
    model = chadavit.create_model("chadavit_petit", **TINY).eval()
    images = torch.rand(3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(list(images)))
    batch = ChannelBatch.from_images([torch.rand(c, 32, 32) for c in (1, 3, 2)])
    assert repr(batch) == "ChannelBatch(3 images, 32x32, channels [1, 3, 2], torch.float32, cpu)"
