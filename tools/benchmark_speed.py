"""Speed benchmark: inference and training speed of a config and a policy, side by side.

    python tools/benchmark_speed.py --gpus 0                                 # paper batch, crop and eval size
    python tools/benchmark_speed.py --gpus -1 --batch-size 1 --crop 161      # CPU, reduced
    python tools/benchmark_speed.py --options fp32 bf16 bf16+channels_last+compile

What each table means: deploy/benchmark_speed.py (the library).
"""
from __future__ import annotations

import argparse
import os
import sys

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from engine import checkpoint as C  # noqa: E402
from deploy.benchmark_speed import OPTION_TOKENS, report, run_benchmark  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python tools/benchmark_speed.py', description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='yamls/adashare/nyu_v2_3task.yml')
    parser.add_argument('--gpus', type=int, nargs='+', default=[0], help='-1 = CPU (default 0; CPU without CUDA)')
    parser.add_argument('--batch-size', type=int, default=None, help='default: the config (16) on GPU, 1 on CPU')
    parser.add_argument('--crop', type=int, nargs='+', default=None, metavar='H [W]',
                        help='training crop (default: the config, 321, on GPU; 161 on CPU)')
    parser.add_argument('--infer-size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                        help='inference image size (default: the eval size, 480x640, on GPU; the crop on CPU)')
    parser.add_argument('--infer-batch', type=int, default=1, help='images per inference call (latency: 1)')
    parser.add_argument('--options', nargs='+', default=None,
                        help=f'speed options to compare, tokens joined by + from {", ".join(OPTION_TOKENS)} '
                             '(default on GPU: seven combinations up to bf16+channels_last+cudnn_benchmark+compile; '
                             'on CPU: fp32 bf16 channels_last)')
    parser.add_argument('--iters', type=int, default=None, help='timed steps per measurement (default 10 GPU, 2 CPU)')
    parser.add_argument('--warmup', type=int, default=None, help='untimed steps before each (default 3 GPU, 1 CPU)')
    parser.add_argument('--policy', default=None, help='policy pickle (default: a seeded random policy)')
    parser.add_argument('--policy-seed', type=int, default=0)
    parser.add_argument('--peak-tflops', type=float, default=None,
                        help='peak TFLOP/s for the MFU (default: dense bf16 peak of a known GPU by name)')
    parser.add_argument('--dataroot', default=None, help='data for the pipeline timing (default: synthetic)')
    parser.add_argument('--num-workers', type=int, default=None, help='loader workers (default: the config)')
    parser.add_argument('--data-batches', type=int, default=None, help='batches timed (default 20; 0 skips)')
    parser.add_argument('--gen-num', type=int, default=8, help='synthetic train images to generate')
    parser.add_argument('--json', default=None, help='also write the results to this JSON file')
    args = parser.parse_args(argv)
    if args.crop is not None and len(args.crop) not in (1, 2):
        parser.error('--crop takes H or H W')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    on_gpu = torch.cuda.is_available() and args.gpus != [-1]
    args.iters = args.iters or (10 if on_gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    args.data_batches = args.data_batches if args.data_batches is not None else 20
    res = run_benchmark(args)
    print(report(res))
    if args.json:
        C.atomic_write_json(args.json, res)
    return 0



if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
