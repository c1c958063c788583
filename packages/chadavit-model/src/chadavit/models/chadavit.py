"""ChAda-ViT (Bourriez et al., CVPR 2024): joint attention over all tokens of all channels of an image.

Each channel is tokenised by one shared Conv2d(1, D, 16, 16); its tokens get the shared learned
position embedding and the learned embedding of its channel slot; one CLS token attends jointly
to every token of every channel of its image. By default images run padding-free (grouped by
channel count, so an image costs what its own channels cost); `padded=True` runs the reference
path, padded to `max_channels` slots with the padded keys masked.

`channel_embedding="name"` (or `"slot+name"`) replaces (or complements) the slot embedding with one
learned vector per name of `channel_vocab`, row 0 being `unknown`: the channel's identity then comes
from its name (`ChannelBatch.channel_names` or `channel_names=`), not its position (docs/model.md).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from chadavit.batch import ChannelBatch
from chadavit.channels import UNKNOWN, canonical_name
from chadavit.models.base import Features, ModelInput, PackedViT
from chadavit.models.config import ViTConfig
from chadavit.models.layers import INIT_STD

ChannelNames = Sequence[Sequence[str]] | None


class ChAdaViT(PackedViT):
    """One sequence per image: [CLS, channel 0 tokens, channel 1 tokens, ...]."""

    def __init__(self, config: ViTConfig) -> None:
        mode = config.channel_embedding
        super().__init__(config, num_slots=config.max_channels, channel_embedding="slot" in mode)
        self.uses_names = "name" in mode
        self._vocab_index = {name: row + 1 for row, name in enumerate(config.channel_vocab or ())}
        self._warned_names: set[str] = set()
        if self.uses_names:
            # Row 0 is `unknown`: names outside the vocabulary share it.
            rows = 1 + len(self._vocab_index)
            self.channel_name_token = nn.Parameter(torch.zeros(rows, config.embed_dim))
            nn.init.trunc_normal_(self.channel_name_token, std=INIT_STD)
        else:
            self.register_parameter("channel_name_token", None)

    @property
    def channel_vocab(self) -> tuple[str, ...]:
        """The names this model has a vector for, `unknown` first (empty in slot mode)."""
        return (UNKNOWN, *self._vocab_index) if self.uses_names else ()

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | ({"channel_name_token"} if self.uses_names else set())

    def _name_row(self, name: str) -> int:
        row = self._vocab_index.get(name) or self._vocab_index.get(canonical_name(name))
        if row is None and name not in self._warned_names and name != UNKNOWN:
            self._warned_names.add(name)
            warnings.warn(
                f"channel name {name!r} is not in the vocabulary of {self.config.name}; "
                f"it uses the '{UNKNOWN}' vector",
                UserWarning,
                stacklevel=4,
            )
        return row or 0

    def _plane_embedding(self, batch: ChannelBatch) -> Tensor | None:
        if not self.uses_names:
            return None
        if batch.channel_names is None:
            raise ValueError(
                f"{self.config.name} embeds channels by name (channel_embedding="
                f"{self.config.channel_embedding!r}): pass channel_names=[[...], ...] (one name per "
                "channel of each image) or a ChannelBatch with channel_names"
            )
        rows = [self._name_row(name) for names in batch.channel_names for name in names]
        index = torch.tensor(rows, dtype=torch.long, device=self.channel_name_token.device)
        return self.channel_name_token[index]

    def _named(self, x: ModelInput, channel_names: ChannelNames) -> tuple[ChannelBatch, list[int]]:
        batch, counts = self._checked(x)
        if channel_names is not None:
            batch = batch.with_channel_names(channel_names)
        return batch, counts

    def _check_batch(self, batch: ChannelBatch, counts: list[int]) -> None:
        for index, count in enumerate(counts):
            if count > self.config.max_channels:
                raise ValueError(
                    f"image {index} has {count} channels but {self.config.name} has "
                    f"max_channels={self.config.max_channels} channel slots"
                )
        super()._check_batch(batch, counts)

    def forward(self, x: ModelInput, padded: bool = False, channel_names: ChannelNames = None) -> Tensor:
        """CLS embedding (B, D), in input order (logits (B, num_classes) after `reset_classifier`).

        `channel_names`: per image one name per channel (read in the name modes, ignored in slot mode)."""
        batch, counts = self._named(x, channel_names)
        encoded = self._encode(batch.pixels, counts, padded, plane_embedding=self._plane_embedding(batch))
        return self.forward_head(self._sequence_cls(encoded))

    def forward_features(
        self, x: ModelInput, padded: bool = False, channel_names: ChannelNames = None
    ) -> Features:
        """CLS (B, D) and each image's patch tokens (C_i, h, w, D), after the final norm."""
        batch, counts = self._named(x, channel_names)
        encoded = self._encode(batch.pixels, counts, padded, plane_embedding=self._plane_embedding(batch))
        cls, patches = self._sequence_patches(encoded)
        return Features(cls=cls, patch_tokens=patches)

    def attention_maps(self, x: ModelInput, channel_names: ChannelNames = None) -> list[Tensor]:
        """Per image (heads, C_i, h, w): last-block attention of CLS to every patch of every channel."""
        batch, counts = self._named(x, channel_names)
        before_last = self._encode(
            batch.pixels,
            counts,
            padded=False,
            blocks=len(self.blocks) - 1,
            plane_embedding=self._plane_embedding(batch),
        )
        return self._sequence_attention(before_last)
