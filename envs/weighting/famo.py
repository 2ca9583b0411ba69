"""famo: Fast Adaptive Multitask Optimization (Liu, Liu, Jin, Stone & Liu, NeurIPS 2023).

Task logits ξ with weights z = softmax(ξ); the backpropagated loss is
    Σ_t z_t·log(ℓ_t + ε) / c,   c = Σ_t z_t / (ℓ_t + ε)   (detached)
so the gradient is Σ_t (z_t/c)·∇ℓ_t/ℓ_t: a balanced decrease of the log-losses. ξ has its own Adam (lr, weight
decay gamma) and is updated from the change of the log-losses between two steps:
    δ_t = log ℓ_t(previous step) − log ℓ_t(this step),   ∇ξ = J_softmax(ξ)ᵀ δ
(tasks whose loss fell least gain weight). The paper re-evaluates the losses on the same batch after the
update, one extra forward per step; we use the next step's losses (the next batch) instead, which costs
nothing and makes δ noisier. The losses in the update are averaged over DDP ranks. λ_t only shifts log ℓ_t,
so the lambdas do not change FAMO's updates.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from torch import nn

from utils.checks import Number

from .base import Arg, Weighting, WeightingContext, rank_mean, register_weighting

EPS = 1e-8


@register_weighting('famo')
class FAMO(Weighting):
    """Softmax task weights driven by the relative decrease of each task's loss."""

    ARGS = {
        'lr': Arg(0.025, Number(gt=0), 'Adam learning rate of the task logits (FAMO: 0.025).'),
        'gamma': Arg(0.01, Number(ge=0), 'Weight decay of the task logits (FAMO: 0.01).'),
    }

    def __init__(self, context: WeightingContext, **args) -> None:
        super().__init__(context, **args)
        self.logits = nn.Parameter(torch.zeros(self.num_tasks))
        self.register_buffer('previous', torch.zeros(self.num_tasks))
        self.has_previous = False
        self.own_optimizer = torch.optim.Adam([self.logits], lr=float(self.args['lr']),
                                          weight_decay=float(self.args['gamma']))

    def task_weights(self) -> torch.Tensor:
        """z = softmax(ξ)."""
        return torch.softmax(self.logits.detach(), dim=0)

    def loss(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        ell = torch.stack(self.scaled(losses))
        current = rank_mean(ell)
        if bool(torch.isfinite(current).all()):  # a batch the numerical guard skips leaves the state alone
            if self.has_previous:
                self._update(current)
            self.previous.copy_(current)
            self.has_previous = True
        z = self.task_weights().to(ell.device)
        shifted = ell + EPS
        c = (z / shifted.detach()).sum()
        return (z * torch.log(shifted)).sum() / c

    def _update(self, current: torch.Tensor) -> None:
        delta = torch.log(self.previous + EPS) - torch.log(current + EPS)
        z = self.task_weights()
        # J_softmax = diag(z) − z zᵀ is symmetric: Jᵀδ = z ⊙ (δ − z·δ).
        self.own_optimizer.zero_grad(set_to_none=True)
        self.logits.grad = z * (delta - (z * delta).sum())
        self.own_optimizer.step()

    def extra_state(self) -> dict:
        return {'has_previous': self.has_previous}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.has_previous = bool(state['has_previous'])
