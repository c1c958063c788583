"""`chadavit_moyen_v1` is the released architecture: an independent, literal implementation of
docs/reference-model.md (nn.MultiheadAttention, zero padding to N_max, "all-zero token" mask) loads
its state dict with strict keys and gives the same numbers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from chadavit import create_model


class _TokenLearner(nn.Module):
    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, patch, patch)


class _ReferenceBlock(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1, self.linear2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-5), nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        a = self.self_attn(h, h, h, key_padding_mask=ignore, need_weights=False)[0]
        x = self.norm1(x + a)
        return self.norm2(x + self.linear2(F.relu(self.linear1(x))))


class _ReferenceChAdaViT(nn.Module):
    """Steps 1-6 of docs/reference-model.md, written as literally as possible."""

    def __init__(self, dim: int, depth: int, heads: int, ffn: int, slots: int, patch: int, img: int) -> None:
        super().__init__()
        self.slots, self.grid = slots, img // patch
        self.token_learner = _TokenLearner(dim, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.channel_token = nn.Parameter(torch.zeros(1, slots, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, 1 + self.grid**2, dim))
        self.blocks = nn.ModuleList(_ReferenceBlock(dim, heads, ffn) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, images: list[torch.Tensor]) -> torch.Tensor:
        sequences, masks = [], []
        for image in images:
            tokens = self.token_learner.proj(image[:, None]).flatten(2).transpose(1, 2)  # (C, N, D)
            padding = tokens.new_zeros(self.slots - image.shape[0], *tokens.shape[1:])
            tokens = torch.cat([tokens, padding])  # (slots, N, D)
            masks.append(torch.cat([torch.zeros(1, dtype=torch.bool), (tokens == 0).all(-1).flatten()]))
            tokens = tokens + self.pos_embed[0, :, 1:] + self.channel_token[0]
            cls = self.cls_token[0] + self.pos_embed[0, :, :1][0]
            sequences.append(torch.cat([cls, tokens.flatten(0, 1)]))
        x, ignore = torch.stack(sequences), torch.stack(masks)
        for block in self.blocks:
            x = block(x, ignore)
        return self.norm(x)[:, 0]


def test_released_architecture_matches_a_literal_reference(tiny_model, random_images) -> None:
    model = tiny_model("chadavit_moyen_v1", seed=5, max_channels=6)
    reference = _ReferenceChAdaViT(dim=32, depth=2, heads=2, ffn=64, slots=6, patch=16, img=64).eval()
    reference.load_state_dict(model.state_dict(), strict=True)  # same names and shapes
    images = random_images([2, 6, 1, 4], seed=5)
    with torch.no_grad():
        expected = reference(images)
        assert torch.allclose(model(images, padded=True), expected, atol=1e-5, rtol=0)
        assert torch.allclose(model(images), expected, atol=1e-5, rtol=0)


def test_released_defaults_have_the_checkpoint_shapes() -> None:
    """The parameter table of docs/reference-model.md, for D = 192, depth 12, N_max 10."""
    model = create_model("chadavit_moyen_v1")
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    expected = {
        "token_learner.proj.weight": (192, 1, 16, 16),
        "token_learner.proj.bias": (192,),
        "cls_token": (1, 1, 192),
        "channel_token": (1, 10, 1, 192),
        "pos_embed": (1, 1, 197, 192),
        "norm.weight": (192,),
        "norm.bias": (192,),
    }
    for i in range(12):
        expected |= {
            f"blocks.{i}.self_attn.in_proj_weight": (576, 192),
            f"blocks.{i}.self_attn.in_proj_bias": (576,),
            f"blocks.{i}.self_attn.out_proj.weight": (192, 192),
            f"blocks.{i}.self_attn.out_proj.bias": (192,),
            f"blocks.{i}.linear1.weight": (2048, 192),
            f"blocks.{i}.linear1.bias": (2048,),
            f"blocks.{i}.linear2.weight": (192, 2048),
            f"blocks.{i}.linear2.bias": (192,),
        }
        expected |= {f"blocks.{i}.norm{k}.{p}": (192,) for k in (1, 2) for p in ("weight", "bias")}
    assert shapes == expected
    assert model.config.num_heads == 2 and model.blocks[0].norm1.eps == 1e-5 and model.norm.eps == 1e-6
