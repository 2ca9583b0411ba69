"""Name -> class registries filled by a class decorator (the baselines, the loss-weighting methods)."""
from __future__ import annotations

from typing import Callable, MutableMapping, TypeVar

T = TypeVar('T', bound=type)


def registrar(table: MutableMapping[str, type], what: str) -> Callable[[str], Callable[[T], T]]:
    """`register(name)`: a class decorator that adds the class to `table` under `name` and sets its `name`;
    a second class under one name is an error naming both (`what` says what the name is)."""
    def register(name: str) -> Callable[[T], T]:
        def decorate(cls: T) -> T:
            if name in table:
                raise ValueError(f'{what} {name!r} is already registered by {table[name].__name__}')
            cls.name = name
            table[name] = cls
            return cls
        return decorate
    return register
