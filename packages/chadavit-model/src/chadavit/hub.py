"""Saving and loading weights: our own model directories and the authors' released `.ckpt`.

A model directory holds `config.json` (the full `ViTConfig`) and `model.safetensors`. The
released checkpoint is a PyTorch Lightning pickle; it is read with `weights_only=True` and, when
that refuses the file's non-tensor objects (argparse Namespaces in `hyper_parameters`...), with a
restricted unpickler that rebuilds tensors and plain containers only and turns every other global
into an inert placeholder: nothing from the file is ever imported or called.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import pickle
import re
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from chadavit.atomic import atomic_write
from chadavit.models.base import PackedViT
from chadavit.models.config import ViTConfig
from chadavit.models.registry import build_model, model_config

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "chadavit-model-v1"

# Prefixes of the backbone inside the authors' Lightning state dict (reference-model.md).
RELEASED_PREFIXES = {
    "student": ("backbone.", "encoder."),
    "teacher": ("momentum_backbone.", "momentum_encoder."),
}


# ----- our model directories ---------------------------------------------------------------------


def save_pretrained(model: PackedViT, directory: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    document = {"format": FORMAT, **dataclasses.asdict(model.config)}
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
    return directory


def _read_config(path: Path) -> ViTConfig:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read model config {path}: {error}") from error
    if not isinstance(document, dict) or document.pop("format", None) != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} model config")
    known = {field.name for field in dataclasses.fields(ViTConfig)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValueError(f"{path} has unknown config fields {unknown}")
    return ViTConfig(**document)


def from_pretrained(directory: str | Path, map_location: str | torch.device = "cpu") -> PackedViT:
    """Rebuild a model saved by `save_pretrained`, weights restored exactly, in eval mode."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; is {directory} a saved chadavit model?")
    model = build_model(_read_config(config_path))
    _load_strict(model, load_file(weights_path, device=str(map_location)), str(weights_path))
    return model.to(map_location).eval()


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not match {model.config.name}: "
            f"missing keys {missing}, unexpected keys {unexpected}"
        )
    wrong = [
        f"{name} {tuple(state[name].shape)} != {tuple(expected[name].shape)}"
        for name in expected
        if state[name].shape != expected[name].shape
    ]
    if wrong:
        # A wrong config (say another embed_dim) mismatches nearly every tensor: name a few, count all.
        shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
        raise ValueError(
            f"{source} has {len(wrong)} tensors of the wrong shape for {model.config.name} "
            f"(weights != config): {shown}"
        )
    model.load_state_dict(state, strict=True)


# ----- the authors' released Lightning checkpoint ------------------------------------------------


class InertObject:
    """Stands in for any non-tensor object of a checkpoint; keeps its arguments, runs nothing."""

    _global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> InertObject:
        instance = super().__new__(cls)
        instance.__dict__["_args"] = args
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __repr__(self) -> str:
        return f"<inert {self._global_name}>"


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """Tensor rebuild functions and plain containers: what a state dict needs, nothing more."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
    }
    for name in (
        "_rebuild_tensor",
        "_rebuild_tensor_v2",
        "_rebuild_tensor_v3",
        "_rebuild_parameter",
        "_rebuild_parameter_with_state",
    ):
        if hasattr(torch._utils, name):
            allowed[("torch._utils", name)] = getattr(torch._utils, name)
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; any other global becomes an inert placeholder class."""

    _allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        placeholder = type(f"Inert_{name}", (InertObject,), {"_global_name": f"{module}.{name}"})
        return placeholder


# torch.load takes a module-like object whose `Unpickler` it subclasses for storages.
_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="chadavit_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda *args, **kwargs: _RestrictedUnpickler(*args, **kwargs).load(),
)


def read_checkpoint(path: str | Path) -> Any:
    """Load a torch checkpoint without executing code from it (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as refusal:
        logger.info("weights_only refused %s (%s); using the restricted unpickler", path, refusal)
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RESTRICTED_PICKLE)
    except Exception as error:
        raise ValueError(f"cannot read checkpoint {path}: {error}") from error


def _backbone_state(checkpoint: Any, weights: str, path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict (expected a Lightning checkpoint)")
    for prefix in RELEASED_PREFIXES[weights]:
        backbone = {
            key[len(prefix) :]: value
            for key, value in state.items()
            if isinstance(key, str) and key.startswith(prefix) and isinstance(value, torch.Tensor)
        }
        if backbone:
            return backbone
    prefixes = " or ".join(repr(p) for p in RELEASED_PREFIXES[weights])
    raise ValueError(f"{path} has no {weights} backbone: no state_dict key starts with {prefixes}")


def _released_config(state: dict[str, torch.Tensor], num_heads: int, path: Path) -> ViTConfig:
    """Read the architecture's sizes from tensor shapes (the file stores no config we trust)."""
    needed = ("token_learner.proj.weight", "channel_token", "pos_embed", "blocks.0.linear1.weight")
    absent = [key for key in needed if key not in state]
    if absent:
        raise ValueError(f"{path} is not a ChAda-ViT backbone: missing keys {absent}")
    embed_dim, _, patch, _ = state["token_learner.proj.weight"].shape
    grid = round((state["pos_embed"].shape[-2] - 1) ** 0.5)
    depth = 1 + max(int(m.group(1)) for key in state if (m := re.match(r"blocks\.(\d+)\.", key)))
    return model_config(
        "chadavit_moyen_v1",
        embed_dim=int(embed_dim),
        patch_size=int(patch),
        img_size=int(grid * patch),
        depth=depth,
        num_heads=num_heads,
        max_channels=int(state["channel_token"].shape[1]),
        ffn_dim=int(state["blocks.0.linear1.weight"].shape[0]),
    )


def load_released_checkpoint(path: str | Path, weights: str = "student", num_heads: int = 2) -> PackedViT:
    """The authors' `chadavit16-moyen` Lightning `.ckpt` as a `chadavit_moyen_v1` model, in eval mode.

    `weights`: "student" (`backbone.`, or the older `encoder.`; the authors' own choice) or
    "teacher" (`momentum_backbone.`). The file does not record the head count: the training
    scripts use 2, the authors' notebook 12. Unknown or missing keys raise an error listing them.
    """
    if weights not in RELEASED_PREFIXES:
        raise ValueError(f"weights must be 'student' or 'teacher', got {weights!r}")
    path = Path(path)
    state = _backbone_state(read_checkpoint(path), weights, path)
    model = build_model(_released_config(state, num_heads, path))
    _load_strict(model, state, f"{path} ({weights})")
    return model.eval()
