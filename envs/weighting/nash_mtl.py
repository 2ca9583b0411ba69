"""nash_mtl: multi-task learning as a bargaining game (Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik &
Fetaya, ICML 2022).

The Nash bargaining solution d = Σ_t α_t g_t with α > 0 solving  (GᵀG α)_t = 1/α_t  for every task, with the
Gram matrix normalised by its Frobenius norm as the authors do. Those are exactly the stationarity conditions
of the strictly convex  f(α) = ½ αᵀ M α − Σ_t log α_t  (M the normalised Gram matrix plus a 1e-8 ridge, which
keeps f bounded when gradients are linearly dependent), so one small scipy L-BFGS-B solve replaces the authors'
cvxpy sequence. As in their code, d is clipped to norm max_norm on the shared parameters and the non-shared
parameters get Σ_t α_t ∇ℓ_t (their backward of Σ α_t ℓ_t). A task with a zero shared gradient gets α_t = 0.
"""
from __future__ import annotations

import numpy as np
import torch

from utils.checks import Number

from .base import Arg, Weighting, register_weighting

RIDGE = 1e-8


def nash_weights(gram: np.ndarray) -> np.ndarray:
    """α > 0 with (M α)_t = 1/α_t, M = gram/‖gram‖_F (+ ridge); α_t = 0 for tasks with a zero gradient."""
    from scipy.optimize import minimize
    alpha = np.zeros(gram.shape[0])
    active = np.flatnonzero(np.diag(gram) > 1e-30)
    if active.size == 0:
        return alpha
    sub = gram[np.ix_(active, active)]
    matrix = sub / np.linalg.norm(sub) + RIDGE * np.eye(active.size)

    def objective(a: np.ndarray) -> tuple[float, np.ndarray]:
        product = matrix @ a
        return float(0.5 * a @ product - np.log(a).sum()), product - 1.0 / a

    start = 1.0 / np.sqrt(np.diag(matrix))  # the exact solution for orthogonal gradients
    result = minimize(objective, start, jac=True, method='L-BFGS-B', bounds=[(1e-12, None)] * active.size,
                      options={'gtol': 1e-12, 'ftol': 1e-15, 'maxiter': 1000})
    alpha[active] = result.x
    return alpha


@register_weighting('nash_mtl')
class NashMTL(Weighting):
    """The bargaining solution on the shared parameters."""

    uses_gradients = True
    ARGS = {'max_norm': Arg(1.0, Number(ge=0), 'Clip the shared update to this norm (1.0 as the authors); '
                            '0 = no clipping.')}

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = grads.double()
        alpha = torch.from_numpy(nash_weights((g @ g.T).cpu().numpy())).to(g)
        direction = alpha @ g
        max_norm = float(self.args['max_norm'])
        norm = float(direction.norm())
        if max_norm > 0 and norm > max_norm:
            direction = direction * (max_norm / norm)
        return direction.to(grads.dtype), alpha.to(grads.dtype)
