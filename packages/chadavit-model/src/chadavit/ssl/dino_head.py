"""The DINO projection head: a 3-layer MLP, an L2-normalised bottleneck, weight-normalised prototypes.

Following DINO (Caron et al. 2021, `vision_transformer.DINOHead`): hidden 2048, bottleneck 256,
GELU, no batch norm, and a last layer `W = g * V / ||V||` whose magnitude `g` is frozen at 1 by
default ("norm_last_layer"), which the authors found stabilises training. The weight norm is
written out here rather than through `torch.nn.utils.weight_norm` so its math stays visible.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DINOHead(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int = 65536,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        n_layers: int = 3,
        norm_last_layer: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"a DINO head needs at least one layer, got {n_layers}")
        dims = [in_dim] + [hidden_dim] * (n_layers - 1) + [bottleneck_dim]
        layers: list[nn.Module] = []
        for index, (a, b) in enumerate(itertools.pairwise(dims)):
            layers.append(nn.Linear(a, b))
            if index < n_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        # Prototype directions V (out_dim, bottleneck) and magnitudes g, as in weight_norm(dim=0).
        self.last_layer_direction = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last_layer_direction, std=0.02)
        self.last_layer_magnitude = nn.Parameter(torch.ones(out_dim, 1), requires_grad=not norm_last_layer)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """What DINO freezes during the first epoch."""
        return [p for p in (self.last_layer_direction, self.last_layer_magnitude) if p.requires_grad]

    def forward(self, x: Tensor) -> Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        weight = self.last_layer_magnitude * F.normalize(self.last_layer_direction, dim=-1)
        return F.linear(x, weight)
