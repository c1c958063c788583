"""Training configuration: frozen dataclasses with the paper's defaults, YAML in and out, dotted overrides.

Precedence is defaults < `--config file.yaml` < command-line flags. The YAML mirrors the dataclasses:
top-level fields plus the sections `data`, `augment`, `dino` and `optim`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chadavit.data.augment import AugmentConfig
from chadavit.data.loader import DataConfig
from chadavit.ssl.dino_loss import CENTERINGS


@dataclass(frozen=True)
class DinoConfig:
    """DINO (Caron et al. 2021) head, loss and teacher; defaults are DINO's ViT settings."""

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


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine; the paper's base LR is 1e-4 per 256 images."""

    base_lr: float = 1e-4  # scaled by global batch / 256
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    weight_decay: float = 0.04  # cosine to weight_decay_end
    weight_decay_end: float = 0.4
    clip_grad: float = 3.0  # max global gradient norm; 0 disables clipping
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run. The paper: chadavit_moyen, 400 epochs, 256 images per GPU on 32 GPUs."""

    data_dir: str = ""
    out_dir: str = ""
    model: str = "chadavit_moyen"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. embed_dim, depth, num_heads
    epochs: int = 400
    seed: int = 0
    save_every: int = 1000  # steps between checkpoints (one is also written at every epoch end)
    resume: str | None = None  # None: fresh run; "auto": the last checkpoint in out_dir if any; or a path
    nproc: int = 1  # local DDP processes to start; under torchrun leave it at 1
    device: str = "auto"  # auto: cuda (one GPU per local rank) when available, else cpu
    precision: str = "auto"  # auto: bf16 autocast on GPU, fp32 on CPU; or fp32 / bf16 / fp16
    padded: bool = False  # run the padded reference forward instead of the padding-free one
    threads: int | None = None  # torch threads per rank on CPU; default: cores / local ranks
    dist_timeout_s: float = 1800.0  # a collective waiting longer (a dead rank) fails instead of hanging
    find_unused_parameters: bool = False  # every parameter gets a gradient with the chadavit models
    log_every: int = 1  # steps between metric lines
    sync_check_every: int = 0  # steps between cross-rank weight-equality checks; 0 disables
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {self.save_every}")
        if self.nproc < 1:
            raise ValueError(f"nproc must be >= 1, got {self.nproc}")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, got {self.precision!r}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with dotted keys replaced: {"data.batch_size": 8, "epochs": 2}."""
        merged = self.to_dict()
        for dotted, value in overrides.items():
            target = merged
            *parents, leaf = dotted.split(".")
            for parent in parents:
                if not isinstance(target.get(parent), dict):
                    raise ValueError(f"unknown config key {dotted!r}")
                target = target[parent]
            if leaf not in target:
                raise ValueError(f"unknown config key {dotted!r}")
            target[leaf] = value
        return config_from_dict(merged)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    if not isinstance(values, Mapping):
        raise ValueError(f"config section {where or 'top level'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ValueError(f"unknown config key(s) {[prefix + k for k in unknown]}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, f"{where}.{name}" if where else name)
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            kwargs[name] = tuple(value)
        elif _is_float(hint) and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = float(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ValueError(f"invalid config for {where or 'top level'}: {error}") from error


def _is_float(hint: Any) -> bool:
    if hint is float:
        return True
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return float in typing.get_args(hint)
    return False


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are an error naming them."""
    config = _build(TrainConfig, values, "")
    return dataclasses.replace(config, model_overrides=dict(config.model_overrides or {}))


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML file (any subset of the fields) over the defaults."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"config file {file} does not exist")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"config file {file} is not valid YAML: {error}") from error
    if not isinstance(values, Mapping):
        raise ValueError(f"config file {file} must hold a mapping of config keys")
    return config_from_dict(values)


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
