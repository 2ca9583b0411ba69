"""Sluice networks (Ruder et al., AAAI 2019) adapted to T Deeplab-ResNet columns, as in AdaShare:
linear subspace fusion after every residual block plus an orthogonality constraint between the
two subspaces of each task's block features.

After block b (none after the stem), each task's C channels are split into two subspaces (the
first and second half of the channels). The 2T half-maps, stacked in the order
(task 1 subspace 1, task 1 subspace 2, task 2 subspace 1, ...), are mixed by a learned
(2T × 2T) matrix α_b (one scalar per pair of subspaces, shared over channels and positions) and
reshaped back into T maps of C channels, which the next blocks of each column read.

β (layer stitch): task t's head reads Σ_k β_tk · y_t^(k) over the (mixed) outputs y_t^(k) of the
n blocks of the last segment (all 512·expansion channels at 1/8 resolution).

Orthogonality penalty, computed in every forward on the mixed subspaces S1, S2 of each task's
block output (the maps the next block reads), each flattened to [N, C/2] with N = B·H·W:
    penalty = Σ_blocks Σ_tasks || S1ᵀ S2 ||²_F / (N² · (C/2)²)
i.e. the mean squared entry of the position-averaged cross-product matrix S1ᵀ S2 / N, so its
scale does not grow with batch size, resolution or width (≈ 0.03 per block and task at init). `auxiliary_loss()`
returns the value of the last forward, unweighted (the training code multiplies it by λ).

Init: α_b has alpha_same (0.95) on its diagonal (each subspace keeps itself) and the remaining
1 − alpha_same spread evenly over the other 2T − 1 subspaces, so every output is a convex
combination: the released code's imbalanced 0.95/0.05 pattern made identity-dominant and
normalised for any T. β_t has beta_last (0.9) on the last block and (1 − beta_last)/(n − 1) on the
others (1 for n = 1), the released code's imbalanced init.

Choices where the reference is unconfirmed: penalty on features (not on the weights producing
them), measured after the α mixing; scalar (not channel-wise) α; β used, over the last segment
only; columns initialised independently (each its own draw of the backbone's init).
"""
from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, check_fraction, dominant_mixing, register

SUBSPACES = 2


def orthogonality_penalty(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """||S1ᵀ S2||²_F / (N²·C1·C2) for [B, C1, H, W] and [B, C2, H, W] maps flattened to [N = B·H·W, C]."""
    s1 = first.permute(0, 2, 3, 1).reshape(-1, first.shape[1])
    s2 = second.permute(0, 2, 3, 1).reshape(-1, second.shape[1])
    return (s1.t() @ s2).div(s1.shape[0]).pow(2).mean()


class SubspaceStitchUnit(nn.Module):
    """Mixes the 2T channel halves of T maps with a learned (2T × 2T) matrix α."""

    def __init__(self, num_tasks: int, alpha_same: float = 0.95) -> None:
        super().__init__()
        self.alpha = nn.Parameter(dominant_mixing(SUBSPACES * num_tasks, alpha_same))

    def forward(self, features: Sequence[torch.Tensor]) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """The two mixed subspaces of each task's map."""
        pieces = torch.stack([half for x in features for half in x.chunk(SUBSPACES, dim=1)])
        mixed = torch.einsum("kl,lbchw->kbchw", self.alpha, pieces)
        return [(mixed[SUBSPACES * t], mixed[SUBSPACES * t + 1]) for t in range(len(features))]


class LayerStitch(nn.Module):
    """Per task, a learned weighted sum of that task's outputs of the n last blocks."""

    def __init__(self, num_tasks: int, num_layers: int, beta_last: float = 0.9) -> None:
        super().__init__()
        if num_layers == 1:
            init = torch.ones(1)
        else:
            init = torch.full((num_layers,), (1.0 - beta_last) / (num_layers - 1))
            init[-1] = beta_last
        self.beta = nn.Parameter(init.repeat(num_tasks, 1))  # [T, n]

    def forward(self, task_index: int, layer_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        weights = self.beta[task_index]
        out = weights[0] * layer_outputs[0]
        for w, y in zip(weights[1:], layer_outputs[1:]):
            out = out + w * y
        return out


@register("sluice")
class SluiceNet(MultiTaskBaseline):
    """T columns (`backbones.{t}`), a subspace stitch (`stitches.{b}`) after every block b and a
    layer stitch (`layer_stitch`) over the last segment's blocks."""

    resnet_only = True

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024, *, alpha_same: float = 0.95, beta_last: float = 0.9) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        alpha_same = check_fraction("alpha_same", alpha_same)
        beta_last = check_fraction("beta_last", beta_last)
        self.backbones = nn.ModuleList(self._new_column() for _ in range(self.num_tasks))
        num_blocks = self.backbones[0].num_blocks
        self.stitches = nn.ModuleList(SubspaceStitchUnit(self.num_tasks, alpha_same) for _ in range(num_blocks))
        self.num_stitched_layers = self.layers[-1]  # blocks of the last segment
        self.layer_stitch = LayerStitch(self.num_tasks, self.num_stitched_layers, beta_last)
        self._add_heads(self.backbones[0].out_channels)
        self._penalty: Optional[torch.Tensor] = None

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        features = [column.stem(img) for column in self.backbones]
        first_stitched = len(self.stitches) - self.num_stitched_layers
        last_outputs: List[List[torch.Tensor]] = [[] for _ in range(self.num_tasks)]
        penalty = img.new_zeros(())
        for b, stitch in enumerate(self.stitches):
            subspaces = stitch([column.run_block(x, b) for column, x in zip(self.backbones, features)])
            features = [torch.cat(pair, dim=1) for pair in subspaces]
            penalty = penalty + sum(orthogonality_penalty(*pair) for pair in subspaces)
            if b >= first_stitched:
                for outputs, x in zip(last_outputs, features):
                    outputs.append(x)
        self._penalty = penalty
        return [self.layer_stitch(t, outputs) for t, outputs in enumerate(last_outputs)]

    def __getstate__(self) -> dict:
        # The last penalty belongs to an autograd graph, which deepcopy and pickle cannot copy.
        state = dict(super().__getstate__())
        state["_penalty"] = None
        return state

    def auxiliary_loss(self) -> Optional[torch.Tensor]:
        """The orthogonality penalty of the last forward, unweighted (None before any forward)."""
        return self._penalty

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """The columns and the subspace stitches; the layer stitch holds one row of weights per task."""
        own = {id(p) for p in self.layer_stitch.parameters()}
        return [p for p in super().shared_parameters(gates) if id(p) not in own]
