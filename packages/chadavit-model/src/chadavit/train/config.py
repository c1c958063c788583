"""Training configuration: frozen dataclasses with the paper's defaults, YAML in and out, dotted overrides.

Precedence is defaults < `--config file.yaml` < command-line flags. The YAML mirrors the dataclasses:
top-level fields plus the sections `data`, `augment`, `dino`, `supervised` and `optim`. Every value is checked
for type (from the field's annotation) and range (`RULES` below) by `chadavit.train.validation`
before a section is built, and a `TrainConfig` checks all of its values when it is made.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from chadavit.data.augment import INTENSITY_ORDERS, INTERPOLATIONS, AugmentConfig
from chadavit.data.loader import DataConfig
from chadavit.models import list_models, model_config
from chadavit.ssl.dino import DinoConfig
from chadavit.ssl.dino_loss import CENTERINGS
from chadavit.ssl.methods import OBJECTIVES
from chadavit.ssl.supervised import LOSSES, SupervisedConfig
from chadavit.train.validation import (
    NO_RULE,
    ConfigError,
    Rule,
    above,
    at_least,
    convert,
    fraction,
    one_of,
    yaml_problem,
)

__all__ = ["ConfigError", "DinoConfig", "OptimConfig", "TrainConfig", "config_from_dict", "load_config"]


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine; the paper's base LR is 1e-4 per 256 images."""

    base_lr: float = 1e-4  # scaled by global batch / 256
    min_lr: float = 1e-6
    warmup_epochs: float = 10
    warmup_start_lr: float = 0.0  # where the linear warm-up starts (not scaled by the batch)
    weight_decay: float = 0.04  # cosine to weight_decay_end
    weight_decay_end: float = 0.4
    # DINO's clipping: each parameter's gradient norm is clipped to this on its own (not the global
    # norm of all gradients); 0 disables clipping. See chadavit.ssl.dino.clip_per_parameter.
    clip_grad: float = 3.0
    betas: tuple[float, float] = (0.9, 0.999)
    # False: DINO's rule, no decay on biases, norms and embeddings; True: decay on every parameter,
    # as the authors' code does by default (solo-learn's exclude_bias_n_norm_wd false).
    decay_all_params: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """One pretraining run. The paper: chadavit_moyen, 400 epochs, 256 images per GPU on 32 GPUs."""

    data_dir: str = ""
    out_dir: str = ""
    model: str = "chadavit_moyen"
    model_overrides: Mapping[str, Any] = field(default_factory=dict)  # e.g. embed_dim, depth, num_heads
    objective: str = "dino"  # what is trained: chadavit.ssl.methods.OBJECTIVES
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
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)  # --objective supervised
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-able values (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def with_overrides(self, overrides: Mapping[str, Any]) -> TrainConfig:
        """A copy with dotted keys replaced: {"data.batch_size": 8, "epochs": 2}."""
        merged = self.to_dict()
        for dotted, value in overrides.items():
            if dotted.startswith("model."):  # model.X=V sets the model override X (e.g. channel_embedding)
                merged["model_overrides"] = {**merged["model_overrides"], dotted[len("model.") :]: value}
                continue
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


# The range or choices of every config value, by dotted key. Upper limits only where a larger value
# would allocate or spawn before anything could fail (a head of 10^9 prototypes, 10^6 processes).
# tests/chadavit/test_train_config.py checks that every number and choice here has an entry.
RULES: dict[str, Rule] = {
    "model": one_of(*list_models()),
    "objective": one_of(*OBJECTIVES),
    "epochs": at_least(1, 100_000),
    "seed": at_least(0, 2**63 - 1),
    "save_every": at_least(1),
    "nproc": at_least(1, 1024),
    "device": one_of("auto", "cpu", "cuda"),
    "precision": one_of("auto", "fp32", "bf16", "fp16"),
    "threads": at_least(1, 4096),
    "dist_timeout_s": above(0, 30 * 24 * 3600),
    "log_every": at_least(1),
    "sync_check_every": at_least(0),
    "data.batch_size": at_least(1),  # and at most the samples of a rank: checked against the data
    "data.num_workers": at_least(0, 1024),
    "data.shuffle_buffer": at_least(1),
    "data.samples_per_rank": at_least(1),
    "data.steps_per_epoch": at_least(1),
    "data.augment_on": one_of("auto", "loader", "device"),
    "data.max_pending_batches": at_least(1),
    "data.image_size": at_least(1, 8192),
    "data.first_channels": at_least(1, 1024),
    "data.channel_min_count": at_least(1),
    "augment.global_crop_size": at_least(1, 8192),
    "augment.local_crop_size": at_least(1, 8192),
    "augment.n_local_crops": at_least(0, 64),
    "augment.global_crop_scale": above(0, 1),  # fractions of the image's area
    "augment.local_crop_scale": above(0, 1),
    "augment.crop_ratio": above(0),
    "augment.hflip_p": fraction(),
    "augment.vflip_p": fraction(),
    "augment.intensity_p": fraction(),
    "augment.intensity_scale": above(0),
    "augment.intensity_shift": at_least(-1, 1),  # intensities are in [0, 1]
    "augment.blur_p_global": fraction(),
    "augment.blur_p_local": fraction(),
    "augment.blur_sigma": above(0),
    "augment.channel_drop_p": fraction(),
    "augment.intensity_order": one_of(*INTENSITY_ORDERS),
    "augment.solarize_p_global": fraction(),
    "augment.solarize_p_local": fraction(),
    "augment.interpolation": one_of(*INTERPOLATIONS),
    "dino.out_dim": at_least(1, 2**20),
    "dino.hidden_dim": at_least(1, 65536),
    "dino.bottleneck_dim": at_least(1, 65536),
    "dino.head_layers": at_least(1, 64),
    "dino.student_temp": above(0),
    "dino.teacher_temp": above(0),
    "dino.warmup_teacher_temp": above(0),
    "dino.warmup_teacher_temp_epochs": at_least(0, 10_000),
    "dino.center_momentum": fraction(),
    "dino.centering": one_of(*CENTERINGS),
    "dino.momentum_teacher": fraction(),
    "dino.momentum_teacher_end": fraction(),
    "dino.freeze_last_layer_epochs": at_least(0),
    "supervised.loss": one_of(*LOSSES),
    "supervised.temperature": above(0),
    "optim.base_lr": above(0),
    "optim.min_lr": at_least(0),
    "optim.warmup_epochs": at_least(0),
    "optim.warmup_start_lr": at_least(0),
    "optim.weight_decay": at_least(0),
    "optim.weight_decay_end": at_least(0),
    "optim.clip_grad": at_least(0),
    "optim.betas": fraction(high_open=True),
}


def _key(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    """A `cls` from plain values; each is converted and checked before the dataclass is made."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section {where or 'top level'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[_key(where, k) for k in unknown]}")
    kwargs = {}
    for name, value in values.items():
        hint, key = hints[name], _key(where, name)
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = convert(key, hint, value, RULES.get(key, NO_RULE))
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:  # a section's own cross-field check (low <= high)
        message = str(error)
        if not message.startswith(f"{where}."):
            message = f"invalid config for {where or 'top level'}: {message}"
        raise ConfigError(message) from error


def _check_fields(instance: Any, where: str) -> None:
    hints = typing.get_type_hints(type(instance))
    for spec in dataclasses.fields(instance):
        value, key = getattr(instance, spec.name), _key(where, spec.name)
        if dataclasses.is_dataclass(hints[spec.name]):
            if not isinstance(value, hints[spec.name]):
                raise ConfigError(f"{key} must be a {hints[spec.name].__name__}, got {type(value).__name__}")
            _check_fields(value, key)
        else:
            convert(key, hints[spec.name], value, RULES.get(key, NO_RULE))


def check_config(config: TrainConfig) -> None:
    """Every value of `config` of its annotated type and in range, and the model buildable."""
    _check_fields(config, "")
    overrides = dict(config.model_overrides)
    if overrides.get("channel_embedding", "slot") != "slot" and not overrides.get("channel_vocab"):
        # The vocabulary is built from the data when the run starts (train/preflight.py); any
        # name stands in for it while the rest of the model's settings are checked.
        overrides["channel_vocab"] = ("dna",)
    try:
        model = model_config(config.model, **overrides)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model_overrides: {error}") from error
    if model.architecture == "standard" and config.data.first_channels != 3:
        raise ConfigError(
            f"model {config.model} takes 3-channel images: set data.first_channels=3 (it trains on the "
            f"images with at least 3 channels, keeping their first 3), got {config.data.first_channels}"
        )


def config_key(name: str) -> str:
    """The dotted key of the one config field called `name` (a top-level field, else a section's)."""
    top = {spec.name: spec for spec in dataclasses.fields(TrainConfig)}
    if name in top and not dataclasses.is_dataclass(typing.get_type_hints(TrainConfig)[name]):
        return name
    hints = typing.get_type_hints(TrainConfig)
    found = [
        f"{section}.{name}"
        for section, hint in hints.items()
        if dataclasses.is_dataclass(hint) and name in {spec.name for spec in dataclasses.fields(hint)}
    ]
    if len(found) != 1:
        raise ConfigError(f"no single config field is called {name!r} (found {found})")
    return found[0]


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys are an error naming them."""
    config = _build(TrainConfig, values, "")
    return dataclasses.replace(config, model_overrides=dict(config.model_overrides or {}))


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML file (any subset of the fields) over the defaults."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file {file} does not exist")
    if not file.is_file():
        raise ConfigError(f"config file {file} is not a file")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {file} is not UTF-8 text") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {file} is not valid YAML: {yaml_problem(error)}") from error
    except OSError as error:
        raise ConfigError(f"config file {file} cannot be read: {error.strerror}") from error
    if not isinstance(values, Mapping):
        raise ConfigError(f"config file {file} must hold a mapping of config keys")
    try:
        return config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"config file {file}: {error}") from error


def dump_config(config: TrainConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
