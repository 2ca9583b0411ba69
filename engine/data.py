"""Data loaders of a run: reproducible, resumable train order (any number of workers) and the original's
settings (drop_last, shuffle for train, the batch split over ranks)."""
from __future__ import annotations

import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dataloaders import build_dataset_from_config, seed_worker
from engine.device import DistContext, split_batch_size


class SeededItems(Dataset):
    """Wraps a dataset so that item `(epoch, index)` is augmented with its own seed.

    The augmentation draws from python `random` and numpy (docs/original.md §9); seeding them per
    (seed, epoch, index) makes the data stream reproducible and resumable at any batch, with
    any number of workers. The caller's global RNG states are restored afterwards.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        item_seed = hash((self.seed, epoch, index)) % 2 ** 32
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(item_seed)
        np.random.seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


class ResumableSampler(Sampler):
    """Yields `(epoch, index)`: a permutation seeded by (seed, epoch), this rank's share, from `start` on."""

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, int(seed), shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        usable = (self.size // self.world_size) * self.world_size
        return order[:usable][self.rank::self.world_size]

    def __iter__(self):
        for index in self._indices()[self.start:]:
            yield (self.epoch, index)

    def __len__(self) -> int:
        return max(0, self.size // self.world_size - self.start)


def make_loader(opt: dict, dataset: Dataset, train: bool, dist: DistContext | None,
                batch_size: int | None = None, seed: int | None = None) -> DataLoader:
    """A loader with the original settings (drop_last, shuffle for train); the batch is split over ranks.

    Train loaders draw a reproducible, resumable order (see ResumableSampler and SeededItems);
    every loader has its own generator so that creating an iterator never consumes the global
    torch RNG (which would make an interrupted run diverge from an uninterrupted one).
    """
    global_batch = batch_size if batch_size is not None else int(opt['train']['batch_size'])
    world = dist.world_size if dist is not None and dist.distributed else 1
    rank = dist.rank if dist is not None and dist.distributed else 0
    dataload = opt['dataload']
    num_workers = int(dataload.get('num_workers', 2) or 0)
    base_seed = int(opt['seed'][0] if seed is None else seed)
    pin_memory = dataload.get('pin_memory')
    # Persistent workers: the short train1/train2 loaders restart every few iterations, and
    # re-forking workers each time would cost more than the batches themselves.
    common = dict(num_workers=num_workers, worker_init_fn=seed_worker, persistent_workers=num_workers > 0,
                  pin_memory=torch.cuda.is_available() if pin_memory is None else bool(pin_memory),
                  generator=torch.Generator().manual_seed(base_seed), drop_last=True)
    if num_workers > 0 and dataload.get('prefetch_factor') is not None:
        common['prefetch_factor'] = int(dataload['prefetch_factor'])  # DataLoader refuses it without workers
    if not train:
        loader = DataLoader(dataset, batch_size=global_batch, shuffle=False, **common)
    else:
        per_rank = split_batch_size(global_batch, world)
        sampler = ResumableSampler(len(dataset), base_seed, shuffle=True, rank=rank, world_size=world)
        loader = DataLoader(SeededItems(dataset, base_seed), batch_size=per_rank, sampler=sampler, **common)
    if len(loader) == 0:
        if len(dataset) == 0:  # no batch size helps: the split itself is empty
            advice = 'the split is empty: check its entries in the dataset\'s split index (or the folder)'
        elif loader.batch_size == 1:
            advice = 'add data to the split'
        else:
            advice = 'use a smaller train.batch_size or more data'
        raise ValueError(f'{describe_split(dataset)} has {len(dataset)} item(s), fewer than the batch size '
                         f'{loader.batch_size}{f" per rank ({world} ranks)" if world > 1 else ""}: its loader drops '
                         f'the last incomplete batch (as the original\'s) and would yield nothing; {advice}')
    return loader


def describe_split(dataset: Dataset) -> str:
    """"split 'test' of <dataroot>" for messages."""
    inner = getattr(dataset, 'dataset', dataset)
    return f"split '{getattr(inner, 'split', '?')}' of {getattr(inner, 'dataroot', type(inner).__name__)}"


def build_split(opt: dict, split: str) -> Dataset:
    return build_dataset_from_config(opt, split)


class InfiniteLoader:
    """Cycles a train DataLoader, re-creating the iterator after its last batch (as the original does).

    It knows its position (epoch, batches consumed in the epoch), so a resumed run continues
    with exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, loader: DataLoader):
        if len(loader) == 0:
            raise ValueError(f'{describe_split(loader.dataset)}: the data loader is empty ({len(loader.dataset)} '
                             f'images, batch size {loader.batch_size}, drop_last); use a smaller batch_size or more data')
        self.loader = loader
        self.batches_per_epoch = len(loader)
        self.epoch = 0
        self.position = 0
        self._iterator: Iterator | None = None

    def __len__(self) -> int:
        return self.batches_per_epoch

    def state_dict(self) -> dict[str, int]:
        return {'epoch': self.epoch, 'position': self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state['epoch']), int(state['position'])
        self._iterator = None

    def __next__(self) -> Any:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iterator = self.epoch + 1, 0, None
        if self._iterator is None:
            sampler = self.loader.sampler
            if isinstance(sampler, ResumableSampler):
                sampler.set_position(self.epoch, self.position * self.loader.batch_size)
            elif self.position:
                raise ValueError('only loaders built by make_loader(train=True) can resume mid-epoch')
            self._iterator = iter(self.loader)
        batch = next(self._iterator)
        self.position += 1
        return batch
