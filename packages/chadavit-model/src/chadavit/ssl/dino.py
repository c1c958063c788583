"""DINO (Caron et al. 2021) as a training objective: student and EMA teacher, parameter groups, clipping.

The student (backbone + DINO head) sees every view; the teacher, an exponential moving average of
the student, sees the global views only. This module holds the method; the loop that runs it is
`chadavit.train.loop` (see `chadavit.ssl.objective` for the contract between the two).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from chadavit.batch import ChannelBatch
from chadavit.models import create_model
from chadavit.models.base import PackedViT
from chadavit.seeding import derive_seed
from chadavit.ssl.dino_head import DINOHead
from chadavit.ssl.dino_loss import CENTERINGS, DINOLoss
from chadavit.ssl.ema import ema_update
from chadavit.ssl.objective import Views
from chadavit.ssl.schedules import cosine_schedule, linear_warmup_then_constant

if TYPE_CHECKING:
    from chadavit.train.config import TrainConfig


@dataclass(frozen=True)
class DinoConfig:
    """DINO's head, loss and teacher; defaults are DINO's ViT settings. Limits: train/config.py."""

    out_dim: int = 65536  # prototypes
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    head_layers: int = 3
    norm_last_layer: bool = True
    student_temp: float = 0.1
    teacher_temp: float = 0.07
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: float = 30
    center_momentum: float = 0.9
    # "ema": DINO's center (the paper's); "sinkhorn_knopp": DINOv2's, against cluster collapse on
    # small, homogeneous data (see chadavit.ssl.dino_loss).
    centering: str = "ema"
    momentum_teacher: float = 0.996  # cosine to momentum_teacher_end over training
    momentum_teacher_end: float = 1.0
    freeze_last_layer_epochs: int = 1

    def __post_init__(self) -> None:
        if self.centering not in CENTERINGS:
            raise ValueError(f"dino.centering must be one of {list(CENTERINGS)}, got {self.centering!r}")


class DINONetwork(nn.Module):
    """Backbone + DINO head over a list of views; views of one resolution run as one batch."""

    def __init__(self, backbone: PackedViT, head: DINOHead, padded: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.padded = padded

    def forward(self, views: Sequence[ChannelBatch]) -> list[Tensor]:
        embeddings = []
        start = 0
        while start < len(views):
            end = start
            while end < len(views) and views[end].image_size == views[start].image_size:
                end += 1
            group = views[start:end]
            merged = ChannelBatch.concat(group)  # channel names too, when the views have them
            # One row per sample: an image, or a channel for the one-channel ViT (whose head is
            # therefore sized at embed_dim, not C x embed_dim; see PackedViT.training_embeddings).
            embeddings.append(self.backbone.training_embeddings(merged, padded=self.padded))
            start = end
        logits = self.head(torch.cat(embeddings))
        return list(logits.chunk(len(views)))


def param_groups(network: DINONetwork, decay_all: bool = False) -> list[dict[str, Any]]:
    """DINO's rule: no weight decay on biases and norms, nor on the backbone's embeddings; with
    `decay_all`, weight decay on every parameter (the authors' code, src/methods/base.py 319-320)."""
    no_decay_names = {f"backbone.{n}" for n in getattr(network.backbone, "no_weight_decay", set)()}
    decay, no_decay = [], []
    for name, param in network.named_parameters():
        if not param.requires_grad:
            continue
        if not decay_all and (name.endswith(".bias") or param.ndim == 1 or name in no_decay_names):
            no_decay.append(param)
        else:
            decay.append(param)
    return [{"params": decay, "apply_wd": True}, {"params": no_decay, "apply_wd": False, "weight_decay": 0.0}]


@torch.no_grad()
def clip_per_parameter(parameters: Sequence[nn.Parameter], max_norm: float) -> None:
    """DINO's clipping (`clip_gradients`): each parameter's gradient is scaled to norm <= max_norm
    on its own, not the global norm of all gradients together as `clip_grad_norm_` does."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    for grad, norm in zip(grads, norms, strict=True):
        grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))


def build_networks(config: TrainConfig) -> tuple[DINONetwork, DINONetwork]:
    """Student and teacher, identically initialised on every rank (seeded from config.seed)."""
    torch.manual_seed(derive_seed("init", config.seed))
    backbone = create_model(config.model, **dict(config.model_overrides))
    dino = config.dino
    head = DINOHead(
        backbone.embed_dim,
        dino.out_dim,
        dino.hidden_dim,
        dino.bottleneck_dim,
        dino.head_layers,
        dino.norm_last_layer,
    )
    student = DINONetwork(backbone, head, padded=config.padded)
    teacher = copy.deepcopy(student)
    teacher.requires_grad_(False)
    teacher.eval()  # no drop path in the teacher (DINO builds it without)
    return student, teacher


class DinoObjective:
    """DINO self-distillation; checkpoint entries `student`, `teacher` and `loss` (the center)."""

    def __init__(
        self,
        student: DINONetwork,
        teacher: DINONetwork,
        loss_fn: DINOLoss,
        momentum: np.ndarray,
        teacher_temp: np.ndarray,
        steps_per_epoch: int,
        clip_grad: float,
        freeze_last_layer_epochs: int,
        decay_all_params: bool = False,
    ) -> None:
        self.network = student
        self.teacher = teacher
        self.loss_fn = loss_fn
        self.momentum = momentum  # EMA momentum of the teacher, per global step
        self.teacher_temp = teacher_temp  # per global step
        self.steps_per_epoch = steps_per_epoch
        self.clip_grad = clip_grad
        self.freeze_last_layer_epochs = freeze_last_layer_epochs
        self.decay_all_params = decay_all_params
        self._forward: nn.Module = student

    @classmethod
    def build(cls, config: TrainConfig, steps_per_epoch: int) -> DinoObjective:
        dino, epochs = config.dino, config.epochs
        student, teacher = build_networks(config)
        return cls(
            student,
            teacher,
            DINOLoss(dino.out_dim, dino.student_temp, dino.center_momentum, dino.centering),
            momentum=cosine_schedule(
                dino.momentum_teacher, dino.momentum_teacher_end, epochs, steps_per_epoch
            ),
            teacher_temp=linear_warmup_then_constant(
                dino.warmup_teacher_temp,
                dino.teacher_temp,
                dino.warmup_teacher_temp_epochs,
                epochs,
                steps_per_epoch,
            ),
            steps_per_epoch=steps_per_epoch,
            clip_grad=config.optim.clip_grad,
            freeze_last_layer_epochs=dino.freeze_last_layer_epochs,
            decay_all_params=config.optim.decay_all_params,
        )

    @property
    def student(self) -> DINONetwork:
        return self.network

    @property
    def backbone(self) -> PackedViT:
        return self.network.backbone

    def to(self, device: torch.device | str) -> DinoObjective:
        self.network.to(device)
        self.teacher.to(device)
        self.loss_fn.to(device)
        return self

    def use_forward(self, forward: nn.Module) -> None:
        self._forward = forward

    def param_groups(self) -> list[dict[str, Any]]:
        return param_groups(self.network, self.decay_all_params)

    def loss(self, views: Views, step: int) -> Tensor:
        with torch.no_grad():
            teacher_out = self.teacher(views.global_views)  # the teacher sees global views only
        student_out = self._forward(views.global_views + views.local_views)
        return self.loss_fn(student_out, teacher_out, float(self.teacher_temp[step]))

    def adjust_gradients(self, step: int) -> None:
        if self.clip_grad > 0:
            clip_per_parameter(list(self.network.parameters()), self.clip_grad)
        if step // self.steps_per_epoch < self.freeze_last_layer_epochs:
            # DINO keeps the prototypes fixed during the first epoch: it stabilises the start.
            for param in self.network.head.last_layer_parameters():
                param.grad = None

    def after_step(self, step: int) -> None:
        ema_update(self.teacher, self.network, float(self.momentum[step]))

    def step_metrics(self, step: int) -> dict[str, float]:
        return {
            "teacher_momentum": float(self.momentum[step]),
            "teacher_temp": float(self.teacher_temp[step]),
        }

    def weight_modules(self) -> tuple[nn.Module, ...]:
        return (self.network, self.teacher)

    def export_backbone(self) -> PackedViT:
        return self.teacher.backbone  # DINO evaluates the teacher

    def state_dict(self) -> dict[str, Any]:
        return {
            "student": self.network.state_dict(),
            "teacher": self.teacher.state_dict(),
            "loss": self.loss_fn.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        missing = [name for name in ("student", "teacher", "loss") if name not in state]
        if missing:
            raise ValueError(f"the checkpoint lacks DINO's {missing}")
        self.network.load_state_dict(state["student"])
        self.teacher.load_state_dict(state["teacher"])
        self.loss_fn.load_state_dict(state["loss"])
