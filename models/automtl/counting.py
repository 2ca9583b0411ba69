"""Parameter counts of an AutoMTL architecture in the paper's convention and exactly (docs/automtl.md "Counts")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from torch import nn

from .options import HARD, SHARED, SKIP, SPECIFIC
from .supermodel import AutoMTLNet, TaskPolicy


def _numel(module: Optional[nn.Module]) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


@dataclass(frozen=True)
class PaperCount:
    """The authors' count (searchable convs only; skips, BN and heads ignored).

    single_conv:     sum of the conv weights (+ biases) of one backbone;
    single_conv_bn:  the same plus the BN weights and biases (the paper's 21.285 M for ResNet-34);
    mtl_conv:        per conv, its size once if any task shares it, plus once per task with its own copy;
    relative:        mtl_conv / (N * single_conv) - 1;
    absolute:        N * single_conv_bn * (1 + relative), the tables' "Params (M)" (times 1e6).
    """

    num_tasks: int
    single_conv: int
    single_conv_bn: int
    mtl_conv: int
    relative: float
    absolute: float


def paper_parameter_count(model: AutoMTLNet, policy: Sequence[TaskPolicy]) -> PaperCount:
    """PaperCount of the hard `policy` (one [num_convs] choice vector per task)."""
    routes = [model.route(t, HARD, p) for t, p in enumerate(policy)]
    sizes = [_numel(node.shared) for node in model.conv_nodes()]
    single = sum(sizes)
    bn = sum(_numel(node.shared) for node in model.bn_nodes())
    mtl = 0
    for l, size in enumerate(sizes):
        picked = [r.choices[l] for r in routes]
        mtl += size * (SHARED in picked) + size * picked.count(SPECIFIC)
    n = len(routes)
    relative = mtl / (n * single) - 1
    return PaperCount(n, single, single + bn, mtl, relative, n * (single + bn) * (1 + relative))


def compact_parameter_count(model: AutoMTLNet, policy: Sequence[TaskPolicy]) -> Dict[str, int]:
    """Exact parameter numbers (no buffers) of the compact model of `policy` by part: shared_conv (counted
    once), task_conv, skip (1x1 conv + BN), task_bn, other_backbone, backbone (their sum), heads, total.
    Equal to counting export_compact(model, policy)'s parameters, without building it."""
    routes = [model.route(t, HARD, p) for t, p in enumerate(policy)]
    counts = dict.fromkeys(("shared_conv", "task_conv", "skip", "task_bn"), 0)
    for node in model.conv_nodes():
        picked = [r.choices[node.index] for r in routes]
        counts["shared_conv"] += _numel(node.shared) if SHARED in picked else 0
        for t, option in enumerate(picked):
            if option == SPECIFIC:
                counts["task_conv"] += _numel(node.copies[str(t)])
            elif option == SKIP:
                counts["skip"] += _numel(node.skips[str(t)])
    counts["task_bn"] = sum(_numel(bn.copies[str(t)]) for bn in model.bn_nodes() for t in range(len(routes)))
    counts["other_backbone"] = sum(p.numel() for p in model.unconverted_parameters())
    counts["backbone"] = sum(counts.values())
    counts["heads"] = sum(p.numel() for p in model.head_parameters())
    counts["total"] = counts["backbone"] + counts["heads"]
    return counts
