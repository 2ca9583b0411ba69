"""Phase 2 of AdaShare: for each --exp_ids seed, sample an architecture and train it from scratch.

    python re-train.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0 --exp_ids 0 1 2 3 4 5 6 7
"""
from __future__ import annotations

import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from config import check_exp_ids, load_config  # noqa: E402
from engine import checkpoint as C  # noqa: E402
from engine import resume as R  # noqa: E402
from engine.cli import parse_args, run_main  # noqa: E402
from engine.console import Progress, closing_summary, files_written, format_metrics  # noqa: E402
from engine.data import InfiniteLoader, build_split, make_loader  # noqa: E402
from engine.device import barrier, cleanup_distributed, init_distributed  # noqa: E402
from engine.logging import RunLogger  # noqa: E402
from engine.policy_source import obtain_policy, policy_hint, unfinished_source  # noqa: E402
from engine.run import RunSession, claim_folder, preflight, release_folder  # noqa: E402
from engine.seeding import fix_random_seed  # noqa: E402
from engine.threads import apply_cpu_threads  # noqa: E402
from engine.validation import ValidationWatch, eval_iter, loss_line, losses_to_float, validation_split  # noqa: E402
from envs import AdaShareEnv  # noqa: E402
from evaluation.metrics import reference_for  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, script='re-train')
    opt = load_config(args.config, 're-train')
    check_exp_ids(opt, args.exp_ids, args.config)
    dist = init_distributed(args.gpus)
    threads_note = apply_cpu_threads(opt, dist.device)
    if threads_note and dist.is_main:
        print(threads_note)
    started = time.time()
    try:
        # Start-up checks first: a failed start writes nothing (docs/reliability.md).
        eval_split = validation_split(opt)
        datasets = {'train': build_split(opt, 'train'), eval_split: build_split(opt, eval_split)}
        make_loader(opt, datasets['train'], True, dist)
        make_loader(opt, datasets[eval_split], False, dist)
        preflight(opt, datasets, eval_split, dist, checkpoints=_needed_checkpoints(opt, args.exp_ids))
        claim_folder(opt, dist, [f'retrain{e:03d}' for e in args.exp_ids], ' '.join(sys.argv))
        logger = RunLogger(opt['paths']['log_dir'], opt['exp_name'], enabled=dist.is_main)
        bests = []
        for exp_id in args.exp_ids:
            best = retrain_one(opt, exp_id, dist, logger, fresh=args.fresh, datasets=datasets,
                               accept_changes=args.resume_with_changes, allow_unfinished=args.allow_unfinished)
            bests.append(f'exp_id {exp_id} (seed {opt["seed"][exp_id]}): {best}')
            if dist.is_main:
                print(bests[-1])
        logger.close()
        if dist.is_main:
            folders = [os.path.join(opt['paths'][k], opt['exp_name']) for k in ('checkpoint_dir', 'log_dir')]
            print(closing_summary(f're-train.py {opt["exp_name"]}, exp_ids {args.exp_ids}', time.time() - started,
                                  bests, files_written(folders, started)))
    finally:
        release_folder()
        cleanup_distributed()
    return 0


def _needed_checkpoints(opt: dict, exp_ids: list[int]) -> list[tuple[list[str], str]]:
    """The checkpoint files re-train.py will read, as (any of these paths, how to get it), for the start-up checks.

    A retraining reads the policy-learning checkpoint `policy_iter` unless every seed's policy pickle is
    there (then the pickles alone do); `retrain_resume` reads `which_iter`. The fixed-architecture baselines
    read nothing. A finished or interrupted retraining needs nothing either (it resumes or reports).
    """
    train_opt = opt['train']
    folder = (opt['paths']['checkpoint_dir'], opt['exp_name'])
    if train_opt.get('retrain_resume'):
        return [([C.checkpoint_path(*folder, str(train_opt['which_iter']))],
                 'retrain_resume reads it; re-train.py writes retrain checkpoints')]
    if opt.get('architecture', 'adashare') != 'adashare':
        return []
    policy_iter = str(train_opt['policy_iter'])
    missing_pickles = [e for e in exp_ids
                       if not os.path.exists(C.policy_path(*folder, policy_iter, int(opt['seed'][e])))]
    resumable = [e for e in missing_pickles
                 if os.path.exists(R.resume_state_path(opt, prefix=f'retrain{e:03d}_policyIter{policy_iter}_'))
                 or os.path.exists(R.completion_path(R.resume_state_path(opt, prefix=f'retrain{e:03d}_policyIter{policy_iter}_')))]
    if not [e for e in missing_pickles if e not in resumable]:
        return []
    return [([C.checkpoint_path(*folder, policy_iter)], policy_hint(opt, policy_iter))]


def retrain_one(opt: dict, exp_id: int, dist, logger: RunLogger, fresh: bool = False, datasets: dict | None = None,
                accept_changes: bool = False, allow_unfinished: bool = False) -> str:
    """Retrain the architecture of one seed; returns a line on its best validation score."""
    train_opt = opt['train']
    seed = int(opt['seed'][exp_id])
    policy_iter = str(train_opt['policy_iter'])
    total = int(train_opt.get('retrain_total_iters') or train_opt['total_iters'])
    best_label = C.retrain_label(exp_id, policy_iter, 'best')
    resume_path = R.resume_state_path(opt, prefix=f'retrain{exp_id:03d}_policyIter{policy_iter}_')
    folder = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    if train_opt['auto_resume'] and not fresh:
        done = R.complete_message(resume_path, total, f'retraining of exp_id {exp_id}', 'retrain_total_iters', folder)
        if done is not None:
            best_path = C.checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], best_label)
            return f'{done}; {_best_line(best_path, R.read_completion(resume_path).get("best_value"))}'
        # A changed network (tasks, backbone, ...) cannot resume: say so in one line before anything is loaded.
        R.refuse_network_change(resume_path, opt, 're-train')
    fix_random_seed(seed)
    # The env (torch RNG only) is built right after seeding so that the numpy draws of the policy
    # sample are the original's (docs/original.md §4.5).
    env = AdaShareEnv(opt, dist.device, dist, is_train=True, seed=seed)
    policies = None  # the paper baselines are fixed architectures, trained from scratch
    policy_file = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
    if train_opt.get('retrain_resume'):
        env.load_label(train_opt['which_iter'], hint='re-train.py writes retrain checkpoints')
        if env.has_policy:
            policies = C.load_policy(policy_file, hint='run re-train.py without retrain_resume first')
            if dist.is_main:
                print(f'loaded policy {policy_file}:\n' + C.format_policy_table(policies, env.tasks))
    elif env.has_policy:
        init_state = copy.deepcopy(env.network.state_dict())
        policies = obtain_policy(env, opt, seed, dist, allow_unfinished)
        if opt.get('retrain_from_pl'):
            env.load_label(policy_iter)
        else:
            env.network.load_state_dict(init_state)
            env.state.temperature = float(train_opt['init_temp'])
        env.state.current_iter = 0
    if dist.distributed:
        barrier()
        torch.manual_seed(seed + dist.rank)

    datasets = datasets or {name: build_split(opt, name) for name in ('train', validation_split(opt))}
    trainset = datasets['train']
    env.set_seg_class_weights(getattr(trainset, 'class_weights', None))
    train_iter = InfiniteLoader(make_loader(opt, trainset, True, dist, seed=seed))
    val_loader = make_loader(opt, datasets[validation_split(opt)], False, dist)

    if policies is not None:
        env.set_fixed_policy(policies)
        if dist.is_main:
            # obtain_policy printed the table; one line here, so each policy appears once.
            print(f'exp_id {exp_id}, seed {seed}: retraining the policy above')
            idle = C.idle_tasks(policies, env.tasks)
            if idle:
                logger.note(f'retrain{exp_id:03d} ' + C.idle_task_warning(idle, len(policies[0])))
    elif dist.is_main:
        print(f'exp_id {exp_id}, seed {seed}: training the {env.architecture} baseline from scratch '
              f'(# Params {env.network.params_ratio():.2f} single-task backbones)')
    env.define_optimizers(policy_learning=False)
    env.define_schedulers(policy_learning=False)
    loaders = {'train': train_iter}
    policy_record = {'policy_sha256': C.logits_digest({f'task{t + 1}_logits': p for t, p in enumerate(policies)})} \
        if policies is not None else {}
    unfinished = unfinished_source(policy_file) if policies is not None else None
    if unfinished is not None:
        # The policy came from an unfinished policy-learning run (--allow_unfinished): the run record says
        # so, and test.py marks the result incomplete.
        policy_record['policy_from_unfinished_run'] = unfinished
    session = RunSession(opt, env, logger, script='re-train', resume_path=resume_path, total=total,
                         total_key='retrain_total_iters', what=f'retraining of exp_id {exp_id}', noun='retraining',
                         tag=f'retrain{exp_id:03d} ', extra=policy_record)
    session.start(loaders, fresh=fresh, accept_changes=accept_changes, dist=dist)
    env.apply_phase_freezing(bool(opt.get('fix_BN', False)))  # logits frozen, weights trainable

    print_freq, val_freq = int(train_opt['print_freq']), int(train_opt['val_freq'])
    latest = C.retrain_label(exp_id, policy_iter, 'latest')
    n_eval = eval_iter(opt)
    state = env.state
    watch = ValidationWatch(validation_split(opt), reference_for(opt))
    bar = Progress(total, state.current_iter, f'retrain exp {exp_id}', enabled=dist.is_main)
    bar.set_phase('retrain')
    while state.current_iter < total:
        env.train()
        state.current_iter += 1
        it = state.current_iter
        env.set_inputs(next(train_iter))
        losses = env.optimize('retrain')
        if it % print_freq == 0:
            values = losses_to_float(losses)
            logger.log_losses(it, values, f'retrain{exp_id:03d}')
            bar.write(loss_line(f'retrain {exp_id} {it}', values))
        validated = it % val_freq == 0  # `latest` (one file with the resume state) follows every validation
        if validated:
            metrics = env.validate_retrain(val_loader, n_eval) if dist.is_main else {}
            if dist.is_main:
                logger.log_metrics(it, metrics, f'retrain{exp_id:03d}_val')
                value = watch.add(metrics)
                bar.write(f'[retrain {exp_id} {it}] validation score {value:.4f}: {format_metrics(metrics)}')
                if value > state.best_value:
                    state.best_value = value
                    env.save_label(best_label)
        session.end_iteration(loaders, latest, validated)
        bar.update(1)  # after the step, as in train_policy.py
    bar.close()
    if dist.is_main:
        watch.check(f're-train.py exp_id {exp_id}')
    return _best_line(env.checkpoint_file(best_label), state.best_value)


def _best_line(path: str, best_value: float | None) -> str:
    """`best validation score S at iteration I, saved PATH`, or why there is no best."""
    if not os.path.exists(path):
        return 'no best checkpoint was written (no validation score above 0)'
    score = 'unknown' if best_value is None else f'{best_value:.4f}'
    return f'best validation score {score} at iteration {R.checkpoint_iteration(path)}, saved {path}'


if __name__ == '__main__':
    run_main(main)
