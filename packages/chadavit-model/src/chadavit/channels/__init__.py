"""Channel identity: raw channel labels -> canonical names (`dna`, `actin`, ...) through an alias table.

The built-in table is `aliases.yaml` beside this module (name -> list of raw labels). A user table
(`--channel-vocab FILE`, YAML or JSON of the same shape) adds names and aliases; its entries win
over the built-in ones. Matching is exact after `normalise_text`, then once more with a trailing
fluorophore or cycle suffix removed ("Phalloidin AF568", "DAPI cycle 2"). A label that matches
nothing is `unknown`: never a guess from a partial match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import yaml

UNKNOWN = "unknown"
BUILTIN_TABLE = Path(__file__).with_name("aliases.yaml")

_SEPARATORS = re.compile(r"[\s_\-/]+")
_BRACKETED = re.compile(r"\([^)]*\)|\[[^\]]*\]")
# Suffixes that name how a channel was imaged or which round it was, not what it shows.
_SUFFIX = re.compile(
    r"\s(?:(?:af|alexa|alexa fluor|atto|dylight|cf)\s?\d+|cy\s?[357](?:\.5)?|(?:cycle|round)\s?\d+)$"
)


class ChannelTableError(ValueError):
    """A channel table file that cannot be used; the message names the file and the entry."""


def normalise_text(label: str) -> str:
    """Lower case, bracketed text dropped, `_ - /` and runs of spaces as one space."""
    text = _BRACKETED.sub(" ", label.lower())
    return _SEPARATORS.sub(" ", text).strip()


class ChannelNormaliser:
    """Maps raw labels to canonical names; `names` is the table's names in file order."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.names: tuple[str, ...] = tuple(table)
        self._name_of: dict[str, str] = {}
        for name, aliases in table.items():
            for alias in (name, *aliases):
                self._name_of[normalise_text(alias)] = name

    @classmethod
    def builtin(cls) -> ChannelNormaliser:
        return _builtin()

    @classmethod
    def with_file(cls, path: str | Path | None) -> ChannelNormaliser:
        """The built-in table with the user's table from `path` on top (just the built-in for None)."""
        if path is None:
            return _builtin()
        user = read_channel_table(path)
        merged: dict[str, list[str]] = {name: list(aliases) for name, aliases in builtin_table().items()}
        claimed = {normalise_text(a) for aliases in user.values() for a in aliases} | {
            normalise_text(n) for n in user
        }
        for name in merged:  # a user's alias moves a label to the user's name
            merged[name] = [a for a in merged[name] if normalise_text(a) not in claimed]
        for name, aliases in user.items():
            merged[name] = [*merged.get(name, []), *aliases]
        return cls(merged)

    def __call__(self, label: object) -> str:
        """The canonical name of `label`, or `unknown` (also for None and non-strings)."""
        if not isinstance(label, str):
            return UNKNOWN
        text = normalise_text(label)
        if text in self._name_of:
            return self._name_of[text]
        stripped = _SUFFIX.sub("", text).strip()
        return self._name_of.get(stripped, UNKNOWN) if stripped else UNKNOWN

    def names_of(self, labels: Iterable[object]) -> tuple[str, ...]:
        return tuple(self(label) for label in labels)


def _check_table(document: object, source: str) -> dict[str, list[str]]:
    if not isinstance(document, Mapping) or not document:
        raise ChannelTableError(
            f"{source}: a channel table is a non-empty mapping of name -> list of aliases"
        )
    table: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for name, aliases in document.items():
        if not isinstance(name, str) or not normalise_text(name):
            raise ChannelTableError(f"{source}: channel name {name!r} is not a non-empty string")
        if name != normalise_text(name):
            raise ChannelTableError(
                f"{source}: channel name {name!r} must be written as {normalise_text(name)!r} "
                "(lower case, single spaces)"
            )
        if name == UNKNOWN:
            raise ChannelTableError(f"{source}: {UNKNOWN!r} is reserved for labels that map to nothing")
        if aliases is None:
            aliases = []
        if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
            raise ChannelTableError(f"{source}: the aliases of {name!r} must be a list of non-empty strings")
        for alias in (name, *aliases):
            key = normalise_text(alias)
            if owner.get(key, name) != name:
                raise ChannelTableError(
                    f"{source}: label {alias!r} is listed under {owner[key]!r} and {name!r}"
                )
            owner[key] = name
        table[name] = list(aliases)
    return table


def read_channel_table(path: str | Path) -> dict[str, list[str]]:
    """A name -> aliases table from a YAML or JSON file (JSON is YAML); ChannelTableError if unusable."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ChannelTableError(f"cannot read channel table {path}: {reason}") from error
    try:
        document = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        first = str(error).splitlines()[0]
        raise ChannelTableError(
            f"channel table {path} is not valid {path.suffix[1:] or 'YAML'}: {first}"
        ) from error
    return _check_table(document, str(path))


@lru_cache(maxsize=1)
def builtin_table() -> dict[str, list[str]]:
    return _check_table(yaml.safe_load(BUILTIN_TABLE.read_text(encoding="utf-8")), BUILTIN_TABLE.name)


@lru_cache(maxsize=1)
def _builtin() -> ChannelNormaliser:
    return ChannelNormaliser(builtin_table())


def canonical_name(label: object) -> str:
    """`label` through the built-in table: a canonical name or `unknown`."""
    return _builtin()(label)


def build_vocabulary(names: Iterable[str], min_count: int) -> tuple[str, ...]:
    """The canonical names seen at least `min_count` times (never `unknown`), most frequent first,
    ties by name, so the same data gives the same vocabulary."""
    counts: dict[str, int] = {}
    for name in names:
        if name != UNKNOWN:
            counts[name] = counts.get(name, 0) + 1
    kept = [name for name, count in counts.items() if count >= min_count]
    return tuple(sorted(kept, key=lambda name: (-counts[name], name)))
