"""Models: gated Deeplab-ResNet backbone, ASPP heads, the multi-task network and policy functions."""
from typing import List, Optional, Sequence

from torch import nn

from .backbone import DeeplabResNetBackbone
from .blocks import BasicBlock, Bottleneck
from .heads import ClassificationModule
from .mtl_net import MultiTaskNet

# Backbone name -> (block type, blocks per segment). ResNet10 is a CPU-sized extension.
BACKBONES = {
    "ResNet10": (BasicBlock, [1, 1, 1, 1]),
    "ResNet18": (BasicBlock, [2, 2, 2, 2]),
    "ResNet34": (BasicBlock, [3, 4, 6, 3]),
    "ResNet101": (Bottleneck, [3, 4, 23, 3]),
}


def build_model(backbone: str, tasks_num_class: Sequence[int], init_method: str = "equal",
                init_neg_logits: Optional[float] = None, skip_layer: int = 0,
                head_channels: int = 1024) -> MultiTaskNet:
    """The multi-task network for a backbone name of BACKBONES."""
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid names: {sorted(BACKBONES)}")
    block, layers = BACKBONES[backbone]
    return MultiTaskNet(block, layers, list(tasks_num_class), init_method=init_method,
                        init_neg_logits=init_neg_logits, skip_layer=skip_layer, head_channels=head_channels)


def build_network(architecture: str, backbone: str, tasks_num_class: Sequence[int], init_method: str = "equal",
                  init_neg_logits: Optional[float] = None, skip_layer: int = 0,
                  head_channels: int = 1024) -> nn.Module:
    """The network of `architecture`: AdaShare's gated MultiTaskNet, or a paper baseline of the registry."""
    if architecture == "adashare":
        return build_model(backbone, tasks_num_class, init_method=init_method, init_neg_logits=init_neg_logits,
                           skip_layer=skip_layer, head_channels=head_channels)
    from .baselines import build_baseline  # baselines import this package's blocks
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; valid names: {sorted(BACKBONES)}")
    block, layers = BACKBONES[backbone]
    return build_baseline(architecture, block, layers, list(tasks_num_class), head_channels=head_channels)


def count_parameters(module: nn.Module, include_buffers: bool = True) -> int:
    """Number of values: all state_dict entries (the original count_params, incl. BN buffers), or
    only the parameters with include_buffers=False."""
    if include_buffers:
        return sum(v.numel() for v in module.state_dict().values())
    return sum(p.numel() for p in module.parameters())


__all__: List[str] = [
    "BACKBONES", "BasicBlock", "Bottleneck", "ClassificationModule", "DeeplabResNetBackbone",
    "MultiTaskNet", "build_model", "build_network", "count_parameters",
]
