"""The backward pass of the gradient methods: per-task gradients, rank average, combination, `.grad`.

    1. g_t = ∇ℓ_t for every trainable parameter (K backward passes through one graph), flattened to [K, N];
       the optional auxiliary loss (Sluice's penalty) gets its own row and is never combined;
    2. the rows are averaged over DDP ranks BEFORE the combination, so every rank combines the same numbers
       and takes the same step (no further gradient all-reduce is needed);
    3. with fp16 the losses were multiplied by the GradScaler's scale S: the rows are divided by S, combined
       in float32, and the result is multiplied by S again, so `scaler.step` unscales and skips the step on
       inf/NaN exactly as for the plain loss; a non-finite row skips the combination (the inf stays in .grad);
    4. the shared parameters get the method's direction d, every other parameter Σ_t c_t g_t with the
       method's weights c (1 for most methods), plus the auxiliary row; parameters no loss reaches keep no
       gradient, as after a plain backward().
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from engine.device import all_reduce_mean_

from .base import Weighting, rank_mean


def _flat_gradient(loss: torch.Tensor, params: Sequence[nn.Parameter]) -> tuple[torch.Tensor, list[bool]]:
    """∇loss for `params` flattened (zeros where unreached), and which parameters it reached."""
    grads = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                      for g, p in zip(grads, params)])
    return flat, [g is not None for g in grads]


def combined_backward(weighting: Weighting, losses: Sequence[torch.Tensor], shared: Sequence[nn.Parameter],
                      others: Sequence[nn.Parameter], scaler: torch.amp.GradScaler,
                      auxiliary: torch.Tensor | None = None) -> None:
    """Set `.grad` of `shared` + `others` from the raw task losses L_t with a gradient method (see above)."""
    params = list(shared) + list(others)
    terms = weighting.scaled(losses)
    rows, reached = [], [False] * len(params)
    for term in terms + ([auxiliary] if auxiliary is not None else []):
        flat, hit = _flat_gradient(scaler.scale(term), params)
        rows.append(flat)
        reached = [a or b for a, b in zip(reached, hit)]
    grads = all_reduce_mean_(torch.stack(rows))
    scale = float(scaler.get_scale()) if scaler.is_enabled() else 1.0
    if scale != 1.0:
        grads = grads / scale
    k, n_shared = len(terms), sum(p.numel() for p in shared)
    task_grads = grads[:k]
    values = rank_mean(torch.stack([t.detach() for t in terms]))
    on_shared = task_grads[:, :n_shared]
    if n_shared and bool(torch.isfinite(on_shared).all()) and bool(torch.isfinite(values).all()):
        direction, weights = weighting.combine(on_shared, values)
    else:  # nothing shared (Single-Task): the plain sum; non-finite: let the scaler (or the guard) see it
        direction, weights = on_shared.sum(dim=0), torch.ones(k, dtype=grads.dtype, device=grads.device)
    total = torch.cat([direction, weights.to(grads) @ task_grads[:, n_shared:]])
    if auxiliary is not None:
        total = total + grads[k]
    if scale != 1.0:
        total = total * scale
    offset = 0
    for p, hit in zip(params, reached):
        if hit:
            p.grad = total[offset:offset + p.numel()].view_as(p).to(p.dtype).clone()
        offset += p.numel()
