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
from envs import AdaShareEnv  # noqa: E402
from models import policy as P  # noqa: E402
from engine import checkpoint as C  # noqa: E402
from engine import training as T  # noqa: E402
from engine.cli import parse_args, run_main  # noqa: E402
from config import check_exp_ids, load_config, recorded_config  # noqa: E402
from engine.console import Progress, closing_summary, files_written, format_metrics  # noqa: E402
from engine.device import barrier, cleanup_distributed, init_distributed  # noqa: E402
from engine.logging import RunLogger  # noqa: E402
from engine.seeding import fix_random_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv, script='re-train')
    opt = load_config(args.config, 're-train')
    check_exp_ids(opt, args.exp_ids, args.config)
    dist = init_distributed(args.gpus)
    started = time.time()
    try:
        # Start-up checks first: a failed start writes nothing (docs/reliability.md).
        eval_split = T.validation_split(opt)
        datasets = {'train': T.build_split(opt, 'train'), eval_split: T.build_split(opt, eval_split)}
        T.make_loader(opt, datasets['train'], True, dist)
        T.make_loader(opt, datasets[eval_split], False, dist)
        T.preflight(opt, datasets, eval_split, dist)
        T.claim_folder(opt, dist, [f'retrain{e:03d}' for e in args.exp_ids], ' '.join(sys.argv))
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
        T.release_folder()
        cleanup_distributed()
    return 0


def _source_record(env: AdaShareEnv, opt: dict, policy_iter: str) -> dict | None:
    """Label, iteration, logits hash and completeness of the policy-learning checkpoint, None if it is absent."""
    path = env.checkpoint_file(policy_iter)
    if not os.path.exists(path):
        return None
    state = C.load_checkpoint(path)
    progress = T.run_progress(T.resume_state_path(opt), 'total_iters', int(opt['train']['total_iters']))
    return {'checkpoint': os.path.basename(path), 'label': policy_iter, 'iteration': int(state.get('iter', 0)),
            'logits_sha256': C.logits_digest(state['mtl-net']),
            'run_complete': None if progress is None else progress[0] >= progress[1],
            'run_iteration': None if progress is None else list(progress)}


def _refuse_unfinished(source: dict, opt: dict, allow: bool) -> None:
    """A policy-learning run whose resume state shows it unfinished is refused unless --allow_unfinished."""
    if source.get('run_complete') is not False:
        return
    done, total = source['run_iteration']
    message = (f'{T.resume_state_path(opt)}: the policy-learning run is unfinished (iteration {done} of {total}), '
               f'so its {source["checkpoint"]} is not final')
    if not allow:
        raise ValueError(f'{message}; finish it (python train_policy.py --config <yaml>) or pass --allow_unfinished')
    print(f'warning: {message} (--allow_unfinished)')


def obtain_policy(env: AdaShareEnv, opt: dict, seed: int, dist, allow_unfinished: bool = False) -> list[torch.Tensor]:
    """Load `policyIter<it>_rs<seed>.pickle`, or sample it from the policy-learning checkpoint (docs/original.md §4.5).

    A pickle whose source record (`.source.json`) no longer matches the checkpoint is re-sampled; a pickle
    without a record (tools.random_policies, older versions) is used as it is (docs/reliability.md).
    """
    policy_iter = str(opt['train']['policy_iter'])
    path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
    recorded = C.load_policy_source(path) if os.path.exists(path) else None
    if os.path.exists(path) and recorded is None:
        return _loaded_policy(path, env, dist)
    source = _source_record(env, opt, policy_iter)
    if recorded is not None:
        if source is None:
            print(f'note: {env.checkpoint_file(policy_iter)} is gone; using {path} as it is')
            return _loaded_policy(path, env, dist)
        _refuse_unfinished(source, opt, allow_unfinished)
        if (recorded.get('logits_sha256'), recorded.get('iteration')) == (source['logits_sha256'], source['iteration']):
            return _loaded_policy(path, env, dist)
        print(f're-sampling the policy (seed {seed}): {source["checkpoint"]} changed since {os.path.basename(path)} '
              f'was sampled (iteration {recorded.get("iteration")} → {source["iteration"]}, logits '
              f'{str(recorded.get("logits_sha256"))[:12]} → {source["logits_sha256"][:12]})')
    elif source is not None:
        _refuse_unfinished(source, opt, allow_unfinished)
    env.load_label(policy_iter, hint=_policy_hint(env, policy_iter))
    probs = env.execute_probabilities()
    policies = P.sample_policy_numpy([lg.detach() for lg in env.policy_logits()])
    if dist.is_main:
        C.save_policy(path, policies, env.tasks, source=source)
        print(f'sampled policy (seed {seed}) from {env.checkpoint_file(policy_iter)}, saved {path}:\n'
              + C.format_policy_table(policies, env.tasks, probabilities=probs))
    return policies


def _loaded_policy(path: str, env: AdaShareEnv, dist) -> list[torch.Tensor]:
    """Load a saved policy pickle and print its table (once: the caller prints no second copy)."""
    policies = C.load_policy(path)
    if dist.is_main:
        print(f'loaded policy {path}:\n' + C.format_policy_table(policies, env.tasks))
    return policies


def _policy_hint(env: AdaShareEnv, policy_iter: str) -> str:
    """How to get the policy-learning checkpoint: a finished run without `best` needs policy_iter: latest."""
    if policy_iter == 'best' and os.path.exists(env.checkpoint_file('latest')):
        return ('policy learning wrote no best (its score counts only after the "best" threshold); set '
                'train.policy_iter: latest, or run train_policy.py longer')
    return 'policy learning writes it: python train_policy.py --config <yaml>'


def retrain_one(opt: dict, exp_id: int, dist, logger: RunLogger, fresh: bool = False, datasets: dict | None = None,
                accept_changes: bool = False, allow_unfinished: bool = False) -> str:
    """Retrain the architecture of one seed; returns a line on its best validation score."""
    train_opt = opt['train']
    seed = int(opt['seed'][exp_id])
    policy_iter = str(train_opt['policy_iter'])
    total = int(train_opt.get('retrain_total_iters') or train_opt['total_iters'])
    best_label = C.retrain_label(exp_id, policy_iter, 'best')
    resume_path = T.resume_state_path(opt, prefix=f'retrain{exp_id:03d}_policyIter{policy_iter}_')
    folder = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    if train_opt['auto_resume'] and not fresh:
        done = T.complete_message(resume_path, total, f'retraining of exp_id {exp_id}', 'retrain_total_iters', folder)
        if done is not None:
            best_path = C.checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], best_label)
            return f'{done}; {_best_line(best_path, T.read_completion(resume_path).get("best_value"))}'
    fix_random_seed(seed)
    # The env (torch RNG only) is built right after seeding so that the numpy draws of the policy
    # sample are the original's (docs/original.md §4.5).
    env = AdaShareEnv(opt, dist.device, dist, is_train=True, seed=seed)
    policies = None  # the paper baselines are fixed architectures, trained from scratch
    if train_opt.get('retrain_resume'):
        env.load_label(train_opt['which_iter'], hint='re-train.py writes retrain checkpoints')
        if env.has_policy:
            path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
            policies = C.load_policy(path, hint='run re-train.py without retrain_resume first')
            if dist.is_main:
                print(f'loaded policy {path}:\n' + C.format_policy_table(policies, env.tasks))
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

    datasets = datasets or {name: T.build_split(opt, name) for name in ('train', T.validation_split(opt))}
    trainset = datasets['train']
    env.set_seg_class_weights(getattr(trainset, 'class_weights', None))
    train_iter = T.InfiniteLoader(T.make_loader(opt, trainset, True, dist, seed=seed))
    val_loader = T.make_loader(opt, datasets[T.validation_split(opt)], False, dist)

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
    payload, record = None, T.RunRecord({**recorded_config(opt), **policy_record}, [])
    if train_opt['auto_resume'] and not fresh:
        payload, record = T.resume_checked(env, resume_path, loaders, opt, 're-train', accept_changes,
                                           extra=policy_record)
    T.make_dirs(opt, dist)
    logger.write_options(T.options_text(opt, record))
    if payload is not None:
        if dist.is_main:
            print(f'resuming the interrupted retraining from {resume_path} at iteration '
                  f'{env.state.current_iter} (use --fresh to start over)')
        logger.note(f'retrain{exp_id:03d} resumed at iteration {env.state.current_iter}')
        if record.history and record.history[-1].startswith(f'# changed at iteration {env.state.current_iter} '):
            logger.note(f'retrain{exp_id:03d} ' + record.history[-1].lstrip('# '))
    else:
        logger.note(f'retrain{exp_id:03d} {"fresh start" if fresh else "start"}')
        if dist.is_main:
            T.forget_completion(resume_path)
    env.apply_phase_freezing(bool(opt.get('fix_BN', False)))  # logits frozen, weights trainable

    refer = T.reference_for(opt)
    print_freq, val_freq = int(train_opt['print_freq']), int(train_opt['val_freq'])
    latest = C.retrain_label(exp_id, policy_iter, 'latest')
    n_eval = T.eval_iter(opt)
    state = env.state
    watch = T.ValidationWatch(T.validation_split(opt), refer)
    bar = Progress(total, state.current_iter, f'retrain exp {exp_id}', enabled=dist.is_main)
    bar.set_phase('retrain')
    while state.current_iter < total:
        env.train()
        state.current_iter += 1
        it = state.current_iter
        env.set_inputs(next(train_iter))
        losses = env.optimize('retrain')
        if it % print_freq == 0:
            values = T.losses_to_float(losses)
            logger.log_losses(it, values, f'retrain{exp_id:03d}')
            bar.write(T.loss_line(f'retrain {exp_id} {it}', values))
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
        T.finish_iteration(env, latest, train_opt.get('latest_freq'), total, validated, resume_path, loaders,
                           record)
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
    return f'best validation score {score} at iteration {T.checkpoint_iteration(path)}, saved {path}'



if __name__ == '__main__':
    run_main(main)
