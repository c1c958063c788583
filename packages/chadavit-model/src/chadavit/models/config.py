"""The one configuration type of every model; JSON-able through `dataclasses.asdict`."""

from __future__ import annotations

from dataclasses import dataclass

ARCHITECTURES = ("chadavit", "onechannel", "interchannel")
BLOCKS = ("prenorm", "released")


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

    def __post_init__(self) -> None:
        problems = []
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.block not in BLOCKS:
            problems.append(f"block must be one of {BLOCKS}, got {self.block!r}")
        for field in ("img_size", "patch_size", "embed_dim", "depth", "num_heads", "max_channels"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
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
        if problems:
            raise ValueError(f"invalid configuration {self.name!r}: " + "; ".join(problems))

    @property
    def hidden_dim(self) -> int:
        return self.ffn_dim if self.ffn_dim is not None else int(self.embed_dim * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        """Patches per side at `img_size`: the grid the learned positional embedding holds."""
        return self.img_size // self.patch_size
