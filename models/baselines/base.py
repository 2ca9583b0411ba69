"""Base class and registry of the paper's baseline architectures (Single-Task, Multi-Task,
Cross-Stitch, Sluice, NDDR-CNN, MTAN) on a registry backbone (the last four: Deeplab-ResNet only, `resnet_only`).

Every baseline is a pure nn.Module: `forward(img)` returns one raw output per task at 1/8
resolution (the sum of the task's four ASPP branches, exactly like `MultiTaskNet.forward(img, None)`).
Parameters fall into three groups by attribute name:
  * heads:    `task{t}_fc1_c{c}` (same names as AdaShare's, so head state_dict keys match);
  * backbone: `backbone` (one shared column) or `backbones.{t}` (one column per task);
  * fusion:   everything else (cross-stitch / sluice / NDDR / MTAN attention modules).
"""
import inspect
import re
from typing import Dict, List, Optional, Sequence, Type

import torch
from torch import nn

from utils.registry import registrar

from ..backbones import BackboneFactory, DeeplabResNetBackbone, GatedBackbone
from ..heads import add_task_heads, sum_of_branches, task_head_branches

_HEAD_NAME = re.compile(r"task\d+_fc1_c\d+\.")
_BACKBONE_PREFIXES = ("backbone.", "backbones.")


class MultiTaskBaseline(nn.Module):
    """T task outputs from an input image; subclasses build the backbone column(s) and fusion modules."""

    name: str = ""  # registry name, set by @register
    # True for designs that read the Deeplab-ResNet's segments or block internals (config validation
    # refuses other backbones for them).
    resnet_only: bool = False

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int], head_channels: int = 1024) -> None:
        super().__init__()
        tasks_num_class = list(tasks_num_class)
        if not tasks_num_class or any(not isinstance(n, int) or n < 1 for n in tasks_num_class):
            raise ValueError(f"tasks_num_class must be a non-empty list of positive ints, got {tasks_num_class!r}")
        self._backbone_factory = backbone
        self.tasks_num_class = tasks_num_class
        self.head_channels = head_channels

    @property
    def num_tasks(self) -> int:
        return len(self.tasks_num_class)

    # ------------------------------------------------------------------ building blocks for subclasses
    def _new_column(self) -> GatedBackbone:
        """A fresh backbone column; each call is its own draw of the backbone's init."""
        column = self._backbone_factory()
        if self.resnet_only and not isinstance(column, DeeplabResNetBackbone):
            raise ValueError(f"baseline {self.name!r} needs a Deeplab-ResNet backbone (ResNet10/18/34/101), got "
                             f"{type(column).__name__}")
        return column

    @property
    def layers(self) -> tuple:
        """Blocks per segment of the (Deeplab-ResNet) columns."""
        return tuple(self.backbone_columns()[0].layers)

    def _add_heads(self, in_channels: int) -> None:
        """The four ASPP branches of every task, named as in AdaShare's MultiTaskNet."""
        add_task_heads(self, in_channels, self.tasks_num_class, self.head_channels)

    def task_output(self, task_index: int, feature: torch.Tensor) -> torch.Tensor:
        """Sum of the four ASPP branches of task `task_index` (0-based) on its feature map."""
        return sum_of_branches(task_head_branches(self, task_index), feature)

    def backbone_columns(self) -> List[GatedBackbone]:
        """The backbone column(s): [backbone] or list(backbones)."""
        if hasattr(self, "backbones"):
            return list(self.backbones)
        return [self.backbone]

    # ------------------------------------------------------------------ interface
    def forward(self, img: torch.Tensor) -> List[torch.Tensor]:
        """One raw output per task at 1/8 resolution."""
        return [self.task_output(t, f) for t, f in enumerate(self.task_features(img))]

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        """The feature map each task's head reads (implemented by each architecture)."""
        raise NotImplementedError

    def auxiliary_loss(self) -> Optional[torch.Tensor]:
        """An extra loss term from the last forward (unweighted), or None."""
        return None

    def _parameter_group(self, group: str) -> List[nn.Parameter]:
        return [p for name, p in self.named_parameters() if _group_of(name) == group]

    def task_specific_parameters(self) -> List[nn.Parameter]:
        """The ASPP heads."""
        return self._parameter_group("head")

    def backbone_parameters(self) -> List[nn.Parameter]:
        """The backbone column(s)."""
        return self._parameter_group("backbone")

    def fusion_parameters(self) -> List[nn.Parameter]:
        """Cross-stitch / sluice / NDDR / attention modules ([] when there are none)."""
        return self._parameter_group("fusion")

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """Parameters common to >= 2 tasks (docs/weighting.md): by default everything but the heads, since the
        fusion modules carry every task's loss into every column; subclasses narrow it. `gates` is ignored."""
        if self.num_tasks < 2:
            return []
        return self.backbone_parameters() + self.fusion_parameters()

    def network_parameters(self) -> List[nn.Parameter]:
        """Every parameter (baselines have no policy logits)."""
        return list(self.parameters())

    def arch_parameters(self) -> list:
        return []

    def policy_logits(self) -> list:
        return []

    def backbone_parameter_count(self) -> int:
        """Parameters (not buffers) of the backbone column(s) and fusion modules, heads excluded."""
        return sum(p.numel() for p in self.backbone_parameters() + self.fusion_parameters())

    def params_ratio(self) -> float:
        """The paper's "# Params": backbone_parameter_count() / parameters of one backbone column."""
        one_column = sum(p.numel() for p in self.backbone_columns()[0].parameters())
        return self.backbone_parameter_count() / one_column


def _group_of(parameter_name: str) -> str:
    if _HEAD_NAME.match(parameter_name):
        return "head"
    if parameter_name.startswith(_BACKBONE_PREFIXES):
        return "backbone"
    return "fusion"


# ---------------------------------------------------------------------- registry
ARCHITECTURES: Dict[str, Type[MultiTaskBaseline]] = {}


# Class decorator: @register(name) adds the class to ARCHITECTURES under `name` and sets its `name`.
register = registrar(ARCHITECTURES, 'baseline name')


def architecture_options(name: str) -> Dict[str, object]:
    """Option name -> default value of a registered architecture (its keyword-only arguments)."""
    signature = inspect.signature(ARCHITECTURES[name].__init__)
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def build_baseline(name: str, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                   head_channels: int = 1024, **options) -> MultiTaskBaseline:
    """The baseline registered as `name`; `options` are its architecture-specific settings."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown baseline architecture {name!r}; valid names: {sorted(ARCHITECTURES)}")
    valid = architecture_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        accepted = f"valid options: {sorted(valid)}" if valid else "it takes no options"
        raise ValueError(f"baseline {name!r}: unknown option(s) {unknown}; {accepted}")
    return ARCHITECTURES[name](backbone, tasks_num_class, head_channels, **options)


# ---------------------------------------------------------------------- shared helpers of the designs
def check_fraction(option: str, value: object) -> float:
    """`value` as a float in (0, 1]; a one-line ValueError naming `option` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(f"option {option} must be a number in (0, 1], got {value!r}")
    return float(value)


def dominant_mixing(size: int, same: float) -> torch.Tensor:
    """[size, size] identity-dominant mixing matrix: `same` on the diagonal, the rest of each row
    spread evenly so every row sums to 1 (the identity for size 1)."""
    if size == 1:
        return torch.ones(1, 1)
    matrix = torch.full((size, size), (1.0 - same) / (size - 1))
    matrix.fill_diagonal_(same)
    return matrix
