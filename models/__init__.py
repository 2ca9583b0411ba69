"""Models: gated backbones (a registry), ASPP heads, the multi-task network and policy functions."""
from typing import List, Optional, Sequence

from torch import nn

from .backbones import (FAMILIES, DeeplabResNetBackbone, GatedBackbone, backbone_factory, build_backbone,
                        num_gated_blocks)
from .backbones.deeplab_resnet import RESNETS as BACKBONES  # the Deeplab-ResNet names (block, layers)
from .blocks import BasicBlock, Bottleneck
from .heads import ClassificationModule
from .mtl_net import MultiTaskNet


def build_model(backbone: str, tasks_num_class: Sequence[int], init_method: str = "equal",
                init_neg_logits: Optional[float] = None, skip_layer: int = 0,
                head_channels: int = 1024) -> MultiTaskNet:
    """The multi-task network for a registry backbone name (models.backbones)."""
    return MultiTaskNet(build_backbone(backbone), list(tasks_num_class), init_method=init_method,
                        init_neg_logits=init_neg_logits, skip_layer=skip_layer, head_channels=head_channels,
                        backbone_name=backbone)


def build_network(architecture: str, backbone: str, tasks_num_class: Sequence[int], init_method: str = "equal",
                  init_neg_logits: Optional[float] = None, skip_layer: int = 0,
                  head_channels: int = 1024) -> nn.Module:
    """The network of `architecture`: AdaShare's gated MultiTaskNet, the AutoMTL supermodel, or a paper baseline."""
    if architecture == "adashare":
        return build_model(backbone, tasks_num_class, init_method=init_method, init_neg_logits=init_neg_logits,
                           skip_layer=skip_layer, head_channels=head_channels)
    if architecture == "automtl":  # the AutoMTL supermodel of any registry backbone (docs/automtl.md)
        from .automtl import build_automtl
        return build_automtl(backbone, tasks_num_class, head_channels=head_channels)
    from .baselines import build_baseline  # baselines import this package's blocks
    return build_baseline(architecture, backbone_factory(backbone), list(tasks_num_class), head_channels=head_channels)


def count_parameters(module: nn.Module, include_buffers: bool = True) -> int:
    """Number of values: all state_dict entries (the original count_params, incl. BN buffers), or
    only the parameters with include_buffers=False."""
    if include_buffers:
        return sum(v.numel() for v in module.state_dict().values())
    return sum(p.numel() for p in module.parameters())


__all__: List[str] = [
    "BACKBONES", "FAMILIES", "BasicBlock", "Bottleneck", "ClassificationModule", "DeeplabResNetBackbone",
    "GatedBackbone", "MultiTaskNet", "backbone_factory", "build_backbone", "build_model", "build_network",
    "count_parameters", "num_gated_blocks",
]
