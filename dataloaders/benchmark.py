"""Throughput of the train-split loaders (augmentation included).

    python tools/benchmark_data.py --layout {nyu_v2,cityscapes,taskonomy,all} [--dataroot DIR]
                                   [--num-workers N] [--batch-size B] [--crop H W] [--iters N]

Prints images/s of the dataset read in this process, and of a DataLoader with the given workers.
Without --dataroot, a small dataset at the original resolution is generated into a temp folder
with dataloaders.synthetic. With --layout all and --dataroot, DIR/<layout> is used per layout.
"""
from __future__ import annotations

import random
import time

import numpy as np
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
