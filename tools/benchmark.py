"""Seconds per iteration of each training phase for a config, on random inputs of its crop size.

    python tools/benchmark.py --config yamls/adashare/nyu_v2_3task.yml --gpus -1 --batch-size 2 --iters 3

Prints warm-up, weight, policy and retrain s/iter and the peak memory. Library: deploy/benchmark.py.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from envs import AdaShareEnv  # noqa: E402
from deploy.benchmark import random_batch, time_phase  # noqa: E402
from config import load_config  # noqa: E402
from engine.device import resolve_device  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/benchmark.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', default='yamls/adashare/nyu_v2_3task.yml')
    parser.add_argument('--gpus', type=int, nargs='+', default=[-1])
    parser.add_argument('--batch-size', type=int, default=None, help='default: the config (16) on GPU, 2 on CPU')
    parser.add_argument('--iters', type=int, default=3)
    args = parser.parse_args(argv)
    opt = load_config(args.config, 'train_policy')
    device = resolve_device(args.gpus)
    batch_size = args.batch_size or (int(opt['train']['batch_size']) if device.type == 'cuda' else 2)
    height, width = int(opt['dataload']['crop_h']), int(opt['dataload']['crop_w'])
    torch.manual_seed(0)
    env = AdaShareEnv(opt, device, is_train=True)
    env.set_inputs(random_batch(opt, batch_size, height, width))
    env.train()
    results = {}
    env.fix_alpha()
    env.free_w()
    results['warm-up'] = time_phase(env, 'warmup', args.iters)
    env.start_alternation()
    results['weights'] = time_phase(env, 'weights', args.iters)
    env.fix_w()
    env.free_alpha()
    results['policy'] = time_phase(env, 'policy', args.iters)
    env.fix_alpha()
    env.free_w()
    rows = env.network.num_policy_rows
    generator = torch.Generator().manual_seed(0)
    executes = [(torch.rand(rows, generator=generator) < 0.5).long() for _ in env.tasks]
    env.set_fixed_policy([torch.stack([e, 1 - e], dim=1) for e in executes])
    env.define_optimizers(policy_learning=False)
    results['retrain'] = time_phase(env, 'retrain', args.iters)

    print(f'config {args.config}: {opt["backbone"]}, tasks {opt["tasks"]}, batch {batch_size}, '
          f'crop {height}x{width}, device {device}, torch threads {torch.get_num_threads()}')
    for phase, seconds in results.items():
        print(f'  {phase:8s} {seconds:8.3f} s/iter   {batch_size / seconds:8.2f} images/s')
    if device.type == 'cuda':
        print(f'  peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB')
    print(f'  peak host memory (max RSS) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB')
    return 0



if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
