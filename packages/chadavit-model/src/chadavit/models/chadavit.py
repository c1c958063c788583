"""ChAda-ViT (Bourriez et al., CVPR 2024): joint attention over all tokens of all channels of an image.

Each channel is tokenised by one shared Conv2d(1, D, 16, 16); its tokens get the shared learned
position embedding and the learned embedding of its channel slot; one CLS token attends jointly
to every token of every channel of its image. By default images run padding-free (grouped by
channel count, so an image costs what its own channels cost); `padded=True` runs the reference
path, padded to `max_channels` slots with the padded keys masked.
"""

from __future__ import annotations

from torch import Tensor

from chadavit.batch import ChannelBatch
from chadavit.models.base import Features, ModelInput, PackedViT
from chadavit.models.config import ViTConfig


class ChAdaViT(PackedViT):
    """One sequence per image: [CLS, channel 0 tokens, channel 1 tokens, ...]."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config, num_slots=config.max_channels, channel_embedding=True)

    def _check_batch(self, batch: ChannelBatch, counts: list[int]) -> None:
        for index, count in enumerate(counts):
            if count > self.config.max_channels:
                raise ValueError(
                    f"image {index} has {count} channels but {self.config.name} has "
                    f"max_channels={self.config.max_channels} channel slots"
                )
        super()._check_batch(batch, counts)

    def forward(self, x: ModelInput, padded: bool = False) -> Tensor:
        """CLS embedding (B, D), in input order (logits (B, num_classes) after `reset_classifier`)."""
        batch, counts = self._checked(x)
        return self.forward_head(self._sequence_cls(self._encode(batch.pixels, counts, padded)))

    def forward_features(self, x: ModelInput, padded: bool = False) -> Features:
        """CLS (B, D) and each image's patch tokens (C_i, h, w, D), after the final norm."""
        batch, counts = self._checked(x)
        cls, patches = self._sequence_patches(self._encode(batch.pixels, counts, padded))
        return Features(cls=cls, patch_tokens=patches)

    def attention_maps(self, x: ModelInput) -> list[Tensor]:
        """Per image (heads, C_i, h, w): last-block attention of CLS to every patch of every channel."""
        batch, counts = self._checked(x)
        before_last = self._encode(batch.pixels, counts, padded=False, blocks=len(self.blocks) - 1)
        return self._sequence_attention(before_last)
