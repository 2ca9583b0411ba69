"""The task-specific multi-task network (the original's MTL2, docs/original.md §3.4): a shared gated
backbone (Deeplab-ResNet by default, any of models.backbones), four ASPP branches per task and one [P, 2] policy logit table per task.

The model is pure: `forward(img, gates)` takes already padded per-task gates, keeps no sampled
policy and never moves tensors between devices. Sampling and padding live in `models.policy`.
"""
from typing import List, Optional, Sequence

import torch
from torch import nn

from .backbones import GatedBackbone
from .heads import ASPP_RATES, add_task_heads, sum_of_branches, task_head_branches  # noqa: F401 (ASPP_RATES re-exported)
from .policy import execute_decisions, init_logits


class MultiTaskNet(nn.Module):
    """Names follow the original so checkpoints load: `task{t}_logits`, `task{t}_fc1_c{c}`, `backbone.*`."""

    def __init__(self, backbone: GatedBackbone, tasks_num_class: Sequence[int],
                 init_method: str = "equal", init_neg_logits: Optional[float] = None,
                 skip_layer: int = 0, head_channels: int = 1024, backbone_name: Optional[str] = None) -> None:
        """`backbone` is freshly built by the caller (models.build_model), which keeps the torch RNG order."""
        super().__init__()
        tasks_num_class = list(tasks_num_class)
        if not tasks_num_class or any(not isinstance(n, int) or n < 1 for n in tasks_num_class):
            raise ValueError(f"tasks_num_class must be a non-empty list of positive ints, got {tasks_num_class!r}")
        # Torch RNG order as the original: backbone (default init, then N(0, 0.01) re-draw),
        # heads task by task and branch by branch, then the logits.
        self.backbone = backbone
        self.backbone_name = backbone_name  # the registry name, recorded by the compact export
        num_blocks = self.backbone.num_blocks
        if not isinstance(skip_layer, int) or not 0 <= skip_layer < num_blocks:
            raise ValueError(f"skip_layer must be an int in [0, {num_blocks - 1}] (the backbone has "
                             f"{num_blocks} blocks), got {skip_layer!r}")
        add_task_heads(self, self.backbone.out_channels, tasks_num_class, head_channels)
        self.tasks_num_class = tasks_num_class
        self.init_method = init_method
        self.init_neg_logits = init_neg_logits
        self._skip_layer = skip_layer
        self.reset_logits()

    @property
    def num_tasks(self) -> int:
        return len(self.tasks_num_class)

    @property
    def num_blocks(self) -> int:
        """L: gateable blocks in the backbone (rows of a padded gate tensor)."""
        return self.backbone.num_blocks

    @property
    def num_policy_rows(self) -> int:
        """P = L - skip_layer: rows of each task's logits."""
        return self.num_blocks - self._skip_layer

    @property
    def skip_layer(self) -> int:
        return self._skip_layer

    def reset_logits(self) -> None:
        """(Re-)initialise every `task{t}_logits` per init_method (original reset_logits).

        On an existing model the values are replaced in place, so the Parameter objects, their
        device and requires_grad flags are kept; fresh values are drawn on the CPU as in the original.
        """
        for t in range(1, self.num_tasks + 1):
            values = init_logits(self.num_policy_rows, self.init_method, self.init_neg_logits)
            name = f"task{t}_logits"
            existing = getattr(self, name, None)
            if existing is None:
                self.register_parameter(name, nn.Parameter(values))
            else:
                with torch.no_grad():
                    existing.copy_(values)

    def forward(self, img: torch.Tensor, gates: Optional[Sequence[torch.Tensor]] = None,
                skip_unselected: bool = False) -> List[torch.Tensor]:
        """Raw task outputs at 1/8 resolution (sum of the four ASPP branches), one per task.

        gates: None (one shared backbone pass) or K per-task gate tensors padded to L rows
        ([L, 2], [B, L, 2] or [L]). skip_unselected: hard task-level gates only; blocks a task
        skips are not computed. In eval mode without gate gradients, prefixes shared by tasks
        are computed once as well (exact: BN uses running statistics).
        """
        if gates is None:
            features = [self.backbone(img)] * self.num_tasks
        else:
            gates = list(gates)
            if len(gates) != self.num_tasks:
                raise ValueError(f"forward: got {len(gates)} gate tensors for {self.num_tasks} tasks")
            share_prefix = (skip_unselected and not self.backbone.training
                            and not any(isinstance(g, torch.Tensor) and g.requires_grad for g in gates))
            if share_prefix:
                features = self.backbone.forward_shared_prefix(img, gates)
            else:
                features = [self.backbone(img, g, skip_unselected) for g in gates]
        return [self.task_output(t, feature) for t, feature in enumerate(features)]

    def task_output(self, task_index: int, feature: torch.Tensor) -> torch.Tensor:
        """Sum of the four ASPP branches of task `task_index` (0-based), in branch order."""
        return sum_of_branches(task_head_branches(self, task_index), feature)

    # Parameter groups (name rules of the original).
    def policy_logits(self) -> List[nn.Parameter]:
        """[task1_logits, ..., taskK_logits]."""
        return [getattr(self, f"task{t}_logits") for t in range(1, self.num_tasks + 1)]

    def arch_parameters(self) -> List[nn.Parameter]:
        return [p for name, p in self.named_parameters() if "task" in name and "logits" in name]

    def task_specific_parameters(self) -> List[nn.Parameter]:
        """All head parameters, in named_parameters order."""
        return [p for name, p in self.named_parameters() if "task" in name and "fc" in name]

    def backbone_parameters(self) -> List[nn.Parameter]:
        return [p for name, p in self.named_parameters() if "backbone" in name]

    def network_parameters(self) -> List[nn.Parameter]:
        """Everything but the policy logits."""
        return [p for name, p in self.named_parameters() if not ("task" in name and "logits" in name)]

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """Backbone parameters common to >= 2 tasks (docs/weighting.md): the stem and the projections always,
        and the blocks the hard decision of `gates` (one tensor per task) executes for >= 2 tasks; every
        backbone parameter when `gates` is None (warm-up: one shared network); none with a single task."""
        if self.num_tasks < 2:
            return []
        if gates is None:
            return self.backbone_parameters()
        decisions = [execute_decisions(g) for g in gates]
        private = {id(p) for block in range(self.num_blocks) if sum(d[block] for d in decisions) < 2
                   for p in self.backbone.block_parameters(block)}
        return [p for p in self.backbone_parameters() if id(p) not in private]

    def fusion_parameters(self) -> List[nn.Parameter]:
        """No fusion modules: tasks share blocks through the policy (the baselines' interface)."""
        return []

    def params_ratio(self) -> float:
        """The paper's "# Params": one backbone, whatever the policy, over one single-task backbone = 1."""
        return 1.0
