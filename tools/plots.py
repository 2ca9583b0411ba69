"""Figures of a policy-learning run: the learned policy (as the paper's Figure 3), task correlation, training curves.

    python tools/plots.py --config yamls/synthetic/nyu_v2_3task.yml [--exp_ids 0 1] [--label best] [--out DIR]
    python tools/plots.py --checkpoint CKPT [--tasks seg sn depth] --out DIR [--loss-txt FILE] [--policy PICKLE ...]

With --config, the checkpoint (`<label>_model.pth.tar`, default train.policy_iter), the tasks, the run's loss.txt
and the output folder (`<result_dir>/<exp_name>/figures`) come from the config; --exp_ids adds the sampled
architecture of those seeds. For AutoMTL (architecture: automtl) --config draws policy.png / policy_rs<seed>.png
with the three options per conv (reporting.plots.plot_automtl_policy) and the training curves. With --checkpoint, the tasks come from the run record beside it (or --tasks).
Library: reporting/plots.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.checkpoint import load_policy, policy_path  # noqa: E402
from reporting.plots import checkpoint_tasks, run_figure_inputs, write_run_figures  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python tools/plots.py', description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--config', help='the run\'s yaml: checkpoint, tasks, loss.txt and output folder from it')
    source.add_argument('--checkpoint', help='a policy-learning checkpoint, e.g. best_model.pth.tar')
    parser.add_argument('--label', default=None, help='--config: checkpoint label (default train.policy_iter)')
    parser.add_argument('--exp_ids', type=int, nargs='+', default=[],
                        help='--config: draw the sampled architectures of these seeds (policy_<name>.png each)')
    parser.add_argument('--tasks', nargs='+', default=None, help='task names in config order (default: the run\'s)')
    parser.add_argument('--out', default=None, help='output folder (default with --config: '
                                                    '<result_dir>/<exp_name>/figures)')
    parser.add_argument('--loss-txt', help='loss.txt for the training curves (default with --config: the run\'s)')
    parser.add_argument('--policy', nargs='+', default=[], metavar='PICKLE',
                        help='sampled policy pickle(s) (policyIter*_rs*.pickle): one policy_<name>.png each')
    parser.add_argument('--tensorboard', metavar='DIR', help='also log the figures to a tensorboard folder')
    args = parser.parse_args(argv)
    if args.checkpoint and args.out is None:
        parser.error('--checkpoint needs --out (the folder for the PNGs)')
    if args.checkpoint and (args.exp_ids or args.label):
        parser.error('--exp_ids and --label read the config: use them with --config')
    return args


def figure_inputs(args: argparse.Namespace) -> dict:
    """Checkpoint, tasks, loss.txt, output folder and policy pickles from the flags (and the config)."""
    pickles = list(args.policy)
    if args.config:
        from config import check_exp_ids, load_config
        opt = load_config(args.config, 'test')
        inputs = run_figure_inputs(opt, args.label)
        exp_ids = check_exp_ids(opt, args.exp_ids, args.config) if args.exp_ids else []
        pickles += [policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], str(opt['train']['policy_iter']),
                                int(opt['seed'][e])) for e in exp_ids]
    else:
        inputs = {'checkpoint': args.checkpoint, 'tasks': None, 'loss_txt': None, 'out': None}
    inputs['tasks'] = args.tasks or inputs['tasks'] or checkpoint_tasks(inputs['checkpoint'])
    inputs['loss_txt'] = args.loss_txt or inputs['loss_txt']
    inputs['out'] = args.out or inputs['out']
    inputs['policies'] = {os.path.splitext(os.path.basename(p))[0].removeprefix('policy'):
                          load_policy(p, num_tasks=len(inputs['tasks'])) for p in pickles} or None
    return inputs


def method_figures(args: argparse.Namespace) -> list[str] | None:
    """With --config of a method that draws its own figures (AutoMTL: envs.AutoMTLEnv.write_figures), its
    figures; None for AdaShare (the figures below)."""
    if not args.config:
        return None
    from config import check_exp_ids, load_config
    from envs import env_class
    opt = load_config(args.config, 'test')
    method = env_class(opt)
    if not hasattr(method, 'write_figures'):
        return None
    inputs = run_figure_inputs(opt, args.label)
    exp_ids = check_exp_ids(opt, args.exp_ids, args.config) if args.exp_ids else []
    return method.write_figures(opt, inputs['checkpoint'], args.out or inputs['out'], exp_ids,
                                args.loss_txt or inputs['loss_txt'])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        own = method_figures(args)
        if own is not None:
            for path in own:
                print(path)
            return 0
        inputs = figure_inputs(args)
        writer = None
        if args.tensorboard:
            from tensorboardX import SummaryWriter
            writer = SummaryWriter(logdir=args.tensorboard)
        try:
            paths = write_run_figures(inputs['checkpoint'], inputs['tasks'], inputs['out'], writer=writer,
                                      policies=inputs['policies'], loss_txt=inputs['loss_txt'])
        finally:
            if writer is not None:
                writer.close()
    except (ValueError, OSError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
