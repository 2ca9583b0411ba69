"""Pieces of the training loop shared by train_policy.py, re-train.py and test.py."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dataloaders import build_dataset_from_config, seed_worker
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


class SeededItems(Dataset):
    """Wraps a dataset so that item `(epoch, index)` is augmented with its own seed.

    The augmentation draws from python `random` and numpy (SPEC §9); seeding them per
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
        return DataLoader(dataset, batch_size=global_batch, shuffle=False, **common)
    per_rank = split_batch_size(global_batch, world)
    sampler = ResumableSampler(len(dataset), base_seed, shuffle=True, rank=rank, world_size=world)
    return DataLoader(SeededItems(dataset, base_seed), batch_size=per_rank, sampler=sampler, **common)


def build_split(opt: dict, split: str) -> Dataset:
    return build_dataset_from_config(opt, split)


class InfiniteLoader:
    """Cycles a train DataLoader, re-creating the iterator after its last batch (as the original does).

    It knows its position (epoch, batches consumed in the epoch), so a resumed run continues
    with exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, loader: DataLoader):
        if len(loader) == 0:
            raise ValueError(f'the data loader is empty: {len(loader.dataset)} images with batch size '
                             f'{loader.batch_size} and drop_last; use a smaller batch_size or more data')
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


# ------------------------------------------------------------------ exact resume (SPEC §0.8)
def resume_state_path(opt: dict, prefix: str = '') -> str:
    """`<checkpoint_dir>/<exp_name>/<prefix>resume_state.pth.tar`, beside the checkpoints."""
    return os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'], f'{prefix}resume_state.pth.tar')


def save_resume_state(env, path: str, loaders: dict[str, 'InfiniteLoader']) -> None:
    """Everything an interrupted run needs to continue exactly; every rank's RNG goes to rank 0."""
    from utils.seeding import get_rng_state
    rng = get_rng_state()
    if env.is_distributed:
        import torch.distributed as tdist
        gathered: list = [None] * env.dist.world_size
        tdist.all_gather_object(gathered, rng)
        rng_states = gathered
    else:
        rng_states = [rng]
    env.save_resume(path, {'rng': rng_states, 'loaders': {k: v.state_dict() for k, v in loaders.items()}})


def load_resume_state(env, path: str, loaders: dict[str, 'InfiniteLoader']) -> bool:
    """Restore a run from `path` if it exists; returns whether it did."""
    if not os.path.exists(path):
        return False
    from utils.seeding import set_rng_state
    payload = env.load_resume(path)
    for name, state in payload.get('loaders', {}).items():
        if name in loaders:
            loaders[name].load_state_dict(state)
    rng_states = payload['rng']
    rank = env.dist.rank if env.is_distributed else 0
    set_rng_state(rng_states[rank] if rank < len(rng_states) else rng_states[0])
    return True


def finish_iteration(env, latest_label: str, latest_freq: int | None, total_iters: int, saved_latest: bool,
                     resume_path: str, loaders: dict[str, 'InfiniteLoader']) -> None:
    """End of an iteration: `latest` every latest_freq iterations, then the resume state whenever
    `latest` was written (and after the last iteration), so the counters, best score and RNG in
    it are all current; then the testing kill hook."""
    iteration = env.state.current_iter
    if latest_freq and iteration % int(latest_freq) == 0 and not saved_latest:
        env.save_label(latest_label)
        saved_latest = True
    if saved_latest or iteration == total_iters:
        save_resume_state(env, resume_path, loaders)
    maybe_inject_kill(iteration)


def maybe_inject_kill(iteration: int) -> None:
    """Testing hook: ADASHARE_KILL_AT_ITER=N SIGKILLs this process at the end of iteration N."""
    target = os.environ.get('ADASHARE_KILL_AT_ITER')
    if target is not None and int(target) == iteration:
        os.kill(os.getpid(), signal.SIGKILL)
