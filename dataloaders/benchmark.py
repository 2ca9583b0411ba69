"""Throughput of the train-split loaders (augmentation included).

    python -m dataloaders.benchmark --layout {nyu_v2,cityscapes,taskonomy,all} [--dataroot DIR]
                                    [--num-workers N] [--batch-size B] [--crop H W] [--iters N]

Prints images/s of the dataset read in this process, and of a DataLoader with the given workers.
Without --dataroot, a small dataset at the original resolution is generated into a temp folder
with dataloaders.synthetic. With --layout all and --dataroot, DIR/<layout> is used per layout.
"""
from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import Dataset

from dataloaders import build_dataset, build_loader

LAYOUTS = {  # layout -> (dataset name, original image size, crop of the shipped yamls)
    'nyu_v2': ('NYU_v2', (480, 640), (321, 321)),
    'cityscapes': ('CityScapes', (256, 512), (224, 224)),
    'taskonomy': ('Taskonomy', (256, 256), (224, 224)),
}


def images_per_second_dataset(dataset, iters: int) -> float:
    """Read `iters` samples in this process (index cycling over the split), after one warm-up read."""
    dataset[0]
    start = time.perf_counter()
    for i in range(iters):
        dataset[i % len(dataset)]
    return iters / (time.perf_counter() - start)


class _Cycled(Dataset):
    """`length` items cycling over `dataset`, so one DataLoader epoch covers the whole measurement."""

    def __init__(self, dataset, length: int):
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.dataset[index % len(self.dataset)]


def images_per_second_loader(dataset, batch_size: int, num_workers: int, iters: int) -> float:
    """Images/s of a shuffling DataLoader, timed after the first batch (worker start-up excluded)."""
    cycled = _Cycled(dataset, iters + batch_size)
    loader = build_loader(cycled, batch_size, shuffle=True, drop_last=False, num_workers=num_workers, seed=0)
    seen, start = 0, None
    for batch in loader:
        if start is None:
            start = time.perf_counter()
            continue
        seen += len(batch['name'])
    return seen / (time.perf_counter() - start)


def benchmark_layout(layout: str, dataroot: str, crop: tuple[int, int], batch_size: int, num_workers: int,
                     iters: int) -> dict:
    dataset_name, _, _ = LAYOUTS[layout]
    dataset = build_dataset(dataset_name, dataroot, 'train', crop_h=crop[0], crop_w=crop[1])
    random.seed(0)
    np.random.seed(0)
    in_process = images_per_second_dataset(dataset, iters)
    with_loader = images_per_second_loader(dataset, batch_size, num_workers, iters)
    return {'layout': layout, 'crop': crop, 'dataset_img_s': in_process, 'loader_img_s': with_loader}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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
