"""Checkpoints and policy pickles: the original file names and dict keys, written atomically, read safely.

* `<checkpoint_dir>/<exp_name>/<label>_model.pth.tar` = `torch.save` of
  `{'mtl-net': state_dict, 'weights': optimiser state, 'alphas': optimiser state, 'iter': int, 'temp': float}`
  (docs/original.md §3.8); network keys never carry a `module.` prefix. Read with `torch.load(weights_only=True)`.
* `<checkpoint_dir>/<exp_name>/policyIter<it>_rs<seed:04d>.pickle` = `pickle.dump({'task1_policy': int64 [P,2], ...})`
  (docs/original.md §4.6), read with an allow-list unpickler that can only rebuild tensors. A `.txt` table
  sits beside it.
* Every write goes to a temp file in the same folder, is fsynced and renamed over the target, so a crash
  mid-write leaves the previous file intact.
"""
from __future__ import annotations

import collections
import errno
import hashlib
import io
import json
import math
import os
import pickle
import re
import shutil
import uuid
import warnings
from typing import IO, Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from engine.device import unwrap

NETWORK_KEY = "mtl-net"
ORIGINAL_KEYS = ("mtl-net", "weights", "alphas", "iter", "temp")
MODULE_PREFIX = "module."


# ---------------------------------------------------------------------------------------------- errors
class CheckpointError(RuntimeError):
    """A checkpoint or policy file exists but cannot be used."""


class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint, policy or result file could not be written (disk full, size limit, permissions)."""

    def __str__(self) -> str:  # OSError would otherwise format (errno, strerror)
        return self.args[0]


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No file at the path(s) looked for."""

    def __init__(self, paths: str | Sequence[str], hint: str | None = None, what: str = "checkpoint"):
        self.paths = [paths] if isinstance(paths, str) else list(paths)
        self.hint = hint
        lines = [f"{what} not found; looked for:"] + [f"  {p}" for p in self.paths]
        present = _other_files(self.paths[0]) if self.paths else []
        if present:
            lines.append(f"files in {os.path.dirname(self.paths[0])}: {', '.join(present)}")
        lines += _hint_lines(hint)
        super().__init__("\n".join(lines))
        self.errno, self.filename = errno.ENOENT, (self.paths[0] if self.paths else None)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format (errno, strerror)
        return self.args[0]


class CheckpointMismatchError(CheckpointError):
    """Strict loading found missing, unexpected or mis-shaped keys."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple, tuple]]):
        super().__init__(message)
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched


class PolicyFileError(CheckpointError):
    """A policy pickle that is corrupt, refused by the allow-list, or not a valid policy."""


class PolicyNotFoundError(CheckpointNotFoundError, PolicyFileError):
    """No policy pickle at the path looked for."""


def _hint_lines(hint: str | None) -> list[str]:
    """`to get it: <hint>`; a hint of several lines (several ways: retrain, or place the released files) one
    indented line each. Neutral words: "produce it with" read wrong before "place the released files"."""
    ways = [line.strip() for line in (hint or "").splitlines() if line.strip()]
    if len(ways) <= 1:
        return [f"to get it: {ways[0]}"] if ways else []
    return ["to get it, either:"] + [f"  {way}" for way in ways]


def _other_files(path: str) -> list[str]:
    """Checkpoint/policy files present beside `path`, to make a not-found error actionable."""
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return []
    names = sorted(n for n in os.listdir(folder)
                   if n.endswith(("_model.pth.tar", ".pickle")) and not n.startswith("."))
    return names[:20] + ([f"... ({len(names) - 20} more)"] if len(names) > 20 else [])


# ---------------------------------------------------------------------------------------------- names
def checkpoint_path(checkpoint_dir: str, exp_name: str, label: str) -> str:
    """`<checkpoint_dir>/<exp_name>/<label>_model.pth.tar`."""
    if not label:
        raise ValueError("checkpoint label must be a non-empty string (e.g. 'best', 'latest')")
    return os.path.join(checkpoint_dir, exp_name, f"{label}_model.pth.tar")


def retrain_label(exp_id: int, policy_iter: str, kind: str) -> str:
    """`retrain%03d_policyIter%s_%s`, e.g. `retrain000_policyIterbest_best` (exp_id is the index)."""
    return "retrain%03d_policyIter%s_%s" % (exp_id, policy_iter, kind)


def policy_label(policy_iter: str, seed: int) -> str:
    """`Iter%s_rs%04d`, e.g. `Iterbest_rs0048` (seed is the value)."""
    return "Iter%s_rs%04d" % (policy_iter, seed)


def policy_path(checkpoint_dir: str, exp_name: str, policy_iter: str, seed: int) -> str:
    """`<checkpoint_dir>/<exp_name>/policyIter<it>_rs<seed:04d>.pickle`."""
    return os.path.join(checkpoint_dir, exp_name, f"policy{policy_label(policy_iter, seed)}.pickle")


def policy_table_path(path: str) -> str:
    """The human-readable table written beside a policy pickle: same name, `.txt`."""
    return os.path.splitext(path)[0] + ".txt"


# ---------------------------------------------------------------------------------------------- atomic writes
def _fsync_dir(directory: str) -> None:
    """Make the rename itself durable (not possible on every platform, hence best effort)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Run `write(file)` on a temp file beside `path`, fsync it, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as a plain open() would.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise CheckpointWriteError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:  # also KeyboardInterrupt: never leave a half-written temp file behind
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        cause = _write_failure(err)
        if cause is not None:
            raise CheckpointWriteError(f"cannot write {path}: {cause}; the previous file (if any) is intact") from None
        raise
    _fsync_dir(directory)


def _write_failure(err: BaseException) -> str | None:
    """The OS error behind a failed write (torch.save re-raises it as a RuntimeError), or None for a bug."""
    chain: BaseException | None = err
    while chain is not None:
        if isinstance(chain, OSError):
            return f"{chain.strerror or chain} (disk full or a file size limit?)" \
                if chain.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else str(chain.strerror or chain)
        chain = chain.__context__ or chain.__cause__
    return None


_TEMP_NAME = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def remove_stale_temp_files(folders: Sequence[str]) -> list[str]:
    """Delete our temp files (`.<name>.<pid>.<hex>.tmp`) whose writing process is gone; returns their paths.

    A save interrupted by SIGKILL cannot clean up after itself; files of live processes are kept.
    """
    removed = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            match = _TEMP_NAME.match(name)
            if match is None or _pid_alive(int(match.group(1))):
                continue
            try:
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except OSError:
                pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def atomic_save(obj: Any, path: str) -> None:
    """`torch.save(obj, path)`, atomically."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_link(source: str, path: str) -> bool:
    """Make `path` a second name of the file `source` (a hard link), replacing `path` atomically.

    One file then serves both names and the data is on disk once. Where the filesystem has no hard
    links, `path` becomes an atomic copy instead; returns whether a link was made.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        _atomic_write(path, lambda f: _copy_into(source, f))
        return False
    try:
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)
    return True


def _copy_into(source: str, target: IO[bytes]) -> None:
    with open(source, "rb") as handle:
        shutil.copyfileobj(handle, target, 1 << 20)


def atomic_write_bytes(path: str, data: bytes) -> None:
    _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any) -> Any:
    """Let metric dicts with numpy/torch numbers go straight to JSON."""
    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON: {value!r}")


def _non_finite_key(data: Any, where: str = "") -> str | None:
    """The key path of the first NaN/inf number in `data`, or None."""
    if isinstance(data, float) and not math.isfinite(data):
        return where or "<top level>"
    if isinstance(data, Mapping):
        items: Any = data.items()
    elif isinstance(data, (list, tuple)):
        items = enumerate(data)
    else:
        return None
    for key, value in items:
        found = _non_finite_key(value, f"{where}/{key}" if where else str(key))
        if found:
            return found
    return None


def atomic_write_json(path: str, data: Any) -> None:
    """Standard JSON only (no NaN/Infinity, which strict parsers reject): write undefined values as null."""
    try:
        text = json.dumps(data, indent=2, default=_json_default, allow_nan=False)
    except ValueError:
        raise ValueError(f"{path}: {_non_finite_key(json.loads(json.dumps(data, default=_json_default)))} is not "
                         f"finite; standard JSON has no NaN/Infinity (write null and a reason)") from None
    atomic_write_text(path, text + "\n")


# ---------------------------------------------------------------------------------------------- checkpoints
def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop the `module.` prefix that DataParallel/DDP add to every key."""
    return {(k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k): v for k, v in state_dict.items()}


_PLAIN_TYPES = (bool, int, float, str, bytes, type(None))


def _check_loadable(value: Any, where: str) -> None:
    """Refuse values a `weights_only` load would reject, at save time rather than at resume time."""
    if torch.is_tensor(value) or isinstance(value, _PLAIN_TYPES):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, _PLAIN_TYPES):
                raise ValueError(f"checkpoint {where}: key {key!r} of type {type(key).__name__} is not a plain value")
            _check_loadable(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_loadable(item, f"{where}[{index}]")
        return
    raise ValueError(f"checkpoint {where} is a {type(value).__name__}; store tensors and plain Python values "
                     "only (convert numpy arrays with torch.from_numpy, numbers with int()/float()) so the file "
                     "loads with weights_only=True")


def save_checkpoint(path: str, network_state: Mapping[str, Any] | nn.Module,
                    optimizers: Mapping[str, Mapping[str, Any]] | None = None, *,
                    iteration: int, temperature: float, extra: Mapping[str, Any] | None = None) -> None:
    """Write `{'mtl-net', ['weights', 'alphas'], 'iter', 'temp', **extra}` atomically to `path`.

    `optimizers` maps the original names (`weights`, `alphas`) to optimiser state_dicts; test envs pass None.
    `extra` holds our own keys (e.g. RNG states); it must contain only tensors and plain Python values so
    that the file loads with `weights_only=True`.
    """
    if isinstance(network_state, nn.Module):
        network_state = unwrap(network_state).state_dict()
    checkpoint: dict[str, Any] = {NETWORK_KEY: strip_module_prefix(network_state)}
    for name, state in (optimizers or {}).items():
        if name in (NETWORK_KEY, "iter", "temp"):
            raise ValueError(f"optimiser name {name!r} collides with a checkpoint key")
        checkpoint[name] = state
    checkpoint["iter"] = int(iteration)
    checkpoint["temp"] = float(temperature)
    for key, value in (extra or {}).items():
        if key in checkpoint or key in ORIGINAL_KEYS:
            raise ValueError(f"extra checkpoint key {key!r} collides with an original key {ORIGINAL_KEYS}")
        _check_loadable(value, f"extra[{key!r}]")
        checkpoint[key] = value
    atomic_save(checkpoint, path)


def refusal_reason(err: BaseException) -> str:
    """What a safe (weights_only) load refused, without torch's advice to load unsafely or to allow-list it."""
    text = str(err)
    match = re.search(r"GLOBAL ([\w.<>]+)", text)
    if match:
        return f"it refers to {match.group(1)}"
    match = re.search(r"Unsupported operand[^.\n]*", text)
    return match.group(0) if match else "it holds an object that is not a tensor or a plain value"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def load_checkpoint(path: str, map_location: str | torch.device | None = "cpu",
                    hint: str | None = None) -> dict[str, Any]:
    """Read a checkpoint dict with `weights_only=True`; errors name the file and say what is wrong."""
    if not os.path.isfile(path):
        raise CheckpointNotFoundError(path, hint=hint)
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): truncated or not a checkpoint; "
                              "delete it and write it again")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower():
            reason = refusal_reason(err)
            raise CheckpointError(f"{path} contains objects other than tensors and plain values, which a safe "
                                  f"(weights_only) load refuses: {reason}") from None
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint "
                              f"({size} bytes; {_first_line(err)})") from None
    except Exception as err:  # zip/EOF/OSError/KeyError from a damaged file: never show the raw traceback
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint "
                              f"({size} bytes; {_first_line(err)})") from None
    if not isinstance(checkpoint, dict) or NETWORK_KEY not in checkpoint:
        found = sorted(map(str, checkpoint.keys())) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{path} is not an AdaShare checkpoint: expected a dict with key {NETWORK_KEY!r} "
                              f"(and {', '.join(ORIGINAL_KEYS[1:])}), found {found}")
    checkpoint[NETWORK_KEY] = strip_module_prefix(checkpoint[NETWORK_KEY])
    return checkpoint


def load_state_tolerant(module: nn.Module, state_dict: Mapping[str, Any], verbose: bool = True) -> list[str]:
    """The original `load_snapshot`: load entries whose key exists and whose shape matches.

    Every other entry is skipped (printed as `skipping <key>` and returned); network keys absent from
    `state_dict` keep their current values.
    """
    network = unwrap(module)
    current = network.state_dict()
    accepted: dict[str, Any] = {}
    skipped: list[str] = []
    for key, value in strip_module_prefix(state_dict).items():
        target = current.get(key)
        if target is not None and _shape(target) == _shape(value):
            accepted[key] = value
        else:
            skipped.append(key)
            if verbose:
                print(f"skipping {key}")
    current.update(accepted)
    network.load_state_dict(current)
    return skipped


def _shape(value: Any) -> tuple | None:
    return tuple(value.shape) if torch.is_tensor(value) else None


def load_state_strict(module: nn.Module, state_dict: Mapping[str, Any], source: str) -> None:
    """Load every key or fail with a message listing each missing, unexpected and mis-shaped key."""
    network = unwrap(module)
    state_dict = strip_module_prefix(state_dict)
    current = network.state_dict()
    missing = [k for k in current if k not in state_dict]
    unexpected = [k for k in state_dict if k not in current]
    mismatched = [(k, _shape(state_dict[k]), _shape(current[k])) for k in current
                  if k in state_dict and _shape(state_dict[k]) != _shape(current[k])]
    if missing or unexpected or mismatched:
        def fmt(shape: tuple | None) -> str:
            return "non-tensor" if shape is None else str(list(shape))
        lines = [f"{source} does not match the network: {len(missing)} missing, {len(unexpected)} unexpected, "
                 f"{len(mismatched)} mis-shaped key(s)"]
        if missing:
            lines.append("missing (in the network, not in the file):")
            lines += [f"  {k} {fmt(_shape(current[k]))}" for k in missing]
        if unexpected:
            lines.append("unexpected (in the file, not in the network):")
            lines += [f"  {k} {fmt(_shape(state_dict[k]))}" for k in unexpected]
        if mismatched:
            lines.append("mis-shaped (file vs network):")
            lines += [f"  {k}: file {fmt(a)} vs network {fmt(b)}" for k, a, b in mismatched]
        lines.append("Check that backbone, tasks, tasks_num_class, skip_layer and head_channels match the run "
                     "that wrote the file.")
        raise CheckpointMismatchError("\n".join(lines), missing, unexpected, mismatched)
    network.load_state_dict(state_dict, strict=True)


# ---------------------------------------------------------------------------------------------- policy pickles
def _policy_key(task_index: int) -> str:
    return f"task{task_index + 1}_policy"


def _as_policy(value: Any, where: str) -> torch.Tensor:
    """Check a fixed policy (`[P, 2]`, 0/1, rows sum to 1) and return it as int64 on the CPU."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not torch.is_tensor(value):
        raise PolicyFileError(f"{where}: expected a tensor [P, 2], got {type(value).__name__}")
    if value.dim() != 2 or value.shape[1] != 2 or value.shape[0] == 0:
        raise PolicyFileError(f"{where}: expected shape [P, 2] (column 0 = execute, 1 = skip), "
                              f"got {list(value.shape)}")
    value = value.detach().cpu()
    if value.is_floating_point() and not torch.equal(value, value.round()):
        raise PolicyFileError(f"{where}: values must be 0 or 1, got non-integers")
    policy = value.to(torch.int64)
    if not bool(((policy == 0) | (policy == 1)).all()) or not bool((policy.sum(dim=1) == 1).all()):
        bad = [i for i, row in enumerate(policy.tolist()) if sorted(row) != [0, 1]]
        raise PolicyFileError(f"{where}: every row must be [1, 0] (execute) or [0, 1] (skip); "
                              f"bad rows {bad[:10]}")
    return policy.contiguous().clone()  # clone: a view would pickle its whole storage


def _task_names(tasks: Sequence[str] | None, count: int) -> list[str]:
    if tasks is None:
        return [f"task{i + 1}" for i in range(count)]
    if len(tasks) != count:
        raise ValueError(f"{len(tasks)} task names {list(tasks)} for {count} policies")
    return list(tasks)


def _execute_probabilities(probs: Any) -> list[float]:
    """Execute probability per block from `[P]` (execute) or `[P, 2]` (softmax rows, column 0)."""
    array = probs.detach().cpu().numpy() if torch.is_tensor(probs) else np.asarray(probs)
    array = array.astype(np.float64)
    if array.ndim == 2:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"probabilities must be [P] or [P, 2], got shape {list(array.shape)}")
    return array.tolist()


# How the code turns an execute probability p into a decision (models/policy.py): the most likely policy
# (`hard_policy`, the original's np.argmax, whose first maximum is column 0) executes a block iff p >= 0.5,
# so an exact tie executes; a sampled policy (`sample_policy_numpy`) executes it with probability p.
EXECUTE_RULE = ("decision rule: the most likely policy executes a block iff p >= 0.5, so a tie executes; a sampled "
                "policy executes it with probability p")
TIE_MARK = "?"
# p within display rounding of the tie reads "0.50" whichever side of the rule it is on: mark it.
TIE_TOLERANCE = 0.005
NOT_GATED_MARK = "+"
P_LABEL = "  p(execute)"


def _gated_from(num_blocks: int, num_gated: int | None) -> int:
    """Index of the first gated block: the curriculum gates the last `num_gated` blocks (models.policy.pad_gates)."""
    if num_gated is None:
        return 0
    if num_gated < 0:
        raise ValueError(f"num_gated must be >= 0 or None, got {num_gated}")
    return num_blocks - min(num_gated, num_blocks)


def _decision_cells(row: Sequence[int], gated_from: int) -> list[str]:
    return [NOT_GATED_MARK if i < gated_from else ("X" if r else ".") for i, r in enumerate(row)]


def _probability_cell(p: float) -> str:
    return f"{p:.2f}{TIE_MARK}" if abs(p - 0.5) < TIE_TOLERANCE else f"{p:.2f}"


def _probability_cells(probs: Sequence[float], gated_from: int) -> list[str]:
    return [NOT_GATED_MARK if i < gated_from else _probability_cell(p) for i, p in enumerate(probs)]


def _executed(row: Sequence[int], gated_from: int) -> int:
    """Blocks that run: the not-yet-gated ones always, the gated ones where the policy says so."""
    return gated_from + sum(row[gated_from:])


def _expected(probs: Sequence[float], gated_from: int) -> float:
    return gated_from + math.fsum(probs[gated_from:])


def _legend(rows: Any, probs: Any, gated_from: int, num_blocks: int) -> list[str]:
    """The lines that say what every mark of the grid means."""
    lines = []
    if rows is not None:
        lines.append("X = execute the block, . = skip it")
    if probs is not None:
        lines.append(f"p = execute probability, {TIE_MARK} = a tie (p within {TIE_TOLERANCE} of 0.5)")
        lines.append(EXECUTE_RULE)
    if gated_from > 0:
        gated = f"block {gated_from} is" if gated_from == num_blocks - 1 \
            else f"blocks {gated_from}-{num_blocks - 1} are"
        lines.append(f"{NOT_GATED_MARK} = not gated yet, always executed (curriculum: only {gated} gated so far, "
                     f"of blocks 0-{num_blocks - 1})")
    return lines


def _idle_task_names(names: Sequence[str], rows: Any, probs: Any, gated_from: int) -> list[str]:
    """Tasks that execute none of the gated blocks (most likely none, for probabilities only)."""
    if rows is not None:
        return [n for t, n in enumerate(names) if not any(rows[t][gated_from:])]
    return [n for t, n in enumerate(names) if max(probs[t][gated_from:]) < 0.5]


def format_policy_table(policies: Sequence[torch.Tensor] | None, tasks: Sequence[str] | None = None,
                        probabilities: Sequence[Any] | None = None, num_gated: int | None = None) -> str:
    """A task x block grid: `X` = execute, `.` = skip; optionally each block's execute probability.

    The last column counts the blocks that run: `executed 3/4` for a policy, `expected 2.0 of 4` for
    probabilities (labelled when both are shown; the header names it when only one is). `num_gated`
    (the curriculum window, None = every block) shows the blocks not gated yet as `+`: they always run.
    """
    if policies is None and probabilities is None:
        raise ValueError("format_policy_table needs policies, probabilities, or both")
    count = len(policies) if policies is not None else len(probabilities)
    names = _task_names(tasks, count)
    rows = [_as_policy(p, f"policy of {n}")[:, 0].tolist() for p, n in zip(policies, names)] \
        if policies is not None else None
    probs = [_execute_probabilities(p) for p in probabilities] if probabilities is not None else None
    if rows is not None and probs is not None and len(probs) != len(rows):
        raise ValueError(f"{len(probs)} probability rows for {len(rows)} policies")
    num_blocks = len((rows or probs)[0])
    if any(len(r) != num_blocks for r in (rows or []) + (probs or [])):
        raise ValueError("every task must have the same number of blocks")
    gated_from = _gated_from(num_blocks, num_gated)
    both = rows is not None and probs is not None
    cell = 6 if probs is not None else 3  # room for "0.50?"
    label_width = max(len("block"), len(P_LABEL) if both else 0, *(len(n) for n in names)) + 2

    def line(label: str, cells: list[str], tail: str = "") -> str:
        return (label.ljust(label_width) + "".join(c.rjust(cell) for c in cells) + tail).rstrip()

    header_tail = "" if both else ("   executed" if rows is not None else "   expected executions")
    out = [line("block", [str(i) for i in range(num_blocks)], header_tail)]
    for t, name in enumerate(names):
        if rows is not None:
            executed = f"{_executed(rows[t], gated_from)}/{num_blocks}"
            out.append(line(name, _decision_cells(rows[t], gated_from),
                            f"   executed {executed}" if both else f"   {executed}"))
        if probs is not None:
            expected = f"{_expected(probs[t], gated_from):.1f} of {num_blocks}"
            out.append(line(P_LABEL if both else name, _probability_cells(probs[t], gated_from),
                            f"   expected {expected}" if both else f"   {expected}"))
    if rows is not None and len(rows) > 1:
        out.append(line("#tasks", [str(len(rows) if i < gated_from else sum(r[i] for r in rows))
                                   for i in range(num_blocks)]))
    out += _legend(rows, probs, gated_from, num_blocks)
    idle = _idle_task_names(names, rows, probs, gated_from) if gated_from < num_blocks else []
    if idle:
        out.append(idle_task_warning(idle, num_blocks - gated_from, sampled=rows is not None))
    return "\n".join(out)


def idle_tasks(policies: Sequence[torch.Tensor], tasks: Sequence[str] | None = None) -> list[str]:
    """Names of the tasks whose policy executes none of the gated blocks."""
    names = _task_names(tasks, len(policies))
    return [n for p, n in zip(policies, names) if int(_as_policy(p, f"policy of {n}")[:, 0].sum()) == 0]


def idle_task_warning(names: Sequence[str], num_blocks: int, sampled: bool = True) -> str:
    """One line for tasks that skip every gated block (docs/getting_started.md, "A task that executes no block")."""
    verb = "executes" if sampled else "most likely executes (every p < 0.5)"
    blocks = f"the {num_blocks} gated block" if num_blocks == 1 else f"the {num_blocks} gated blocks"
    return (f"warning: {', '.join(names)} {verb} none of {blocks}: only the stem, the "
            f"always-executed modules (ungated blocks, projections) and the task head serve it, so expect a much lower score; learn the policy longer or use "
            f"another seed (docs/getting_started.md: A task that executes no block)")


def policy_source_path(path: str) -> str:
    """The source record beside a policy pickle: same name, `.source.json` (the pickle keeps the original keys)."""
    return os.path.splitext(path)[0] + ".source.json"


def logits_digest(state_dict: Mapping[str, Any]) -> str:
    """sha256 of the policy logits (`task<t>_logits`) of a network state dict, in task order."""
    digest = hashlib.sha256()
    names = sorted((k for k in state_dict if re.fullmatch(r"task\d+_logits", str(k))), key=lambda k: int(k[4:-7]))
    for name in names:
        digest.update(name.encode())
        digest.update(state_dict[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def load_policy_source(path: str) -> dict | None:
    """The source record of a policy pickle, or None (written by another tool or an older version)."""
    try:
        with open(policy_source_path(path), encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def save_policy(path: str, policies: Sequence[torch.Tensor], tasks: Sequence[str] | None = None,
                source: Mapping[str, Any] | None = None) -> None:
    """Write the original policy pickle `{'task<t>_policy': int64 [P, 2]}` and a `.txt` table beside it.

    `source` (checkpoint label, iteration, logits hash) goes to `<name>.source.json`; without it an old
    record is removed, so a record never describes another pickle.
    """
    if len(policies) == 0:
        raise ValueError("save_policy needs at least one task policy")
    names = _task_names(tasks, len(policies))
    content = {_policy_key(t): _as_policy(p, f"policy of {names[t]}") for t, p in enumerate(policies)}
    rows = {tuple(p.shape) for p in content.values()}
    if len(rows) != 1:
        raise ValueError(f"every task policy must have the same shape, got {sorted(rows)}")
    atomic_write_bytes(path, pickle.dumps(content, protocol=pickle.HIGHEST_PROTOCOL))
    table = format_policy_table(list(content.values()), names)
    atomic_write_text(policy_table_path(path), f"{os.path.basename(path)}\n{table}\n")
    if source is not None:
        atomic_write_json(policy_source_path(path), dict(source))
    elif os.path.exists(policy_source_path(path)):
        os.remove(policy_source_path(path))


def _load_storage_from_bytes(data: bytes) -> Any:
    """Safe stand-in for `torch.storage._load_from_bytes`: the bytes are a `torch.save` stream."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only" not in str(err).lower():
            raise
        raise PolicyFileError(f"refused a tensor stream inside the pickle: {refusal_reason(err)}; a policy pickle may "
                              f"only contain a dict of tensors") from None


_BUILTIN_CONTAINERS = {"dict": dict, "list": list, "tuple": tuple, "set": set, "frozenset": frozenset}


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Protocol-2 pickles spell bytes as `_codecs.encode(str, 'latin1')`; allow exactly that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise PolicyFileError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


class _PolicyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled dict of CPU tensors needs; refuses everything else."""

    def __init__(self, file: IO[bytes], source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_storage_from_bytes
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module in ("builtins", "__builtin__") and name in _BUILTIN_CONTAINERS:
            return _BUILTIN_CONTAINERS[name]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise PolicyFileError(f"{self.source}: refused to load global '{module}.{name}'; a policy pickle may only "
                              "contain a dict of tensors (torch._utils._rebuild_tensor_v2, "
                              "torch.storage._load_from_bytes, collections.OrderedDict)")


def load_policy(path: str, hint: str | None = None, num_tasks: int | None = None,
                num_rows: int | None = None) -> list[torch.Tensor]:
    """Read a policy pickle safely: `[task1_policy, ..., taskK_policy]` as int64 CPU `[P, 2]` tensors.

    `num_tasks` / `num_rows` (P), when given, are checked against the file so that a policy of
    another run gives a clear error instead of a shape error deep in the model.
    """
    if not os.path.isfile(path):
        raise PolicyNotFoundError(path, hint=hint, what="policy file")
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation noise from rebuilding the tensors
            content = _PolicyUnpickler(f, path).load()
    except PolicyFileError as err:
        text = str(err)
        raise PolicyFileError(text if text.startswith(path) else f"{path}: {text}") from None
    except Exception as err:
        raise PolicyFileError(f"{path} is truncated or not a policy pickle ({_first_line(err)})") from None
    if not isinstance(content, dict) or not content:
        raise PolicyFileError(f"{path}: expected a dict {{'task1_policy': [P, 2], ...}}, got "
                              f"{type(content).__name__}{' (empty)' if isinstance(content, dict) else ''}")
    expected = [_policy_key(t) for t in range(len(content))]
    if sorted(map(str, content.keys())) != sorted(expected):
        raise PolicyFileError(f"{path}: keys must be consecutive {expected[0]}..{expected[-1]}, "
                              f"found {sorted(map(str, content.keys()))}")
    policies = [_as_policy(content[key], f"{path} [{key}]") for key in expected]
    shapes = sorted({tuple(p.shape) for p in policies})
    if len(shapes) != 1:
        raise PolicyFileError(f"{path}: task policies have different shapes {shapes}")
    if num_tasks is not None and len(policies) != num_tasks:
        raise PolicyFileError(f"{path} holds policies for {len(policies)} task(s) but the config has {num_tasks}")
    if num_rows is not None and policies[0].shape[0] != num_rows:
        raise PolicyFileError(f"{path} has {policies[0].shape[0]} policy rows per task but the network "
                              f"gates {num_rows} blocks (backbone / skip_layer differ)")
    return policies
