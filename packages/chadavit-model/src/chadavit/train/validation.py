"""One check for every config value: its type from the dataclass annotation, its range from a table.

`convert(key, hint, value, rule)` is the only place a value is judged: `chadavit.train.config`
calls it for each field when it builds a config from YAML or flags (before the section's dataclass
is built, so no `__post_init__` ever compares a string with a number), and again for each field
of a finished `TrainConfig`. A refusal is one `ConfigError` line naming the dotted key.

Types: `bool` takes only true/false (YAML `"no"` in quotes is a string, not false); `int` takes
only whole numbers (2.5 is refused, not truncated); `float` takes any finite number (NaN and
infinities are refused) and a numeric string such as `1e-4` (PyYAML reads exponents without a
dot as strings); `X | None` takes None; `tuple[float, float]` takes a two-element list.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config value of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True)
class Rule:
    """The range (numbers, each element of a tuple) or the choices (strings) of one config value."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is excluded
    high_open: bool = False
    choices: tuple[str, ...] | None = None

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        low, high = _plain_number(self.low), _plain_number(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {low}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {high}"
        return ""


def _plain_number(value: float | None) -> str:
    if value is not None and float(value).is_integer() and abs(value) < 1e16:
        return str(int(value))
    return f"{value:g}" if value is not None else ""


def at_least(low: float, high: float | None = None) -> Rule:
    return Rule(low=low, high=high)


def above(low: float, high: float | None = None) -> Rule:
    return Rule(low=low, high=high, low_open=True)


def fraction(high_open: bool = False) -> Rule:
    """A probability or momentum: [0, 1] (or [0, 1))."""
    return Rule(low=0.0, high=1.0, high_open=high_open)


def one_of(*choices: str) -> Rule:
    return Rule(choices=choices)


NO_RULE = Rule()


def _optional_inner(hint: Any) -> Any | None:
    """`X` for a hint `X | None`, else None."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def _kind(kind: str, rule: Rule) -> str:
    return f"{kind} {rule.describe()}" if rule.describe() else kind


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def convert(key: str, hint: Any, value: Any, rule: Rule = NO_RULE) -> Any:
    """`value` as the annotated type `hint` asks for, checked against `rule`; else ConfigError."""
    inner = _optional_inner(hint)
    if inner is not None:
        return None if value is None else convert(key, inner, value, rule)
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {_shown(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be {_kind('a whole number', rule)}, got {_shown(value)}")
        if not rule.admits(value):
            raise ConfigError(f"{key} must be {rule.describe()}, got {_shown(value)}")
        return value
    if hint is float:
        number = _number(value)
        if number is None:
            raise ConfigError(f"{key} must be {_kind('a number', rule)}, got {_shown(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if not rule.admits(number):
            raise ConfigError(f"{key} must be {rule.describe()}, got {number:g}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {_shown(value)}")
        if rule.choices is not None and value not in rule.choices:
            raise ConfigError(f"{key} must be one of {', '.join(rule.choices)}, got {value!r}")
        return value
    if origin is typing.Literal:
        if value not in typing.get_args(hint) or isinstance(value, bool) != any(
            isinstance(arg, bool) for arg in typing.get_args(hint)
        ):
            raise ConfigError(
                f"{key} must be one of {', '.join(map(str, typing.get_args(hint)))}, got {value!r}"
            )
        return value
    if origin is tuple:
        elements = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(elements):
            raise ConfigError(f"{key} must be a list of {len(elements)} values, got {_shown(value)}")
        return tuple(
            convert(f"{key}[{index}]", element, item, rule)
            for index, (element, item) in enumerate(zip(elements, value, strict=True))
        )
    if origin is Mapping or hint is Mapping or origin is dict:
        if not isinstance(value, Mapping) or not all(isinstance(name, str) for name in value):
            raise ConfigError(f"{key} must be a mapping of names to values, got {_shown(value)}")
        for name, item in value.items():
            if isinstance(item, float) and not math.isfinite(item):
                raise ConfigError(f"{key}.{name} must be a finite number, got {item!r}")
        return dict(value)
    raise TypeError(f"config field {key} has an annotation the checker does not know: {hint!r}")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an int beyond float's range
            return math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error on one line (PyYAML's own message spans lines and draws a caret under the spot)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else str(problem)
