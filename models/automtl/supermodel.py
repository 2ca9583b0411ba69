"""The AutoMTL supermodel: a converted backbone, per-task ASPP heads and per-task policy logits.

The model is pure: every forward names its mode and brings its policy (soft weights or hard choices);
the logits it holds are only parameters for the optimiser and the checkpoint, never read by forward.
"""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from ..heads import add_task_heads, sum_of_branches, task_head_branches
from .convert import convert_backbone
from .nodes import ConvNode, TaskBatchNorm
from .options import HARD, MODES, NUM_OPTIONS, PRETRAIN, SHARED, SKIP, SOFT, SPECIFIC, Route
from .policy import init_policy_logits

TaskPolicy = Union[torch.Tensor, Sequence[int]]


class AutoMTLNet(nn.Module):
    """Keys: `backbone.<conv path>.{shared,copies.<t>,skips.<t>}.*`, `backbone.<bn path>.{shared,copies.<t>}.*`,
    heads `task{t}_fc1_c{c}` and logits `task{t}_logits` ([num_convs, 3], zeros), t counted from 1 as
    in MultiTaskNet."""

    def __init__(self, backbone: nn.Module, tasks_num_class: Sequence[int], head_channels: int = 1024,
                 backbone_name: Optional[str] = None, out_channels: Optional[int] = None) -> None:
        """`backbone`: any module whose forward(x) -> features traces with torch.fx (a registry backbone:
        its ungated forward). It is deep-copied, not modified. `out_channels`: feature channels, by default
        `backbone.out_channels`. Torch RNG order: skip 1x1 convs (conv by conv, task by task), then heads."""
        super().__init__()
        tasks_num_class = list(tasks_num_class)
        if not tasks_num_class or any(not isinstance(n, int) or n < 1 for n in tasks_num_class):
            raise ValueError(f"tasks_num_class must be a non-empty list of positive ints, got {tasks_num_class!r}")
        converted = convert_backbone(backbone, len(tasks_num_class))
        self.backbone = converted.graph_module
        self.conv_names: List[str] = converted.conv_names
        self.conv_depths: List[int] = converted.conv_depths
        self.bn_names: List[str] = converted.bn_names
        self.tasks_num_class = tasks_num_class
        self.backbone_name = backbone_name
        channels = out_channels if out_channels is not None else getattr(backbone, "out_channels", None)
        if channels is None:
            raise ValueError("AutoMTLNet: pass out_channels (the backbone has no `out_channels` attribute)")
        self.out_channels = channels
        add_task_heads(self, channels, tasks_num_class, head_channels)
        for t in range(self.num_tasks):
            self.register_parameter(f"task{t + 1}_logits", nn.Parameter(init_policy_logits(self.num_convs)))

    # ------------------------------------------------------------------ structure
    @property
    def num_tasks(self) -> int:
        return len(self.tasks_num_class)

    @property
    def num_convs(self) -> int:
        """L: searchable convs = rows of each task's policy."""
        return len(self.conv_names)

    @property
    def max_depth(self) -> int:
        """D = the largest conv depth."""
        return max(self.conv_depths)

    def conv_nodes(self) -> List[ConvNode]:
        """The ConvNodes in policy-row order."""
        return [self.backbone.get_submodule(name) for name in self.conv_names]

    def bn_nodes(self) -> List[TaskBatchNorm]:
        return [self.backbone.get_submodule(name) for name in self.bn_names]

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, mode: str, policy: Optional[Sequence[TaskPolicy]] = None) -> List[torch.Tensor]:
        """One output per task (sum of its four ASPP branches at 1/8 resolution); each task runs the whole
        supermodel once. mode 'pretrain': policy None; 'soft': one [num_convs, 3] weight tensor per task;
        'hard': one option index per conv per task (a [num_convs] integer tensor or a list of ints)."""
        if mode == PRETRAIN:
            if policy is not None:
                raise ValueError("forward: the pretrain mode takes no policy")
            policy = [None] * self.num_tasks
        elif policy is None or len(policy) != self.num_tasks:
            raise ValueError(f"forward: mode {mode!r} needs one policy per task ({self.num_tasks}), got "
                             f"{None if policy is None else len(policy)}")
        return [self.forward_task(x, t, mode, p) for t, p in enumerate(policy)]

    def forward_task(self, x: torch.Tensor, task: int, mode: str, task_policy: Optional[TaskPolicy] = None
                     ) -> torch.Tensor:
        """Output of task `task` (0-based) alone; `task_policy` as one entry of forward's `policy`."""
        return self.task_output(task, self.features(x, task, mode, task_policy))

    def features(self, x: torch.Tensor, task: int, mode: str, task_policy: Optional[TaskPolicy] = None
                 ) -> torch.Tensor:
        """Backbone features of task `task` in `mode`."""
        return self.backbone(x, self.route(task, mode, task_policy))

    def task_output(self, task: int, feature: torch.Tensor) -> torch.Tensor:
        return sum_of_branches(task_head_branches(self, task), feature)

    def route(self, task: int, mode: str, task_policy: Optional[TaskPolicy] = None) -> Route:
        """The checked Route of one task's forward."""
        if not 0 <= task < self.num_tasks:
            raise ValueError(f"task must be in [0, {self.num_tasks - 1}], got {task}")
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {list(MODES)}")
        shape = (self.num_convs, NUM_OPTIONS)
        if mode == PRETRAIN:
            if task_policy is not None:
                raise ValueError("the pretrain mode takes no policy")
            return Route(mode, task)
        if mode == SOFT:
            if not isinstance(task_policy, torch.Tensor) or tuple(task_policy.shape) != shape:
                raise ValueError(f"the soft mode needs [{self.num_convs}, {NUM_OPTIONS}] weights per task, got "
                                 f"{getattr(task_policy, 'shape', type(task_policy).__name__)}")
            return Route(mode, task, weights=task_policy)
        choices = task_policy.tolist() if isinstance(task_policy, torch.Tensor) else list(task_policy or [])
        if len(choices) != self.num_convs or any(c not in (SHARED, SPECIFIC, SKIP) for c in choices):
            raise ValueError(f"the hard mode needs {self.num_convs} option indices in {{0, 1, 2}} per task "
                             f"(one-hot rows: use policy.choices_from_one_hot), got {choices!r}")
        return Route(HARD, task, choices=[int(c) for c in choices])

    # ------------------------------------------------------------------ parameter groups
    def policy_logits(self) -> List[nn.Parameter]:
        """[task1_logits, ..., taskN_logits], each [num_convs, 3]."""
        return [getattr(self, f"task{t}_logits") for t in range(1, self.num_tasks + 1)]

    def arch_parameters(self) -> List[nn.Parameter]:
        return self.policy_logits()

    def network_parameters(self) -> List[nn.Parameter]:
        """Everything but the policy logits."""
        logits = {id(p) for p in self.policy_logits()}
        return [p for p in self.parameters() if id(p) not in logits]

    def head_parameters(self) -> List[nn.Parameter]:
        return [p for t in range(self.num_tasks) for branch in task_head_branches(self, t) for p in branch.parameters()]

    def parameter_groups(self) -> Dict[str, List[nn.Parameter]]:
        """Disjoint groups covering all parameters: shared_conv, task_conv (copies), skip (1x1 conv + BN),
        shared_bn (pre-train only), task_bn, other_backbone (e.g. a shared nn.Linear), heads, policy."""
        groups: Dict[str, List[nn.Parameter]] = {k: [] for k in (
            "shared_conv", "task_conv", "skip", "shared_bn", "task_bn", "other_backbone", "heads", "policy")}
        seen = set()

        def add(group: str, module: Optional[nn.Module]) -> None:
            for p in ([] if module is None else module.parameters()):
                if id(p) not in seen:
                    seen.add(id(p))
                    groups[group].append(p)

        for node in self.conv_nodes():
            add("shared_conv", node.shared)
            add("task_conv", node.copies)
            add("skip", node.skips)
        for bn in self.bn_nodes():
            add("shared_bn", bn.shared)
            add("task_bn", bn.copies)
        add("other_backbone", self.backbone)
        groups["heads"] = self.head_parameters()
        groups["policy"] = self.policy_logits()
        return groups

    def task_parameters(self, task: int, mode: str, task_policy: Optional[TaskPolicy] = None) -> List[nn.Parameter]:
        """The backbone parameters task `task`'s forward in `mode` uses (hard: only the chosen branches)."""
        route = self.route(task, mode, task_policy)
        modules: List[Optional[nn.Module]] = []
        for node in self.conv_nodes():
            options = [route.choices[node.index]] if mode == HARD else [SHARED, SPECIFIC, SKIP]
            modules += [node.branch(option, task) for option in options]
        for bn in self.bn_nodes():
            modules += [bn.copies[str(task)]] + ([bn.shared] if mode == PRETRAIN else [])
        return _unique_parameters(modules) + list(self.unconverted_parameters())

    def shared_parameters(self, policy: Optional[Sequence[TaskPolicy]] = None) -> List[nn.Parameter]:
        """Backbone parameters common to >= 2 tasks: with hard `policy` (one per task) the shared convs that
        >= 2 tasks choose, plus unconverted shared modules; without a policy (pre-train) the shared convs
        and shared BNs. Copies, skips and task BNs belong to one task. None with a single task."""
        if self.num_tasks < 2:
            return []
        modules: List[Optional[nn.Module]] = []
        for node in self.conv_nodes():
            if policy is None or sum(self.route(t, HARD, p).choices[node.index] == SHARED
                                     for t, p in enumerate(policy)) >= 2:
                modules.append(node.shared)
        if policy is None:
            modules += [bn.shared for bn in self.bn_nodes()]
        return _unique_parameters(modules) + list(self.unconverted_parameters())

    def unconverted_parameters(self) -> Iterator[nn.Parameter]:
        """Backbone parameters outside every ConvNode / TaskBatchNorm (e.g. a shared nn.Linear)."""
        converted = {id(p) for m in self.conv_nodes() + self.bn_nodes() for p in m.parameters()}
        return (p for p in self.backbone.parameters() if id(p) not in converted)


def _unique_parameters(modules: Sequence[Optional[nn.Module]]) -> List[nn.Parameter]:
    seen, out = set(), []
    for module in modules:
        for p in ([] if module is None else module.parameters()):
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out
