"""The machinery every model shares: planes -> tokens -> packed sequences -> blocks -> outputs.

A *plane* is one (H, W) channel of one image. A *sequence* is [CLS, tokens of some planes]:
all the planes of an image for ChAda-ViT, a single plane for the one-channel baseline. The
padding-free path packs sequences grouped by plane count; the padded reference path pads every
sequence to `num_slots` planes and masks the padded keys (docs/reference-model.md, step 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from chadavit.batch import ChannelBatch, as_channel_batch
from chadavit.models.config import ViTConfig
from chadavit.models.layers import (
    INIT_STD,
    PreNormBlock,
    ReleasedBlock,
    TokenLearner,
    init_weights,
    interpolate_patch_pos,
)
from chadavit.models.packing import PackedLayout, packed_gather_index, plan_padded, plan_padding_free

ModelInput = ChannelBatch | Sequence[Tensor]


@dataclass(eq=False)
class Features:
    """`cls`: (B, D) image embeddings; `patch_tokens`: per image a (C_i, h, w, D) tensor."""

    cls: Tensor
    patch_tokens: list[Tensor]


@dataclass
class _Encoded:
    tokens: Tensor  # (T, D) packed, after the blocks, before the final norm
    layout: PackedLayout
    grid: tuple[int, int]
    seq_counts: list[int]  # planes per sequence, input order


def slot_of_each_plane(counts: list[int]) -> Tensor:
    """Position of every plane inside its sequence: the channel slot (0 for the first channel)."""
    counts_t = torch.tensor(counts, dtype=torch.long)
    starts = torch.cumsum(counts_t, 0) - counts_t
    return torch.arange(int(counts_t.sum())) - torch.repeat_interleave(starts, counts_t)


class PackedViT(nn.Module):
    """A ViT over sequences of planes; subclasses decide what a sequence is."""

    def __init__(self, config: ViTConfig, num_slots: int, channel_embedding: bool) -> None:
        super().__init__()
        self.config = config
        self.embed_dim = config.embed_dim
        self.num_slots = num_slots
        dim = config.embed_dim
        self.token_learner = TokenLearner(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if channel_embedding:
            # One learned vector per channel slot, added to every token of that channel.
            self.channel_token = nn.Parameter(torch.zeros(1, num_slots, 1, dim))
        else:
            self.register_parameter("channel_token", None)
        # Shared by all channels: index 0 for CLS, then the img_size/patch grid (reference layout).
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, 1 + config.grid_size**2, dim))
        block_type = ReleasedBlock if config.block == "released" else PreNormBlock
        depth = config.depth
        # Stochastic depth grows linearly with depth (DINO / timm).
        rates = [config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList(
            block_type(dim, config.num_heads, config.hidden_dim, rate, config.block_norm_eps)
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        # The classifier of `reset_classifier` (timm's name); nothing by default, so `forward` is the
        # embedding and a state dict holds no head.
        self.num_classes = 0
        self.head: nn.Module = nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Weight init in one place (see `layers.init_weights`)."""
        self.apply(init_weights)
        for embedding in (self.cls_token, self.pos_embed, self.channel_token):
            if embedding is not None:
                nn.init.trunc_normal_(embedding, std=INIT_STD)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers conventionally exclude from weight decay."""
        names = {"cls_token", "pos_embed"}
        return names | ({"channel_token"} if self.channel_token is not None else set())

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `config.json` and `model.safetensors` into `directory`."""
        from chadavit.hub import save_pretrained

        return save_pretrained(self, directory)

    # ----- fine-tuning (timm and DINOv2 names) -------------------------------------------------

    @property
    def num_features(self) -> int:
        """The width of the embedding `forward` returns before the head (what a classifier reads)."""
        return self.embed_dim

    def reset_classifier(self, num_classes: int, num_channels: int | None = None) -> None:
        """A new linear head on the embedding: `forward` then returns (B, num_classes) logits; 0 removes it.

        `num_channels` fixes C for a model whose width depends on it (the one-channel baseline)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        if num_channels is not None:
            self._set_num_channels(num_channels)
        self.num_classes = num_classes
        if num_classes == 0:
            self.head = nn.Identity()
            return
        head = nn.Linear(self.num_features, num_classes)
        init_weights(head)
        self.head = head.to(device=self.pos_embed.device, dtype=self.pos_embed.dtype)

    def _set_num_channels(self, num_channels: int) -> None:
        raise ValueError(f"{self.config.name} takes any channel count; num_channels is not a setting of it")

    def forward_head(self, x: Tensor | Features, pre_logits: bool = False) -> Tensor:
        """The head on an embedding (B, num_features) or on `forward_features`' output (its CLS)."""
        embedding = x.cls if isinstance(x, Features) else x
        return embedding if pre_logits else self.head(embedding)

    def _sequences_of(self, counts: list[int]) -> list[int]:
        """How many planes each sequence holds, for the images' channel `counts` (one per image here)."""
        return counts

    def get_intermediate_layers(
        self, x: ModelInput, n: int | Sequence[int] = 1, norm: bool = True
    ) -> list[Features]:
        """The outputs of the last `n` blocks (or of the blocks indexed by `n`), as DINOv2 names it.

        One `Features` per block, first block first: CLS (B, D) and each image's patch tokens
        (C_i, h, w, D), through the final LayerNorm when `norm` (DINOv2's default)."""
        batch, counts = self._checked(x)
        depth = len(self.blocks)
        wanted = list(range(depth - n, depth)) if isinstance(n, int) else sorted(set(n))
        if not wanted or wanted[0] < 0 or wanted[-1] >= depth:
            raise ValueError(f"n must pick blocks among 0..{depth - 1} of {self.config.name}, got {n!r}")
        collected: list[Tensor] = []
        encoded = self._encode(
            batch.pixels,
            self._sequences_of(counts),
            False,
            wanted[-1] + 1,
            collected,
            plane_embedding=self._plane_embedding(batch),
        )
        outputs = []
        for index in wanted:
            cls, patches = self._sequence_patches(
                _Encoded(collected[index], encoded.layout, encoded.grid, encoded.seq_counts), norm=norm
            )
            outputs.append(Features(cls=cls, patch_tokens=patches))
        return outputs

    def training_embeddings(self, x: ModelInput, padded: bool = False) -> Tensor:
        """What a self-supervised head is trained on: one row per sample (the image embedding here)."""
        if self.num_classes:
            raise ValueError(
                "training_embeddings is for self-supervised training: remove the classifier first"
            )
        return self(x, padded=padded)

    # ----- input checks -------------------------------------------------------------------------

    def _checked(self, x: ModelInput) -> tuple[ChannelBatch, list[int]]:
        """`x` as a ChannelBatch and its channel counts, after this model's checks."""
        batch = as_channel_batch(x)
        counts = batch.counts_list()
        self._check_batch(batch, counts)
        return batch, counts

    def _check_batch(self, batch: ChannelBatch, counts: list[int]) -> None:
        self._check_spatial(*batch.image_size)

    def _check_spatial(self, height: int, width: int) -> None:
        patch = self.config.patch_size
        if height < patch or width < patch or height % patch or width % patch:
            raise ValueError(
                f"the batch's images are {height}x{width} pixels; {self.config.name} needs H and W "
                f"to be multiples of its patch size {patch} (and at least {patch})"
            )

    def _plane_embedding(self, batch: ChannelBatch) -> Tensor | None:
        """A (planes, D) embedding added to every token of each plane beyond slot and position (by
        channel name in ChAda-ViT's name modes); None here."""
        return None

    def _prepare_pixels(self, pixels: Tensor) -> Tensor:
        dtype = self.pos_embed.dtype
        return pixels if pixels.dtype == dtype else pixels.to(dtype)

    # ----- encoding ----------------------------------------------------------------------------

    def _encode(
        self,
        pixels: Tensor,
        seq_counts: list[int],
        padded: bool,
        blocks: int | None = None,
        collect: list[Tensor] | None = None,
        plane_embedding: Tensor | None = None,
    ) -> _Encoded:
        """Run planes grouped into sequences of `seq_counts` planes through the first `blocks` blocks.

        `collect`, when given, receives every block's output tokens (for `get_intermediate_layers`);
        `plane_embedding` (planes, D), when given, is added to every token of its plane."""
        planes = self._prepare_pixels(pixels)
        grid = (planes.shape[1] // self.config.patch_size, planes.shape[2] // self.config.patch_size)
        tokens = self.token_learner(planes)  # (P, N, D)
        num_planes, per_plane, dim = tokens.shape
        patch_pos = interpolate_patch_pos(self.pos_embed[0, 0, 1:], self.config.grid_size, grid)
        tokens = tokens + patch_pos
        slots = slot_of_each_plane(seq_counts).to(tokens.device)
        if self.channel_token is not None:
            tokens = tokens + self.channel_token[0, slots]
        if plane_embedding is not None:
            tokens = tokens + plane_embedding.to(tokens.dtype)[:, None, :]
        cls = self.cls_token[0, 0] + self.pos_embed[0, 0, 0]

        if padded:
            layout = plan_padded(seq_counts, self.num_slots, per_plane, tokens.device)
            x = self._padded_sequences(tokens, cls, patch_pos, slots, seq_counts)
        else:
            layout = plan_padding_free(seq_counts, per_plane, tokens.device)
            index = packed_gather_index(seq_counts, layout, per_plane, cls_row=num_planes * per_plane)
            source = torch.cat([tokens.reshape(num_planes * per_plane, dim), cls[None]], dim=0)
            x = source[index.to(tokens.device)]

        for block in self.blocks[: len(self.blocks) if blocks is None else blocks]:
            x = block(x, layout)
            if collect is not None:
                collect.append(x)
        return _Encoded(tokens=x, layout=layout, grid=grid, seq_counts=seq_counts)

    def _padded_sequences(
        self, tokens: Tensor, cls: Tensor, patch_pos: Tensor, slots: Tensor, seq_counts: list[int]
    ) -> Tensor:
        """The reference input: planes zero-padded to `num_slots`, embeddings added to every slot."""
        num_seqs, per_plane, dim = len(seq_counts), tokens.shape[1], tokens.shape[2]
        # A padded slot holds an all-zero token block plus its position and channel embeddings.
        fill = patch_pos.expand(self.num_slots, per_plane, dim)
        if self.channel_token is not None:
            fill = fill + self.channel_token[0]
        padded = fill.unsqueeze(0).repeat(num_seqs, 1, 1, 1)
        owner = torch.repeat_interleave(torch.arange(num_seqs), torch.tensor(seq_counts)).to(tokens.device)
        padded = padded.index_put((owner, slots), tokens)
        sequences = torch.cat([cls.expand(num_seqs, 1, dim), padded.reshape(num_seqs, -1, dim)], dim=1)
        return sequences.reshape(-1, dim)

    # ----- outputs -----------------------------------------------------------------------------

    @staticmethod
    def _input_order(layout: PackedLayout) -> Tensor:
        """Positions in packed order of the input-order sequences (inverse of `seq_order`)."""
        order = layout.seq_order
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(order.numel(), device=order.device)
        return inverse

    def _sequence_cls(self, encoded: _Encoded) -> Tensor:
        """Normed CLS of every sequence, (S, D), input order; only those rows are normed."""
        rows = encoded.layout.first_token_rows().to(encoded.tokens.device)
        cls_packed = encoded.tokens[rows]
        return self.norm(cls_packed[self._input_order(encoded.layout)])

    def _sequence_patches(self, encoded: _Encoded, norm: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Normed CLS (S, D) and per sequence the real patch tokens (c, h, w, D), input order."""
        normed = self.norm(encoded.tokens) if norm else encoded.tokens
        layout = encoded.layout
        first_rows = (torch.cumsum(layout.seq_lens, 0) - layout.seq_lens).tolist()
        packed_position = self._input_order(layout).tolist()
        h, w = encoded.grid
        patches = []
        for seq, count in enumerate(encoded.seq_counts):
            start = first_rows[packed_position[seq]] + 1
            patches.append(normed[start : start + count * h * w].reshape(count, h, w, -1))
        rows = layout.first_token_rows().to(normed.device)
        cls = normed[rows][self._input_order(layout)]
        return cls, patches

    def _sequence_attention(self, encoded_before_last: _Encoded) -> list[Tensor]:
        """Last-block CLS attention per sequence, (heads, c, h, w), input order."""
        last = self.blocks[-1]
        layout = encoded_before_last.layout
        maps = last.attention.cls_attention(last.attention_input(encoded_before_last.tokens), layout)
        packed_position = self._input_order(layout).tolist()
        h, w = encoded_before_last.grid
        result = []
        for seq, count in enumerate(encoded_before_last.seq_counts):
            probabilities = maps[packed_position[seq]]
            result.append(probabilities[:, 1 : 1 + count * h * w].reshape(-1, count, h, w))
        return result
