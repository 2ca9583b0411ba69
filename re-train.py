"""Phase 2 of AdaShare: for each --exp_ids seed, sample an architecture and train it from scratch.

    python re-train.py --config yamls/adashare/nyu_v2_3task.yml --gpus 0 --exp_ids 0 1 2 3 4 5 6 7
"""
from __future__ import annotations

import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from envs import AdaShareEnv  # noqa: E402
from models import policy as P  # noqa: E402
from utils import checkpoint as C  # noqa: E402
from utils import training as T  # noqa: E402
from utils.cli import parse_args, run_main  # noqa: E402
from utils.config import check_exp_ids, format_options, load_config  # noqa: E402
from utils.device import barrier, cleanup_distributed, init_distributed  # noqa: E402
from utils.logging import RunLogger  # noqa: E402
from utils.metrics import score  # noqa: E402
from utils.seeding import fix_random_seed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    opt = load_config(args.config, 're-train')
    check_exp_ids(opt, args.exp_ids, args.config)
    dist = init_distributed(args.gpus)
    try:
        T.make_dirs(opt, dist)
        logger = RunLogger(opt['paths']['log_dir'], opt['exp_name'], enabled=dist.is_main)
        logger.write_options(format_options(opt))
        for exp_id in args.exp_ids:
            best = retrain_one(opt, exp_id, dist, logger, fresh=args.fresh)
            if dist.is_main:
                print(f'exp_id {exp_id} (seed {opt["seed"][exp_id]}): best validation metrics {best}')
        logger.close()
    finally:
        cleanup_distributed()
    return 0


def obtain_policy(env: AdaShareEnv, opt: dict, seed: int, dist) -> list[torch.Tensor]:
    """Load `policyIter<it>_rs<seed>.pickle`, or sample it from the policy-learning checkpoint (SPEC §4.5)."""
    policy_iter = str(opt['train']['policy_iter'])
    path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
    if os.path.exists(path):
        return C.load_policy(path)
    env.load_label(policy_iter, hint=f'policy learning writes it: python train_policy.py --config <yaml>')
    probs = env.execute_probabilities()
    policies = P.sample_policy_numpy([lg.detach() for lg in env.policy_logits()])
    if dist.is_main:
        C.save_policy(path, policies, env.tasks)
        print(f'sampled policy (seed {seed}) from {env.checkpoint_file(policy_iter)}, saved {path}:\n'
              + C.format_policy_table(policies, env.tasks, probabilities=probs))
    return policies


def retrain_one(opt: dict, exp_id: int, dist, logger: RunLogger, fresh: bool = False) -> dict | None:
    """Retrain the architecture of one seed; returns its best validation metrics."""
    train_opt = opt['train']
    seed = int(opt['seed'][exp_id])
    policy_iter = str(train_opt['policy_iter'])
    fix_random_seed(seed)
    # The env (torch RNG only) is built right after seeding so that the numpy draws of the policy
    # sample are the original's (SPEC §4.5).
    env = AdaShareEnv(opt, dist.device, dist, is_train=True)
    policies = None  # the paper baselines are fixed architectures, trained from scratch
    if train_opt.get('retrain_resume'):
        env.load_label(train_opt['which_iter'], hint='re-train.py writes retrain checkpoints')
        if env.has_policy:
            path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
            policies = C.load_policy(path, hint='run re-train.py without retrain_resume first')
    elif env.has_policy:
        init_state = copy.deepcopy(env.network.state_dict())
        policies = obtain_policy(env, opt, seed, dist)
        if opt.get('retrain_from_pl'):
            env.load_label(policy_iter)
        else:
            env.network.load_state_dict(init_state)
            env.state.temperature = float(train_opt['init_temp'])
        env.state.current_iter = 0
    if dist.distributed:
        barrier()
        torch.manual_seed(seed + dist.rank)

    trainset = T.build_split(opt, 'train')
    env.set_seg_class_weights(getattr(trainset, 'class_weights', None))
    train_iter = T.InfiniteLoader(T.make_loader(opt, trainset, True, dist, seed=seed))
    val_loader = T.make_loader(opt, T.build_split(opt, T.validation_split(opt)), False, dist)

    if policies is not None:
        env.set_fixed_policy(policies)
        if dist.is_main:
            print(f'exp_id {exp_id}, seed {seed}: retraining the policy\n' + C.format_policy_table(policies, env.tasks))
    elif dist.is_main:
        print(f'exp_id {exp_id}, seed {seed}: training the {env.architecture} baseline from scratch '
              f'(# Params {env.network.params_ratio():.2f} single-task backbones)')
    env.define_optimizers(policy_learning=False)
    env.define_schedulers(policy_learning=False)
    resume_path = T.resume_state_path(opt, prefix=f'retrain{exp_id:03d}_policyIter{policy_iter}_')
    loaders = {'train': train_iter}
    if train_opt['auto_resume'] and not fresh and T.load_resume_state(env, resume_path, loaders):
        if dist.is_main:
            print(f'resuming the interrupted retraining from {resume_path} at iteration '
                  f'{env.state.current_iter} (use --fresh to start over)')
    env.apply_phase_freezing(bool(opt.get('fix_BN', False)))  # logits frozen, weights trainable

    refer = T.reference_for(opt)
    total = int(train_opt.get('retrain_total_iters') or train_opt['total_iters'])
    print_freq, val_freq = int(train_opt['print_freq']), int(train_opt['val_freq'])
    latest = C.retrain_label(exp_id, policy_iter, 'latest')
    best_label = C.retrain_label(exp_id, policy_iter, 'best')
    n_eval = T.eval_iter(opt)
    state = env.state
    best_metrics = None
    bar = tqdm(total=total, initial=state.current_iter, disable=not (dist.is_main and sys.stderr.isatty()),
               dynamic_ncols=True,
               desc=f'retrain exp {exp_id}')
    while state.current_iter < total:
        env.train()
        state.current_iter += 1
        it = state.current_iter
        bar.update(1)
        env.set_inputs(next(train_iter))
        losses = env.optimize('retrain')
        if it % print_freq == 0:
            values = T.losses_to_float(losses)
            logger.log_losses(it, values, f'retrain{exp_id:03d}')
            bar.write(T.loss_line(f'retrain {exp_id} {it}', values))
        saved_latest = it % val_freq == 0
        if saved_latest:
            metrics = env.validate_retrain(val_loader, n_eval) if dist.is_main else {}
            env.save_label(latest)
            if dist.is_main:
                logger.log_metrics(it, metrics, f'retrain{exp_id:03d}_val')
                value = score(metrics, refer)
                bar.write(f'[retrain {exp_id} {it}] validation score {value:.4f}: {metrics}')
                if value > state.best_value:
                    state.best_value = value
                    best_metrics = metrics
                    env.save_label(best_label)
        T.finish_iteration(env, latest, train_opt.get('latest_freq'), total, saved_latest, resume_path, loaders)
    bar.close()
    return best_metrics



if __name__ == '__main__':
    run_main(main)
