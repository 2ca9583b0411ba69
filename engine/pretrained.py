"""ImageNet (or any) backbone weights from a local file (`backbone_weights:`), checked key by key.

The file is a state dict in the backbone family's own key names, e.g. torchvision's `resnet18()`
state dict for tv:resnet18 or `mobilenet_v2()`'s for MobileNetV2; a `{'state_dict': ...}` wrapper and
a `module.` prefix on every key (DDP) are accepted. Keys the family declares unused (classifiers) are
ignored and BN `num_batches_tracked` counters may be absent; any other missing, unexpected or
mis-shaped key raises PretrainedWeightsError naming the file and the keys. Nothing is downloaded.
"""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

import torch
from torch import nn

from models.backbones import find_family

SHOWN = 10  # keys listed per kind of mismatch


class PretrainedWeightsError(ValueError):
    """A backbone_weights file that is missing, unreadable or does not fit the backbone."""


def read_state_dict(path: str) -> Dict[str, torch.Tensor]:
    """The tensors of a state dict file (weights_only), unwrapped from `state_dict` and a `module.` prefix."""
    if not os.path.isfile(path):
        raise PretrainedWeightsError(f"backbone_weights: {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # damaged file or refused object: one clear line
        raise PretrainedWeightsError(f"backbone_weights: {path} is not a readable state dict file "
                                     f"({type(err).__name__})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"backbone_weights: {path} does not hold a state dict (a mapping of names "
                                     f"to tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _listed(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return ", ".join(keys[:SHOWN]) + more


def check_fits(backbone: nn.Module, state: Dict[str, torch.Tensor], ignored: Sequence[str], path: str) -> None:
    """Raise PretrainedWeightsError listing the missing, unexpected and mis-shaped keys, if any."""
    own = backbone.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own and not k.startswith(tuple(ignored))]
    shapes = [f"{k} {list(state[k].shape)} (backbone {list(own[k].shape)})" for k in own
              if k in state and state[k].shape != own[k].shape]
    problems: List[str] = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches: {_listed(shapes)}")
    if problems:
        raise PretrainedWeightsError(f"backbone_weights: {path} does not fit the backbone ({type(backbone).__name__}): "
                                     + "; ".join(problems))


def load_backbone_weights(network: nn.Module, backbone_name: str, path: str) -> int:
    """Copy the file's weights into every backbone column of `network`; returns the number of tensors loaded."""
    ignored = find_family(backbone_name)[0].ignored_weight_keys
    state = read_state_dict(path)
    columns = network.backbone_columns() if hasattr(network, "backbone_columns") else [network.backbone]
    loaded = 0
    for column in columns:
        check_fits(column, state, ignored, path)
        used = {k: v for k, v in state.items() if k in column.state_dict()}
        column.load_state_dict(used, strict=False)
        loaded = len(used)
    return loaded
