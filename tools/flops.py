"""Size of a config's network: the paper's # Params, total parameters and inference GFLOPs per image.

    python tools/flops.py --config yamls/baselines/nyu_v2_3task/mtan.yml [--config ...] [--input_hw H W]
    python tools/flops.py --config yamls/adashare/nyu_v2_3task.yml --exp_ids 0 1   # with those seeds' policies

Builds the network of the config's `architecture` (no weights needed; FLOPs are counted on shape-only
tensors) at the config's evaluation size. For AdaShare with --exp_ids, the policy pickles of those seeds
are costed (selected blocks only, prefixes shared by tasks once); without, every block runs. For AutoMTL
(architecture: automtl) with --exp_ids, the sampled policy files of those seeds, in both parameter
conventions (the paper's conv count and the exact compact model); without, the all-shared architecture.

    python tools/flops.py --config yamls/automtl/cityscapes_2task.yml --exp_ids 0
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import build_network  # noqa: E402
from envs import env_class  # noqa: E402
from config import check_exp_ids, load_config  # noqa: E402
from deploy.export import eval_size  # noqa: E402


def config_size(config: str, exp_id: int | None = None, input_hw: Sequence[int] | None = None) -> dict:
    """The method's size report of the network a config describes (with the policy of `exp_id` for a method
    with a learned policy): deploy.flops.model_size for AdaShare and the baselines, automtl_model_size for AutoMTL."""
    opt = load_config(config, 'test')
    method = env_class(opt)
    network = build_network(opt['architecture'], opt['backbone'], opt['tasks_num_class'],
                            skip_layer=opt.get('skip_layer', 0), head_channels=opt['head_channels'])
    policies = None
    if exp_id is not None and method.learns_policy(opt):
        seed = int(opt['seed'][exp_id])
        path = method.policy_file_path(opt, str(opt['train']['policy_iter']), seed)
        policies = method.read_policy_file(path, hint=f'python re-train.py --config {config} --exp_ids {exp_id}')
    size = method.size_of(network, tuple(input_hw) if input_hw else eval_size(opt), policies)
    size.update(architecture=opt['architecture'], backbone=opt['backbone'], tasks=list(opt['tasks']))
    return size


def format_size(config: str, size: dict, exp_id: int | None) -> str:
    height, width = size['input_hw']
    which = f' exp {exp_id}' if exp_id is not None else ''
    paper = ''
    if 'paper' in size:  # AutoMTL: the paper's convention beside the exact count
        p = size['paper']
        paper = (f" [paper: conv {p['relative'] * 100:+.1f} % vs {p['num_tasks']} backbones, "
                 f"{p['absolute'] / 1e6:.3f} M; compact backbone {size['compact']['backbone'] / 1e6:.3f} M]")
    return (f"{size['architecture']:<13} {size['backbone']:<9} T={len(size['tasks'])}{which}: "
            f"# Params {size['params_ratio']:.3f}, {size['total_params'] / 1e6:.2f} M parameters, "
            f"{size['flops_g']:.2f} GFLOPs at {height}x{width}{paper}  ({config})")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/flops.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', action='append', required=True, help='a yaml (repeat for several)')
    parser.add_argument('--exp_ids', type=int, nargs='+', default=None,
                        help='AdaShare: cost the policy pickles of these seeds')
    parser.add_argument('--input_hw', type=int, nargs=2, default=None, help='default: the evaluation size')
    args = parser.parse_args(argv)
    if args.input_hw and min(args.input_hw) < 1:
        parser.error(f'--input_hw must be two positive ints, got {args.input_hw}')
    for config in args.config:
        exp_ids = check_exp_ids(load_config(config, 'test'), args.exp_ids, config) if args.exp_ids else [None]
        for exp_id in exp_ids:
            print(format_size(config, config_size(config, exp_id, args.input_hw), exp_id))
    return 0


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
