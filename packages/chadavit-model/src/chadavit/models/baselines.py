"""The baselines of the paper's Table 1 / Table 2.

- One-channel ViT: every channel is encoded alone by a ViT-Tiny (Conv2d(1, D)); the image
  embedding is the concatenation of its channels' CLS, so its size is C x D (C x 192).
- Inter-channel ViT: every channel becomes one single token (one 224 x 224 patch), so attention
  runs across channels only, with the learned channel-slot embeddings of ChAda-ViT.
- Standard ViT: a ViT-Tiny over fixed 3-channel images (Conv2d(3, D)), the usual ViT, which the
  authors pretrain on the images with at least 3 channels, keeping their first 3.

`training_embeddings` is what a self-supervised head sees: the image embedding, except for the
one-channel ViT, where each channel's CLS is a sample of its own (the authors' per-channel
pretraining, `src/methods/base.py` of github.com/nicoboou/chadavit around lines 537-559).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from chadavit.batch import ChannelBatch
from chadavit.models.base import Features, ModelInput, PackedViT
from chadavit.models.chadavit import ChAdaViT
from chadavit.models.config import ViTConfig


class OneChannelViT(PackedViT):
    """A single-channel ViT run on every channel separately; embedding = concatenated channel CLS.

    `embed_dim` is the per-channel width; `forward` returns (B, C * embed_dim) and needs every
    image of the batch to have the same C. `max_channels` does not limit it (no channel slots).
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config, num_slots=1, channel_embedding=False)
        self.num_channels: int | None = None  # C, once a classifier fixes the width C x embed_dim

    @property
    def num_features(self) -> int:
        """C x embed_dim: known once C is (`reset_classifier(n, num_channels=C)`)."""
        if self.num_channels is None:
            raise ValueError(
                f"{self.config.name}'s embedding is C x {self.embed_dim} wide; give C with "
                "reset_classifier(num_classes, num_channels=C) or create_model(..., num_channels=C)"
            )
        return self.num_channels * self.embed_dim

    def _set_num_channels(self, num_channels: int) -> None:
        if isinstance(num_channels, bool) or not isinstance(num_channels, int) or num_channels < 1:
            raise ValueError(f"num_channels must be a positive integer, got {num_channels!r}")
        self.num_channels = num_channels

    def _sequences_of(self, counts: list[int]) -> list[int]:
        raise ValueError(
            f"{self.config.name} encodes each channel alone: get_intermediate_layers is for models "
            "with one sequence per image"
        )

    @staticmethod
    def _same_count(counts: list[int]) -> int:
        for index, count in enumerate(counts):
            if count != counts[0]:
                raise ValueError(
                    f"image {index} has {count} channels but image 0 has {counts[0]}; the one-channel "
                    "baseline concatenates channel embeddings, so a batch needs one channel count"
                )
        return counts[0]

    def forward(self, x: ModelInput, padded: bool = False) -> Tensor:
        """(B, C * embed_dim): each channel's CLS, concatenated in channel order."""
        batch, counts = self._checked(x)
        channels = self._same_count(counts)
        if self.num_channels is not None and channels != self.num_channels:
            raise ValueError(
                f"the images have {channels} channels; this model's head expects {self.num_channels}"
            )
        encoded = self._encode(batch.pixels, [1] * batch.pixels.shape[0], padded)
        return self.forward_head(self._sequence_cls(encoded).reshape(len(counts), channels * self.embed_dim))

    def training_embeddings(self, x: ModelInput, padded: bool = False) -> Tensor:
        """(sum C, embed_dim): every channel's CLS as a sample of its own; mixed counts allowed."""
        batch, _ = self._checked(x)
        return self._sequence_cls(self._encode(batch.pixels, [1] * batch.pixels.shape[0], padded))

    def forward_features(self, x: ModelInput, padded: bool = False) -> Features:
        batch, counts = self._checked(x)
        channels = self._same_count(counts)
        encoded = self._encode(batch.pixels, [1] * batch.pixels.shape[0], padded)
        cls, plane_patches = self._sequence_patches(encoded)
        per_image = torch.split(torch.cat(plane_patches, dim=0), counts, dim=0)
        return Features(cls=cls.reshape(len(counts), channels * self.embed_dim), patch_tokens=list(per_image))

    def attention_maps(self, x: ModelInput) -> list[Tensor]:
        """Per image (heads, C_i, h, w): each channel's CLS attention over its own patches."""
        batch, counts = self._checked(x)
        encoded = self._encode(batch.pixels, [1] * batch.pixels.shape[0], False, blocks=len(self.blocks) - 1)
        plane_maps = self._sequence_attention(encoded)
        starts = [sum(counts[:i]) for i in range(len(counts))]
        return [torch.cat(plane_maps[s : s + c], dim=1) for s, c in zip(starts, counts, strict=True)]


class InterChannelViT(ChAdaViT):
    """ChAda-ViT whose patch is the whole image: one token per channel, attention across channels.

    `patch_size` equals `img_size`; images of another size are resized to it (bilinear,
    antialiased) so that every channel stays exactly one token.
    """

    def __init__(self, config: ViTConfig) -> None:
        if config.patch_size != config.img_size:
            raise ValueError(
                f"{config.name} needs patch_size == img_size (one token per channel), "
                f"got patch_size {config.patch_size} and img_size {config.img_size}"
            )
        super().__init__(config)

    def _check_spatial(self, height: int, width: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"the batch's images are {height}x{width} pixels; both sides must be positive")

    def _prepare_pixels(self, pixels: Tensor) -> Tensor:
        pixels = super()._prepare_pixels(pixels)
        size = self.config.img_size
        if pixels.shape[1:] == (size, size):
            return pixels
        resized = F.interpolate(pixels[:, None], size=(size, size), mode="bilinear", antialias=True)
        return resized[:, 0]


class MultiChannelPatchEmbed(nn.Module):
    """A standard ViT's Conv2d(C, D, p, p) over images of `in_channels` planes: (B * C, H, W) -> (B, N, D)."""

    def __init__(self, patch_size: int, embed_dim: int, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, planes: Tensor) -> Tensor:
        images = planes.reshape(-1, self.in_channels, *planes.shape[1:])
        return self.proj(images).flatten(2).transpose(1, 2)


class StandardViT(PackedViT):
    """A plain ViT over `STANDARD_CHANNELS`-channel images: one sequence [CLS, patches] per image.

    Every image of a batch must have exactly 3 channels: train it with `data.first_channels=3`
    (images with fewer are left out, the others keep their first 3, as the authors did).
    """

    in_channels = 3

    def __init__(self, config: ViTConfig) -> None:
        super().__init__(config, num_slots=1, channel_embedding=False)
        self.token_learner = MultiChannelPatchEmbed(config.patch_size, config.embed_dim, self.in_channels)
        self.reset_parameters()

    def _check_batch(self, batch: ChannelBatch, counts: list[int]) -> None:
        for index, count in enumerate(counts):
            if count != self.in_channels:
                raise ValueError(
                    f"image {index} has {count} channels but {self.config.name} is a standard ViT "
                    f"over {self.in_channels}-channel images (train it with data.first_channels=3)"
                )
        super()._check_batch(batch, counts)

    def forward(self, x: ModelInput, padded: bool = False) -> Tensor:
        """CLS embedding (B, D) (logits (B, num_classes) after `reset_classifier`)."""
        batch, counts = self._checked(x)
        return self.forward_head(self._sequence_cls(self._encode(batch.pixels, [1] * len(counts), padded)))

    def _sequences_of(self, counts: list[int]) -> list[int]:
        return [1] * len(counts)  # one sequence per image, all its channels in one token grid

    def forward_features(self, x: ModelInput, padded: bool = False) -> Features:
        """CLS (B, D) and each image's patch tokens as (1, h, w, D): one token grid for all channels."""
        batch, counts = self._checked(x)
        cls, patches = self._sequence_patches(self._encode(batch.pixels, [1] * len(counts), padded))
        return Features(cls=cls, patch_tokens=patches)

    def attention_maps(self, x: ModelInput) -> list[Tensor]:
        """Per image (heads, 1, h, w): last-block CLS attention over the patches."""
        batch, counts = self._checked(x)
        before_last = self._encode(batch.pixels, [1] * len(counts), False, blocks=len(self.blocks) - 1)
        return self._sequence_attention(before_last)
