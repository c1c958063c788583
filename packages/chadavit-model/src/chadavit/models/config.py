"""The one configuration type of every model; JSON-able through `dataclasses.asdict`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

ARCHITECTURES = ("chadavit", "onechannel", "interchannel", "standard")
BLOCKS = ("prenorm", "released")
# How a channel's tokens learn which channel they are: by slot (position in the image, the paper's and
# the released weights'), by name (one vector per `channel_vocab` entry, plus `unknown`), or both.
CHANNEL_EMBEDDINGS = ("slot", "name", "slot+name")
_INT_FIELDS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "max_channels")
_FLOAT_FIELDS = ("mlp_ratio", "drop_path_rate", "block_norm_eps", "norm_eps")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a size


@dataclass(frozen=True)
class ViTConfig:
    """A named model configuration. Defaults: ChAda-ViT at the paper's ViT-Tiny width (D 192)."""

    name: str = "chadavit_moyen"
    architecture: str = "chadavit"
    img_size: int = 224  # the training resolution of IDRCell100k; pos_embed holds its grid
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    ffn_dim: int | None = None  # explicit MLP width; None means embed_dim * mlp_ratio
    max_channels: int = 10  # N_max of the paper: channel-embedding slots
    drop_path_rate: float = 0.1  # DINO's ViT default stochastic depth for new training
    block: str = "prenorm"
    block_norm_eps: float = 1e-6
    norm_eps: float = 1e-6
    channel_embedding: str = "slot"
    channel_vocab: tuple[str, ...] | None = None  # ordered canonical names (chadavit.channels)

    def __post_init__(self) -> None:
        if isinstance(self.channel_vocab, list):  # as config.json stores it
            object.__setattr__(self, "channel_vocab", tuple(self.channel_vocab))
        # Types first (a config.json may hold anything), then ranges; every problem in one message.
        problems = self._type_problems()
        if not problems:
            problems = self._range_problems()
        if problems:
            raise ValueError(f"invalid configuration {self.name!r}: " + "; ".join(problems))

    def _type_problems(self) -> list[str]:
        problems = []
        for field in ("name", "architecture", "block", "channel_embedding"):
            if not isinstance(getattr(self, field), str):
                problems.append(f"{field} must be a string, got {getattr(self, field)!r}")
        for field in _INT_FIELDS + (("ffn_dim",) if self.ffn_dim is not None else ()):
            if not _is_int(getattr(self, field)):
                problems.append(f"{field} must be an integer, got {getattr(self, field)!r}")
        for field in _FLOAT_FIELDS:
            value = getattr(self, field)
            if not (_is_int(value) or isinstance(value, float)) or not math.isfinite(value):
                problems.append(f"{field} must be a finite number, got {value!r}")
        vocab = self.channel_vocab
        if vocab is not None and not (
            isinstance(vocab, tuple) and all(isinstance(n, str) and n.strip() for n in vocab)
        ):
            problems.append(f"channel_vocab must be a list of non-empty names, got {vocab!r}")
        return problems

    def _channel_problems(self) -> list[str]:
        mode, vocab = self.channel_embedding, self.channel_vocab
        if mode not in CHANNEL_EMBEDDINGS:
            return [f"channel_embedding must be one of {CHANNEL_EMBEDDINGS}, got {mode!r}"]
        if mode == "slot":
            if vocab is not None:
                return ["channel_vocab is used only with channel_embedding 'name' or 'slot+name'"]
            return []
        if self.architecture != "chadavit":
            return [f"channel_embedding {mode!r} is for the chadavit architecture, not {self.architecture!r}"]
        if not vocab:
            return [f"channel_embedding {mode!r} needs a channel_vocab (the ordered channel names)"]
        repeated = sorted({name for name in vocab if vocab.count(name) > 1})
        if repeated:
            return [f"channel_vocab lists {repeated} more than once"]
        if "unknown" in vocab:
            return ["channel_vocab must not list 'unknown': every vocabulary has it already"]
        return []

    def _range_problems(self) -> list[str]:
        problems = []
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.block not in BLOCKS:
            problems.append(f"block must be one of {BLOCKS}, got {self.block!r}")
        for field in _INT_FIELDS:
            if getattr(self, field) < 1:
                problems.append(f"{field} must be a positive integer, got {getattr(self, field)!r}")
        if not problems and self.embed_dim % self.num_heads != 0:
            problems.append(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if not problems and self.img_size % self.patch_size != 0:
            problems.append(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            problems.append(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.ffn_dim is not None and self.ffn_dim < 1:
            problems.append(f"ffn_dim must be positive, got {self.ffn_dim}")
        if self.mlp_ratio <= 0:
            problems.append(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        for field in ("block_norm_eps", "norm_eps"):
            if getattr(self, field) <= 0:
                problems.append(f"{field} must be positive, got {getattr(self, field)}")
        return problems + self._channel_problems()

    @property
    def hidden_dim(self) -> int:
        return self.ffn_dim if self.ffn_dim is not None else int(self.embed_dim * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        """Patches per side at `img_size`: the grid the learned positional embedding holds."""
        return self.img_size // self.patch_size
