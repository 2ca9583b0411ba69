"""Phase 1 of AdaShare: warm-up, then alternate weight (train1) and policy (train2) updates.

    python train_policy.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0
    torchrun --nproc_per_node 2 train_policy.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0 1

The original release called this script train.py (docs/original.md §6).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from envs import AdaShareEnv  # noqa: E402
from utils.checkpoint import format_policy_table, idle_task_warning  # noqa: E402
from utils.cli import parse_args, run_main  # noqa: E402
from utils.config import load_config, recorded_config  # noqa: E402
from utils.console import Progress, closing_summary, files_written, format_metrics  # noqa: E402
from utils.device import cleanup_distributed, init_distributed  # noqa: E402
from utils.logging import RunLogger  # noqa: E402
from utils.seeding import fix_random_seed  # noqa: E402
from utils import training as T  # noqa: E402


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
    loop = T.LoopConfig(total_iters=int(train_opt['total_iters']), warm_up_iters=int(train_opt['warm_up_iters']),
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
        done = T.complete_message(resume_path, loop.total_iters, 'policy-learning run', 'total_iters',
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

    refer = T.reference_for(opt)
    best_after = T.best_threshold_blocks(opt) * int(opt['curriculum_speed']) * \
        (loop.weight_iter_alternate + loop.alpha_iter_alternate)
    policy_on = bool(opt.get('policy', True))
    state = env.state
    n_eval = T.eval_iter(opt)
    watch = T.ValidationWatch(eval_split, refer)

    bar = Progress(loop.total_iters, state.current_iter, 'policy learning', enabled=dist.is_main)
    while state.current_iter < loop.total_iters:
        env.train()
        state.current_iter += 1
        it = state.current_iter
        if it < loop.warm_up_iters:
            saved_latest = _warmup_iteration(env, iters, val_loader, loop, logger, bar, n_eval, dist, watch)
        else:
            saved_latest = _alternation_iteration(env, iters, val_loader, loop, logger, bar, n_eval, dist,
                                                  refer, best_after, policy_on, fix_bn, watch)
        T.finish_iteration(env, 'latest', train_opt.get('latest_freq'), loop.total_iters, saved_latest,
                           resume_path, iters, record)
        bar.update(1)  # after the step, so the plain line names the phase it ran
    bar.close()
    if dist.is_main:
        _note_idle_tasks(logger, env)
    logger.close()
    if dist.is_main:
        watch.check(f'train_policy.py ({opt["exp_name"]})')
        T.report_policy_best(env, opt, loop.warm_up_iters + best_after)
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



def _warmup_iteration(env, iters, val_loader, loop, logger, bar, n_eval, dist, watch) -> bool:
    """One warm-up step on `train` with the shared network; returns whether `latest` was saved."""
    it = env.state.current_iter
    bar.set_phase('warm-up')
    env.set_inputs(next(iters['train']))
    losses = env.optimize('warmup')
    if it % loop.print_freq == 0:
        _log_losses(logger, bar, it, 'warmup', losses, env)
    if it % loop.val_freq == 0:
        metrics = env.validate(val_loader, 'eval_shared', n_eval, extras=True) if dist.is_main else {}
        _log_metrics(logger, bar, it, metrics, watch)
        env.save_label('latest')
        return True
    return False


def _alternation_iteration(env, iters, val_loader, loop, logger, bar, n_eval, dist, refer, best_after,
                           policy_on, fix_bn, watch) -> bool:
    """One weight (train1) or policy (train2) step of the alternation; returns whether `latest` was saved."""
    state = env.state
    it = state.current_iter
    if not state.alternation_started:
        env.start_alternation()
        if it == loop.warm_up_iters:
            env.save_label('warmup')
        env.fix_alpha()
    if state.flag == 'update_w':
        bar.set_phase(f'weights (tau {state.temperature:.3f})')
        state.current_iter_w += 1
        env.set_inputs(next(iters['train1']))
        losses = env.optimize('weights')
        if it % loop.print_freq == 0:
            _log_losses(logger, bar, it, 'weights', losses, env)
        if state.current_iter_w % loop.weight_iter_alternate != 0:
            return False
        state.flag = 'update_alpha'
        env.fix_w()
        env.free_alpha()
        mode = 'eval_policy' if policy_on else 'eval_shared'
        metrics = env.validate(val_loader, mode, n_eval, extras=True) if dist.is_main else {}
        value = _log_metrics(logger, bar, it, metrics, watch)
        env.save_label('latest')
        if dist.is_main and it - loop.warm_up_iters >= best_after:
            logger.log_scalars('val', {'score': value}, it)
            if value > state.best_value:
                state.best_value = value
                env.save_label('best')
                bar.write(f'[{it}] new best score {value:.4f}: saved best')
        return True
    bar.set_phase(f'policy (tau {state.temperature:.3f})')
    state.current_iter_a += 1
    env.set_inputs(next(iters['train2']))
    losses = env.optimize('policy')
    if it % loop.print_freq == 0:
        _log_losses(logger, bar, it, 'policy', losses, env)
    if state.current_iter_a % loop.alpha_iter_alternate == 0:
        state.flag = 'update_w'
        env.fix_alpha()
        env.free_w(fix_bn)
        env.decay_temperature()
        state.p_epoch += 1
        _log_policy(logger, bar, it, env)
    return False


def _log_losses(logger: RunLogger, bar: Progress, it: int, phase: str, losses: dict, env: AdaShareEnv) -> None:
    values = T.losses_to_float(losses)
    logger.log_losses(it, values, phase)
    logger.log_scalars('train', {'temperature': env.temperature}, it)
    bar.write(T.loss_line(f'{phase} {it}', values))


def _log_metrics(logger: RunLogger, bar: Progress, it: int, metrics: dict, watch: T.ValidationWatch) -> float:
    """Log one validation; returns its score (NaN on ranks that do not validate)."""
    if not metrics:
        return float('nan')
    value = watch.add(metrics)
    logger.log_metrics(it, metrics, 'val')
    bar.write(f'[{it}] validation: {format_metrics(metrics)}')
    return value


def _log_policy(logger: RunLogger, bar: Progress, it: int, env: AdaShareEnv) -> None:
    probs = env.execute_probabilities()
    for t, task in enumerate(env.tasks):
        logger.log_scalars(f'policy/{task}', {f'block{i:02d}': float(p) for i, p in enumerate(probs[t])}, it)
    hard = [torch.stack([(p >= 0.5).long(), (p < 0.5).long()], dim=1) for p in probs]
    n = env.num_train_layers()
    n = min(n, env.network.num_policy_rows) if n is not None else None
    bar.write(f'[{it}] policy epoch {env.state.p_epoch}, temperature {env.temperature:.4f}, '
              f'gated blocks {n if n is not None else "all"}; execute probabilities:\n'
              + format_policy_table(hard, env.tasks, probabilities=probs))


if __name__ == '__main__':
    run_main(main)
