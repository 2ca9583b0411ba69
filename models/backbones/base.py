"""The gated-backbone contract and the gating that every backbone shares (docs/backbones.md).

A backbone is a stem, then L *gateable* blocks t = 0..L-1, each preceded by modules that always run
(`fixed(x, t)`, empty for ResNets) and followed, after the last block, by an always-executed tail
(`fixed(x, L)`). A gateable block's input and output shapes match, or it has a projection on its
residual path; executing it gives `executed(x, residual(x, t), t)`, skipping it gives `residual(x, t)`
(so a skipped block still applies its projection). Features come out at 1/8 resolution.

Gate forms accepted by `forward` (column 0 = execute, column 1 = skip):
  * None       every block executed;
  * [L, 2]     task-level:     x = executed * g[t, 0] + residual * g[t, 1];
  * [B, L, 2]  instance-level: the same with one scalar pair per sample;
  * [L]        execute weight: x = executed * g[t] + residual * (1 - g[t]).
(docs/original.md §3.2, §3.3 for the Deeplab-ResNet these generalise.)
"""
from __future__ import annotations

import copy
from typing import Dict, List, Optional, Sequence

import torch
from torch import nn


class GatedBackbone(nn.Module):
    """Base class: subclasses define the stem, the blocks and their paths; the gating lives here."""

    out_channels: int  # channels of the features the heads read

    # ------------------------------------------------------------------ the contract
    @property
    def num_blocks(self) -> int:
        """L: the number of gateable blocks (= gate rows)."""
        return len(self.block_names)

    @property
    def block_names(self) -> List[str]:
        """A short display name of each gateable block t = 0..L-1."""
        raise NotImplementedError

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """The always-executed input layers."""
        raise NotImplementedError

    def fixed(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Always-executed modules before gateable block t (t = L: after the last one); none by default."""
        return x

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The skip path of block t: x, or its projection."""
        raise NotImplementedError

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        """Block t's output when executed (its body combined with `residual`)."""
        raise NotImplementedError

    def body_modules(self, t: int) -> List[nn.Module]:
        """The modules that run only when block t executes (dropped by the compact export)."""
        raise NotImplementedError

    def block_parameters(self, t: int) -> List[nn.Parameter]:
        """Parameters of block t's body: used only by the tasks that execute the block (the projection and
        other always-executed modules are not included: every task uses them; docs/weighting.md)."""
        return [p for module in self.body_modules(t) for p in module.parameters()]

    def always_modules(self, t: int) -> List[nn.Module]:
        """Modules that run for block t whether or not it executes (`fixed(x, t)` and the projection);
        t = L: the tail. FLOPs counting charges them once per distinct input of block t."""
        return []

    # ------------------------------------------------------------------ gating, shared by every backbone
    def run_block(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Output of block t executed, as in the ungated forward (without `fixed`)."""
        return self._executed(x, self._residual(x, t), t)

    def forward(self, x: torch.Tensor, gates: Optional[torch.Tensor] = None,
                skip_unselected: bool = False) -> torch.Tensor:
        """Features at 1/8 resolution. With `skip_unselected`, blocks whose hard task-level gate
        says "skip" are not computed at all (their BN layers see no data); it has no effect
        without gates (every block executes)."""
        if gates is not None:
            self.check_gates(gates, x.shape[0])
        execute = self.hard_decisions(gates) if skip_unselected and gates is not None else None
        x = self.stem(x)
        for t in range(self.num_blocks):
            x = self.fixed(x, t)
            residual = self._residual(x, t)
            if gates is None:
                x = self._executed(x, residual, t)
            elif execute is None:
                x = _mix(self._executed(x, residual, t), residual, gates, t)
            elif execute[t]:
                fx = self._executed(x, residual, t)
                # Multiply only when gradients must reach the gates; the values are equal either way.
                x = _mix(fx, residual, gates, t) if gates.requires_grad else fx
            else:
                x = residual * _skip_weight(gates, t) if gates.requires_grad else residual
        return self.fixed(x, self.num_blocks)

    def forward_shared_prefix(self, x: torch.Tensor, gates: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        """Features for several tasks with hard task-level gates: runs only the selected blocks and
        computes each block prefix that tasks share once. Exact in eval mode; in train mode the
        shared BN layers would see the batch once instead of once per task."""
        for g in gates:
            self.check_gates(g, x.shape[0])
        decisions = [self.hard_decisions(g) for g in gates]
        features: List[Optional[torch.Tensor]] = [None] * len(gates)

        def descend(x: torch.Tensor, t: int, task_ids: List[int]) -> None:
            if t == self.num_blocks:
                x = self.fixed(x, t)
                for k in task_ids:
                    features[k] = x
                return
            groups: Dict[bool, List[int]] = {}  # execute? -> tasks, in task order
            for k in task_ids:
                groups.setdefault(decisions[k][t], []).append(k)
            x = self.fixed(x, t)
            residual = self._residual(x, t)
            for execute, ids in groups.items():
                descend(self._executed(x, residual, t) if execute else residual, t + 1, ids)

        descend(self.stem(x), 0, list(range(len(gates))))
        return features  # type: ignore[return-value]

    def check_gates(self, gates: torch.Tensor, batch_size: int) -> None:
        """Raise ValueError unless `gates` is [L, 2], [B, L, 2] or [L] for this backbone."""
        L = self.num_blocks
        if not isinstance(gates, torch.Tensor):
            raise ValueError(f"gates must be a torch.Tensor of shape [{L}, 2], [B, {L}, 2] or [{L}], "
                             f"got {type(gates).__name__}")
        shape = tuple(gates.shape)
        if shape in ((L, 2), (L,), (batch_size, L, 2)):
            return
        raise ValueError(f"gates have shape {list(shape)}; expected [{L}, 2] (task-level), "
                         f"[{batch_size}, {L}, 2] (per instance, B = batch size) or [{L}] "
                         f"(execute weights), with L = {L} blocks")

    def hard_decisions(self, gates: torch.Tensor) -> List[bool]:
        """Per block: True = execute, from hard task-level gates ([L, 2] rows [1,0]/[0,1] or [L] of 0/1)."""
        L = self.num_blocks
        values = gates.detach()
        if values.shape == (L, 2):
            rows = [tuple(r) for r in values.tolist()]
            if all(r in ((1, 0), (0, 1)) for r in rows):
                return [r == (1, 0) for r in rows]
        elif values.shape == (L,):
            flat = values.tolist()
            if all(v in (0, 1) for v in flat):
                return [v == 1 for v in flat]
        raise ValueError(f"skip_unselected needs hard task-level gates: shape [{L}, 2] with rows [1, 0] "
                         f"(execute) or [0, 1] (skip), or shape [{L}] of 0/1; got shape "
                         f"{list(gates.shape)} with values {values.tolist()}")

    def without_blocks(self, dropped: Sequence[int]) -> "GatedBackbone":
        """A view of this backbone whose `dropped` blocks' bodies are gone (no state, cannot run);
        every other module is shared, not copied. The compact export runs it with policies that never
        execute a dropped block."""
        names = {id(m): name for name, m in self.named_modules()}
        return _pruned(self, [names[id(m)] for t in dropped for m in self.body_modules(t)])


class _Dropped(nn.Module):
    """Stands in for a block body the compact model does not keep."""

    def forward(self, *args: object) -> torch.Tensor:
        raise RuntimeError("this block was dropped by the compact export (no task executes it)")


def _pruned(module: nn.Module, names: Sequence[str]) -> nn.Module:
    """A shallow copy of `module` with the submodules at dotted `names` replaced by _Dropped; only the
    containers on the way are copied."""
    if not names:
        return module
    clone = copy.copy(module)
    clone._modules = dict(module._modules)
    children: Dict[str, List[str]] = {}
    for name in names:
        head, _, rest = name.partition(".")
        children.setdefault(head, []).append(rest)
    for head, rests in children.items():
        clone._modules[head] = _Dropped() if "" in rests else _pruned(module._modules[head], rests)
    return clone


def _mix(fx: torch.Tensor, residual: torch.Tensor, gates: torch.Tensor, t: int) -> torch.Tensor:
    """The original gate formula for block t (docs/original.md §3.3)."""
    if gates.dim() == 2:
        return fx * gates[t, 0] + residual * gates[t, 1]
    if gates.dim() == 3:
        return fx * gates[:, t, 0].reshape(-1, 1, 1, 1) + residual * gates[:, t, 1].reshape(-1, 1, 1, 1)
    return fx * gates[t] + residual * (1 - gates[t])


def _skip_weight(gates: torch.Tensor, t: int) -> torch.Tensor:
    """The residual's weight for block t of task-level gates (1 for a hard skip)."""
    return gates[t, 1] if gates.dim() == 2 else 1 - gates[t]
