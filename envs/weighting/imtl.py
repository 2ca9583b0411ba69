"""imtl: Impartial MTL, gradient part IMTL-G (Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, ICLR 2021).

The closed form: with unit vectors u_t = g_t/‖g_t‖, D = [g_1 − g_t]_{t≥2} and U = [u_1 − u_t]_{t≥2},
    α_{2..K} = g_1 Uᵀ (D Uᵀ)⁻¹,   α_1 = 1 − Σ_{t≥2} α_t,   d = Σ_t α_t g_t,
the direction whose projections on every u_t are equal (d·u_1 = … = d·u_K) with Σ α = 1. IMTL's loss part
(IMTL-L, learned loss scales) is not included; the non-shared parameters get the plain sum of the ℓ_t gradients.
"""
from __future__ import annotations

import torch

from .base import Weighting, register_weighting


@register_weighting('imtl')
class IMTLG(Weighting):
    """Equal projection of the update on every task's gradient direction."""

    uses_gradients = True

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = grads.double()
        ones = torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)
        if grads.shape[0] < 2:
            return grads.sum(dim=0), ones
        units = g / g.norm(dim=1, keepdim=True).clamp_min(1e-20)
        differences, unit_differences = g[:1] - g[1:], units[:1] - units[1:]
        # pinv: (anti)parallel task gradients make D Uᵀ singular; the least-squares α still equalises what it can.
        rest = (g[0] @ unit_differences.T) @ torch.linalg.pinv(differences @ unit_differences.T)
        alpha = torch.cat([1 - rest.sum().reshape(1), rest])
        return (alpha @ g).to(grads.dtype), ones
