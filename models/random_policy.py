"""Random policies of the paper's ablations, matched to a learned policy's skip counts.

* Random #1 (`random1_policies`): the same TOTAL number of skipped blocks as the learned policy,
  placed uniformly at random over all (task, block) cells, so the per-task counts may differ.
* Random #2 (`random2_policies`): the same number of skipped blocks PER TASK, placed uniformly at
  random among each task's blocks.

Policies are lists of int64 `[P, 2]` 0/1 tensors, one per task, column 0 = execute, column 1 = skip:
the format `engine.checkpoint.save_policy` writes and `re-train.py` reads. Randomness comes only from
the numpy Generator passed in (or `np.random.default_rng(seed)`), never from a global RNG.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

KINDS = ("random1", "random2")


def _execute_matrix(policies: Sequence[torch.Tensor]) -> np.ndarray:
    """`[K, P]` 0/1 execute flags of K task policies; refuses anything that is not a 0/1 `[P, 2]` policy."""
    if len(policies) == 0:
        raise ValueError("a learned policy needs at least one task, got an empty list")
    rows = []
    for t, policy in enumerate(policies):
        array = policy.detach().cpu().numpy() if torch.is_tensor(policy) else np.asarray(policy)
        if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] == 0:
            raise ValueError(f"task{t + 1} policy: expected shape [P, 2] (column 0 = execute), "
                             f"got {list(array.shape)}")
        if not np.isin(array, (0, 1)).all() or not (array.sum(axis=1) == 1).all():
            raise ValueError(f"task{t + 1} policy: every row must be [1, 0] (execute) or [0, 1] (skip)")
        rows.append(array[:, 0].astype(np.int64))
    if len({len(r) for r in rows}) != 1:
        raise ValueError(f"task policies have different row counts {[len(r) for r in rows]}; "
                         "expected the same P for every task")
    return np.stack(rows)


def _as_policies(execute: np.ndarray) -> list[torch.Tensor]:
    """`[K, P]` execute flags -> K int64 `[P, 2]` tensors `[execute, 1 - execute]`."""
    return [torch.from_numpy(np.stack((row, 1 - row), axis=1).astype(np.int64)) for row in execute]


def skip_counts(policies: Sequence[torch.Tensor]) -> list[int]:
    """Number of skipped blocks of each task."""
    execute = _execute_matrix(policies)
    return [int(n) for n in execute.shape[1] - execute.sum(axis=1)]


def _check_rng(rng: np.random.Generator) -> None:
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")


def random1_policies(learned: Sequence[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    """Random #1: as many skipped blocks in total as `learned`, spread uniformly over all tasks' blocks."""
    _check_rng(rng)
    execute = _execute_matrix(learned)
    num_tasks, num_rows = execute.shape
    total_skipped = int(execute.size - execute.sum())
    flat = np.ones(execute.size, dtype=np.int64)
    flat[rng.choice(execute.size, size=total_skipped, replace=False)] = 0
    return _as_policies(flat.reshape(num_tasks, num_rows))


def random2_policies(learned: Sequence[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    """Random #2: each task skips as many blocks as it does in `learned`, at uniformly random positions."""
    _check_rng(rng)
    execute = _execute_matrix(learned)
    num_rows = execute.shape[1]
    out = np.ones_like(execute)
    for t, row in enumerate(execute):
        # Tasks are drawn in order from one generator, so the result depends only on (counts, seed).
        out[t, rng.choice(num_rows, size=int(num_rows - row.sum()), replace=False)] = 0
    return _as_policies(out)


_SAMPLERS: dict[str, Callable[[Sequence[torch.Tensor], np.random.Generator], list[torch.Tensor]]] = {
    "random1": random1_policies, "random2": random2_policies}


def random_policies(kind: str, learned: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """The `kind` ('random1' or 'random2') policy of `seed`: `np.random.default_rng(seed)`, reproducible."""
    if kind not in _SAMPLERS:
        raise ValueError(f"unknown random policy kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return _SAMPLERS[kind](learned, np.random.default_rng(int(seed)))
