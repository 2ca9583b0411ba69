"""Phase 1 of AdaShare: warm-up, then alternate weight (train1) and policy (train2) updates.

    python train_policy.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0
    torchrun --nproc_per_node 2 train_policy.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0 1

The original release called this script train.py (docs/original.md §6).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Iterable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from envs import AdaShareEnv  # noqa: E402
from engine.checkpoint import format_policy_table, idle_task_warning  # noqa: E402
from engine.cli import parse_args, run_main  # noqa: E402
from config import load_config, recorded_config  # noqa: E402
from engine.console import Progress, closing_summary, files_written, format_metrics  # noqa: E402
from engine.device import cleanup_distributed, init_distributed  # noqa: E402
from engine.logging import RunLogger  # noqa: E402
from engine.seeding import fix_random_seed  # noqa: E402
from engine import training as T  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, script='train_policy')
    opt = load_config(args.config, 'train_policy')
    dist = init_distributed(args.gpus)
    try:
        return _train(opt, dist, fresh=args.fresh, accept_changes=args.resume_with_changes)
    finally:
        T.release_folder()
        cleanup_distributed()


def _train(opt: dict, dist, fresh: bool = False, accept_changes: bool = False) -> int:
    started = time.time()
    fix_random_seed(opt['seed'][0])
    # Start-up checks first: a failed start writes nothing (docs/reliability.md).
    eval_split = T.validation_split(opt)
    trainsets = {name: T.build_split(opt, name) for name in ('train', 'train1', 'train2')}
    valset = T.build_split(opt, eval_split)
    loaders = {name: T.make_loader(opt, dataset, True, dist) for name, dataset in trainsets.items()}
    val_loader = T.make_loader(opt, valset, False, dist)
    T.preflight(opt, {**trainsets, eval_split: valset}, eval_split, dist)
    train_opt = opt['train']
    if train_opt.get('weight_iter_alternate') is None:
        train_opt['weight_iter_alternate'] = len(loaders['train1'])
    if train_opt.get('alpha_iter_alternate') is None:
        train_opt['alpha_iter_alternate'] = len(loaders['train2'])
    schedule = T.LoopConfig(total_iters=int(train_opt['total_iters']), warm_up_iters=int(train_opt['warm_up_iters']),
                            weight_iter_alternate=int(train_opt['weight_iter_alternate']),
                            alpha_iter_alternate=int(train_opt['alpha_iter_alternate']),
                            print_freq=int(train_opt['print_freq']), val_freq=int(train_opt['val_freq']))
    T.claim_folder(opt, dist, ['train_policy'], ' '.join(sys.argv))

    env = AdaShareEnv(opt, dist.device, dist, is_train=True,
                      seg_class_weights=getattr(trainsets['train'], 'class_weights', None))
    if dist.distributed:
        # Each rank draws its own Gumbel noise, as each DataParallel replica did (docs/original.md §10).
        torch.manual_seed(opt['seed'][0] + dist.rank)
    iters = {name: T.InfiniteLoader(loader) for name, loader in loaders.items()}
    fix_bn = bool(opt.get('fix_BN', False))
    resume_path = T.resume_state_path(opt)
    payload, record = (None, T.RunRecord(recorded_config(opt), []))
    if train_opt['auto_resume'] and not fresh:
        done = T.complete_message(resume_path, schedule.total_iters, 'policy-learning run', 'total_iters',
                                  os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name']))
        if done is not None:
            if dist.is_main:
                print(done)
            return 0
        payload, record = T.resume_checked(env, resume_path, iters, opt, 'train_policy', accept_changes)
    T.make_dirs(opt, dist)
    logger = RunLogger(opt['paths']['log_dir'], opt['exp_name'], enabled=dist.is_main)
    logger.write_options(T.options_text(opt, record))
    if payload is not None:
        if dist.is_main:
            print(f'resuming the interrupted run from {resume_path} at iteration {env.state.current_iter} '
                  f'(use --fresh to start over)')
        logger.note(f'resumed at iteration {env.state.current_iter}')
        if record.history and record.history[-1].startswith(f'# changed at iteration {env.state.current_iter} '):
            logger.note(record.history[-1].lstrip('# '))
    else:
        logger.note('fresh start' if fresh else 'start')
        if dist.is_main:
            T.forget_completion(resume_path)
    if payload is None and train_opt.get('resume'):
        # The original's resume: weights, iter and temp from `which_iter`; fresh logits and optimisers.
        env.load_label(train_opt['which_iter'],
                       hint='policy learning writes it: python train_policy.py --config <yaml>')
        env.network.reset_logits()
        env.define_optimizers(policy_learning=False)
        env.define_schedulers(policy_learning=False)
    env.apply_phase_freezing(fix_bn)

    best_after = T.best_threshold_blocks(opt) * int(opt['curriculum_speed']) * \
        (schedule.weight_iter_alternate + schedule.alpha_iter_alternate)
    loop = PolicyLoop(env=env, iters=iters, val_loader=val_loader, schedule=schedule, logger=logger,
                      bar=Progress(schedule.total_iters, env.state.current_iter, 'policy learning', enabled=dist.is_main),
                      watch=T.ValidationWatch(eval_split, T.reference_for(opt)), is_main=dist.is_main,
                      n_eval=T.eval_iter(opt), best_after=best_after, policy_on=bool(opt.get('policy', True)),
                      fix_bn=fix_bn)
    bar, watch = loop.bar, loop.watch
    while env.state.current_iter < schedule.total_iters:
        latest_due = loop.iteration()
        T.finish_iteration(env, 'latest', train_opt.get('latest_freq'), schedule.total_iters, latest_due,
                           resume_path, iters, record)
        bar.update(1)  # after the step, so the plain line names the phase it ran
    bar.close()
    if dist.is_main:
        _note_idle_tasks(logger, env)
    logger.close()
    if dist.is_main:
        watch.check(f'train_policy.py ({opt["exp_name"]})')
        T.report_policy_best(env, opt, schedule.warm_up_iters + best_after)
        print(_closing(opt, env, started))
    return 0


def _note_idle_tasks(logger: RunLogger, env: AdaShareEnv) -> None:
    """Warn in the log and on the console when the learned policy most likely gives a task no gated block."""
    probs = env.execute_probabilities()
    idle = [task for task, p in zip(env.tasks, probs) if float(p.max()) < 0.5]
    if idle:
        warning = idle_task_warning(idle, len(probs[0]), sampled=False)
        logger.note(warning)
        print(warning)


def _closing(opt: dict, env: AdaShareEnv, started: float) -> str:
    """Elapsed time, the `best` checkpoint's iteration and score, and the files this run wrote."""
    best_path = env.checkpoint_file('best')
    best_iter = T.checkpoint_iteration(best_path)
    best = [f'iteration {best_iter}, validation score {env.state.best_value:.4f} ({best_path})'] \
        if best_iter is not None else ['no best checkpoint (see the note above)']
    folders = [os.path.join(opt['paths'][k], opt['exp_name']) for k in ('checkpoint_dir', 'log_dir')]
    return closing_summary(f'train_policy.py {opt["exp_name"]}', time.time() - started, best,
                           files_written(folders, started))


@dataclass
class PolicyLoop:
    """What each iteration of policy learning uses: the env, the loaders, the schedule, the logger, the
    progress line and the validation watch. `iteration()` runs one step of the current phase."""
    env: AdaShareEnv
    iters: dict[str, T.InfiniteLoader]
    val_loader: Iterable
    schedule: T.LoopConfig
    logger: RunLogger
    bar: Progress
    watch: T.ValidationWatch
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
        values = T.losses_to_float(losses)
        self.logger.log_losses(it, values, phase)
        self.logger.log_scalars('train', {'temperature': self.env.temperature}, it)
        self.bar.write(T.loss_line(f'{phase} {it}', values))

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
                       + format_policy_table(hard, env.tasks, probabilities=probs))


if __name__ == '__main__':
    run_main(main)
