"""Type and range checks that every config dataclass runs when it is built.

A config class derives from `CheckedConfig` and lists its bounded fields in `RANGES`
(and its string choices in `CHOICES`); `__post_init__` then checks every field against
its annotated type and its range, so a bad value (`--set phase2_steps=-5`, a hand-edited
checkpoint) is refused with one line before any data is loaded or anything trains:

    ConfigError: TiMeConfig.phase2_steps = -5 is out of range: allowed >= 1

A tuple field (hidden sizes) is checked element by element. Every float must be finite.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from bmrl_bench.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """An interval of allowed values; `None` leaves that side open to infinity."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"


AT_LEAST_1 = Range(lo=1)  # update counts, batch sizes, layer widths, candidates
NON_NEGATIVE = Range(lo=0)
POSITIVE = Range(lo=0, lo_open=True)  # learning rates, temperatures
DISCOUNT = Range(lo=0, hi=1, hi_open=True)  # gamma: 1 would let a never-terminating value diverge
UNIT = Range(lo=0, hi=1)  # probabilities and mixing weights
POLYAK = Range(lo=0, hi=1, lo_open=True)  # tau: 0 would freeze the targets


class CheckedConfig:
    """Base of the config dataclasses: their fields are checked when an instance is built."""

    RANGES: ClassVar[Mapping[str, Range]] = {}
    """Field name -> its allowed range (every element's, for a tuple of numbers)."""
    CHOICES: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Field name -> its allowed strings."""

    def __post_init__(self) -> None:
        check_config(self)


def check_config(config: CheckedConfig) -> None:
    """Raise ConfigError (one line: class, field, value, what is allowed) for the first bad field."""
    cls = type(config)
    hints = _hints(cls)
    ranges, choices = cls.RANGES, cls.CHOICES
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        where = f"{cls.__name__}.{f.name} = {value!r}"
        hint = hints.get(f.name)
        if hint is not None and not _is_a(value, hint):
            raise ConfigError(f"{where} has the wrong type: expected {_type_text(hint)}")
        items = value if isinstance(value, tuple) else (value,)
        for x in items:
            if isinstance(x, float) and not math.isfinite(x):
                raise ConfigError(f"{where} is not finite: allowed a finite number")
            allowed = ranges.get(f.name)
            if allowed is not None and x is not None and x not in allowed:
                each = " for each element" if isinstance(value, tuple) else ""
                raise ConfigError(f"{where} is out of range: allowed {allowed}{each}")
        if f.name in choices and value not in choices[f.name]:
            raise ConfigError(f"{where} is not a choice: allowed {', '.join(map(repr, choices[f.name]))}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_a(value: Any, hint: Any) -> bool:
    """isinstance for the annotations configs use: int, float, bool, str, tuple[X, ...], X | None."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, h) for h in typing.get_args(hint))
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_is_a(v, args[0]) for v in value)
        return len(value) == len(args) and all(_is_a(v, a) for v, a in zip(value, args))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # an int is a float here (`--set lr=1`), a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # an annotation this check does not know: left to the config's user


def _type_text(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(h) for h in typing.get_args(hint))
    if origin is tuple:
        return f"a tuple of {_type_text(typing.get_args(hint)[0])}"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))
