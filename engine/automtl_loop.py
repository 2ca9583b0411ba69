"""AutoMTL's policy learning (train_policy.py, docs/automtl.md "Training"): pre-train iterations with the
options averaged, then policy-train: iteration i (0-based from the stage's start) is a policy step on
train2 iff i mod (p + w) < p, else a weight step on train1. Validation (argmax policy) every val_freq
iterations and at the last one; `best` from the policy-train stage on; `latest` after each validation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from engine.console import Progress, format_metrics
from engine.data import InfiniteLoader
from engine.logging import RunLogger
from engine.validation import LoopConfig, ValidationWatch, loss_line, losses_to_float


def step_kind(iteration: int, schedule: LoopConfig) -> str:
    """'pretrain', 'policy' or 'weights' for the 1-based `iteration` of train_policy.py."""
    if iteration <= schedule.warm_up_iters:
        return 'pretrain'
    i = iteration - schedule.warm_up_iters - 1
    p, w = schedule.alpha_iter_alternate, schedule.weight_iter_alternate
    return 'policy' if i % (p + w) < p else 'weights'


LOADER = {'pretrain': 'train', 'policy': 'train2', 'weights': 'train1'}


@dataclass
class AutoMTLLoop:
    """The same contract as engine.policy_learning.PolicyLoop: `iteration()` runs one step and says whether
    `latest` is due; `bar` and `watch` are read by train_policy.py."""
    env: Any
    iters: dict[str, InfiniteLoader]
    val_loader: Iterable
    schedule: LoopConfig
    logger: RunLogger
    bar: Progress
    watch: ValidationWatch
    is_main: bool
    n_eval: int

    def iteration(self) -> bool:
        env, state = self.env, self.env.state
        env.train()
        if state.stage == 'pretrain' and step_kind(state.current_iter + 1, self.schedule) != 'pretrain':
            if state.current_iter == self.schedule.warm_up_iters > 0:
                env.save_label('pretrain')  # the pre-trained supermodel, at iteration pretrain_iters
            env.start_policy_train()
        state.current_iter += 1
        it = state.current_iter
        kind = step_kind(it, self.schedule)
        self.bar.set_phase(kind if kind == 'pretrain' else f'{kind} (tau {env.current_temperature():.3f})')
        env.set_inputs(next(self.iters[LOADER[kind]]))
        losses = env.optimize(kind)
        last_policy_step = kind == 'policy' and step_kind(it + 1, self.schedule) != 'policy'
        if it % self.schedule.print_freq == 0 or last_policy_step:  # policy steps are logged once per cycle
            values = losses_to_float(losses)
            self.logger.log_losses(it, values, kind)
            self.logger.log_scalars('train', {'temperature': env.temperature}, it)
            self.bar.write(loss_line(f'{kind} {it}', values))
        if it % self.schedule.val_freq != 0 and it != self.schedule.total_iters:
            return False
        value = self.validate('eval_pretrain' if kind == 'pretrain' else 'eval_hard')
        if kind != 'pretrain':
            self.log_policy()
            if self.is_main and value > state.best_value:
                state.best_value = value
                env.save_label('best')
                self.bar.write(f'[{it}] new best score {value:.4f}: saved best')
        return True

    def validate(self, mode: str) -> float:
        if not self.is_main:
            return float('nan')
        it = self.env.state.current_iter
        metrics = self.env.validate(self.val_loader, mode, self.n_eval, extras=True)
        value = self.watch.add(metrics)
        self.logger.log_metrics(it, metrics, 'val')
        self.logger.log_scalars('val', {'score': value}, it)
        self.bar.write(f'[{it}] validation ({mode}): {format_metrics(metrics)}')
        return value

    def log_policy(self) -> None:
        env, it = self.env, self.env.state.current_iter
        probs = env.policy_probabilities()
        for t, task in enumerate(env.tasks):
            for k, name in enumerate(('shared', 'specific', 'skip')):
                self.logger.log_scalars(f'policy/{task}/{name}', {f'conv{l:03d}': float(p[k])
                                                                  for l, p in enumerate(probs[t])}, it)
        self.bar.write(f'[{it}] policy steps {env.state.policy_steps}, temperature {env.temperature:.4f}; '
                       f'argmax policy:\n' + env.format_policy(env.argmax_policy()))
