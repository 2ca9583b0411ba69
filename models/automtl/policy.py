"""Pure policy functions of AutoMTL (docs/automtl.md "Policy"): logits, Gumbel-Softmax weights, the
temperature schedule, argmax and seeded sampling of the final architecture, one-hot conversion.

A task's policy has one row per searchable conv and three columns: 0 shared, 1 task-specific, 2 skip.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import scipy.special
import torch

from .options import NUM_OPTIONS, SHARED

TAU0, TAU_DECAY, POLICY_UPDATE_ITERS, TAU_FLOOR = 5.0, 0.965, 100, 1e-6


def init_policy_logits(num_convs: int) -> torch.Tensor:
    """[num_convs, 3] zeros: the three options equally likely."""
    if num_convs < 1:
        raise ValueError(f"init_policy_logits: num_convs must be >= 1, got {num_convs}")
    return torch.zeros(num_convs, NUM_OPTIONS)


def gumbel_softmax_weights(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator] = None
                           ) -> torch.Tensor:
    """softmax((logits + G) / tau) over the last dim, G ~ Gumbel(0, 1): the same computation as
    torch.nn.functional.gumbel_softmax(logits, tau, hard=False) (bit-equal for the same RNG state), with
    the noise drawn from `generator` (on the logits' device) when given. Differentiable in `logits`."""
    if not tau > 0:
        raise ValueError(f"gumbel_softmax_weights: tau must be > 0, got {tau}")
    noise = torch.empty_like(logits, memory_format=torch.legacy_contiguous_format).exponential_(generator=generator)
    return ((logits - noise.log()) / tau).softmax(-1)


def softmax_weights(logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """softmax(logits / tau) over the last dim: the noise-free policy."""
    if not tau > 0:
        raise ValueError(f"softmax_weights: tau must be > 0, got {tau}")
    return (logits / tau).softmax(-1)


def temperature(policy_steps: int, tau0: float = TAU0, decay: float = TAU_DECAY,
                update_iters: int = POLICY_UPDATE_ITERS, floor: float = TAU_FLOOR) -> float:
    """tau after `policy_steps` policy steps: the authors' counter decays tau by `decay` each time it
    exceeds `update_iters` (then restarts from 0), i.e. k = policy_steps // (update_iters + 1) decays, each
    only while tau > floor (so tau stops at its first value <= floor). Use the steps taken before the
    current one: the decay follows the step in the same iteration."""
    if policy_steps < 0:
        raise ValueError(f"temperature: policy_steps must be >= 0, got {policy_steps}")
    tau = tau0
    for _ in range(policy_steps // (update_iters + 1)):
        if not tau > floor:
            break
        tau *= decay
    return tau


def is_policy_step(iteration: int, policy_iters: int = 100, weight_iters: int = 400) -> bool:
    """Alternation of the policy-train stage: iteration i (0-based) is a policy step iff i mod (p + w) < p."""
    return iteration % (policy_iters + weight_iters) < policy_iters


def policy_steps_before(iteration: int, policy_iters: int = 100, weight_iters: int = 400) -> int:
    """Number of policy steps among iterations 0 .. iteration-1 (closed form of counting is_policy_step)."""
    cycles, rest = divmod(iteration, policy_iters + weight_iters)
    return cycles * policy_iters + min(rest, policy_iters)


def hard_choices(logits: torch.Tensor) -> torch.Tensor:
    """argmax over the options per conv ([num_convs] int64); ties go to the lowest index (shared)."""
    return logits.detach().argmax(dim=-1)


def sample_choices(policy_logits: Sequence[torch.Tensor], seed: int, force_shared: int = 0) -> List[torch.Tensor]:
    """The authors' sampling of the final architecture: np.random.seed(seed), then task by task and conv by
    conv, p = softmax(logits) (temperature 1, no Gumbel noise, float32 as stored, renormalised) and one draw
    np.random.choice(3, p=p). The first `force_shared` convs of every task are "shared" without a draw.
    Sets numpy's global RNG state (as the recipe does). Returns one [num_convs] int64 tensor per task."""
    if force_shared < 0:
        raise ValueError(f"sample_choices: force_shared must be >= 0, got {force_shared}")
    np.random.seed(seed)
    sampled = []
    for logits in policy_logits:
        rows = logits.detach().cpu().to(torch.float32).numpy()
        choices = []
        for l, row in enumerate(rows):
            if l < force_shared:
                choices.append(SHARED)
                continue
            distribution = scipy.special.softmax(row, axis=-1)
            distribution /= sum(distribution)
            choices.append(int(np.random.choice((0, 1, 2), p=distribution)))
        sampled.append(torch.tensor(choices, dtype=torch.int64))
    return sampled


def one_hot(choices: torch.Tensor) -> torch.Tensor:
    """[num_convs] option indices -> [num_convs, 3] float one-hot rows (the authors' saved policy form)."""
    return torch.nn.functional.one_hot(torch.as_tensor(choices, dtype=torch.int64), NUM_OPTIONS).to(torch.float32)


def choices_from_one_hot(rows: torch.Tensor) -> torch.Tensor:
    """[num_convs, 3] one-hot rows -> [num_convs] option indices; ValueError unless every row is one-hot."""
    values = rows.detach()
    if values.dim() != 2 or values.shape[1] != NUM_OPTIONS or not (
            ((values == 0) | (values == 1)).all() and (values.sum(-1) == 1).all()):
        raise ValueError(f"choices_from_one_hot: expected [num_convs, 3] one-hot rows, got {values.tolist()}")
    return values.argmax(-1)
