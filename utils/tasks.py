"""The task registry: every task name with the kind of loss and metric it uses, its batch key and its head size.

A task's *kind* picks its loss (envs/losses.py) and its metric (evaluation/metrics.py), so a new target of an
existing kind (a permuted segmentation is a segmentation; a blurred image is a dense L1 regression like
Taskonomy's edge map) is one `TaskSpec` line here and no new branch anywhere else:

* ``seg``: per-pixel classification, cross entropy with the dataset's ignore label; mIoU / Pixel Acc / err;
* ``sn``: surface normals, 1 - cosine; angle statistics (cosine similarity on Taskonomy);
* ``depth``: L1 over the dataset's valid depth pixels; abs/rel errors and delta thresholds;
* ``l1``: a dense regression, L1 over the pixels whose target is not 255 (the padding value); err.

The first five tasks are the paper's; the others belong to the known-answer sharing benchmark
(docs/known_answer.md) and are only available with its dataset, `KnownAnswer` (config/schema.DATASET_TASKS).
No torch here: the config checks import this module.
"""
from __future__ import annotations

from dataclasses import dataclass

KINDS = ('seg', 'sn', 'depth', 'l1')


@dataclass(frozen=True)
class TaskSpec:
    """One task: `kind` picks the loss and metric, `gt_key` names its ground truth in a batch, `channels` is
    the head size the loss and metric assume (None: the config's tasks_num_class, e.g. a number of classes)."""
    name: str
    kind: str
    gt_key: str
    channels: int | None
    title: str  # column label of the rendered tables
    meaning: str


TASK_SPECS: dict[str, TaskSpec] = {spec.name: spec for spec in (
    # --- the paper's tasks (their order is the original's)
    TaskSpec('seg', 'seg', 'seg', None, 'Seg', 'semantic segmentation'),
    TaskSpec('sn', 'sn', 'normal', 3, 'SN', 'surface normals'),
    TaskSpec('depth', 'depth', 'depth', 1, 'Depth', 'depth'),
    TaskSpec('keypoint', 'l1', 'keypoint', 1, 'Keypoint', '2D keypoints (Taskonomy)'),
    TaskSpec('edge', 'l1', 'edge', 1, 'Edge', 'occlusion edges (Taskonomy)'),
    # --- the known-answer benchmark's added targets (docs/known_answer.md)
    TaskSpec('seg_perm', 'seg', 'seg_perm', None, 'Seg perm',
             'duplicate: the segmentation under a fixed permutation of the class ids'),
    TaskSpec('texture', 'seg', 'texture', 4, 'Texture',
             'unrelated to seg: the surface pattern (plain, noise, stripes, checker) of each pixel'),
    TaskSpec('blur', 'l1', 'blur', 1, 'Blur', 'low-level: a Gaussian-blurred grey copy of the input image'),
    TaskSpec('noise', 'l1', 'noise', 1, 'Noise', 'unlearnable: uniform noise drawn per image, independent of it'),
)}

TASKS: tuple[str, ...] = tuple(TASK_SPECS)
GT_KEYS: dict[str, str] = {name: spec.gt_key for name, spec in TASK_SPECS.items()}
FIXED_TASK_CHANNELS: dict[str, int] = {name: spec.channels for name, spec in TASK_SPECS.items()
                                       if spec.channels is not None}
TASK_TITLES: dict[str, str] = {name: spec.title for name, spec in TASK_SPECS.items()}


def task_kind(task: str) -> str:
    """The loss/metric kind of `task` (ValueError naming the known tasks for any other name)."""
    if task not in TASK_SPECS:
        raise ValueError(f'unknown task {task!r}; expected one of {list(TASKS)}')
    return TASK_SPECS[task].kind


if any(spec.kind not in KINDS for spec in TASK_SPECS.values()):  # pragma: no cover - guards edits above
    raise RuntimeError('utils/tasks.py: a task of an unknown kind')
