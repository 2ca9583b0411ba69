"""The three options of a searchable operator and the three forward modes (docs/automtl.md)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

SHARED, SPECIFIC, SKIP = 0, 1, 2  # policy columns: shared operator, task-specific copy, skip
NUM_OPTIONS = 3
OPTION_NAMES = ("shared", "specific", "skip")

PRETRAIN, SOFT, HARD = "pretrain", "soft", "hard"
MODES = (PRETRAIN, SOFT, HARD)


@dataclass(frozen=True)
class Route:
    """What one forward of one task computes; passed as an argument through the traced graph.

    mode     pretrain: the mean of the options (conv: shared, copy, skip; BN: shared, copy);
             soft:     y = w0 * shared + w1 * copy + w2 * skip with `weights[l]` of conv l;
             hard:     only option `choices[l]` of conv l runs.
    task     0-based task index: which copy / skip / BN copy to use.
    weights  [num_convs, 3] tensor (soft only).
    choices  one option index per conv (hard only), plain ints so no conv syncs with the device.
    """

    mode: str
    task: int
    weights: Optional[torch.Tensor] = None
    choices: Optional[Sequence[int]] = None
