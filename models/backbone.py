"""Deeplab-ResNet backbone (output stride 8) with per-block execute/skip gates (docs/original.md §3.2, §3.3).

Gate forms accepted by `forward` (column 0 = execute, column 1 = skip), L = number of blocks:
  * None       plain ResNet, every block executed;
  * [L, 2]     task-level:     x = relu(res + f(x)) * g[t, 0] + res * g[t, 1];
  * [B, L, 2]  instance-level: the same with one scalar pair per sample;
  * [L]        execute weight: x = relu(res + f(x)) * g[t] + res * (1 - g[t]).
`res` is the downsampled input for block 0 of a segment, so "skipping" that block still applies
the downsample projection (without ReLU).
"""
from typing import List, Optional, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import BasicBlock, Bottleneck

Block = Type[Union[BasicBlock, Bottleneck]]

SEGMENT_PLANES = (64, 128, 256, 512)
SEGMENT_STRIDES = (1, 2, 1, 1)
SEGMENT_DILATIONS = (1, 1, 2, 4)


class DeeplabResNetBackbone(nn.Module):
    """Stem + four residual segments; the last two are dilated instead of strided."""

    def __init__(self, block: Block, layers: Sequence[int]) -> None:
        super().__init__()
        layers = list(layers)
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"DeeplabResNetBackbone: layers must be 4 positive ints (blocks per "
                             f"segment), got {layers!r}")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)

        inplanes = 64
        segments, downsamples = [], []
        for planes, num, stride, dilation in zip(SEGMENT_PLANES, layers, SEGMENT_STRIDES, SEGMENT_DILATIONS):
            out_planes = planes * block.expansion
            downsample = None
            # The dilated segments always get a projection, even where the shapes would match.
            if stride != 1 or inplanes != out_planes or dilation in (2, 4):
                # Built before the blocks, as in the original, so the construction-time default
                # init consumes the torch RNG in the same order.
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_planes))
            segment = [block(inplanes, planes, stride, dilation=dilation)]
            inplanes = out_planes
            segment += [block(inplanes, planes, dilation=dilation) for _ in range(1, num)]
            segments.append(nn.ModuleList(segment))
            downsamples.append(downsample)
        # Registration order conv1, bn1, relu, maxpool, blocks, ds fixes state_dict and init order.
        self.blocks = nn.ModuleList(segments)
        self.ds = nn.ModuleList(downsamples)  # None entries hold no state
        self.layers = tuple(layers)
        self.out_channels = inplanes
        self._positions = [(s, b) for s, num in enumerate(layers) for b in range(num)]
        self._init_weights()

    def _init_weights(self) -> None:
        # Every conv re-drawn from N(0, 0.01^2) in modules() order (bit-exact with the original).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_blocks(self) -> int:
        """L: the number of residual blocks (= gate rows)."""
        return len(self._positions)

    @property
    def block_positions(self) -> List[Tuple[int, int]]:
        """(segment, block) of each flat block index t = 0..L-1 (segment-major)."""
        return list(self._positions)

    @property
    def block_channels(self) -> List[int]:
        """Output channels of each block t = 0..L-1."""
        return [self.blocks[s][b].expansion * SEGMENT_PLANES[s] for s, b in self._positions]

    @property
    def segment_channels(self) -> List[int]:
        """Output channels of each of the four segments."""
        return [planes * self.blocks[s][0].expansion for s, planes in enumerate(SEGMENT_PLANES)]

    def block_parameters(self, t: int) -> List[nn.Parameter]:
        """Parameters of block t's residual branch; its segment's projection (`ds`) is not included: a skipped
        first block still applies it, so every task uses it."""
        segment, b = self._positions[t]
        return list(self.blocks[segment][b].parameters())

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def run_block(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """Output of block t executed (residual add and ReLU included), as in the ungated forward."""
        return self._executed(x, self._residual(x, t), t)

    def run_block_with_first_conv(self, x: torch.Tensor, t: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(first, output) of block t: `first` = relu(bn1(conv1(x))), the block's first-conv
        features (`planes` channels), and the block output of `run_block`, computed once."""
        segment, b = self._positions[t]
        block = self.blocks[segment][b]
        first = block.relu(block.bn1(block.conv1(x)))
        if isinstance(block, Bottleneck):
            body = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(first)))))
        else:
            body = block.bn2(block.conv2(first))
        return first, F.relu(self._residual(x, t) + body)

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        segment, b = self._positions[t]
        downsample = self.ds[segment]
        return downsample(x) if b == 0 and downsample is not None else x

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        segment, b = self._positions[t]
        return F.relu(residual + self.blocks[segment][b](x))

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
        return x

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
                for k in task_ids:
                    features[k] = x
                return
            groups = {}  # execute? -> tasks, in task order
            for k in task_ids:
                groups.setdefault(decisions[k][t], []).append(k)
            residual = self._residual(x, t)
            for execute, ids in groups.items():
                descend(self._executed(x, residual, t) if execute else residual, t + 1, ids)

        descend(self.stem(x), 0, list(range(len(gates))))
        return features

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
