"""Saving and loading weights: our own model directories and the authors' released `.ckpt`.

A model directory holds `config.json` (the full `ViTConfig`) and `model.safetensors`. The
released checkpoint is a PyTorch Lightning pickle, read by torch's weights-only unpickler with the
file's non-tensor globals (argparse Namespaces in `hyper_parameters`...) mapped to inert placeholders
made for that one load: nothing from the file is imported or called, and no existing object changes.
Every unusable file raises `ModelFileError`, one sentence naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from chadavit.atomic import atomic_write
from chadavit.hub_remote import RELEASED_MD5, download_checkpoint, download_model_dir, file_md5, is_hub_id
from chadavit.models.base import PackedViT
from chadavit.models.config import ViTConfig
from chadavit.models.registry import build_model, model_config
from chadavit.preprocess import InputContract, input_contract

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "chadavit-model-v1"

# Prefixes of the backbone inside the authors' Lightning state dict (docs/reference-model.md).
RELEASED_PREFIXES = {
    "student": ("backbone.", "encoder."),
    "teacher": ("momentum_backbone.", "momentum_encoder."),
}


class ModelFileError(ValueError):
    """A model directory or checkpoint that cannot be used; the message names the file and why."""


# ----- our model directories ---------------------------------------------------------------------


def save_pretrained(model: PackedViT, directory: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    atomic_write(directory / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))
    document = {
        "format": FORMAT,
        **dataclasses.asdict(model.config),
        PREPROCESSING_KEY: input_contract(model).to_json(),  # the input contract (chadavit.preprocess)
    }
    if model.num_classes:  # a fine-tuned classifier: rebuilt by from_pretrained before loading
        document[HEAD_KEY] = {
            "num_classes": model.num_classes,
            "num_channels": getattr(model, "num_channels", None),
        }
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    atomic_write(directory / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text))
    return directory


PREPROCESSING_KEY = "preprocessing"
HEAD_KEY = "head"


def _read_config(path: Path) -> ViTConfig:
    return _read_model_document(path)[0]


def _read_head(document: dict[str, Any], path: Path) -> dict[str, Any]:
    head = document.pop(HEAD_KEY, {"num_classes": 0})
    if not isinstance(head, dict) or set(head) - {"num_classes", "num_channels"}:
        raise ModelFileError(f"{path}: head must be {{num_classes, num_channels}}, got {head!r}")
    return {"num_classes": head.get("num_classes", 0), "num_channels": head.get("num_channels")}


def _read_model_document(path: Path) -> tuple[ViTConfig, InputContract | None]:
    """config.json's `ViTConfig`, and its input contract (None in files written before it existed)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"cannot read model config {path}: {error}") from error
    if not isinstance(document, dict) or document.pop("format", None) != FORMAT:
        raise ModelFileError(f"{path} is not a {FORMAT} model config")
    document.pop(HEAD_KEY, None)  # read by _read_head
    contract = None
    if PREPROCESSING_KEY in document:
        try:
            contract = InputContract.from_json(document.pop(PREPROCESSING_KEY), str(path))
        except (TypeError, ValueError) as error:
            raise ModelFileError(str(error)) from error
    known = {field.name for field in dataclasses.fields(ViTConfig)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ModelFileError(f"{path} has unknown config fields {unknown}")
    try:
        return ViTConfig(**document), contract
    except ValueError as error:  # ViTConfig names every bad field, with its type or range
        raise ModelFileError(f"{path}: {error}") from error


def _read_weights(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=device)
    except Exception as error:  # SafetensorError (empty, truncated, not safetensors) or OSError
        raise ModelFileError(f"cannot read weights {path}: {error}") from error


def from_pretrained(
    directory: str | Path,
    map_location: str | torch.device = "cpu",
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> PackedViT:
    """Rebuild a model saved by `save_pretrained`, weights restored exactly, in eval mode.

    `directory`: a local folder, or a Hugging Face Hub id ("org/name") of such a folder pushed to
    the Hub, fetched through `huggingface_hub` (HF cache, `revision`, `HF_HUB_OFFLINE`)."""
    if is_hub_id(directory):
        directory = download_model_dir(str(directory), revision=revision, cache_dir=cache_dir)
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; is {directory} a saved chadavit model?")
    config, contract = _read_model_document(config_path)
    model = build_model(config)
    head = _read_head(json.loads(config_path.read_text()), config_path)
    if head["num_classes"] or head["num_channels"] is not None:
        try:
            model.reset_classifier(head["num_classes"], num_channels=head["num_channels"])
        except ValueError as error:
            raise ModelFileError(f"{config_path}: {error}") from error
    _load_strict(model, _read_weights(weights_path, str(map_location)), str(weights_path))
    model.pretrained_cfg = contract or InputContract(img_size=config.img_size)
    return model.to(map_location).eval()


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ModelFileError(
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
        raise ModelFileError(
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


def _inert_class(qualified_name: str) -> type[InertObject]:
    """A placeholder class made for one load: whatever a file does to it touches nothing shared."""
    return type(f"Inert[{qualified_name}]", (InertObject,), {"_global_name": qualified_name})


def _foreign_globals(path: Path) -> list[str]:
    """Globals the file names beyond tensors and plain containers (a static scan: nothing runs)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a zip checkpoint, or an opcode torch's reader refuses: torch.load names it
        return []


def load_error_reason(error: BaseException) -> str:
    """Why torch.load failed, in one line, without torch's advice to retry with `weights_only=False`."""
    if not isinstance(error, pickle.UnpicklingError):
        return " ".join(str(error).split()) or type(error).__name__
    original = str(error.__context__ or error)  # torch re-raises its unpickler's error, wrapped
    if blocked := re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", original):
        return f"refused: it refers to {blocked.group(1)} (module {blocked.group(2)} is never loaded)"
    if target := re.search(r"Can only build .* but got (<class '[^']+'>)", original):
        return f"refused: its pickle would set attributes of an existing {target.group(1)}"
    first_line = next((line for line in original.splitlines() if line.strip()), "unreadable pickle")
    return "refused: " + first_line.split(". Please")[0].strip().rstrip(".")


def read_checkpoint(path: str | Path) -> Any:
    """Load a torch checkpoint without executing code from it or changing any existing object.

    torch's weights-only unpickler does the reading: it calls only tensor-rebuild functions and
    plain-container constructors, and its BUILD step only fills objects it created itself. Every
    other global the file names (argparse.Namespace in `hyper_parameters`...) is mapped, for this
    load only, to a fresh `InertObject` subclass that keeps its arguments and runs nothing. Globals
    from the modules torch blocks (os, sys...) are refused: a checkpoint never needs them.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"checkpoint {path} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise ModelFileError(f"cannot read checkpoint {path}: the file is empty")
    placeholders = [(_inert_class(name), name) for name in _foreign_globals(path)]
    try:
        with torch.serialization.safe_globals(placeholders):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # refused, truncated zip, foreign format...: torch raises many types
        raise ModelFileError(f"cannot read checkpoint {path}: {load_error_reason(error)}") from error


def _backbone_state(checkpoint: Any, weights: str, path: Path) -> dict[str, torch.Tensor]:
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} holds no state dict (expected a Lightning checkpoint)")
    for prefix in RELEASED_PREFIXES[weights]:
        backbone = {
            key[len(prefix) :]: value
            for key, value in state.items()
            if isinstance(key, str) and key.startswith(prefix) and isinstance(value, torch.Tensor)
        }
        if backbone:
            return backbone
    prefixes = " or ".join(repr(p) for p in RELEASED_PREFIXES[weights])
    raise ModelFileError(f"{path} has no {weights} backbone: no state_dict key starts with {prefixes}")


def _released_config(state: dict[str, torch.Tensor], num_heads: int, path: Path) -> ViTConfig:
    """Read the architecture's sizes from tensor shapes (the file stores no config we trust)."""
    needed = ("token_learner.proj.weight", "channel_token", "pos_embed", "blocks.0.linear1.weight")
    absent = [key for key in needed if key not in state]
    if absent:
        raise ModelFileError(f"{path} is not a ChAda-ViT backbone: missing keys {absent}")
    try:
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
    except (ValueError, TypeError, IndexError) as error:  # tensors of impossible shapes, bad num_heads
        raise ModelFileError(f"{path} holds no usable ChAda-ViT backbone: {error}") from error


def load_released_checkpoint(
    path: str | Path,
    weights: str = "student",
    num_heads: int = 2,
    filename: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> PackedViT:
    """The authors' `chadavit16-moyen` Lightning `.ckpt` as a `chadavit_moyen_v1` model, in eval mode.

    `path`: a local `.ckpt`, or a Hub id (e.g. "nicoboou/chadavit16-moyen") whose `.ckpt`
    (`filename`, else the repo's only one) is fetched through `huggingface_hub`.
    `weights`: "student" (`backbone.`, or the older `encoder.`; the authors' own choice) or
    "teacher" (`momentum_backbone.`). The file does not record the head count; 2 is what the
    authors' training and evaluation scripts build (their notebook's class default of 12 gives the
    same tensor shapes: docs/model.md). Unknown or missing keys raise an error listing them.
    `model.checkpoint_md5` is the file's MD5 and `model.is_authors_release` whether it is the one
    the authors published (MD5 e8a24ac58b8e34bdce10e0024d507f2e); a mismatch is logged.
    """
    if weights not in RELEASED_PREFIXES:
        raise ValueError(f"weights must be 'student' or 'teacher', got {weights!r}")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"num_heads must be a positive integer, got {num_heads!r}")
    if is_hub_id(path):
        path = download_checkpoint(str(path), filename=filename, revision=revision, cache_dir=cache_dir)
    path = Path(path)
    state = _backbone_state(read_checkpoint(path), weights, path)
    model = build_model(_released_config(state, num_heads, path))
    _load_strict(model, state, f"{path} ({weights})")
    model.checkpoint_md5 = file_md5(path)
    model.is_authors_release = model.checkpoint_md5 == RELEASED_MD5
    if model.is_authors_release:
        logger.info("%s is the authors' released checkpoint (MD5 %s)", path, RELEASED_MD5)
    else:
        logger.warning(
            "%s is not the authors' release: MD5 %s, expected %s", path, model.checkpoint_md5, RELEASED_MD5
        )
    return model.eval()
