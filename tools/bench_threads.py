"""Seconds per step with 1 and 2 CPU threads, quiet and with busy processes beside it (docs/threads.md).

    python tools/bench_threads.py                                   # the synthetic NYU v2 3-task config
    python tools/bench_threads.py --configs yamls/synthetic/*.yml --threads 1 2 --busy 0 1 --repeats 3
    python tools/bench_threads.py --configs yamls/adashare/nyu_v2_3task.yml --batch-size 2 --phases warm-up

Prints one line per cell as it goes, then a markdown table (and writes it to --out). Library:
deploy/threads_benchmark.py.
"""
from __future__ import annotations

import argparse
import os
import sys

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from config import load_config  # noqa: E402
from deploy.threads_benchmark import PHASES, load_average, markdown_table, run_grid  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/bench_threads.py', description=__doc__.splitlines()[0])
    parser.add_argument('--configs', nargs='+', default=['yamls/synthetic/nyu_v2_3task.yml'])
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--busy', type=int, nargs='+', default=[0, 1],
                        help='load levels: busy `while True: pass` processes started beside the measurement')
    parser.add_argument('--repeats', type=int, default=3, help='median over this many repeats')
    parser.add_argument('--iters', type=int, default=3, help='timed steps per phase and repeat (after one untimed)')
    parser.add_argument('--batch-size', type=int, default=None, help="default: the config's train.batch_size")
    parser.add_argument('--phases', nargs='+', choices=PHASES, default=list(PHASES))
    parser.add_argument('--out', default=None, help='also write the markdown table to this file')
    args = parser.parse_args(argv)
    if min(args.threads) < 1 or min(args.busy) < 0 or args.repeats < 1 or args.iters < 1:
        parser.error('--threads, --repeats and --iters must be >= 1, --busy >= 0')
    configs = [(os.path.splitext(os.path.relpath(path, 'yamls'))[0], load_config(path, 'train_policy'))
               for path in args.configs]
    print(f'torch {torch.__version__}: default {torch.get_num_threads()} intra-op / '
          f'{torch.get_num_interop_threads()} inter-op threads, {os.cpu_count()} CPUs, '
          f'OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "unset")}, load average {load_average():.2f}',
          flush=True)
    rows = run_grid(configs, args.threads, args.busy, args.repeats, args.iters, args.batch_size, args.phases,
                    log=lambda line: print(line, flush=True))
    table = markdown_table(rows)
    print(table, end='')
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as handle:
            handle.write(table)
    return 0


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
