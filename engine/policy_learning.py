"""Policy learning (train_policy.py): what each iteration does — warm-up, then alternating weight
(train1) and policy (train2) steps — and the run's closing lines (docs/original.md §4)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from engine.checkpoint import format_policy_table, idle_task_warning
from engine.console import Progress, closing_summary, files_written, format_metrics
from engine.data import InfiniteLoader
from engine.logging import RunLogger
from engine.resume import checkpoint_iteration
from engine.validation import LoopConfig, ValidationWatch, loss_line, losses_to_float


def note_idle_tasks(logger: RunLogger, env) -> None:
    """Warn in the log and on the console when the learned policy most likely gives a task no gated block."""
    probs = env.execute_probabilities()
    idle = [task for task, p in zip(env.tasks, probs) if float(p.max()) < 0.5]
    if idle:
        warning = idle_task_warning(idle, len(probs[0]), sampled=False)
        logger.note(warning)
        print(warning)


def closing_summary_text(opt: dict, env, started: float) -> str:
    """Elapsed time, the `best` checkpoint's iteration and score, and the files this run wrote."""
    best_path = env.checkpoint_file('best')
    best_iter = checkpoint_iteration(best_path)
    best = [f'iteration {best_iter}, validation score {env.state.best_value:.4f} ({best_path})'] \
        if best_iter is not None else ['no best checkpoint (see the note above)']
    folders = [os.path.join(opt['paths'][k], opt['exp_name']) for k in ('checkpoint_dir', 'log_dir')]
    return closing_summary(f'train_policy.py {opt["exp_name"]}', time.time() - started, best,
                           files_written(folders, started))


@dataclass
class PolicyLoop:
    """What each iteration of policy learning uses: the env, the loaders, the schedule, the logger, the
    progress line and the validation watch. `iteration()` runs one step of the current phase."""
    env: Any  # the env (envs/): this loop decides the steps, the env computes them
    iters: dict[str, InfiniteLoader]
    val_loader: Iterable
    schedule: LoopConfig
    logger: RunLogger
    bar: Progress
    watch: ValidationWatch
    is_main: bool
    n_eval: int
    best_after: int  # iterations after the warm-up before `best` may be saved
    policy_on: bool
    fix_bn: bool

    def iteration(self) -> bool:
        """Advance the counter and run one step; returns whether `latest` is due (after each validation)."""
        self.env.train()
        self.env.state.current_iter += 1
        if self.env.state.current_iter < self.schedule.warm_up_iters:
            return self.warmup_step()
        return self.alternation_step()

    def warmup_step(self) -> bool:
        """One step on `train` with the shared network."""
        it = self.env.state.current_iter
        self.bar.set_phase('warm-up')
        self.env.set_inputs(next(self.iters['train']))
        losses = self.env.optimize('warmup')
        if it % self.schedule.print_freq == 0:
            self.log_losses('warmup', losses)
        if it % self.schedule.val_freq == 0:
            self.validate('eval_shared')
            return True
        return False

    def alternation_step(self) -> bool:
        """One weight (train1) or policy (train2) step of the alternation."""
        state = self.env.state
        if not state.alternation_started:
            self.env.start_alternation()
            if state.current_iter == self.schedule.warm_up_iters:
                self.env.save_label('warmup')
            self.env.fix_alpha()
        return self.weight_step() if state.flag == 'update_w' else self.policy_step()

    def weight_step(self) -> bool:
        """A weight step; the last one of a block switches to the policy, validates and may save `best`."""
        env, state = self.env, self.env.state
        it = state.current_iter
        self.bar.set_phase(f'weights (tau {state.temperature:.3f})')
        state.current_iter_w += 1
        env.set_inputs(next(self.iters['train1']))
        losses = env.optimize('weights')
        if it % self.schedule.print_freq == 0:
            self.log_losses('weights', losses)
        if state.current_iter_w % self.schedule.weight_iter_alternate != 0:
            return False
        state.flag = 'update_alpha'
        env.fix_w()
        env.free_alpha()
        value = self.validate('eval_policy' if self.policy_on else 'eval_shared')
        if self.is_main and it - self.schedule.warm_up_iters >= self.best_after:
            self.logger.log_scalars('val', {'score': value}, it)
            if value > state.best_value:
                state.best_value = value
                env.save_label('best')
                self.bar.write(f'[{it}] new best score {value:.4f}: saved best')
        return True

    def policy_step(self) -> bool:
        """A policy step; the last one of a block switches back to the weights and decays the temperature."""
        env, state = self.env, self.env.state
        it = state.current_iter
        self.bar.set_phase(f'policy (tau {state.temperature:.3f})')
        state.current_iter_a += 1
        env.set_inputs(next(self.iters['train2']))
        losses = env.optimize('policy')
        if it % self.schedule.print_freq == 0:
            self.log_losses('policy', losses)
        if state.current_iter_a % self.schedule.alpha_iter_alternate == 0:
            state.flag = 'update_w'
            env.fix_alpha()
            env.free_w(self.fix_bn)
            env.decay_temperature()
            state.p_epoch += 1
            self.log_policy()
        return False

    def log_losses(self, phase: str, losses: dict) -> None:
        it = self.env.state.current_iter
        values = losses_to_float(losses)
        self.logger.log_losses(it, values, phase)
        self.logger.log_scalars('train', {'temperature': self.env.temperature}, it)
        self.bar.write(loss_line(f'{phase} {it}', values))

    def validate(self, mode: str) -> float:
        """Validate on the main rank and log it; returns the score (NaN on the other ranks)."""
        if not self.is_main:
            return float('nan')
        it = self.env.state.current_iter
        metrics = self.env.validate(self.val_loader, mode, self.n_eval, extras=True)
        value = self.watch.add(metrics)
        self.logger.log_metrics(it, metrics, 'val')
        self.bar.write(f'[{it}] validation: {format_metrics(metrics)}')
        return value

    def log_policy(self) -> None:
        env, it = self.env, self.env.state.current_iter
        probs = env.execute_probabilities()
        for t, task in enumerate(env.tasks):
            self.logger.log_scalars(f'policy/{task}', {f'block{i:02d}': float(p) for i, p in enumerate(probs[t])}, it)
        hard = [torch.stack([(p >= 0.5).long(), (p < 0.5).long()], dim=1) for p in probs]
        n = env.num_train_layers()
        n = min(n, env.network.num_policy_rows) if n is not None else None
        self.bar.write(f'[{it}] policy epoch {env.state.p_epoch}, temperature {env.temperature:.4f}, '
                       f'gated blocks {n if n is not None else "all"}; execute probabilities:\n'
                       + format_policy_table(hard, env.tasks, probabilities=probs, num_gated=n))
