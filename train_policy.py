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
from config import load_config  # noqa: E402
from engine import resume as R  # noqa: E402
from engine.cli import parse_args, run_main  # noqa: E402
from engine.console import Progress  # noqa: E402
from engine.data import InfiniteLoader, build_split, make_loader  # noqa: E402
from engine.device import cleanup_distributed, init_distributed  # noqa: E402
from engine.logging import RunLogger  # noqa: E402
from engine.policy_learning import PolicyLoop, closing_summary_text, note_idle_tasks  # noqa: E402
from engine.run import RunSession, claim_folder, preflight, release_folder  # noqa: E402
from engine.seeding import fix_random_seed  # noqa: E402
from engine.threads import apply_cpu_threads  # noqa: E402
from engine.validation import (LoopConfig, ValidationWatch, best_threshold_blocks, eval_iter,  # noqa: E402
                               report_policy_best, validation_split)
from envs import AdaShareEnv  # noqa: E402
from evaluation.metrics import reference_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, script='train_policy')
    opt = load_config(args.config, 'train_policy')
    dist = init_distributed(args.gpus)
    _print_note(apply_cpu_threads(opt, dist.device), dist.is_main)
    try:
        return _train(opt, dist, fresh=args.fresh, accept_changes=args.resume_with_changes)
    finally:
        release_folder()
        cleanup_distributed()


def _print_note(note: str | None, is_main: bool) -> None:
    if note and is_main:
        print(note)


def _schedule(opt: dict, loaders: dict) -> LoopConfig:
    """The loop's counts; an alternation block is one pass over train1 / train2 unless the config says."""
    train_opt = opt['train']
    if train_opt.get('weight_iter_alternate') is None:
        train_opt['weight_iter_alternate'] = len(loaders['train1'])
    if train_opt.get('alpha_iter_alternate') is None:
        train_opt['alpha_iter_alternate'] = len(loaders['train2'])
    return LoopConfig(total_iters=int(train_opt['total_iters']), warm_up_iters=int(train_opt['warm_up_iters']),
                      weight_iter_alternate=int(train_opt['weight_iter_alternate']),
                      alpha_iter_alternate=int(train_opt['alpha_iter_alternate']),
                      print_freq=int(train_opt['print_freq']), val_freq=int(train_opt['val_freq']))


def _train(opt: dict, dist, fresh: bool = False, accept_changes: bool = False) -> int:
    started = time.time()
    fix_random_seed(opt['seed'][0])
    # 1. Start-up checks first: a failed start writes nothing (docs/reliability.md).
    eval_split = validation_split(opt)
    trainsets = {name: build_split(opt, name) for name in ('train', 'train1', 'train2')}
    valset = build_split(opt, eval_split)
    loaders = {name: make_loader(opt, dataset, True, dist) for name, dataset in trainsets.items()}
    val_loader = make_loader(opt, valset, False, dist)
    preflight(opt, {**trainsets, eval_split: valset}, eval_split, dist)
    schedule = _schedule(opt, loaders)
    claim_folder(opt, dist, ['train_policy'], ' '.join(sys.argv))

    # 2. The env, and the run's session: resume where an interrupted run stopped.
    env = AdaShareEnv(opt, dist.device, dist, is_train=True,
                      seg_class_weights=getattr(trainsets['train'], 'class_weights', None))
    if dist.distributed:
        # Each rank draws its own Gumbel noise, as each DataParallel replica did (docs/original.md §10).
        torch.manual_seed(opt['seed'][0] + dist.rank)
    iters = {name: InfiniteLoader(loader) for name, loader in loaders.items()}
    logger = RunLogger(opt['paths']['log_dir'], opt['exp_name'], enabled=dist.is_main)
    session = RunSession(opt, env, logger, script='train_policy', resume_path=R.resume_state_path(opt),
                         total=schedule.total_iters, total_key='total_iters', what='policy-learning run')
    done = session.finished_message(fresh)
    if done is not None:
        if dist.is_main:
            print(done)
        return 0
    session.start(iters, fresh=fresh, accept_changes=accept_changes, dist=dist)
    train_opt = opt['train']
    fix_bn = bool(opt.get('fix_BN', False))
    if not session.resumed and train_opt.get('resume'):
        # The original's resume: weights, iter and temp from `which_iter`; fresh logits and optimisers.
        env.load_label(train_opt['which_iter'],
                       hint=f'policy learning writes it: python train_policy.py --config {opt["_source"]}')
        env.network.reset_logits()
        env.define_optimizers(policy_learning=False)
        env.define_schedulers(policy_learning=False)
    env.apply_phase_freezing(fix_bn)

    # 3. The loop: warm-up, then the alternation of weight and policy blocks (engine/policy_learning.py).
    best_after = best_threshold_blocks(opt) * int(opt['curriculum_speed']) * \
        (schedule.weight_iter_alternate + schedule.alpha_iter_alternate)
    loop = PolicyLoop(env=env, iters=iters, val_loader=val_loader, schedule=schedule, logger=logger,
                      bar=Progress(schedule.total_iters, env.state.current_iter, 'policy learning', enabled=dist.is_main),
                      watch=ValidationWatch(eval_split, reference_for(opt)), is_main=dist.is_main,
                      n_eval=eval_iter(opt), best_after=best_after, policy_on=bool(opt.get('policy', True)),
                      fix_bn=fix_bn)
    while env.state.current_iter < schedule.total_iters:
        latest_due = loop.iteration()
        session.end_iteration(iters, 'latest', latest_due)
        loop.bar.update(1)  # after the step, so the plain line names the phase it ran
    loop.bar.close()

    # 4. Closing: idle tasks, the best checkpoint, what was written.
    if dist.is_main:
        note_idle_tasks(logger, env)
    logger.close()
    if dist.is_main:
        loop.watch.check(f'train_policy.py ({opt["exp_name"]})')
        report_policy_best(env, opt, schedule.warm_up_iters + best_after)
        print(closing_summary_text(opt, env, started))
    return 0


if __name__ == '__main__':
    run_main(main)
