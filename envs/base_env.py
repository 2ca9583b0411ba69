"""BaseEnv: the device, the network, its optimisers and schedulers, and checkpoints.

The env never parses arguments or reads YAML files: it receives a validated config dict.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from engine import checkpoint as ckpt
from engine.device import DistContext, all_reduce_mean_
from evaluation.metrics import MetricProtocol, MultiTaskMetrics


class NonFiniteLossError(RuntimeError):
    """A loss or policy logit became NaN/inf (either method's env raises it)."""


class BaseEnv:
    """Holds a network on one device and everything that must survive a restart."""

    def __init__(self, network: nn.Module, checkpoint_dir: str, exp_name: str, device: torch.device,
                 dist: DistContext | None = None, is_train: bool = True):
        self.network = network.to(device)
        self.device = device
        self.dist = dist
        self.is_train = is_train
        self.checkpoint_dir = checkpoint_dir
        self.exp_name = exp_name
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        self.batch: dict[str, Any] = {}
        if self.is_distributed:
            self._broadcast_parameters()

    # ---------------------------------------------------------------- devices and ranks
    @property
    def is_distributed(self) -> bool:
        return self.dist is not None and self.dist.distributed

    @property
    def is_main(self) -> bool:
        return self.dist is None or self.dist.is_main

    def _broadcast_parameters(self) -> None:
        """Start every rank from rank 0's weights and buffers."""
        import torch.distributed as tdist
        for tensor in list(self.network.parameters()) + list(self.network.buffers()):
            tdist.broadcast(tensor.data, src=0)

    def sync_gradients(self, params: list[torch.Tensor]) -> None:
        """Average the gradients of `params` over ranks (explicit, so frozen groups cost nothing)."""
        if not self.is_distributed:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        all_reduce_mean_(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    # ---------------------------------------------------------------- inputs and modes
    def set_inputs(self, batch: dict[str, Any]) -> None:
        """Move the tensors of a loader batch to the env's device (non-blocking when pinned)."""
        self.batch = {k: (v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v)
                      for k, v in batch.items()}

    def train(self) -> None:
        self.network.train()

    def eval(self) -> None:
        self.network.eval()

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_file(self, label: str) -> str:
        return ckpt.checkpoint_path(self.checkpoint_dir, self.exp_name, label)

    def save(self, label: str, iteration: int, temperature: float, extra: dict | None = None,
             with_optimizers: bool = True) -> str | None:
        """Write `<label>_model.pth.tar` with the original dict keys; only the main rank writes."""
        return self.save_to(self.checkpoint_file(label), iteration, temperature, extra, with_optimizers)

    def save_to(self, path: str, iteration: int, temperature: float, extra: dict | None = None,
                with_optimizers: bool = True) -> str | None:
        """Write a checkpoint to `path` atomically (main rank only); `with_optimizers=False` leaves out
        the optimiser states (the `weights`/`alphas` keys), which evaluation does not need."""
        if not self.is_main:
            return None
        os.makedirs(os.path.dirname(path), exist_ok=True)
        optimizers = {name: opt.state_dict() for name, opt in self.optimizers.items()} \
            if self.is_train and with_optimizers else None
        ckpt.save_checkpoint(path, self.network.state_dict(), optimizers=optimizers, iteration=iteration,
                             temperature=temperature, extra=extra)
        return path

    def load_network(self, label: str, strict: bool = False, hint: str | None = None) -> dict:
        """Load `<label>_model.pth.tar` into the network; returns the whole checkpoint dict."""
        path = self.checkpoint_file(label)
        state = ckpt.load_checkpoint(path, map_location=self.device, hint=hint)
        if strict:
            ckpt.load_state_strict(self.network, state['mtl-net'], source=path)
        else:
            ckpt.load_state_tolerant(self.network, state['mtl-net'])
        return state

    def metrics_for(self, extras: bool, cosine: bool = False) -> MultiTaskMetrics:
        """The metrics of a validation (both methods); `cosine` adds the sn cosine_similarity without the
        other extras."""
        metrics = MultiTaskMetrics(self.tasks, list(self.opt['tasks_num_class']), self.dataset,
                                   protocol=MetricProtocol.from_config(self.opt), extras=extras,
                                   seg_class_weights=self.seg_class_weights)
        if cosine and 'sn' in metrics.metrics:
            metrics.metrics['sn'].cosine = True
        return metrics
