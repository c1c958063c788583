"""Named training recipes shipped with the package: `chadavit-train --recipe paper`.

A recipe is a YAML file in `chadavit/configs/` holding config values like a `--config` file, plus
an optional `per_model` mapping (model name -> dotted keys) applied when that model is trained, for
values a recipe sets per model (the paper's learning rate of the one-channel ViT). Precedence:
defaults < recipe < its per-model values < --config file < flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from chadavit.train.validation import ConfigError, yaml_problem

PER_MODEL = "per_model"


def list_recipes() -> list[str]:
    """The names `--recipe` accepts (the YAML files shipped in chadavit/configs)."""
    folder = resources.files("chadavit") / "configs"
    return sorted(
        entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml")
    )


def read_mapping(text: str, where: str) -> dict[str, Any]:
    """A YAML document that must be a mapping (empty text is an empty mapping)."""
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{where} is not valid YAML: {yaml_problem(error)}") from error
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where} must hold a mapping of config keys")
    return dict(values)


def recipe_values(name: str) -> dict[str, Any]:
    """The raw values of recipe `name`, `per_model` included."""
    known = list_recipes()
    if name not in known:
        raise ConfigError(f"unknown recipe {name!r}; known recipes: {', '.join(known)}")
    text = (resources.files("chadavit") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")
    return read_mapping(text, f"recipe {name}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw values of a `--config` file, with a one-line error naming what is wrong with it."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} {'is not a file' if file.exists() else 'does not exist'}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {file} is not UTF-8 text") from error
    except OSError as error:
        raise ConfigError(f"config file {file} cannot be read: {error.strerror}") from error
    return read_mapping(text, f"config file {file}")


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, section by section (a section is a nested mapping)."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping) and key != "model_overrides":
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """{"optim.base_lr": 0.005} -> {"optim": {"base_lr": 0.005}}."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = str(key).split(".")
        target = nested
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = value
    return nested


def recipe_config_values(name: str, config_file: str | Path | None, model: str | None) -> dict[str, Any]:
    """Recipe `name`, its per-model values for the model trained, then `config_file`, as one mapping.

    `model` is the --model flag if given; else the config file's model, else the recipe's.
    """
    recipe = recipe_values(name)
    per_model = recipe.pop(PER_MODEL, {}) or {}
    if not isinstance(per_model, Mapping) or not all(isinstance(v, Mapping) for v in per_model.values()):
        raise ConfigError(f"recipe {name}: {PER_MODEL} must map model names to dotted keys")
    file_values = read_config_file(config_file) if config_file else {}
    chosen = model or file_values.get("model") or recipe.get("model")
    values = merge(recipe, nest(per_model.get(chosen, {})))
    return merge(values, file_values)
