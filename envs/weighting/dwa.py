"""dwa: Dynamic Weight Average (Liu, Johns & Davison, MTAN, CVPR 2019).

    w_t(e) = K·exp(r_t(e−1)/T) / Σ_k exp(r_k(e−1)/T),   r_t(e−1) = ℓ̄_t(e−1) / ℓ̄_t(e−2)
where ℓ̄_t(e) is the mean of ℓ_t = λ_t·L_t over epoch e, and w = 1 for the first two epochs.

"Epoch" here is a window of `window` consecutive weighting steps (warm-up, weight steps of the alternation and
retraining steps count; policy steps do not). The default, train.val_freq, is the period at which warm-up and
retraining validate, so one DWA epoch is one validation period: a fixed count of steps that does not depend on
which loader the steps draw from. The loss means are averaged over DDP ranks, so every rank weights alike.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from utils.checks import Integer, Nullable, Number

from .base import Arg, Weighting, WeightingContext, rank_mean, register_weighting


@register_weighting('dwa')
class DynamicWeightAverage(Weighting):
    """Weights from the rate of change of the window-averaged losses."""

    ARGS = {
        'T': Arg(2.0, Number(gt=0), 'Softmax temperature of the loss ratios (2 in MTAN).'),
        'window': Arg(None, Nullable(Integer(1)), 'Weighting steps per DWA epoch; null = train.val_freq.'),
    }

    def __init__(self, context: WeightingContext, **args) -> None:
        super().__init__(context, **args)
        self.window = int(self.args['window'] or context.steps_per_epoch)
        self.temperature = float(self.args['T'])
        self.running: list[float] = [0.0] * self.num_tasks  # sum of ℓ_t over the current window
        self.count = 0                                       # steps in the current window
        self.history: list[list[float]] = []                 # the means of the last two finished windows

    def task_weights(self) -> torch.Tensor:
        """The weights of the current window."""
        if len(self.history) < 2:
            return torch.ones(self.num_tasks)
        previous, before = torch.tensor(self.history[-1]), torch.tensor(self.history[-2])
        return self.num_tasks * torch.softmax(previous / before / self.temperature, dim=0)

    def loss(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        ell = self.scaled(losses)
        weights = self.task_weights().tolist()
        self._record(rank_mean(torch.stack(ell)).tolist())
        return sum(w * value for w, value in zip(weights, ell))

    def _record(self, values: list[float]) -> None:
        if not all(math.isfinite(v) for v in values):
            return  # a batch the numerical guard skips (train.nonfinite: skip) must not poison the history
        self.running = [a + b for a, b in zip(self.running, values)]
        self.count += 1
        if self.count == self.window:
            self.history = (self.history + [[v / self.count for v in self.running]])[-2:]
            self.running, self.count = [0.0] * self.num_tasks, 0

    def extra_state(self) -> dict:
        return {'running': list(self.running), 'count': self.count, 'history': [list(h) for h in self.history]}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.running = [float(v) for v in state['running']]
        self.count = int(state['count'])
        self.history = [[float(v) for v in h] for h in state['history']]
