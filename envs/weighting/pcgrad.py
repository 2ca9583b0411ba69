"""pcgrad: gradient surgery (Yu, Kumar, Gupta, Levine, Hausman & Finn, NeurIPS 2020).

For each task i, in a random order of the other tasks j: where g_i·g_j < 0, remove from g_i its component
along g_j (g_i ← g_i − (g_i·g_j)/‖g_j‖²·g_j, with g_j the original gradient). The direction is the sum of the
projected gradients, as in the paper's algorithm, so without conflicts it equals the plain sum.

The order comes from a generator seeded by (run seed, step), never the global RNG: every DDP rank draws the
same order, a resumed run the same as an uninterrupted one.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from .base import Weighting, WeightingContext, register_weighting


@register_weighting('pcgrad')
class PCGrad(Weighting):
    """Projecting conflicting gradients on the shared parameters."""

    uses_gradients = True

    def __init__(self, context: WeightingContext, **args) -> None:
        super().__init__(context, **args)
        self.seed = int(context.seed)
        self.step = 0

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.step)
        self.step += 1
        squared = (grads * grads).sum(dim=1)
        projected = grads.clone()
        for i in range(grads.shape[0]):
            for j in torch.randperm(grads.shape[0], generator=generator).tolist():
                if j == i or squared[j] == 0:
                    continue
                dot = torch.dot(projected[i], grads[j])
                if dot < 0:
                    projected[i] -= dot / squared[j] * grads[j]
        return projected.sum(dim=0), torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)

    def extra_state(self) -> dict:
        return {'step': self.step}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.step = int(state['step'])
