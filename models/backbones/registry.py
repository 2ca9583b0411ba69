"""The backbone registry: a yaml `backbone:` name -> a family's builder (one file per family)."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch

from .base import GatedBackbone

BackboneFactory = Callable[[], GatedBackbone]


@dataclass(frozen=True)
class Family:
    """A backbone family: names matching `pattern` build through `build(match)`."""

    name: str
    pattern: str
    build: Callable[[re.Match], GatedBackbone]
    examples: Tuple[str, ...]
    # Prefixes of keys an ImageNet file may hold that the backbone has no use for (classifier layers).
    ignored_weight_keys: Tuple[str, ...] = ()


FAMILIES: Dict[str, Family] = {}


def register_family(name: str, pattern: str, examples: Tuple[str, ...],
                    ignored_weight_keys: Tuple[str, ...] = ()) -> Callable:
    """Decorator of a family's builder `build(match) -> GatedBackbone` for names fully matching `pattern`."""
    def decorate(build: Callable[[re.Match], GatedBackbone]) -> Callable[[re.Match], GatedBackbone]:
        if name in FAMILIES:
            raise ValueError(f"backbone family {name!r} is already registered")
        FAMILIES[name] = Family(name, pattern, build, tuple(examples), tuple(ignored_weight_keys))
        return build
    return decorate


def example_names() -> List[str]:
    """Example names of every family, for error messages and docs."""
    return [example for family in FAMILIES.values() for example in family.examples]


def find_family(name: str) -> Tuple[Family, re.Match]:
    """The family whose pattern matches `name` fully, and the match; ValueError listing examples otherwise."""
    if isinstance(name, str):
        for family in FAMILIES.values():
            match = re.fullmatch(family.pattern, name)
            if match:
                return family, match
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(example_names())} "
                     f"(WRN-<depth>-<width> with depth = 6n + 4, MobileNetV2[-<width multiplier>], "
                     f"tv:resnet18|34|50|101)")


def build_backbone(name: str) -> GatedBackbone:
    """A freshly initialised backbone for a registry name."""
    family, match = find_family(name)
    return family.build(match)


def backbone_factory(name: str) -> BackboneFactory:
    """A callable building a fresh backbone per call (one per baseline column); checks the name now."""
    find_family(name)
    return functools.partial(build_backbone, name)


@functools.lru_cache(maxsize=None)
def num_gated_blocks(name: str) -> int:
    """L of a registry name, from a shape-only build on the meta device (no init drawn)."""
    with torch.device("meta"):
        return build_backbone(name).num_blocks
