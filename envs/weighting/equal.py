"""equal: the config's fixed `lambdas`, Σ λ_t·L_t (AdaShare's loss, bit for bit the original's operation order)."""
from __future__ import annotations

from typing import Sequence

import torch

from .base import Weighting, lambda_sum, register_weighting


@register_weighting('equal')
class Equal(Weighting):
    """The default: no state, no arguments."""

    def loss(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        return lambda_sum(self.lambdas, losses)
