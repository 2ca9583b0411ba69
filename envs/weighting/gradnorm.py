"""gradnorm: gradient normalisation (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

Learned task weights w (init 1, Σ w = K). With G_t = w_t·‖g_t‖ the norm of task t's weighted gradient on the
shared parameters (the paper takes one shared layer; we take all of them, as LibMTL does), the relative inverse
training rate r_t = (ℓ_t/ℓ_t(0)) / mean_k(ℓ_k/ℓ_k(0)) and the target Ḡ·r_t^α (held constant):
    L_grad = Σ_t |G_t − Ḡ·r_t^α|,   ∂L_grad/∂w_t = sign(G_t − Ḡ·r_t^α)·‖g_t‖.
w takes one Adam step on ∂L_grad/∂w, then is renormalised to Σ w = K (kept ≥ 1e-6). The update uses the weights
before the step: d = Σ_t w_t g_t on the shared parameters, and w_t weights task t's gradient everywhere else (the
paper's loss Σ w_t ℓ_t). ℓ_t(0) is the first step's loss of the run; losses are averaged over DDP ranks.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from utils.checks import Number

from .base import Arg, Weighting, WeightingContext, register_weighting


@register_weighting('gradnorm')
class GradNorm(Weighting):
    """Task weights that equalise the training rates through the shared gradient norms."""

    uses_gradients = True
    ARGS = {
        'alpha': Arg(1.5, Number(ge=0), 'Asymmetry α: how strongly slower tasks get larger gradients (1.5 in the '
                     'paper for NYU v2).'),
        'lr': Arg(0.025, Number(gt=0), 'Adam learning rate of the task weights.'),
    }

    def __init__(self, context: WeightingContext, **args) -> None:
        super().__init__(context, **args)
        self.weights = nn.Parameter(torch.ones(self.num_tasks))
        self.register_buffer('initial', torch.zeros(self.num_tasks))
        self.has_initial = False
        self.own_optimizer = torch.optim.Adam([self.weights], lr=float(self.args['lr']))

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.has_initial:
            self.initial.copy_(losses)
            self.has_initial = True
        w = self.weights.detach().clone()
        norms = grads.norm(dim=1)
        weighted = w * norms
        rates = losses / self.initial.clamp_min(1e-20)
        target = weighted.mean() * (rates / rates.mean()) ** float(self.args['alpha'])
        self.own_optimizer.zero_grad(set_to_none=True)
        self.weights.grad = torch.sign(weighted - target) * norms
        self.own_optimizer.step()
        with torch.no_grad():
            self.weights.clamp_(min=1e-6)
            self.weights.mul_(self.num_tasks / self.weights.sum())
        return w @ grads, w

    def extra_state(self) -> dict:
        return {'has_initial': self.has_initial}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.has_initial = bool(state['has_initial'])
