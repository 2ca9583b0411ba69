"""Loss weighting: the base class, the hyper-parameter declarations and the registry (docs/weighting.md).

A method turns the K task losses of a weight-updating step (warm-up, weight steps of the alternation,
retraining, every baseline) into parameter gradients. Every method sees the task losses already
multiplied by the config's `lambdas`, ℓ_t = λ_t·L_t, so the lambdas keep their meaning (each task's loss
scale) under every method. Two kinds:

  * loss methods (`uses_gradients = False`): `loss(losses)` returns the scalar to backpropagate;
  * gradient methods (`uses_gradients = True`): `combine(grads, losses)` receives the K per-task gradients
    of the shared parameters (already averaged over DDP ranks, unscaled) and returns the shared update
    direction and the weights of each task's gradient on the other parameters (envs/weighting/gradients.py).

Methods never draw from the global RNGs, so choosing one leaves the data order and the Gumbel noise alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from utils.checks import Check
from engine.device import all_reduce_mean_
from utils.registry import registrar


@dataclass(frozen=True)
class Arg:
    """One hyper-parameter of a method (`weighting_args.<name>`): default, value check and meaning."""
    default: Any
    check: Check
    meaning: str


@dataclass(frozen=True)
class WeightingContext:
    """What a method may need from the run besides its own arguments."""
    num_tasks: int
    lambdas: tuple[float, ...]
    seed: int = 0
    steps_per_epoch: int = 1  # train.val_freq: DWA's default window


def lambda_sum(lambdas: Sequence[float], losses: Sequence[torch.Tensor]) -> torch.Tensor:
    """Σ λ_t·L_t in the original's operation order (bit for bit the fixed-lambdas loss)."""
    return sum(lam * loss for lam, loss in zip(lambdas, losses))


def rank_mean(values: torch.Tensor) -> torch.Tensor:
    """A detached copy of `values` averaged over DDP ranks (itself in one process), so every rank's
    method state (loss histories, weights) evolves identically."""
    return all_reduce_mean_(values.detach().float().clone())


class Weighting(nn.Module):
    """A loss-weighting method; an nn.Module so learnable weights (UW) are ordinary parameters."""

    name: str = ''
    uses_gradients: bool = False
    ARGS: Mapping[str, Arg] = {}
    # A method's own optimiser of its own weights (FAMO's logits, GradNorm's weights), saved with the state.
    own_optimizer: torch.optim.Optimizer | None = None

    def __init__(self, context: WeightingContext, **args: Any) -> None:
        super().__init__()
        self.num_tasks = context.num_tasks
        self.lambdas = tuple(float(x) for x in context.lambdas)
        if len(self.lambdas) != self.num_tasks:
            raise ValueError(f'{self.name}: {len(self.lambdas)} lambdas for {self.num_tasks} tasks')
        self.args = dict(args)

    def scaled(self, losses: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """ℓ_t = λ_t·L_t, the losses every method weights."""
        return [lam * loss for lam, loss in zip(self.lambdas, losses)]

    def loss(self, losses: Sequence[torch.Tensor]) -> torch.Tensor:
        """Loss methods: the scalar to backpropagate from the raw task losses L_t."""
        raise NotImplementedError(f'{self.name} is a gradient method: use combine()')

    def combine(self, grads: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient methods: [K, D] shared gradients of ℓ_t and the [K] values ℓ_t -> ([D] direction, [K] weights
        of each task's gradient on the non-shared parameters)."""
        raise NotImplementedError(f'{self.name} is a loss method: use loss()')

    def weight_parameter_groups(self, default_lr: float) -> list[dict]:
        """Optimiser groups of parameters the weight optimiser trains with the network (UW's log-variances);
        `default_lr` is train.lr."""
        return []

    def weight_parameters(self) -> list[nn.Parameter]:
        """The parameters of weight_parameter_groups()."""
        return [p for group in self.weight_parameter_groups(1.0) for p in group['params']]

    def extra_state(self) -> dict:
        """Method state that is not a parameter or buffer (histories, counters, own optimisers)."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what extra_state() returned."""

    def state_dict(self, *args: Any, **kwargs: Any) -> dict:  # type: ignore[override]
        """Parameters, buffers and the extra state: everything an exact resume needs."""
        optimizer = self.own_optimizer.state_dict() if self.own_optimizer is not None else None
        return {'name': self.name, 'tensors': dict(super().state_dict()), 'extra': self.extra_state(),
                'optimizer': optimizer}

    def load_state_dict(self, state: Mapping[str, Any], strict: bool = True) -> Any:  # type: ignore[override]
        if state.get('name') != self.name:
            raise ValueError(f"the saved weighting state is {state.get('name')!r}, the config asks for {self.name!r}")
        result = super().load_state_dict(state['tensors'], strict=strict)
        self.load_extra_state(state.get('extra') or {})
        if self.own_optimizer is not None:
            self.own_optimizer.load_state_dict(state['optimizer'])
        return result


WEIGHTINGS: dict[str, type[Weighting]] = {}


# Class decorator: @register_weighting(name) adds the method to WEIGHTINGS under `name`.
register_weighting = registrar(WEIGHTINGS, 'weighting')


def argument_problems(name: str, args: Mapping[str, Any] | None) -> list[tuple[str, Any, str]]:
    """(argument, value, problem) for each bad `weighting_args` entry of method `name`."""
    if name not in WEIGHTINGS:
        return [('', name, f'unknown weighting; expected one of {", ".join(sorted(WEIGHTINGS))}')]
    declared = WEIGHTINGS[name].ARGS
    problems = []
    for arg, value in (args or {}).items():
        if arg not in declared:
            valid = f'valid arguments: {", ".join(sorted(declared))}' if declared else 'it takes no arguments'
            problems.append((str(arg), value, f'unknown argument of weighting {name!r}; {valid}'))
            continue
        problem = declared[arg].check.problem(value)
        if problem:
            problems.append((str(arg), value, problem))
    return problems


def resolved_arguments(name: str, args: Mapping[str, Any] | None) -> dict[str, Any]:
    """The declared defaults of method `name` overridden by `args`; ValueError naming any bad entry."""
    problems = argument_problems(name, args)
    if problems:
        raise ValueError('; '.join(f'weighting_args.{arg} = {value!r}: {why}' if arg else f'weighting = {value!r}: {why}'
                                   for arg, value, why in problems))
    return {**{k: a.default for k, a in WEIGHTINGS[name].ARGS.items()}, **dict(args or {})}


def build_weighting(name: str, context: WeightingContext, args: Mapping[str, Any] | None = None) -> Weighting:
    """The method registered as `name`, with its defaults overridden by `args`."""
    return WEIGHTINGS[name](context, **resolved_arguments(name, args))
