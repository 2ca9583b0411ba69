"""cagrad: conflict-averse gradient descent (Liu, Liu, Jin, Stone & Liu, NeurIPS 2021).

With g_0 the mean task gradient and G the Gram matrix of the task gradients, find the simplex weights w that
minimise  g_wᵀ g_0 + c·‖g_0‖·‖g_w‖  (g_w = Σ_t w_t g_t; scipy SLSQP on the K-dimensional simplex, as the
authors do), then
    d = (g_0 + c·‖g_0‖/‖g_w‖ · g_w) / (1 + c²)
(the authors' default rescaling; c = 0 gives the mean gradient). The non-shared parameters get the plain sum.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks import Number

from .base import Arg, Weighting, register_weighting


def cagrad_weights(gram: np.ndarray, c: float) -> np.ndarray:
    """argmin over the simplex of  wᵀ G 1/K + c·‖g_0‖·sqrt(wᵀ G w), for the Gram matrix G of K gradients."""
    from scipy.optimize import minimize
    k = gram.shape[0]
    gram = gram / max(float(np.mean(np.diag(gram))), 1e-30)  # the argmin is scale-free; the solver likes O(1)
    mean_row = gram.mean(axis=1)
    radius = c * np.sqrt(max(float(mean_row.mean()), 0.0) + 1e-12)

    def objective(w: np.ndarray) -> float:
        return float(w @ mean_row + radius * np.sqrt(w @ gram @ w + 1e-12))

    def gradient(w: np.ndarray) -> np.ndarray:
        return mean_row + radius * (gram @ w) / np.sqrt(w @ gram @ w + 1e-12)

    start = np.full(k, 1.0 / k)
    result = minimize(objective, start, jac=gradient, method='SLSQP', bounds=[(0.0, 1.0)] * k,
                      constraints={'type': 'eq', 'fun': lambda w: w.sum() - 1.0, 'jac': lambda w: np.ones_like(w)},
                      options={'ftol': 1e-12, 'maxiter': 200})
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


@register_weighting('cagrad')
class CAGrad(Weighting):
    """The update that maximises the worst task's improvement within a ball around the mean gradient."""

    uses_gradients = True
    ARGS = {'c': Arg(0.4, Number(ge=0), 'Radius c of the ball around the mean gradient (0.4 in CAGrad\'s NYU v2 '
                     'runs; 0 = the mean gradient).')}

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = float(self.args['c'])
        g = grads.double()
        ones = torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)
        mean = g.mean(dim=0)
        w = torch.from_numpy(cagrad_weights((g @ g.T).cpu().numpy(), c)).to(g)
        combined = w @ g
        scale = c * mean.norm() / combined.norm().clamp_min(1e-20)
        return ((mean + scale * combined) / (1 + c * c)).to(grads.dtype), ones
