"""Gated backbones: the base class, the registry and one file per family (docs/backbones.md)."""
from . import deeplab_resnet, mobilenet_v2, torchvision_resnet, wide_resnet  # noqa: F401 (register the families)
from .base import GatedBackbone
from .deeplab_resnet import Block, DeeplabResNetBackbone
from .registry import (FAMILIES, BackboneFactory, backbone_factory, build_backbone, example_names, find_family,
                       num_gated_blocks)

__all__ = [
    "FAMILIES", "BackboneFactory", "Block", "DeeplabResNetBackbone", "GatedBackbone", "backbone_factory",
    "build_backbone", "example_names", "find_family", "num_gated_blocks",
]
