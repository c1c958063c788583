"""What the training loop trains: an objective owns the networks and what one step computes.

The loop (`chadavit.train.loop`) owns the rest: the optimizer and its learning-rate and
weight-decay schedules, mixed precision, DDP, the per-step reseeding, checkpoints and metrics. It
calls an objective in this order every step:

    loss = objective.loss(views, step)        # under autocast, after the loop reseeded torch
    loss.backward()                           # through the loop's grad scaler
    objective.adjust_gradients(step)          # clipping, frozen layers
    optimizer.step()
    objective.after_step(step)                # e.g. DINO's EMA teacher

DINO (`chadavit.ssl.dino`) is one objective; another (a supervised head) is one more class with
these methods and one more entry in `chadavit.ssl.methods.OBJECTIVES`, without a change to the loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from chadavit.batch import ChannelBatch
from chadavit.models.base import PackedViT


@dataclass(frozen=True)
class Views:
    """One step's input on the training device: the loader's multi-crop views and sample keys."""

    global_views: list[ChannelBatch]
    local_views: list[ChannelBatch]
    keys: tuple[str, ...] = ()


class Objective(Protocol):
    network: nn.Module
    """The module the optimizer updates (the loop wraps it in DDP when distributed)."""

    @property
    def backbone(self) -> PackedViT:
        """The backbone being trained (the loader reads its `max_channels`)."""
        ...

    def to(self, device: Any) -> Objective: ...

    def use_forward(self, forward: nn.Module) -> None:
        """Run `network` through `forward` from now on (the DDP wrapper of `network`)."""
        ...

    def param_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups of `network`; a group with `apply_wd` False keeps weight decay 0."""
        ...

    def loss(self, views: Views, step: int) -> Tensor: ...

    def adjust_gradients(self, step: int) -> None:
        """Called after backward (gradients unscaled) and before the optimizer step."""
        ...

    def after_step(self, step: int) -> None:
        """Called after the optimizer step."""
        ...

    def step_metrics(self, step: int) -> dict[str, float]:
        """The objective's own schedule values at `step`, logged beside loss and lr."""
        ...

    def weight_modules(self) -> tuple[nn.Module, ...]:
        """Every module whose weights must agree across ranks and be finite before a save."""
        ...

    def export_backbone(self) -> PackedViT:
        """The backbone written to RUN/model/ at the end of the run."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Entries merged into the training checkpoint (top-level keys)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
