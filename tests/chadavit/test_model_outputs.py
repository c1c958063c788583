"""Registry, determinism, configs and the attention maps of the paper's Figure 3."""

from __future__ import annotations

import dataclasses
import json

import torch

from chadavit import create_model, list_models


def test_registry_lists_every_named_configuration() -> None:
    assert set(list_models()) == {
        "chadavit_petit",
        "chadavit_moyen",
        "chadavit_grand",
        "chadavit_moyen_v1",
        "onechannel_vit_tiny",
        "interchannel_vit_moyen",
        "standard_vit_tiny",
    }
    widths = {name: create_model(name, depth=1).embed_dim for name in ("chadavit_petit", "chadavit_grand")}
    assert widths == {"chadavit_petit": 96, "chadavit_grand": 384}


def test_models_are_deterministic_under_a_seed(tiny_model, random_images) -> None:
    first, second, other = tiny_model(seed=4), tiny_model(seed=4), tiny_model(seed=5)
    for name, tensor in first.state_dict().items():
        assert torch.equal(tensor, second.state_dict()[name]), name
    assert not torch.equal(first.pos_embed, other.pos_embed)
    images = random_images([2, 5, 1])
    with torch.no_grad():
        assert torch.equal(first(images), second(images))


def test_config_is_json_and_names_the_model(tiny_model) -> None:
    model = tiny_model("chadavit_moyen_v1")
    document = json.loads(json.dumps(dataclasses.asdict(model.config)))
    assert document["name"] == "chadavit_moyen_v1" and document["block"] == "released"
    assert document["embed_dim"] == model.embed_dim == 32


def test_attention_maps_are_last_block_cls_attention(tiny_model, random_images) -> None:
    model = tiny_model("chadavit_petit", seed=2)
    images = random_images([3, 1, 6], seed=2)
    with torch.no_grad():
        maps = model.attention_maps(images)
        alone = model.attention_maps(images[2:])
    assert [tuple(m.shape) for m in maps] == [(2, 3, 4, 4), (2, 1, 4, 4), (2, 6, 4, 4)]
    for attention in maps:
        assert attention.min() >= 0
        total = attention.sum(dim=(1, 2, 3))  # the rest goes to CLS itself
        assert torch.all(total < 1) and torch.all(total > 0.5)
    assert torch.allclose(alone[0], maps[2], atol=1e-6)
    # With zero query/key weights every score is equal: attention is 1 / sequence length.
    last = model.blocks[-1].attn
    with torch.no_grad():
        last.in_proj_weight[: 2 * 32].zero_()
        last.in_proj_bias[: 2 * 32].zero_()
        uniform = model.attention_maps(images)
    for attention, count in zip(uniform, [3, 1, 6], strict=True):
        assert torch.allclose(attention, torch.full_like(attention, 1 / (1 + count * 16)), atol=1e-7)
