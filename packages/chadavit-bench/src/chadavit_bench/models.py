"""`--model` specifications: a model directory, a released `.ckpt`, or a registry name at random init.

Grammar: `SOURCE[?key=value&key=value...]` where SOURCE is
- a directory written by `save_pretrained` / `chadavit-train` (`config.json` + `model.safetensors`);
- a path ending in `.ckpt`: the authors' released checkpoint (options `weights=student|teacher`,
  `num_heads=2`);
- `random:NAME` or a bare registry `NAME` (e.g. `onechannel_vit_tiny`): a freshly initialised model,
  seeded by `seed=0`; every other option is a `create_model` override whose value is read as JSON
  (`random:chadavit_petit?embed_dim=32&depth=2`).
Every source accepts `label=TEXT`, the name shown in tables and figures.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl

import torch
from safetensors import SafetensorError
from torch import nn

import chadavit

Source = Literal["pretrained", "released", "random"]
RANDOM_PREFIX = "random:"


class ModelSpecError(ValueError):
    """A `--model` value that names no loadable model."""


@dataclass(frozen=True)
class ModelSpec:
    text: str
    source: Source
    location: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    spec: ModelSpec
    model: nn.Module
    checksum: str  # sha256 of the configuration and every weight tensor

    @property
    def label(self) -> str:
        return self.spec.label

    @property
    def architecture(self) -> str:
        return str(getattr(self.model.config, "architecture", "chadavit"))


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_model_spec(text: str) -> ModelSpec:
    """Parse a `--model` value; the file system is consulted to tell a directory from a name."""
    base, _, query = text.partition("?")
    options = {key: _option_value(value) for key, value in parse_qsl(query, keep_blank_values=True)}
    label = options.pop("label", None)
    known = chadavit.list_models()
    if base.startswith(RANDOM_PREFIX) or base in known:
        name = base.removeprefix(RANDOM_PREFIX)
        if name not in known:
            raise ModelSpecError(
                f"--model {text!r}: unknown model {name!r}; known models: {', '.join(known)}"
            )
        default_label = base if not options.get("seed") else f"{base}#seed{options['seed']}"
        return ModelSpec(text, "random", name, str(label or default_label), options)
    path = Path(base).expanduser()
    if path.suffix == ".ckpt":
        if not path.is_file():
            raise ModelSpecError(f"--model {text!r}: checkpoint file {path} does not exist")
        unknown = sorted(set(options) - {"weights", "num_heads"})
        if unknown:
            raise ModelSpecError(f"--model {text!r}: a .ckpt accepts weights= and num_heads=, not {unknown}")
        weights = options.get("weights", "student")
        default_label = path.stem if weights == "student" else f"{path.stem}:{weights}"
        return ModelSpec(text, "released", str(path), str(label or default_label), options)
    if path.is_dir():
        if options:
            raise ModelSpecError(
                f"--model {text!r}: a model directory takes only label=, not {sorted(options)}"
            )
        if not (path / "config.json").is_file():
            raise ModelSpecError(
                f"--model {text!r}: {path} has no config.json; is it a saved chadavit model?"
            )
        # chadavit-train exports to RUN/model/: the run's name reads better than "model".
        name = path.resolve().name
        default_label = path.resolve().parent.name if name == "model" else name
        return ModelSpec(text, "pretrained", str(path), str(label or default_label), options)
    raise ModelSpecError(
        f"--model {text!r} is neither a model directory, a .ckpt file, nor a registry name "
        f"(random:NAME or one of {', '.join(known)})"
    )


def weights_checksum(model: nn.Module) -> str:
    digest = hashlib.sha256()
    config = getattr(model, "config", None)
    digest.update(json.dumps(asdict(config) if config is not None else {}, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _load_weights(spec: ModelSpec) -> nn.Module:
    if spec.source == "pretrained":
        return chadavit.from_pretrained(spec.location)
    if spec.source == "released":
        return chadavit.load_released_checkpoint(
            spec.location,
            weights=str(spec.options.get("weights", "student")),
            num_heads=int(spec.options.get("num_heads", 2)),
        )
    overrides = {k: v for k, v in spec.options.items() if k != "seed"}
    torch.manual_seed(int(spec.options.get("seed", 0)))  # create_model draws from the global generator
    return chadavit.create_model(spec.location, **overrides)


def load_model(spec: ModelSpec, device: str = "cpu") -> LoadedModel:
    """Build or load the model of a spec, in eval mode on `device`; `ModelSpecError` when it cannot."""
    try:
        model = _load_weights(spec)
    except (OSError, ValueError, TypeError, RuntimeError, SafetensorError) as error:
        # One line naming the model: the loaders' messages name their file; others get the spec.
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if spec.location not in message:
            message = f"--model {spec.text!r}: {message}"
        raise ModelSpecError(message) from error
    try:
        model = model.eval().to(device)
    except (RuntimeError, ValueError, AssertionError) as error:  # an unknown or absent device (torch asserts)
        raise ModelSpecError(f"--device {device!r}: cannot place {spec.label} there ({error})") from error
    return LoadedModel(spec=spec, model=model, checksum=weights_checksum(model))


def unique_labels(specs: list[ModelSpec]) -> list[ModelSpec]:
    """Make labels unique by suffixing repeats with #2, #3, ... (tables key rows by label)."""
    seen: dict[str, int] = {}
    result = []
    for spec in specs:
        count = seen.get(spec.label, 0) + 1
        seen[spec.label] = count
        label = spec.label if count == 1 else f"{spec.label}#{count}"
        result.append(ModelSpec(spec.text, spec.source, spec.location, label, spec.options))
    return result
