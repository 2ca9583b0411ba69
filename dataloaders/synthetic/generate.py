"""generate_dataset(): render every split of a synthetic dataset into one of the on-disk layouts."""
from __future__ import annotations

import os
import time

import numpy as np
from tqdm import tqdm

from .classes import TASKONOMY_CLASSES
from .known_answer import dataset_info, known_answer_arrays, noise_rng
from .layouts import WRITERS, KnownAnswerWriter, TaskonomyWriter, semseg_prior_factor
from .samples import make_sample

# known_answer: the NYU v2 layout's scenes plus the sharing benchmark's targets (docs/known_answer.md).
LAYOUTS = ("nyu_v2", "cityscapes", "taskonomy", "nyu_v2_samples", "known_answer")
DEFAULT_SIZES = {"nyu_v2": (480, 640), "nyu_v2_samples": (480, 640), "cityscapes": (256, 512), "taskonomy": (256, 256),
                 "known_answer": (480, 640)}
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
_PARTITION_CODE = 3  # seeds the train1/train2 partition
MIN_SIZE = 16


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one item: any item is reproducible on its own from (seed, split, index)."""
    return np.random.default_rng([seed, SPLIT_CODES[split], index])


def item_arrays(layout: str, seed: int, split: str, index: int, height: int, width: int) -> dict[str, np.ndarray]:
    """The arrays of one item of `layout` (a known_answer item also draws its noise from its own stream)."""
    if layout == "known_answer":
        return known_answer_arrays(item_rng(seed, split, index), noise_rng(seed, SPLIT_CODES[split], index),
                                   height, width)
    return make_sample(layout, item_rng(seed, split, index), height, width).arrays


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def split_index(entries: dict[str, list], seed: int) -> dict[str, list]:
    """train, train1/train2 (a deterministic 80/20 partition of train), val, test, test_small (a prefix of test)."""
    train = entries["train"]
    order = np.random.default_rng([seed, _PARTITION_CODE]).permutation(len(train))
    n1 = min(max(int(round(0.8 * len(train))), 1), len(train) - 1)
    test = entries["test"]
    return {
        "train": train,
        "train1": [train[i] for i in sorted(order[:n1])],
        "train2": [train[i] for i in sorted(order[n1:])],
        "val": entries["val"],
        "test": test,
        "test_small": test[:max(1, len(test) // 2)],
    }


def generate_dataset(layout: str, out_dir: str, num_train: int = 40, num_test: int = 10, height: int | None = None,
                     width: int | None = None, seed: int = 0, progress: bool = True,
                     num_val: int | None = None) -> dict:
    """Write a complete synthetic dataset in `layout` under `out_dir` and return statistics (incl. images/s).

    Splits: `train`, `val` (default max(1, num_test // 2) items) and `test` are rendered from disjoint seeds; the
    index json also lists train1/train2 (80/20 of train) and test_small (the first half of test). The
    `nyu_v2_samples` layout writes only `num_test` test items (ids 0000, 0001...) and no json: the same pixels as
    the `nyu_v2` test items of the same seed. NYU v2 and Taskonomy draw the same rooms for the same seed (with
    different intrinsics). The `known_answer` layout writes the `nyu_v2` items of the same seed plus the sharing
    benchmark's targets (known_answer.py). Files already in `out_dir` are overwritten when they have the same
    name, others are left.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    default_h, default_w = DEFAULT_SIZES[layout]
    height = _check_int("height", default_h if height is None else height, MIN_SIZE)
    width = _check_int("width", default_w if width is None else width, MIN_SIZE)
    seed = _check_int("seed", seed, 0)
    num_test = _check_int("num_test", num_test, 1)
    samples_only = layout == "nyu_v2_samples"
    if samples_only:
        plan = [("test", num_test)]
    else:
        num_train = _check_int("num_train", num_train, 2)  # train1 and train2 must both be non-empty
        num_val = _check_int("num_val", max(1, num_test // 2) if num_val is None else num_val, 0)
        plan = [("train", num_train), ("val", num_val), ("test", num_test)]

    os.makedirs(out_dir, exist_ok=True)
    writer = WRITERS[layout](out_dir, small_files=samples_only)  # the samples folder is committed: small files
    entries: dict[str, list[list[str]]] = {split: [] for split, _ in plan}
    seg_counts = np.zeros(len(TASKONOMY_CLASSES), dtype=np.int64)
    total = sum(count for _, count in plan)
    start = time.perf_counter()
    with tqdm(total=total, desc=f"synthetic {layout} {height}x{width}", unit="img", disable=not progress) as bar:
        for split, count in plan:
            for index in range(count):
                arrays = item_arrays(layout, seed, split, index, height, width)
                entries[split].append(writer.write(split, index, arrays))
                if layout == "taskonomy" and split == "train":
                    labelled = arrays["seg"][arrays["seg"] > 0].astype(np.int64) - 1
                    seg_counts += np.bincount(labelled, minlength=len(TASKONOMY_CLASSES))
                bar.update(1)
    if not samples_only:
        writer.write_index(split_index(entries, seed))
    if isinstance(writer, TaskonomyWriter):
        writer.write_prior(semseg_prior_factor(seg_counts))
    if isinstance(writer, KnownAnswerWriter):
        writer.write_info(dataset_info())
    seconds = time.perf_counter() - start
    return {
        "layout": layout, "out_dir": out_dir, "height": height, "width": width, "seed": seed,
        "splits": {split: len(items) for split, items in entries.items()}, "num_images": total,
        "seconds": seconds, "images_per_second": total / seconds if seconds > 0 else float("inf"),
    }
