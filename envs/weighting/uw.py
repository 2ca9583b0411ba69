"""uw: uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

One learnable log-variance s_t per task, trained by the weight optimiser with the network:
    loss = Σ_t ½·exp(−s_t)·ℓ_t + ½·s_t        (ℓ_t = λ_t·L_t)
For a fixed ℓ_t the minimum is at s_t = log ℓ_t, so each task's effective weight tends to ½/ℓ_t. The ½ on
both terms is the regression form of the paper, used for every task as in LibMTL (one rule for any task set).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from utils.checks import Nullable, Number

from .base import Arg, Weighting, WeightingContext, register_weighting


@register_weighting('uw')
class UncertaintyWeighting(Weighting):
    """Kendall et al.'s homoscedastic uncertainty weights; the log-variances are parameters."""

    ARGS = {
        'init': Arg(0.0, Number(), 'Initial log-variance s_t of every task (0: weight ½ on each ℓ_t).'),
        'lr': Arg(None, Nullable(Number(gt=0)), 'Learning rate of the log-variances in the weight optimiser '
                  '(no weight decay); null = train.lr.'),
    }

    def __init__(self, context: WeightingContext, **args) -> None:
        super().__init__(context, **args)
        self.log_vars = nn.Parameter(torch.full((self.num_tasks,), float(self.args['init'])))

    def loss(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        ell = torch.stack(self.scaled(losses))
        return 0.5 * (torch.exp(-self.log_vars) * ell + self.log_vars).sum()

    def weight_parameter_groups(self, default_lr: float) -> list[dict]:
        # No weight decay: it would pull every σ_t towards 1 for no reason of the method's.
        lr = self.args['lr'] if self.args['lr'] is not None else default_lr
        return [{'params': [self.log_vars], 'lr': float(lr), 'weight_decay': 0.0}]

    def task_weights(self) -> torch.Tensor:
        """The current weight on each ℓ_t: ½·exp(−s_t)."""
        return 0.5 * torch.exp(-self.log_vars.detach())
