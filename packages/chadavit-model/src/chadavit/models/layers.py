"""Transformer layers that run on packed token tensors (see `packing.py`).

Parameter names follow the authors' released checkpoint where a layer exists there
(`token_learner.proj`, `self_attn.in_proj_weight`, `linear1`, `norm1`...), so that file loads
with strict key matching.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chadavit.models.packing import PackedLayout

INIT_STD = 0.02  # trunc-normal std of every weight matrix and embedding (timm / DINO ViT init)


class TokenLearner(nn.Module):
    """One Conv2d(1, D, p, p) shared by every channel: each (H, W) plane becomes (H/p)(W/p) tokens."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, planes: Tensor) -> Tensor:
        """(P, H, W) -> (P, h*w, D)."""
        return self.proj(planes.unsqueeze(1)).flatten(2).transpose(1, 2)


class PackedSelfAttention(nn.Module):
    """Multi-head self-attention over a packed layout, one SDPA call per group of equal lengths.

    Weights are packed as in `torch.nn.MultiheadAttention` (q, k, v rows of `in_proj_weight`),
    which is the released checkpoint's layout.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * dim))
        self.out_proj = nn.Linear(dim, dim)

    def _grouped_qkv(self, x: Tensor, layout: PackedLayout) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per group (q, k, v), each (n, heads, L, hd), as views of one packed projection.

        Splitting columns, then rows, keeps autograd cheap: the backward of a split is one
        concatenation, where per-group slicing would zero-fill the whole (T, 3D) gradient per group.
        """
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        sizes = [group.num_seqs * group.seq_len for group in layout.groups]
        per_part = [part.split(sizes, dim=0) for part in qkv.chunk(3, dim=1)]
        grouped = []
        for group, q, k, v in zip(layout.groups, *per_part, strict=True):
            shape = (group.num_seqs, group.seq_len, self.num_heads, self.head_dim)
            grouped.append(tuple(t.view(shape).transpose(1, 2) for t in (q, k, v)))
        return grouped

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        outputs = []
        for group, (q, k, v) in zip(layout.groups, self._grouped_qkv(x, layout), strict=True):
            # Boolean key mask only on the padded reference path; the hot path has no mask at all,
            # so SDPA may pick its flash / memory-efficient kernels.
            mask = None if group.key_mask is None else group.key_mask[:, None, None, :]
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            outputs.append(attended.transpose(1, 2).reshape(group.num_seqs * group.seq_len, -1))
        merged = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=0)
        return self.out_proj(merged)

    def cls_attention(self, x: Tensor, layout: PackedLayout) -> list[Tensor]:
        """Attention probabilities of token 0 of each sequence: (heads, seq_len) per packed sequence."""
        maps: list[Tensor] = []
        for group, (q, k, _) in zip(layout.groups, self._grouped_qkv(x, layout), strict=True):
            scores = torch.einsum("nhd,nhld->nhl", q[:, :, 0], k) / math.sqrt(self.head_dim)
            if group.key_mask is not None:
                scores = scores.masked_fill(~group.key_mask[:, None, :], float("-inf"))
            maps.extend(scores.float().softmax(dim=-1).unbind(0))
        return maps


def _residual(x: Tensor, update: Tensor, drop_scale: Tensor | None) -> Tensor:
    return x + update if drop_scale is None else torch.addcmul(x, update, drop_scale)


class PreNormBlock(nn.Module):
    """Standard pre-norm ViT block (timm / DINO): x + attn(norm1 x), then x + mlp(norm2 x), GELU."""

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, drop_path: float, eps: float) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PackedSelfAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    @property
    def attention(self) -> PackedSelfAttention:
        return self.attn

    def attention_input(self, x: Tensor) -> Tensor:
        return self.norm1(x)

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        active = self.training and self.drop_path > 0
        scale = layout.drop_path_scale(self.drop_path, x) if active else None
        x = _residual(x, self.attn(self.norm1(x), layout), scale)
        scale = layout.drop_path_scale(self.drop_path, x) if active else None
        return _residual(x, self.fc2(F.gelu(self.fc1(self.norm2(x)))), scale)


class ReleasedBlock(nn.Module):
    """The block of the authors' released checkpoint, reproduced exactly (docs/reference-model.md):

    a = attn(norm1 x); x = norm1(x + a); x = norm2(x + linear2(relu(linear1 x))).
    `norm1` really is applied twice. LayerNorm eps 1e-5, ReLU FFN, no dropout.
    """

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, drop_path: float, eps: float) -> None:
        super().__init__()
        self.drop_path = drop_path
        self.self_attn = PackedSelfAttention(dim, num_heads)
        self.linear1 = nn.Linear(dim, hidden_dim)
        self.linear2 = nn.Linear(hidden_dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps)

    @property
    def attention(self) -> PackedSelfAttention:
        return self.self_attn

    def attention_input(self, x: Tensor) -> Tensor:
        return self.norm1(x)

    def forward(self, x: Tensor, layout: PackedLayout) -> Tensor:
        active = self.training and self.drop_path > 0
        scale = layout.drop_path_scale(self.drop_path, x) if active else None
        x = self.norm1(_residual(x, self.self_attn(self.norm1(x), layout), scale))
        scale = layout.drop_path_scale(self.drop_path, x) if active else None
        return self.norm2(_residual(x, self.linear2(F.relu(self.linear1(x))), scale))


def interpolate_patch_pos(patch_pos: Tensor, base_grid: int, grid: tuple[int, int]) -> Tensor:
    """(base_grid**2, D) learned positions -> (h*w, D) for another grid, bicubic (DINO style)."""
    if grid == (base_grid, base_grid):
        return patch_pos
    dim = patch_pos.shape[-1]
    square = patch_pos.reshape(1, base_grid, base_grid, dim).permute(0, 3, 1, 2)
    resized = F.interpolate(square.float(), size=grid, mode="bicubic", align_corners=False)
    return resized.to(patch_pos.dtype).permute(0, 2, 3, 1).reshape(grid[0] * grid[1], dim)


def init_weights(module: nn.Module) -> None:
    """The one weight-init rule of every model: trunc-normal(0.02) matrices, zero biases, unit norms."""
    if isinstance(module, nn.Linear | nn.Conv2d):
        nn.init.trunc_normal_(module.weight, std=INIT_STD)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, PackedSelfAttention):
        nn.init.trunc_normal_(module.in_proj_weight, std=INIT_STD)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
