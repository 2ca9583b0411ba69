"""Exact resume (docs/reliability.md): resume states, run records, completion records, `latest`.

A run writes one resume state (weights, optimisers, counters, every rank's RNG, loader positions and the
config it ran with) at each validation; `latest` is a second name of it. A finished run keeps only a
small completion record. Changed configs are refused on resume unless accepted, and then dated in the
record's history, which opt.txt repeats."""
from __future__ import annotations

import datetime
import math
import os
import signal
from dataclasses import dataclass

import torch

from engine.data import InfiniteLoader


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
    refuse_network_change(path, opt, script, extra)
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


# Keys that change the network's shape: saved weights cannot be loaded into the new one, so such a change is
# refused before the weights are read, naming the key (even with --resume_with_changes).
NETWORK_KEYS = ('tasks', 'tasks_num_class', 'backbone', 'architecture', 'skip_layer')


def refuse_network_change(path: str, opt: dict, script: str, extra: dict | None = None) -> None:
    """Raise ConfigChangedError in one line when a key of NETWORK_KEYS changed since the resume state at `path`
    was written (nothing is loaded: the weights could not be, and their key lists would only bury the cause)."""
    if not os.path.exists(path):
        return
    from config import config_changes
    try:  # mmap: only the config record is read, not the weights
        recorded = torch.load(path, map_location='cpu', weights_only=True, mmap=True).get('config')
    except Exception:  # noqa: BLE001 - an unreadable state is reported by load_resume_state
        return
    if not isinstance(recorded, dict):
        return
    from config import recorded_config
    config = {**recorded_config(opt), **(extra or {})}
    changed = [line for line in config_changes(recorded, config, script)
               if line.split(':', 1)[0] in NETWORK_KEYS or line.split(':', 1)[0].split('.', 1)[0] in NETWORK_KEYS]
    if changed:
        raise ConfigChangedError(
            f'{opt.get("_source", "the config")}: {"; ".join(changed)} since the run in {path} started: its saved '
            f'weights do not fit the new network, so it cannot resume; start over with --fresh (or restore the '
            f'old value)')


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
    if iteration >= total_iters:
        latest_due = True  # `latest` (what policy_iter: latest samples from) is the final iteration, always
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
