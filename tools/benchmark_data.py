"""Throughput of the train-split loaders (augmentation included), in images/s.

    python tools/benchmark_data.py --layout {nyu_v2,cityscapes,taskonomy,all} [--dataroot DIR]
                                   [--num-workers N] [--batch-size B] [--crop H W] [--iters N]

Without --dataroot, a small dataset at the original resolution is generated into a temp folder.
Library: dataloaders/benchmark.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dataloaders.benchmark import LAYOUTS, benchmark_layout  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='python tools/benchmark_data.py', description=__doc__.split('\n')[0])
    parser.add_argument('--layout', choices=sorted(LAYOUTS) + ['all'], default='all')
    parser.add_argument('--dataroot', default=None, help='dataset root (default: generate one in a temp dir)')
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'), default=None,
                        help="crop size (default: the shipped yaml's crop per layout)")
    parser.add_argument('--iters', type=int, default=64, help='images to read per measurement')
    parser.add_argument('--gen-num', type=int, default=8, help='train images to generate without --dataroot')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    layouts = sorted(LAYOUTS) if args.layout == 'all' else [args.layout]
    with tempfile.TemporaryDirectory(prefix='adashare_bench_') as tmp:
        for layout in layouts:
            _, size, default_crop = LAYOUTS[layout]
            if args.dataroot is None:
                from dataloaders.synthetic import generate_dataset
                dataroot = os.path.join(tmp, layout)
                generate_dataset(layout, dataroot, num_train=args.gen_num, num_test=1, height=size[0], width=size[1],
                                 progress=False)
            else:
                dataroot = os.path.join(args.dataroot, layout) if args.layout == 'all' else args.dataroot
            crop = tuple(args.crop) if args.crop else default_crop
            result = benchmark_layout(layout, dataroot, crop, args.batch_size, args.num_workers, args.iters)
            print(f"{layout:10s} crop {crop[0]}x{crop[1]}: dataset {result['dataset_img_s']:7.1f} img/s (1 process), "
                  f"DataLoader {result['loader_img_s']:7.1f} img/s ({args.num_workers} workers, "
                  f"batch {args.batch_size})", flush=True)



if __name__ == '__main__':
    main()
