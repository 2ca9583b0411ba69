"""Value checks: the type/range of one configuration value, with the text of what was expected.

General building blocks with no knowledge of any key: the config schema (config/schema.py) and the
weighting methods' arguments (envs/weighting/) describe their values with them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping


class Check:
    """Type/range check of one value: `problem(value)` is None when fine, else the text after 'key = value: '."""

    def describe(self) -> str:
        raise NotImplementedError

    def problem(self, value: Any) -> str | None:
        return None if self.accepts(value) else f'expected {self.describe()}'

    def accepts(self, value: Any) -> bool:
        raise NotImplementedError


def show(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: how error messages quote a value."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + '...'


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


class Boolean(Check):
    def describe(self) -> str:
        return 'true or false'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class Integer(Check):
    lo: int | None = None
    hi: int | None = None

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f'an integer in [{self.lo}, {self.hi}]'
        if self.lo is not None:
            return f'an integer >= {self.lo}'
        return 'an integer'

    def accepts(self, value: Any) -> bool:
        return (is_int(value) and (self.lo is None or value >= self.lo)
                and (self.hi is None or value <= self.hi))


@dataclass(frozen=True)
class Number(Check):
    """A finite int or float (bool refused); bounds gt/ge below, le above."""
    gt: float | None = None
    ge: float | None = None
    le: float | None = None

    def describe(self) -> str:
        low = f'({self.gt:g}' if self.gt is not None else f'[{self.ge:g}' if self.ge is not None else None
        if low is not None and self.le is not None:
            return f'a number in {low}, {self.le:g}]'
        if self.gt is not None:
            return f'a number > {self.gt:g}'
        if self.ge is not None:
            return f'a number >= {self.ge:g}'
        if self.le is not None:
            return f'a number <= {self.le:g}'
        return 'a number'

    def accepts(self, value: Any) -> bool:
        return (is_number(value) and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.le is None or value <= self.le))

    def problem(self, value: Any) -> str | None:
        if self.accepts(value):
            return None
        if isinstance(value, str) and _looks_numeric(value):
            return f'expected {self.describe()}, not a string (remove the quotes)'
        return f'expected {self.describe()}'


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Text(Check):
    """A non-empty string: a `name` (no path separators, e.g. exp_name or a checkpoint label) or a `path`."""
    kind: str = 'name'
    example: str = ''

    def describe(self) -> str:
        if self.kind == 'path':
            return 'a non-empty path string'
        example = f' such as {self.example}' if self.example else ''
        return f'a non-empty name{example} (a string without / or \\)'

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, str) or not value.strip():
            return False
        return self.kind == 'path' or not (set(value) & {'/', '\\'} or value in ('.', '..'))


@dataclass(frozen=True)
class Choice(Check):
    """One of `choices`; `refused` maps known-but-unsupported values to the reason."""
    choices: tuple[str, ...]
    refused: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        return 'one of ' + ', '.join(repr(c) for c in self.choices)

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.choices

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.refused:
            return f'{self.refused[value]}; expected {self.describe()}'
        return super().problem(value)


@dataclass(frozen=True)
class ListOf(Check):
    item: Check

    def describe(self) -> str:
        return f'a non-empty list, each item {self.item.describe()}'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(self.item.accepts(v) for v in value)

    def problem(self, value: Any) -> str | None:
        if not isinstance(value, list) or not value:
            return f'expected {self.describe()}'
        for index, item in enumerate(value):
            if not self.item.accepts(item):
                return f'expected {self.describe()} (item {index} = {show(item)} is not)'
        return None


class Mapping_(Check):
    """A mapping with string keys (its entries are checked by a cross-key rule)."""

    def describe(self) -> str:
        return 'a mapping of name: value'

    def accepts(self, value: Any) -> bool:
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


@dataclass(frozen=True)
class Nullable(Check):
    """`inner` or null (an empty YAML value)."""
    inner: Check

    def describe(self) -> str:
        return f'{self.inner.describe()} or null'

    def accepts(self, value: Any) -> bool:
        return value is None or self.inner.accepts(value)

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        inner = self.inner.problem(value)
        return None if inner is None else f'{inner} or null'
