"""`OUT/run.json`: models, datasets, skips, warnings and settings of the runs written into OUT.

Written as strict JSON (no NaN or Infinity, which are not JSON); read back with one-line errors.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from chadavit.atomic import atomic_write_text

logger = logging.getLogger(__name__)

NAME = "run.json"
# The keys the report reads from each entry of a list (or, for datasets, of each value).
ENTRY_KEYS = {
    "models": ("label", "source", "architecture", "embed_dim", "parameters", "checksum"),
    "datasets": ("kind", "images", "channels", "fit_split", "eval_split"),
    "skipped": ("task", "dataset", "model", "reason"),
    "warnings": ("model", "dataset", "task", "features", "reason"),
}


class RunFileError(ValueError):
    """An existing run.json that is not a JSON object."""


def finite_only(value: Any, where: str = "") -> Any:
    """`value` with every non-finite float replaced by None (null), each one logged as a warning."""
    if isinstance(value, float) and not math.isfinite(value):
        logger.warning(
            "run.json: %s is %s, written as null (JSON has no NaN or infinity)", where or "a value", value
        )
        return None
    if isinstance(value, dict):
        return {k: finite_only(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_only(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def read_run_json(out: Path) -> dict:
    """OUT/run.json as a dict ({} when absent)."""
    path = out / NAME
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFileError(
            f"{path} cannot be read as JSON ({error}); move it away or choose another folder"
        ) from error
    if not isinstance(document, dict):
        raise RunFileError(f"{path} must hold a JSON object, not a {type(document).__name__}")
    for key, needed in ENTRY_KEYS.items():
        kind = dict if key == "datasets" else list
        value = document.get(key, kind())
        if not isinstance(value, kind):
            raise RunFileError(f"{path}: {key!r} must be a JSON {'object' if kind is dict else 'array'}")
        for entry in value.values() if kind is dict else value:
            if not isinstance(entry, dict) or any(k not in entry for k in needed):
                raise RunFileError(
                    f"{path}: every entry of {key!r} must be an object with {', '.join(needed)}"
                )
    return document


def write_run_json(out: Path, document: dict) -> None:
    text = json.dumps(finite_only(document), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_text(out / NAME, text + "\n")
