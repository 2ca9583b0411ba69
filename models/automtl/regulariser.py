"""The policy regulariser (docs/automtl.md "Regulariser"): favours sharing, more strongly near the input.

Per task: sum_l w_l * [softplus(s * (P_l(1) - P_l(0))) + softplus(s * (P_l(2) - P_l(0)))], w_l = (D - d_l) / D,
P = a fresh Gumbel-Softmax sample of the task's logits (or the noise-free softmax). s = 1 is the paper's
Eq. 2; the authors' policy steps run with s = 6.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .options import SHARED, SKIP, SPECIFIC
from .policy import gumbel_softmax_weights, softmax_weights

PAPER_SCALE, CODE_SCALE = 1.0, 6.0


def depth_weights(depths: Sequence[int], max_depth: Optional[int] = None) -> torch.Tensor:
    """w_l = (D - d_l) / D per conv (float32), D = max_depth or max(depths); the deepest conv gets 0."""
    depths_t = torch.as_tensor(list(depths), dtype=torch.float64)
    if depths_t.numel() == 0 or (depths_t < 1).any():
        raise ValueError(f"depth_weights: depths must be a non-empty list of ints >= 1, got {list(depths)}")
    D = float(max_depth) if max_depth is not None else float(depths_t.max())
    return ((D - depths_t) / D).to(torch.float32)


def policy_regulariser(task_logits: torch.Tensor, weights: torch.Tensor, tau: float, scale: float = PAPER_SCALE,
                       noise: bool = True, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """L_reg of one task ([num_convs, 3] logits, [num_convs] depth weights) as a scalar tensor. noise=True draws
    its own Gumbel sample (independent of the forward's), noise=False uses softmax(logits / tau)."""
    P = gumbel_softmax_weights(task_logits, tau, generator) if noise else softmax_weights(task_logits, tau)
    penalty = F.softplus(scale * (P[:, SPECIFIC] - P[:, SHARED])) + F.softplus(scale * (P[:, SKIP] - P[:, SHARED]))
    return (weights.to(penalty) * penalty).sum()
