"""Seconds per policy step and per evaluation batch of two methods' configs side by side, and their ratios.

    python tools/benchmark_methods.py --config yamls/synthetic/nyu_v2_3task.yml \
        --config yamls/synthetic/automtl/nyu_v2_3task.yml --gpus -1 --repeats 5

The first config is the baseline of the ratios. Both should name the same backbone and crop (a warning
says so otherwise). Prints the medians, the ratios and the 1-minute load average before and after.
Library: deploy/method_benchmark.py; the figures: docs/automtl.md "Speed".
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from config import load_config  # noqa: E402
from deploy.export import eval_size  # noqa: E402
from deploy.method_benchmark import summary, time_method  # noqa: E402
from engine.device import resolve_device  # noqa: E402
from envs import env_class  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/benchmark_methods.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', action='append', required=True, help='a yaml (twice: baseline, then the other)')
    parser.add_argument('--gpus', type=int, nargs='+', default=[-1])
    parser.add_argument('--batch-size', type=int, default=None, help='default: the first config\'s train.batch_size')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--steps', type=int, default=3, help='steps per repeat')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.gpus)
    opts = [load_config(c, 'train_policy') for c in args.config]
    batch = args.batch_size or int(opts[0]['train']['batch_size'])
    shapes = {(o['backbone'], o['dataload']['crop_h'], o['dataload']['crop_w'], tuple(eval_size(o))) for o in opts}
    if len(shapes) > 1:
        print(f'warning: the configs differ in backbone / crop / evaluation size: {sorted(shapes)}')
    load = os.getloadavg()[0]
    results = []
    for config, opt in zip(args.config, opts):
        torch.manual_seed(0)
        env = env_class(opt)(opt, device, is_train=True)
        results.append(summary(time_method(env, opt, batch, tuple(eval_size(opt)), args.repeats, args.steps)))
        del env
    after = os.getloadavg()[0]
    print(f'device {device}, torch threads {torch.get_num_threads()}, batch {batch}, repeats {args.repeats} x '
          f'{args.steps} steps (median); load average (1 min) {load:.2f} before, {after:.2f} after')
    base = results[0]
    for config, opt, result in zip(args.config, opts, results):
        print(f'  {opt.get("architecture", "adashare"):<9} {opt["backbone"]:<9} crop {opt["dataload"]["crop_h"]}x'
              f'{opt["dataload"]["crop_w"]}, eval {"x".join(map(str, eval_size(opt)))}: policy step '
              f'{result["policy_step"] * 1e3:8.1f} ms ({result["policy_step"] / base["policy_step"]:.2f}x), eval batch '
              f'{result["eval_batch"] * 1e3:8.1f} ms ({result["eval_batch"] / base["eval_batch"]:.2f}x)  ({config})')
    return 0


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
