"""Start-up checks: everything that can be known before the first iteration (docs/reliability.md).

Each check raises one error naming the path, split or key and what was expected; nothing is written
before they pass (no opt.txt, no loss.txt lines, no event files).
"""
from __future__ import annotations

import os
import random
import time
from typing import Iterable, Mapping

from torch.utils.data import Dataset

FULL_CHECK_LIMIT = 100_000  # entries; larger split lists are checked on a seeded sample of this size
SAMPLE_SEED = 0


class PreflightError(ValueError):
    """A problem found at start-up, before any training."""


def check_writable(paths: Mapping[str, str], exp_name: str) -> None:
    """Every `<paths.*>/<exp_name>` exists as a writable folder or can be created (nothing is created here)."""
    for key, root in paths.items():
        target = os.path.join(root, exp_name)
        probe = target
        while not os.path.exists(probe):
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        if not os.path.isdir(probe):
            raise PreflightError(f'paths.{key} = {root}: {probe} is a file, expected a folder for {target}')
        if not os.access(probe, os.W_OK | os.X_OK):
            raise PreflightError(f'paths.{key} = {root}: {probe} is not writable, so {target} cannot be written')


def _entry_files(dataset: Dataset) -> tuple[str, list[list[str]]] | None:
    """(dataroot, entries) of a json-indexed split, None for other datasets."""
    inner = getattr(dataset, 'dataset', dataset)
    entries, root = getattr(inner, 'entries', None), getattr(inner, 'dataroot', None)
    return (root, entries) if isinstance(entries, list) and isinstance(root, str) else None


def check_split_files(datasets: Iterable[Dataset], limit: int = FULL_CHECK_LIMIT, seed: int = SAMPLE_SEED) -> str:
    """Every file the splits list exists (a seeded sample of `limit` entries per larger split); returns a summary."""
    seen: set[str] = set()
    notes = []
    start = time.perf_counter()
    for dataset in datasets:
        found = _entry_files(dataset)
        if found is None:
            continue
        root, entries = found
        split = getattr(getattr(dataset, 'dataset', dataset), 'split', '?')
        chosen = entries
        if len(entries) > limit:
            chosen = random.Random(seed).sample(entries, limit)
            notes.append(f"split '{split}': checked a seeded sample of {limit} of {len(entries)} entries")
        for entry in chosen:
            for rel in entry:
                path = os.path.join(root, rel)
                if path in seen:
                    continue
                if not os.path.isfile(path):
                    raise PreflightError(f"split '{split}' lists {rel}, but {path} does not exist")
                seen.add(path)
    return '; '.join(notes + [f'{len(seen)} data files found in {time.perf_counter() - start:.1f} s'])


def check_eval_item(dataset: Dataset, split: str) -> None:
    """Read the first item of an evaluation split: its size must match the evaluation size (and labels be valid)."""
    if len(dataset) == 0:
        raise PreflightError(f"split '{split}' has no items")
    dataset[0]  # raises a one-line error naming the file (eval size, labels, format)


def check_checkpoints(needed: Iterable[tuple[Iterable[str], str]]) -> None:
    """Each entry (paths, hint): at least one of `paths` exists, else the checkpoint error with the hint
    (the same message the run would give later, given before anything is written)."""
    from engine.checkpoint import CheckpointNotFoundError
    for paths, hint in needed:
        paths = list(paths)
        if not any(os.path.isfile(p) for p in paths):
            raise CheckpointNotFoundError(paths, hint=hint)
