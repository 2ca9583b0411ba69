"""Pieces of the training loop shared by train_policy.py, re-train.py and test.py."""
from __future__ import annotations

import datetime
import math
import os
from dataclasses import dataclass
from typing import Any, Iterator

import random
import signal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dataloaders import build_dataset_from_config, seed_worker
from config import backbone_blocks
from engine.device import DistContext, split_batch_size

# Blocks as the original's train.py counts them for the "best" threshold (docs/original.md §1.1: ResNet34 -> 18,
# sic); every other backbone (and quirks.true_block_count) uses its real count of gated blocks.
_BEST_THRESHOLD_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 18, 'ResNet101': 33}


def best_threshold_blocks(opt: dict) -> int:
    """`num_blocks` of the "best" threshold; quirks.true_block_count uses the real count."""
    if (opt.get('quirks') or {}).get('true_block_count', False) or opt['backbone'] not in _BEST_THRESHOLD_BLOCKS:
        return backbone_blocks(opt['backbone'])
    return _BEST_THRESHOLD_BLOCKS[opt['backbone']]


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
        raise ValueError(f'{describe_split(dataset)} has {len(dataset)} item(s), fewer than the batch size '
                         f'{loader.batch_size}{f" per rank ({world} ranks)" if world > 1 else ""}: its loader drops '
                         f'the last incomplete batch (as the original\'s) and would yield nothing; use a smaller '
                         f'train.batch_size or more data')
    return loader


def describe_split(dataset: Dataset) -> str:
    """"split 'test' of <dataroot>" for messages."""
    inner = getattr(dataset, 'dataset', dataset)
    return f"split '{getattr(inner, 'split', '?')}' of {getattr(inner, 'dataroot', type(inner).__name__)}"


def build_split(opt: dict, split: str) -> Dataset:
    return build_dataset_from_config(opt, split)


def preflight(opt: dict, datasets: dict[str, Dataset], eval_split: str, dist: DistContext | None) -> None:
    """Start-up checks before anything is written: output folders, split files, evaluation size (main rank)."""
    if dist is not None and not dist.is_main:
        return
    from engine import preflight as F
    F.check_writable(opt['paths'], opt['exp_name'])
    note = F.check_split_files(datasets.values())
    F.check_eval_item(datasets[eval_split], eval_split)
    print(f'start-up checks passed: {note}')


def claim_folder(opt: dict, dist: DistContext | None, names: list[str], command: str) -> list:
    """Lock the experiment folder for this run (main rank), then delete temp files of interrupted saves."""
    if dist is not None and not dist.is_main:
        return []
    from engine.checkpoint import remove_stale_temp_files
    from engine.run_lock import RunLock
    folder = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    locks = [RunLock(folder, name, command).acquire() for name in names]
    _HELD_LOCKS.extend(locks)
    removed = remove_stale_temp_files([os.path.join(p, opt['exp_name']) for p in opt['paths'].values()])
    if removed:
        print(f'removed {len(removed)} leftover temp file(s) of interrupted saves: '
              + ', '.join(os.path.basename(p) for p in removed))
    return locks


_HELD_LOCKS: list = []


def release_folder() -> None:
    """Release the locks claim_folder took (also done at interpreter exit)."""
    while _HELD_LOCKS:
        _HELD_LOCKS.pop().release()


class NoFiniteValidationError(ValueError):
    """Every validation of a run gave a NaN/inf score."""


@dataclass
class ValidationWatch:
    """Counts validations and those with a finite score, so a run that never had one can say so."""
    split: str
    refer: dict
    count: int = 0
    finite: int = 0
    example: str = ''

    def add(self, metrics: dict) -> float:
        """Record one validation; returns its score."""
        from evaluation.metrics import score
        value = score(metrics, self.refer) if metrics else math.nan
        if metrics:
            self.count += 1
            if math.isfinite(value):
                self.finite += 1
            elif not self.example:
                bad = [f'{t}/{k} = {v}' for t, m in metrics.items() for k, v in m.items()
                       if not math.isfinite(float(v))]
                self.example = bad[0] if bad else f'score = {value}'
        return value

    def check(self, what: str) -> None:
        """Raise when this process validated and never got a finite score."""
        if self.count and not self.finite:
            raise NoFiniteValidationError(
                f'{what}: none of the {self.count} validation(s) gave a finite score ({self.example}), so no best '
                f'was saved; check the labels of split \'{self.split}\' (non-finite or all-invalid values) and the '
                f'loss lines in loss.txt')


def report_policy_best(env, opt: dict, first_best_iter: int) -> None:
    """Say so when policy learning ended without a `best` checkpoint (re-train.py defaults to policy_iter: best)."""
    path = env.checkpoint_file('best')
    if os.path.exists(path):
        return
    print(f'note: no policy `best` was written ({path}): the validation score counts from iteration '
          f'{first_best_iter} on and the run ended at iteration {env.state.current_iter}. For re-train.py set '
          f'train.policy_iter: latest, or run longer (train.total_iters).')


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
    """The reference metrics the validation score is computed against (docs/original.md §6)."""
    from evaluation.metrics import reference_metrics
    return reference_metrics(opt['dataload']['dataset'], opt['tasks'], seg_classes(opt),
                             bool(opt['dataload'].get('small_res', False)))


def losses_to_float(losses: dict) -> dict:
    """Detached loss tensors to floats (one host sync, only when logging)."""
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in losses.items()}


def loss_line(tag: str, values: dict) -> str:
    return f'[{tag}] ' + ' '.join(f"{k}={v['total']:.4f}" for k, v in values.items())


# ------------------------------------------------------------------ exact resume (docs/original.md §0.8)
def resume_state_path(opt: dict, prefix: str = '') -> str:
    """`<checkpoint_dir>/<exp_name>/<prefix>resume_state.pth.tar`, beside the checkpoints."""
    return os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'], f'{prefix}resume_state.pth.tar')


@dataclass
class RunRecord:
    """What a resume state records beside the weights: the validated config and the dated config changes."""
    config: dict
    history: list[str]

    def extra(self) -> dict:
        return {'config': self.config, 'config_history': list(self.history)}


def save_resume_state(env, path: str, loaders: dict[str, 'InfiniteLoader'], record: RunRecord | None = None) -> None:
    """Everything an interrupted run needs to continue exactly; every rank's RNG goes to rank 0."""
    from engine.seeding import get_rng_state
    rng = get_rng_state()
    if env.is_distributed:
        import torch.distributed as tdist
        gathered: list = [None] * env.dist.world_size
        tdist.all_gather_object(gathered, rng)
        rng_states = gathered
    else:
        rng_states = [rng]
    extra = {'rng': rng_states, 'loaders': {k: v.state_dict() for k, v in loaders.items()}}
    extra.update(record.extra() if record is not None else {})
    env.save_resume(path, extra)


def load_resume_state(env, path: str, loaders: dict[str, 'InfiniteLoader']) -> dict | None:
    """Restore a run from `path` if it exists; returns its payload (None when there is none)."""
    if not os.path.exists(path):
        return None
    from engine.checkpoint import CheckpointError
    from engine.seeding import set_rng_state
    try:
        payload = env.load_resume(path)
    except CheckpointError as err:
        raise CheckpointError(f'{err}\n(the resume state of an interrupted run: delete it or run with --fresh '
                              f'to start over)') from None
    for name, state in payload.get('loaders', {}).items():
        if name in loaders:
            loaders[name].load_state_dict(state)
    rng_states = payload['rng']
    rank = env.dist.rank if env.is_distributed else 0
    set_rng_state(rng_states[rank] if rank < len(rng_states) else rng_states[0])
    return payload


def completion_path(resume_path: str) -> str:
    """`<prefix>run_complete.json`: the small record a finished run keeps instead of its resume state."""
    return resume_path[:-len('resume_state.pth.tar')] + 'run_complete.json'


def read_completion(resume_path: str) -> dict | None:
    """The completion record of the run whose resume state would be `resume_path`, None if it never finished."""
    path = completion_path(resume_path)
    if not os.path.isfile(path):
        return None
    import json
    try:
        with open(path, encoding='utf-8') as handle:
            record = json.load(handle)
        return record if isinstance(record, dict) and 'iteration' in record and 'total' in record else None
    except (OSError, ValueError):
        return None  # unreadable: treated as unfinished, so the run is redone rather than trusted


def run_finished(resume_path: str, total: int) -> bool:
    """Whether the run finished with at least `total` iterations (its completion record says so)."""
    record = read_completion(resume_path)
    return record is not None and int(record['iteration']) >= int(total)


def complete_run(env, resume_path: str, total_iters: int, record: RunRecord | None = None) -> None:
    """After the last iteration: write the completion record, then delete the resume state (main rank).

    A finished run needs no resume state (tens of MB); the record keeps what later commands ask:
    the iteration, the total, when, the best score and the config (docs/reliability.md).
    """
    if not env.is_main:
        return
    from engine.checkpoint import atomic_write_json
    state = env.state
    atomic_write_json(completion_path(resume_path), {
        'iteration': int(state.current_iter), 'total': int(total_iters),
        'finished': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'best_value': float(state.best_value) if math.isfinite(float(state.best_value)) else None,
        'config': record.config if record is not None else None})
    if os.path.exists(resume_path):
        os.remove(resume_path)


def forget_completion(resume_path: str) -> None:
    """A run that starts over is no longer complete: remove its old completion record."""
    path = completion_path(resume_path)
    if os.path.exists(path):
        os.remove(path)


def complete_message(resume_path: str, total: int, what: str, total_key: str, results: str) -> str | None:
    """The line a rerun of a finished run prints (None when the run is not finished).

    A finished run keeps no resume state, so asking it for more iterations is refused in one line.
    """
    if os.path.exists(resume_path):
        return None
    done = read_completion(resume_path)
    if done is None:
        return None
    if int(done['iteration']) < int(total):
        raise ValueError(f'{completion_path(resume_path)}: the {what} finished at iteration {done["iteration"]} '
                         f'but {total_key} is now {total}; a finished run keeps no resume state to continue from, '
                         f'so --fresh starts it over with the new length')
    return (f'the {what} is complete: it already finished at iteration {done["iteration"]} ({total_key} '
            f'{done["total"]}) on {done.get("finished", "?")}; nothing to do. Results: {results} '
            f'(--fresh starts over)')


def checkpoint_iteration(path: str) -> int | None:
    """The `iter` of a checkpoint (memory-mapped: the weights are not read), None if it is absent."""
    if not os.path.isfile(path):
        return None
    try:
        return int(torch.load(path, map_location='cpu', weights_only=True, mmap=True).get('iter', 0))
    except Exception:  # noqa: BLE001 - only for the closing summary; the loaders report bad files
        return None


def run_progress(path: str, total_key: str, fallback_total: int | None = None) -> tuple[int, int] | None:
    """(iteration, total) of the run whose resume state is `path`, or None when there is none.

    `total_key` is 'total_iters' or 'retrain_total_iters' of the config the run recorded (docs/reliability.md).
    A finished run has no resume state; its completion record answers instead.
    """
    if not os.path.exists(path):
        done = read_completion(path)
        return (int(done['iteration']), int(done['total'])) if done is not None else None
    try:  # mmap: only the counters are read, not the weights
        payload = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
        train = (payload.get('config') or {}).get('train') or {}
        total = train.get(total_key) or train.get('total_iters') or fallback_total
        return (int(payload['state']['current_iter']), int(total)) if total is not None else None
    except Exception:  # noqa: BLE001 - an unreadable state is reported where it is resumed
        return None


class ConfigChangedError(ValueError):
    """A resume state was written with another config."""


def resume_checked(env, path: str, loaders: dict[str, 'InfiniteLoader'], opt: dict, script: str,
                   accept_changes: bool, extra: dict | None = None) -> tuple[dict | None, RunRecord]:
    """load_resume_state, then refuse (or with `accept_changes` apply and record) a changed config.

    Returns the payload (None without a resume state) and the record the next saves carry.
    """
    from config import config_changes, recorded_config
    record = RunRecord({**recorded_config(opt), **(extra or {})}, [])
    payload = load_resume_state(env, path, loaders)
    if payload is None:
        return None, record
    record.history = [str(line) for line in payload.get('config_history', [])]
    if 'config' not in payload:
        print(f'notice: {path} holds no config record (written by an older version); resuming without comparing')
        return payload, record
    changes = config_changes(payload['config'], record.config, script)
    if not changes:
        return payload, record
    iteration = int(payload['state']['current_iter'])
    if not accept_changes:
        raise ConfigChangedError(
            f'{opt["_source"] if "_source" in opt else "the config"}: changed since the run in {path} started '
            f'(it would resume at iteration {iteration}):\n' + '\n'.join(f'  {line}' for line in changes)
            + '\nStart over with --fresh, or resume with the new values with --resume_with_changes.')
    apply_new_hyperparameters(env, temperature=script == 'train_policy')
    stamp = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    record.history.append(f'# changed at iteration {iteration} on {stamp}: ' + '; '.join(changes))
    if env.is_main:
        print(f'resuming at iteration {iteration} with the changed config:\n' + '\n'.join(f'  {c}' for c in changes))
    return payload, record


def apply_new_hyperparameters(env, temperature: bool) -> None:
    """After a resume, make the optimisers, schedulers and temperature follow env.opt, as if the run had
    used the new values from its start (a resume state restores the old learning rates and StepLR settings)."""
    train_opt = env.opt['train']
    current, env.optimizers = env.optimizers, {}
    env.define_optimizers(policy_learning=env.state.alternation_started)
    fresh, env.optimizers = env.optimizers, current
    sched = env.schedulers.get('weights')
    if sched is not None:
        policy = env.state.alternation_started and not (env.opt.get('quirks') or {}).get(
            'weight_lr_schedule_after_warmup', False)
        prefix = 'policy_decay_lr' if policy else 'decay_lr'
        sched.step_size, sched.gamma = int(train_opt[f'{prefix}_freq']), float(train_opt[f'{prefix}_rate'])
    for name, optimizer in current.items():
        bases = [group['lr'] for group in fresh[name].param_groups]
        factor = sched.gamma ** (sched.last_epoch // sched.step_size) if sched is not None and name == 'weights' else 1.0
        for group, base in zip(optimizer.param_groups, bases):
            group['lr'], group['initial_lr'] = base * factor, base
        if sched is not None and name == 'weights':
            sched.base_lrs = list(bases)
            sched._last_lr = [group['lr'] for group in optimizer.param_groups]
    if temperature:
        env.state.temperature = float(train_opt['init_temp']) * float(train_opt['decay_temp']) ** env.state.p_epoch
        env.decay_temp = float(train_opt['decay_temp'])


def options_text(opt: dict, record: RunRecord) -> str:
    """opt.txt: the options, then every dated config change of the run."""
    from config import format_options
    return format_options(opt) + ''.join(f'{line}\n' for line in record.history)


def finish_iteration(env, latest_label: str, latest_freq: int | None, total_iters: int, latest_due: bool,
                     resume_path: str, loaders: dict[str, 'InfiniteLoader'], record: RunRecord | None = None) -> None:
    """End of an iteration: when `latest` is due (a validation, or every latest_freq iterations), write
    the resume state once and make `latest` a second name of it, so the counters, best score and RNG
    in it are current and the weights and optimiser states are on disk once; after the last iteration
    the completion record replaces the resume state's name; then the testing kill hook."""
    iteration = env.state.current_iter
    if latest_freq and iteration % int(latest_freq) == 0:
        latest_due = True
    if latest_due:
        save_resume_state(env, resume_path, loaders, record)
        if env.is_main:
            from engine.checkpoint import atomic_link
            atomic_link(resume_path, env.checkpoint_file(latest_label))
    if iteration >= total_iters:
        complete_run(env, resume_path, total_iters, record)
    maybe_inject_kill(iteration)


def maybe_inject_kill(iteration: int) -> None:
    """Testing hook: ADASHARE_KILL_AT_ITER=N SIGKILLs this process at the end of iteration N."""
    target = os.environ.get('ADASHARE_KILL_AT_ITER')
    if target is not None and int(target) == iteration:
        os.kill(os.getpid(), signal.SIGKILL)
