"""Dataset loaders of AdaShare (docs/original.md §9): NYU v2, CityScapes, Tiny-Taskonomy, the synthetic
known-answer sharing benchmark (docs/known_answer.md), plus the DataLoader factory."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dataloaders.cityscapes import CityScapes
from dataloaders.known_answer import KnownAnswer
from dataloaders.nyu_v2 import NYU_v2, is_samples_folder
from dataloaders.taskonomy import Taskonomy
from dataloaders.transforms import IMG_MEAN, TRAIN_SPLITS, is_train_split

DATASETS = {'NYU_v2': NYU_v2, 'CityScapes': CityScapes, 'Taskonomy': Taskonomy, 'KnownAnswer': KnownAnswer}


def build_dataset(dataset: str, dataroot: str, split: str, *, crop_h: int | None = None,
                  crop_w: int | None = None, eval_h: int | None = None, eval_w: int | None = None,
                  small_res: bool = False, num_seg_classes: int | None = None,
                  decode_normals: bool = False) -> Dataset:
    """The `split` of `dataset` under `dataroot`; crop sizes apply to train splits only."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset '{dataset}'; valid names: {sorted(DATASETS)}")
    if not is_train_split(split):
        crop_h = crop_w = None  # evaluation splits are never cropped (docs/original.md §1.3)
    if dataset in ('NYU_v2', 'KnownAnswer'):
        return DATASETS[dataset](dataroot, split, crop_h, crop_w, eval_h, eval_w, decode_normals=decode_normals,
                                 num_seg_classes=num_seg_classes)
    if dataset == 'CityScapes':
        return CityScapes(dataroot, split, crop_h, crop_w, eval_h, eval_w, small_res=small_res,
                          num_seg_classes=num_seg_classes)
    return Taskonomy(dataroot, split, crop_h, crop_w, eval_h, eval_w)


def build_dataset_from_config(opt: dict[str, Any], split: str) -> Dataset:
    """build_dataset from a validated config dict (dataload.*, tasks, tasks_num_class, quirks)."""
    dataload = opt['dataload']
    train = is_train_split(split)
    tasks = list(opt.get('tasks', []))
    num_seg_classes = None
    if 'seg' in tasks:
        num_seg_classes = int(opt['tasks_num_class'][tasks.index('seg')])
    elif 'seg_perm' in tasks:  # KnownAnswer: seg_perm has seg's classes (config/load.py checks both)
        num_seg_classes = int(opt['tasks_num_class'][tasks.index('seg_perm')])
    quirks = opt.get('quirks') or {}
    return build_dataset(
        dataload['dataset'], dataload['dataroot'], split,
        crop_h=dataload.get('crop_h') if train else None,
        crop_w=dataload.get('crop_w') if train else None,
        eval_h=dataload.get('eval_h'), eval_w=dataload.get('eval_w'),
        small_res=bool(dataload.get('small_res', False)),
        num_seg_classes=num_seg_classes if dataload['dataset'] in ('CityScapes', 'NYU_v2', 'KnownAnswer') else None,
        decode_normals=bool(quirks.get('decode_normals', False)))


def seed_worker(worker_id: int) -> None:
    """Seed python `random` and numpy in a DataLoader worker from torch's per-worker seed."""
    seed = torch.initial_seed() % 2 ** 32  # base_seed + worker_id, drawn from the loader's generator
    random.seed(seed)
    np.random.seed(seed)


def build_loader(dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool, num_workers: int,
                 seed: int | None = None) -> DataLoader:
    """DataLoader with per-worker seeding (pinned memory when CUDA is available).

    With `seed`, shuffling and the worker seeds come from a generator seeded with it, so the
    order and the augmentation are reproducible; otherwise from torch's global RNG.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, pin_memory=torch.cuda.is_available(),
                      worker_init_fn=seed_worker, generator=generator)


__all__ = ['NYU_v2', 'CityScapes', 'Taskonomy', 'KnownAnswer', 'DATASETS', 'IMG_MEAN', 'TRAIN_SPLITS', 'build_dataset',
           'build_dataset_from_config', 'build_loader', 'is_samples_folder', 'seed_worker']
