"""Pieces of the training loop shared by train_policy.py, re-train.py and test.py."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dataloaders import build_dataset_from_config, build_loader
from utils.device import DistContext, split_batch_size

# Blocks per backbone as train.py counts them for the "best" threshold (SPEC §1.1: ResNet34 -> 18, sic).
_BEST_THRESHOLD_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 18, 'ResNet101': 33}
_TRUE_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 16, 'ResNet101': 33}


def best_threshold_blocks(opt: dict) -> int:
    """`num_blocks` of the "best" threshold; quirks.true_block_count uses the real count."""
    table = _TRUE_BLOCKS if (opt.get('quirks') or {}).get('true_block_count', False) else _BEST_THRESHOLD_BLOCKS
    return table[opt['backbone']]


def validation_split(opt: dict) -> str:
    """The split used for model selection: the original's test/test_small, or quirks.val_split."""
    chosen = (opt.get('quirks') or {}).get('val_split')
    if chosen:
        return chosen
    return 'test_small' if opt['dataload']['dataset'] == 'Taskonomy' else 'test'


def eval_iter(opt: dict) -> int:
    value = (opt.get('quirks') or {}).get('eval_iter', 10)
    return 10 if value is None else int(value)


def make_dirs(opt: dict, dist: DistContext | None) -> None:
    """`<paths.*>/<exp_name>/` for every paths entry, as the original's create_path (main rank only)."""
    if dist is not None and not dist.is_main:
        return
    for path in opt['paths'].values():
        os.makedirs(os.path.join(path, opt['exp_name']), exist_ok=True)


def make_loader(opt: dict, dataset: Dataset, train: bool, dist: DistContext | None,
                batch_size: int | None = None) -> DataLoader:
    """A loader with the original settings (drop_last, shuffle for train); the batch is split over ranks."""
    global_batch = batch_size if batch_size is not None else int(opt['train']['batch_size'])
    world = dist.world_size if dist is not None and dist.distributed else 1
    per_rank = split_batch_size(global_batch, world) if train else global_batch
    num_workers = int(opt['dataload'].get('num_workers', 2) or 0)
    if train and world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=dist.rank, shuffle=True, drop_last=True)
        return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
                          num_workers=num_workers, pin_memory=torch.cuda.is_available())
    return build_loader(dataset, batch_size=per_rank, shuffle=train, drop_last=True, num_workers=num_workers)


def build_split(opt: dict, split: str) -> Dataset:
    return build_dataset_from_config(opt, split)


class InfiniteLoader:
    """Cycles a DataLoader, re-creating the iterator after its last batch (as the original does)."""

    def __init__(self, loader: DataLoader, epoch: int = 0):
        if len(loader) == 0:
            raise ValueError(f'the data loader is empty: {len(loader.dataset)} images with batch size '
                             f'{loader.batch_size} and drop_last; use a smaller batch_size or more data')
        self.loader = loader
        self.epoch = epoch
        self._iterator: Iterator | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __next__(self) -> Any:
        if self._iterator is None:
            sampler = getattr(self.loader, 'sampler', None)
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(self.epoch)
            self._iterator = iter(self.loader)
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._iterator = None
            return next(self)


@dataclass
class LoopConfig:
    """Iteration counts of the policy-learning loop, with the loader-length defaults filled in."""
    total_iters: int
    warm_up_iters: int
    weight_iter_alternate: int
    alpha_iter_alternate: int
    print_freq: int
    val_freq: int


def seg_classes(opt: dict) -> int | None:
    """C, the number of segmentation classes, or None without a seg task."""
    if 'seg' not in opt['tasks']:
        return None
    return int(opt['tasks_num_class'][opt['tasks'].index('seg')])


def reference_for(opt: dict) -> dict:
    """The reference metrics the validation score is computed against (SPEC §6)."""
    from utils.metrics import reference_metrics
    return reference_metrics(opt['dataload']['dataset'], opt['tasks'], seg_classes(opt),
                             bool(opt['dataload'].get('small_res', False)))


def losses_to_float(losses: dict) -> dict:
    """Detached loss tensors to floats (one host sync, only when logging)."""
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in losses.items()}


def loss_line(tag: str, values: dict) -> str:
    return f'[{tag}] ' + ' '.join(f"{k}={v['total']:.4f}" for k, v in values.items())
