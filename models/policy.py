"""Pure policy functions (docs/original.md §4): logits init, Gumbel-Softmax gates, curriculum padding,
temperature schedule, and the discrete samplers used for retraining and evaluation.

Column 0 of every logit/gate row means "execute the block", column 1 "skip it".
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

INIT_METHODS = ("equal", "random", "all_chosen")


def init_logits(num_rows: int, init_method: str, init_neg_logits: Optional[float] = None) -> torch.Tensor:
    """Initial [num_rows, 2] logits: equal -> 0.5, random -> 1e-3 * randn (torch RNG),
    all_chosen -> [0, init_neg_logits] (execute almost surely for a negative value)."""
    if num_rows < 1:
        raise ValueError(f"init_logits: num_rows must be >= 1, got {num_rows}")
    if init_method == "equal":
        return 0.5 * torch.ones(num_rows, 2)
    if init_method == "random":
        return 1e-3 * torch.randn(num_rows, 2)
    if init_method == "all_chosen":
        if init_neg_logits is None:
            raise ValueError("init_method 'all_chosen' needs init_neg_logits (the skip-column logit, "
                             "e.g. -10); got None")
        logits = init_neg_logits * torch.ones(num_rows, 2)
        logits[:, 0] = 0
        return logits
    raise ValueError(f"unknown init_method {init_method!r}; expected one of {list(INIT_METHODS)}")


def gumbel_gates(logits: torch.Tensor, temperature: float, hard: bool = False) -> torch.Tensor:
    """One Gumbel-Softmax sample over the last dim (soft, or straight-through one-hot if `hard`)."""
    if not temperature > 0:
        raise ValueError(f"gumbel_gates: temperature must be > 0, got {temperature}")
    return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)


def execute_decisions(gates: torch.Tensor) -> List[bool]:
    """Per block, the hard decision of one task's (possibly soft) gates: execute weight >= skip weight.

    [L, 2] rows compare their columns, [B, L, 2] the batch means, [L] execute weights compare with 0.5.
    """
    values = gates.detach()
    if values.dim() == 3:
        values = values.mean(dim=0)
    if values.dim() == 1:
        return (values >= 0.5).tolist()
    return (values[:, 0] >= values[:, 1]).tolist()


def pad_gates(gates: torch.Tensor, num_blocks: int, num_gated: Optional[int] = None) -> torch.Tensor:
    """Pad [P, 2] (or [B, P, 2]) gates to [L, 2] ([B, L, 2]): the first L - n blocks always
    execute ([1, 0] rows), the last n take gates[-n:], n = min(P, num_gated or P).

    Rows below P (skip_layer) are thus always executed. The result is floating point on the
    input's device (the input's dtype if it is floating, else the default float dtype).
    """
    if gates.dim() not in (2, 3) or gates.shape[-1] != 2:
        raise ValueError(f"pad_gates: gates must be [P, 2] or [B, P, 2], got {list(gates.shape)}")
    num_rows = gates.shape[-2]
    if num_rows > num_blocks:
        raise ValueError(f"pad_gates: {num_rows} gate rows for only {num_blocks} blocks")
    if num_gated is not None and num_gated < 0:
        raise ValueError(f"pad_gates: num_gated must be >= 0 or None, got {num_gated}")
    n = num_rows if num_gated is None else min(num_rows, num_gated)
    dtype = gates.dtype if gates.is_floating_point() else torch.get_default_dtype()
    gated = gates[..., num_rows - n:, :].to(dtype)  # not gates[-n:]: that is everything for n = 0
    always = torch.zeros(*gates.shape[:-2], num_blocks - n, 2, dtype=dtype, device=gates.device)
    always[..., 0] = 1
    return torch.cat([always, gated], dim=-2)


def sample_training_gates(logits_list: Sequence[torch.Tensor], temperature: float, num_blocks: int,
                          num_gated: Optional[int] = None,
                          hard: bool = False) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """One Gumbel-Softmax sample per task (the original's mode='train'): returns
    (policies [P, 2] per task, as the env stores them; gates padded to [L, 2] for the model)."""
    policies = [gumbel_gates(logits, temperature, hard) for logits in logits_list]
    return policies, [pad_gates(policy, num_blocks, num_gated) for policy in policies]


def temperature_at(init_temp: float, decay_temp: float, p_epoch: int) -> float:
    """Gumbel temperature after `p_epoch` completed policy phases: init_temp * decay_temp^p_epoch.

    Computed as the original's running product (one multiplication per phase), so the float
    matches its value bit for bit.
    """
    if p_epoch < 0:
        raise ValueError(f"temperature_at: p_epoch must be >= 0, got {p_epoch}")
    temperature = init_temp
    for _ in range(p_epoch):
        temperature = temperature * decay_temp
    return temperature


def num_train_layers(p_epoch: int, curriculum_speed: int, is_curriculum: bool) -> Optional[int]:
    """Curriculum window: number of gated (last) blocks, or None (all rows) without curriculum."""
    if not is_curriculum:
        return None
    if curriculum_speed < 1:
        raise ValueError(f"curriculum_speed must be >= 1, got {curriculum_speed}")
    return p_epoch // curriculum_speed + 1


def execute_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """alpha = softmax(row)[0], the probability of executing each block."""
    return F.softmax(logits, dim=-1)[..., 0]


def sample_policy_numpy(logits_list: Sequence[torch.Tensor],
                        rng: Optional[np.random.RandomState] = None) -> List[torch.Tensor]:
    """Discrete policies as the original's test_sample_policy (docs/original.md §4.4), bit for bit.

    For each task in order, d = scipy softmax of the float32 CPU logits; for each row in order
    s = choice((1, 0), p=d[i]) (one uniform u per row, s = 1 iff u < p0 / (p0 + p1)), row
    [s, 1 - s]. Uses the global legacy numpy RNG unless a RandomState is given. Returns int64
    [P, 2] tensors on each logits' device.
    """
    if rng is not None and not isinstance(rng, np.random.RandomState):
        raise ValueError(f"sample_policy_numpy: rng must be a numpy RandomState or None (the global "
                         f"legacy RNG), got {type(rng).__name__}")
    choice = np.random.choice if rng is None else rng.choice
    policies = []
    for logits in logits_list:
        dist = scipy.special.softmax(logits.detach().cpu().float().numpy(), axis=-1)
        rows = []
        for p in dist:
            s = choice((1, 0), p=p)
            rows.append([s, 1 - s])
        policies.append(torch.from_numpy(np.array(rows, dtype=np.int64)).to(logits.device))
    return policies


def hard_policy(logits_list: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Argmax policies for any number of tasks: execute iff logit[:, 0] >= logit[:, 1].

    A tie executes the block, as np.argmax (first maximum = column 0) in the original's intent.
    Returns int64 [P, 2] tensors ([1, 0] = execute) on each logits' device.
    """
    policies = []
    for logits in logits_list:
        execute = (logits[..., 0] >= logits[..., 1]).long()
        policies.append(torch.stack((execute, 1 - execute), dim=-1).detach())
    return policies
