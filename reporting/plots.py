"""Figures of a run: the learned policy, task correlation, training curves and prediction panels.

    python tools/plots.py --config YAML [--exp_ids E ...]        # command line: tools/plots.py

Every figure is written as a PNG (atomically: rendered in memory, written to a temp file beside the
target, renamed over it) and, when a tensorboardX `SummaryWriter` is passed, added with `add_figure`.
Figures are plain `matplotlib.figure.Figure` objects drawn with the Agg canvas, never through pyplot,
so importing or using this module needs no display and does not touch the global pyplot state.
"""
from __future__ import annotations

import io
import math
import os
import re
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.checkpoint import atomic_write_bytes, load_checkpoint

# BGR order, as the loaders subtract it (dataloaders.transforms.IMG_MEAN); repeated here so that
# plotting does not import cv2 and the dataset code.
IMG_MEAN_BGR = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float32)
GROUND_TRUTH_KEY = {'seg': 'seg', 'sn': 'normal', 'depth': 'depth'}
DPI = 100

# Validation metrics worth a panel, per task (the columns the AdaShare paper reports first).
HEADLINE_METRICS = {
    'seg': ('mIoU', 'Pixel Acc'),
    'sn': ('Angle Mean', 'Angle 11.25'),
    'depth': ('abs_err', 'sigma_1.25'),
    'keypoint': ('err',),
    'edge': ('err',),
}
HIGHER_IS_BETTER = {'mIoU', 'Pixel Acc', 'Angle 11.25', 'Angle 22.5', 'Angle 30', 'Angle 45', 'cosine_similarity',
                    'sigma_1.25', 'sigma_1.25^2', 'sigma_1.25^3'}
LOWER_IS_BETTER = {'err', 'Angle Mean', 'Angle Median', 'Angle RMSE', 'abs_err', 'rel_err', 'sq_rel_err', 'rms'}
PHASE_COLOURS = {'warmup': '#7f7f7f', 'weights': '#1f77b4', 'policy': '#ff7f0e', 'val': '#2ca02c'}
RUN_COLOURS = ('#9467bd', '#d62728', '#8c564b', '#e377c2', '#bcbd22', '#17becf')  # tab10 minus the above
LOSS_LINE = re.compile(r'^iter\s+(-?\d+)\s+\|\s*(\S+)\s*\|(.*)$')
# Figure titles in words, for a reader of the paper rather than of loss.txt's `seg/total` tags.
TASK_WORDS = {'seg': 'segmentation', 'sn': 'surface normal', 'depth': 'depth', 'keypoint': 'keypoint',
              'edge': 'edge'}
LOSS_WORDS = {
    'total': 'total loss (task losses and regularisers)',
    'sparsity': 'sparsity regulariser',
    'hamming': 'sharing regulariser (Hamming)',
    'orthogonality': 'orthogonality penalty',
}
POLICY_TITLE = 'execute probability per task and block'


# ------------------------------------------------------------------------------------------------- helpers
def _new_figure(width: float, height: float) -> Any:
    """A Figure on an Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig: Any, path: str, writer: Any = None, tag: str | None = None, step: int = 0) -> str:
    """Write `fig` as a PNG at `path` atomically, then to TensorBoard when a writer is given."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=DPI, facecolor='white')
    atomic_write_bytes(path, buffer.getvalue())
    if writer is not None:
        writer.add_figure(tag or os.path.splitext(os.path.basename(path))[0], fig, step)
    return path


def _to_numpy(value: Any, what: str) -> np.ndarray:
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except Exception as err:  # a ragged list or an object numpy cannot hold
        raise ValueError(f"{what}: expected a tensor or array, got {type(value).__name__} ({err})") from None


def _execute_vectors(probabilities: Sequence[Any]) -> list[np.ndarray]:
    """Per task the execute probability per block as float64 `[P]` (accepts `[P]` or softmax rows `[P, 2]`)."""
    if isinstance(probabilities, (torch.Tensor, np.ndarray)) and np.ndim(probabilities) == 2 \
            and np.shape(probabilities)[1] != 2:
        probabilities = list(probabilities)  # a [K, P] matrix: one row per task
    if len(probabilities) == 0:
        raise ValueError("probabilities: expected one vector per task, got none")
    vectors = []
    for t, probs in enumerate(probabilities):
        array = _to_numpy(probs, f"probabilities[{t}]").astype(np.float64)
        if array.ndim == 2 and array.shape[1] == 2:
            array = array[:, 0]  # softmax rows: column 0 = execute
        if array.ndim != 1 or array.size == 0:
            raise ValueError(f"probabilities[{t}]: expected shape [P] (execute) or [P, 2] (softmax rows), "
                             f"got {list(array.shape)}")
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise ValueError(f"probabilities[{t}]: values must be probabilities in [0, 1], got range "
                             f"[{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]")
        vectors.append(array)
    sizes = sorted({v.size for v in vectors})
    if len(sizes) != 1:
        raise ValueError(f"probabilities: every task needs the same number of blocks, got sizes {sizes}")
    return vectors


def _check_tasks(tasks: Sequence[str], count: int, what: str) -> list[str]:
    tasks = list(tasks)
    if len(tasks) != count:
        raise ValueError(f"{len(tasks)} task names {tasks} for {count} {what}")
    return tasks


def _execute_decisions(policies: Sequence[Any], count: int, num_blocks: int) -> np.ndarray:
    """`[K, P]` 0/1 execute decisions from per-task `[P, 2]` policies (column 0 = execute) or `[P]` 0/1."""
    if len(policies) != count:
        raise ValueError(f"policies: {len(policies)} task policies for {count} tasks")
    rows = []
    for t, policy in enumerate(policies):
        array = _to_numpy(policy, f"policies[{t}]")
        if array.ndim == 2 and array.shape[1] == 2:
            array = array[:, 0]
        if array.ndim != 1 or array.size != num_blocks:
            raise ValueError(f"policies[{t}]: expected shape [{num_blocks}, 2] (column 0 = execute), "
                             f"got {list(np.shape(policy))}")
        if not np.isin(array, (0, 1)).all():
            raise ValueError(f"policies[{t}]: decisions must be 0 or 1, got values {sorted(set(array.tolist()))[:6]}")
        rows.append(array.astype(np.int64))
    return np.stack(rows)


# ------------------------------------------------------------------------------------------------- policy
def plot_policy(probabilities: Sequence[Any], tasks: Sequence[str], path: str,
                policies: Sequence[Any] | None = None, title: str | None = None,
                writer: Any = None, step: int = 0, tag: str = 'figures/policy') -> str:
    """The learned policy as in the AdaShare paper's Figure 3: execute probabilities per task and block
    (annotated heatmap) and, with `policies`, the sampled select (filled) / skip (empty) decisions."""
    from matplotlib.patches import Rectangle

    vectors = _execute_vectors(probabilities)
    tasks = _check_tasks(tasks, len(vectors), "probability vectors")
    probs = np.stack(vectors)
    num_tasks, num_blocks = probs.shape
    decisions = _execute_decisions(policies, num_tasks, num_blocks) if policies is not None else None

    width = max(6.0, 1.6 + 0.62 * num_blocks)
    panel_height = 0.5 * num_tasks + 0.9
    height = panel_height * (2 if decisions is not None else 1) + (0.4 if title else 0.0)
    fig = _new_figure(width, height)
    axes = fig.subplots(2 if decisions is not None else 1, 1, squeeze=False)[:, 0]
    blocks = np.arange(num_blocks)
    annotate = num_blocks <= 40  # beyond that the numbers no longer fit in the cells

    ax = axes[0]
    image = ax.imshow(probs, cmap='YlGnBu', vmin=0.0, vmax=1.0, aspect='auto', interpolation='nearest')
    if annotate:
        for t in range(num_tasks):
            for b in range(num_blocks):
                value = probs[t, b]
                ax.text(b, t, f'{value:.2f}', ha='center', va='center', fontsize=8,
                        color='white' if value > 0.6 else 'black')
    ax.set_yticks(range(num_tasks), tasks)
    ax.set_xticks(blocks, [str(b) for b in blocks], fontsize=8)
    ax.set_xlabel('gated residual block')
    ax.set_title(POLICY_TITLE, fontsize=10)
    ax.tick_params(length=0)
    # The colourbar sits in an inset beside the heatmap, so that the decision panel below keeps the same
    # width and its blocks line up with the heatmap's cells.
    colorbar = fig.colorbar(image, cax=ax.inset_axes([1.01, 0.0, 0.012, 1.0]))
    colorbar.ax.tick_params(labelsize=7)

    if decisions is not None:
        import matplotlib
        palette = matplotlib.colormaps['tab10'].colors
        ax = axes[1]
        for t in range(num_tasks):
            for b in range(num_blocks):
                selected = bool(decisions[t, b])
                ax.add_patch(Rectangle((b - 0.4, t - 0.4), 0.8, 0.8, linewidth=1.0,
                                       facecolor=palette[t % len(palette)] if selected else 'white',
                                       edgecolor='#404040' if selected else '#b0b0b0'))
            ax.text(num_blocks - 0.3, t, f'{int(decisions[t].sum())}/{num_blocks}', va='center', fontsize=8)
        ax.set_xlim(-0.6, num_blocks + 0.6)
        ax.set_ylim(num_tasks - 0.5, -0.5)
        ax.set_yticks(range(num_tasks), tasks)
        ax.set_xticks(blocks, [str(b) for b in blocks], fontsize=8)
        ax.set_xlabel('gated residual block')
        ax.set_title('sampled policy: filled = select (execute), empty = skip', fontsize=10)
        ax.tick_params(length=0)
        for side in ('top', 'right', 'left', 'bottom'):
            ax.spines[side].set_visible(False)
    if title:
        fig.suptitle(title)
    return _save_figure(fig, path, writer, tag, step)


# ------------------------------------------------------------------------------------------------- correlation
def task_correlation(probabilities: Sequence[Any]) -> np.ndarray:
    """`[K, K]` cosine similarity of the tasks' execute-probability vectors."""
    probs = np.stack(_execute_vectors(probabilities))
    norms = np.linalg.norm(probs, axis=1)
    if np.any(norms == 0):
        raise ValueError(f"probabilities: task(s) {np.flatnonzero(norms == 0).tolist()} execute no block with "
                         "non-zero probability; their cosine similarity is undefined")
    unit = probs / norms[:, None]
    matrix = np.clip(unit @ unit.T, -1.0, 1.0)
    np.fill_diagonal(matrix, 1.0)  # exactly, not 1 - 1e-16
    return matrix


def plot_task_correlation(probabilities: Sequence[Any], tasks: Sequence[str], path: str,
                          writer: Any = None, step: int = 0, tag: str = 'figures/task_correlation') -> np.ndarray:
    """Annotated heatmap of `task_correlation`; returns the matrix."""
    matrix = task_correlation(probabilities)
    _save_figure(correlation_figure(matrix, tasks), path, writer, tag, step)
    return matrix


def correlation_figure(matrix: np.ndarray, tasks: Sequence[str]) -> Any:
    """The heatmap of a task-correlation matrix on a fixed, labelled 0..1 scale, each value printed in its cell."""
    tasks = _check_tasks(tasks, len(matrix), "probability vectors")
    size = max(3.8, 1.6 + 0.9 * len(tasks))
    fig = _new_figure(size + 0.8, size)
    ax = fig.subplots()
    # A fixed 0..1 scale (execute probabilities are non-negative, so similarities lie in [0, 1]): near-identical
    # tasks look alike, and the printed values carry the exact numbers.
    image = ax.imshow(matrix, cmap='viridis', vmin=0.0, vmax=1.0, interpolation='nearest')
    for i in range(len(tasks)):
        for j in range(len(tasks)):
            ax.text(j, i, f'{matrix[i, j]:.3f}', ha='center', va='center', fontsize=10,
                    color='black' if matrix[i, j] > 0.5 else 'white')
    ax.set_xticks(range(len(tasks)), tasks)
    ax.set_yticks(range(len(tasks)), tasks)
    ax.tick_params(length=0)
    ax.set_title('task correlation\n(cosine similarity of execute probabilities)', fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label('cosine similarity (0 = no shared blocks, 1 = same blocks)', fontsize=8)
    return fig


# ------------------------------------------------------------------------------------------------- loss.txt
def _is_metric_kind(kind: str) -> bool:
    """`val`, `retrain000_val`, `test`: validation lines (RunLogger.log_metrics); the rest are losses."""
    return kind in ('val', 'test') or kind.endswith('_val') or kind.endswith('_test')


def parse_loss_txt(path: str) -> dict[str, Any]:
    """Parse a RunLogger `loss.txt` into series per phase.

    Returns `{'losses': {phase: series}, 'metrics': {split: series}, 'skipped_lines': [line numbers]}`,
    where a series is `{'iter': [int], 'values': {tag: [float]}}` in file order, every value list as
    long as `iter` (NaN where a line lacks that tag). Phases are `warmup`, `weights`, `policy`,
    `retrain000`, ...; splits are `val`, `retrain000_val`, .... Unknown tags and phases are kept.
    Lines that do not look like `iter N | kind | tag value  tag value ...` are listed in `skipped_lines`.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"loss log {path} does not exist (RunLogger writes <log_dir>/<exp_name>/loss.txt)")
    result: dict[str, Any] = {'losses': {}, 'metrics': {}, 'skipped_lines': []}
    with open(path, encoding='utf-8', errors='replace') as f:
        for number, line in enumerate(f, start=1):
            if not line.strip() or line.startswith('#'):  # blank, or a RunLogger.note (run start, resume)
                continue
            match = LOSS_LINE.match(line.rstrip('\n'))
            if match is None:
                result['skipped_lines'].append(number)
                continue
            iteration, kind, items = int(match.group(1)), match.group(2), match.group(3)
            scalars = {}
            # Items are separated by two spaces; a tag may itself contain single spaces ("seg/Pixel Acc").
            for item in re.split(r'\s{2,}', items.strip()):
                tag, _, value = item.rpartition(' ')
                try:
                    scalars[tag.strip()] = float(value)
                except ValueError:
                    continue
            if not scalars or '' in scalars:
                result['skipped_lines'].append(number)
                continue
            group = result['metrics' if _is_metric_kind(kind) else 'losses']
            series = group.setdefault(kind, {'iter': [], 'values': {}})
            count = len(series['iter'])
            series['iter'].append(iteration)
            for tag, value in scalars.items():
                series['values'].setdefault(tag, [math.nan] * count).append(value)
            for values in series['values'].values():
                if len(values) == count:  # a tag this line lacks
                    values.append(math.nan)
    return result


def _curve(series: Mapping[str, Any], tag: str) -> tuple[np.ndarray, np.ndarray]:
    """(iterations, values) sorted by iteration, last value kept for a repeated iteration (a resumed run)."""
    latest: dict[int, float] = {}
    for iteration, value in zip(series['iter'], series['values'].get(tag, [])):
        if not math.isnan(value):
            latest[iteration] = value
    iterations = np.array(sorted(latest), dtype=np.int64)
    return iterations, np.array([latest[i] for i in iterations], dtype=np.float64)


def _loss_tags(losses: Mapping[str, Any]) -> list[str]:
    """One panel per `<group>/total`; tags of a group without a total get their own panels."""
    tags: list[str] = []
    for series in losses.values():
        for tag in series['values']:
            if tag not in tags:
                tags.append(tag)
    groups_with_total = {t.split('/')[0] for t in tags if t.endswith('/total')}
    chosen = [t for t in tags if t.endswith('/total') or t.split('/')[0] not in groups_with_total]
    return sorted(chosen, key=lambda t: (t.startswith(('total/', 'sparsity/', 'hamming/')), tags.index(t)))


def _metric_tags(metrics: Mapping[str, Any]) -> list[str]:
    """Headline validation metrics per task (HEADLINE_METRICS), or each unknown group's first metric."""
    tags: list[str] = []
    for series in metrics.values():
        for tag in series['values']:
            if tag not in tags:
                tags.append(tag)
    chosen: list[str] = []
    for group in dict.fromkeys(t.split('/')[0] for t in tags):
        present = [t for t in tags if t.split('/')[0] == group]
        wanted = [f'{group}/{name}' for name in HEADLINE_METRICS.get(group, ())]
        chosen += [t for t in wanted if t in present] or present[:1]
    return chosen


def _run_of(phase: str) -> str:
    """The run a phase or validation split belongs to: `retrain000_val` -> `retrain000`, `val` -> `policy`."""
    for suffix in ('_val', '_test'):
        if phase.endswith(suffix):
            return phase[:-len(suffix)]
    return phase


def _phase_colour(phase: str, runs: Sequence[str]) -> str:
    """Fixed colours for the policy-learning phases; each other run (retrainNNN) its own, shared by its val line."""
    if phase in PHASE_COLOURS:
        return PHASE_COLOURS[phase]
    others = [r for r in dict.fromkeys(runs) if r not in PHASE_COLOURS]
    run = _run_of(phase)
    return RUN_COLOURS[others.index(run) % len(RUN_COLOURS)] if run in others else RUN_COLOURS[0]


def loss_title(tag: str) -> str:
    """A loss.txt tag in words: `seg/total` -> `segmentation loss`, `sparsity/task2` -> `sparsity regulariser,
    task 2`; an unknown tag stays as it is."""
    group, _, part = tag.partition('/')
    if group in TASK_WORDS and part == 'total':
        return f'{TASK_WORDS[group]} loss'
    if group not in LOSS_WORDS:
        return tag
    task = re.fullmatch(r'task(\d+)', part)
    if task:
        return f'{LOSS_WORDS[group]}, task {task.group(1)}'
    return LOSS_WORDS[group] if part in ('total', '') else f'{LOSS_WORDS[group]}, {part}'


def _metric_title(tag: str) -> str:
    """`seg/mIoU` -> `segmentation mIoU (validation, higher is better)`."""
    group, _, name = tag.partition('/')
    task = TASK_WORDS.get(group, group)
    arrow = ', higher is better' if name in HIGHER_IS_BETTER else ', lower is better' if name in LOWER_IS_BETTER else ''
    return f'{task} {name} (validation{arrow})' if name else f'{tag} (validation)'


def _maybe_log_scale(ax: Any, values: list[np.ndarray]) -> None:
    data = np.concatenate([v for v in values if v.size]) if any(v.size for v in values) else np.empty(0)
    if data.size and data.min() > 0 and data.max() / data.min() > 100:
        ax.set_yscale('log')


def plot_training_curves(loss_txt_path: str, path: str, writer: Any = None, step: int = 0,
                         tag: str = 'figures/training_curves') -> dict[str, Any]:
    """Task losses and total per phase against iteration (top rows) and headline validation metrics
    (bottom rows, when the log has any). Returns `parse_loss_txt(loss_txt_path)`."""
    from matplotlib.lines import Line2D

    data = parse_loss_txt(loss_txt_path)
    losses, metrics = data['losses'], data['metrics']
    loss_tags, metric_tags = _loss_tags(losses), _metric_tags(metrics)
    if not loss_tags and not metric_tags:
        raise ValueError(f"{loss_txt_path}: no log lines of the form 'iter N | phase | tag value  ...' "
                         f"({len(data['skipped_lines'])} unreadable line(s))")
    ncols = min(6, max(len(loss_tags), len(metric_tags), 1))
    loss_rows, metric_rows = math.ceil(len(loss_tags) / ncols), math.ceil(len(metric_tags) / ncols)
    fig = _new_figure(3.3 * ncols, 2.7 * (loss_rows + metric_rows) + 0.6)
    grid = fig.subplots(loss_rows + metric_rows, ncols, squeeze=False)
    for ax in grid.flat:
        ax.set_visible(False)

    # Phases of one policy-learning run share one timeline: a grey line through all its points, with
    # markers coloured by phase. Each retrain run (its own iteration count) is its own coloured line.
    loss_phases = list(losses)
    runs = [_run_of(p) for p in list(losses) + list(metrics)]
    joint = [p for p in loss_phases if not p.startswith('retrain')]
    legend: dict[str, Any] = {}
    for i, tag_name in enumerate(loss_tags):
        ax = grid[i // ncols, i % ncols]
        ax.set_visible(True)
        plotted = []
        if joint:
            merged = [(it, v) for p in joint for it, v in zip(*_curve(losses[p], tag_name))]
            merged.sort()
            if merged:
                ax.plot([m[0] for m in merged], [m[1] for m in merged], color='#c0c0c0', linewidth=1.0, zorder=1)
        for phase in loss_phases:
            iterations, values = _curve(losses[phase], tag_name)
            if not iterations.size:
                continue
            plotted.append(values)
            colour = _phase_colour(phase, runs)
            if phase in joint:
                handle = ax.scatter(iterations, values, s=14, color=colour, zorder=2, label=phase)
            else:
                (handle,) = ax.plot(iterations, values, '-o', markersize=3, linewidth=1.2, color=colour,
                                    label=phase)
            legend.setdefault(phase, handle)
        _maybe_log_scale(ax, plotted)
        ax.set_title(loss_title(tag_name), fontsize=10)
        ax.set_xlabel('iteration', fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)

    for i, tag_name in enumerate(metric_tags):
        ax = grid[loss_rows + i // ncols, i % ncols]
        ax.set_visible(True)
        for split in metrics:
            iterations, values = _curve(metrics[split], tag_name)
            if not iterations.size:
                continue
            (handle,) = ax.plot(iterations, values, '-o' if split == 'val' else '--s', markersize=3,
                                linewidth=1.2, color=_phase_colour(split, runs), label=split)
            legend.setdefault(split, handle)
        ax.set_title(_metric_title(tag_name), fontsize=10)
        ax.set_xlabel('iteration', fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)

    if legend:
        handles = [Line2D([], [], color=h.get_facecolor()[0], marker='o', linestyle='', markersize=5)
                   if hasattr(h, 'get_offsets') else
                   Line2D([], [], color=h.get_color(), marker=h.get_marker(), linestyle=h.get_linestyle(),
                          markersize=4) for h in legend.values()]
        fig.legend(handles, list(legend), loc='outside upper center', ncols=min(len(legend), 8), fontsize=9,
                   frameon=False)
    _save_figure(fig, path, writer, tag, step)
    return data


# ------------------------------------------------------------------------------------------------- predictions
def segmentation_palette() -> np.ndarray:
    """Fixed `[40, 3]` uint8 colours (tab20 + tab20b); none is black, which marks ignored pixels."""
    import matplotlib
    colours = list(matplotlib.colormaps['tab20'].colors) + list(matplotlib.colormaps['tab20b'].colors)
    return np.round(np.array(colours) * 255).astype(np.uint8)


def _colour_labels(labels: np.ndarray, palette: np.ndarray, num_classes: int | None) -> np.ndarray:
    """`[H, W]` class ids -> `[H, W, 3]` RGB; ids outside [0, num_classes) (ignore: 255, -1) are black."""
    labels = labels.astype(np.int64)
    limit = num_classes if num_classes is not None else 255
    valid = (labels >= 0) & (labels < limit)
    rgb = np.zeros(labels.shape + (3,), dtype=np.uint8)
    rgb[valid] = palette[labels[valid] % len(palette)]
    return rgb


def _image_rgb(img: np.ndarray) -> np.ndarray:
    """Loader image (BGR minus IMG_MEAN, `[3, H, W]`) -> displayable RGB `[H, W, 3]` in [0, 1]."""
    bgr = img.astype(np.float32) + IMG_MEAN_BGR[:, None, None]
    return np.clip(bgr[::-1].transpose(1, 2, 0) / 255.0, 0.0, 1.0)


def _upsample(prediction: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`[C, h, w]` -> `[C, H, W]` bilinear (a no-op at the image size)."""
    prediction = prediction.detach().float().cpu()
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    return F.interpolate(prediction[None], size=size, mode='bilinear', align_corners=False)[0]


def _normals_rgb(gt: np.ndarray | None, prediction: torch.Tensor, size: tuple[int, int],
                 decoded: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """Ground-truth and predicted surface normals as RGB images in [0, 1] (invalid GT pixels black)."""
    pred = F.normalize(_upsample(prediction, size), dim=0).numpy()
    if decoded:
        # (x, y, z) unit vectors: the usual NYU colour coding R = x, G = y, B = z as (n + 1) / 2.
        pred_rgb = (pred.transpose(1, 2, 0) + 1.0) / 2.0
    else:
        # Raw mode: the net is trained (cosine loss) to point along the uint8 (B, G, R) colour vector,
        # so its direction is a colour; scale the largest channel to 1 and reverse to RGB.
        peak = np.maximum(pred.max(axis=0, keepdims=True), 1e-6)
        pred_rgb = np.clip(pred / peak, 0.0, 1.0)[::-1].transpose(1, 2, 0)
    gt_rgb = None
    if gt is not None:
        gt = gt.astype(np.float32)
        if decoded:
            invalid = (np.linalg.norm(gt, axis=0) <= 0.5) | (gt >= 255).any(axis=0)
            gt_rgb = np.clip((gt.transpose(1, 2, 0) + 1.0) / 2.0, 0.0, 1.0)
        else:
            invalid = (gt >= 255).all(axis=0)
            gt_rgb = (gt[::-1] / 255.0).transpose(1, 2, 0)
        gt_rgb[invalid] = 0.0
    return gt_rgb, np.ascontiguousarray(pred_rgb)


def _sample(value: Any, index: int, batched: bool, what: str) -> np.ndarray:
    array = _to_numpy(value, what)
    if batched:
        if index >= array.shape[0]:
            raise ValueError(f"{what}: index {index} out of range for a batch of {array.shape[0]}")
        array = array[index]
    return array


def plot_prediction_panel(batch: Mapping[str, Any], outputs: Sequence[torch.Tensor], tasks: Sequence[str],
                          path: str, index: int | Sequence[int] = 0, decode_normals: bool = False,
                          writer: Any = None, step: int = 0, tag: str = 'figures/predictions') -> str:
    """Image, ground truth and prediction for seg / sn / depth; one row per sample of `index`.

    `batch` is a loader batch (`img` `[B, 3, H, W]` or one sample `[3, H, W]`); `outputs[t]` is task t's
    network output (`[B, C, h, w]`, upsampled to the image size). `decode_normals`: the normal ground
    truth holds decoded (x, y, z) unit vectors rather than raw uint8 (B, G, R) PNG values. Other tasks
    are skipped with a note under the figure.
    """
    import matplotlib

    tasks = list(tasks)
    if len(outputs) != len(tasks):
        raise ValueError(f"{len(outputs)} outputs for {len(tasks)} tasks {tasks}")
    if 'img' not in batch:
        raise ValueError(f"batch: missing key 'img' (found {sorted(batch)})")
    img = _to_numpy(batch['img'], "batch['img']")
    if img.ndim not in (3, 4) or img.shape[-3] != 3:
        raise ValueError(f"batch['img']: expected [B, 3, H, W] or [3, H, W], got {list(img.shape)}")
    batched = img.ndim == 4
    indices = [index] if isinstance(index, int) else list(index)
    if not indices:
        raise ValueError("index: give at least one sample index")
    size = tuple(img.shape[-2:])
    shown = [(t, name) for t, name in enumerate(tasks) if name in GROUND_TRUTH_KEY]
    skipped = [name for name in tasks if name not in GROUND_TRUTH_KEY]
    palette = segmentation_palette()

    columns = 1 + 2 * len(shown)
    panel_w = 2.6
    panel_h = panel_w * size[0] / size[1] + 0.35
    fig = _new_figure(panel_w * columns + 0.6, panel_h * len(indices) + (0.35 if skipped else 0.0) + 0.1)
    grid = fig.subplots(len(indices), columns, squeeze=False)
    depth_cmap = matplotlib.colormaps['viridis'].with_extremes(bad='black')
    names = batch.get('name')

    for row, i in enumerate(indices):
        if i < 0:
            raise ValueError(f"index: sample indices must be >= 0, got {i}")
        axes = grid[row]
        axes[0].imshow(_image_rgb(_sample(batch['img'], i, batched, "batch['img']")))
        label = names[i] if isinstance(names, (list, tuple)) and i < len(names) else \
            names if isinstance(names, str) and not batched else f'sample {i}'
        axes[0].set_title(f'image ({label})' if row == 0 else str(label), fontsize=9)
        for k, (t, name) in enumerate(shown):
            gt_ax, pred_ax = axes[1 + 2 * k], axes[2 + 2 * k]
            key = GROUND_TRUTH_KEY[name]
            gt = _sample(batch[key], i, batched, f"batch['{key}']") if key in batch else None
            output = outputs[t]
            if not torch.is_tensor(output):
                output = torch.as_tensor(np.asarray(output))
            if batched:
                prediction = output[i]
            else:  # one sample: accept [C, h, w] or a batch of one
                prediction = output[0] if output.dim() == 4 else output
            if name == 'seg':
                num_classes = prediction.shape[0] if prediction.dim() == 3 else None
                labels = _upsample(prediction, size).argmax(0).numpy() if prediction.dim() == 3 else \
                    prediction.detach().cpu().numpy()
                pred_ax.imshow(_colour_labels(labels, palette, None))
                if gt is not None:
                    gt_ax.imshow(_colour_labels(gt.reshape(size), palette, num_classes))
            elif name == 'sn':
                gt_rgb, pred_rgb = _normals_rgb(gt, prediction, size, decode_normals)
                pred_ax.imshow(pred_rgb)
                if gt_rgb is not None:
                    gt_ax.imshow(gt_rgb)
            else:  # depth
                pred_depth = _upsample(prediction.reshape(1, *prediction.shape[-2:]), size)[0].numpy()
                gt_depth = None
                if gt is not None:
                    gt_depth = gt.reshape(size).astype(np.float64)
                    invalid = ~np.isfinite(gt_depth) | (gt_depth <= 0) | (gt_depth == 255)
                    if 'depth_mask' in batch:
                        invalid |= _sample(batch['depth_mask'], i, batched, "batch['depth_mask']").reshape(size) == 0
                    gt_depth = np.ma.masked_array(gt_depth, invalid)
                reference = gt_depth.compressed() if gt_depth is not None and gt_depth.count() else pred_depth.ravel()
                low, high = np.percentile(reference, [1, 99]) if reference.size else (0.0, 1.0)
                high = high if high > low else low + 1e-3
                image = pred_ax.imshow(pred_depth, cmap=depth_cmap, vmin=low, vmax=high)
                if gt_depth is not None:
                    gt_ax.imshow(gt_depth, cmap=depth_cmap, vmin=low, vmax=high)
                colorbar = fig.colorbar(image, ax=pred_ax, fraction=0.046, pad=0.02)
                colorbar.ax.tick_params(labelsize=7)
            if gt is None:  # a blank image keeps the panel the size of the others
                gt_ax.imshow(np.full(size + (3,), 0.94))
                gt_ax.text(0.5, 0.5, 'no ground truth', ha='center', va='center', transform=gt_ax.transAxes,
                           fontsize=9, color='#606060')
            if row == 0:
                gt_ax.set_title(f'{name} ground truth', fontsize=9)
                pred_ax.set_title(f'{name} prediction', fontsize=9)
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
    if skipped:
        fig.text(0.5, 0.0, f"not shown (no preview for these tasks): {', '.join(skipped)}; "
                 "black = ignored / invalid ground truth", ha='center', va='bottom', fontsize=9)
    return _save_figure(fig, path, writer, tag, step)


# ------------------------------------------------------------------------------------------------- one run
def checkpoint_execute_probabilities(checkpoint: Mapping[str, Any], tasks: Sequence[str],
                                     source: str = 'checkpoint') -> list[np.ndarray]:
    """softmax(task{t}_logits)[:, 0] per task from a loaded checkpoint dict."""
    network = checkpoint['mtl-net']
    found = sorted(k for k in network if re.fullmatch(r'task\d+_logits', k))
    if len(found) != len(tasks):
        raise ValueError(f"{source}: has policy logits {found or 'none'} but {len(tasks)} task(s) {list(tasks)} "
                         "were named (a policy-learning checkpoint holds task1_logits..taskK_logits)")
    return [F.softmax(network[f'task{t + 1}_logits'].float(), dim=-1)[:, 0].numpy() for t in range(len(tasks))]


def write_run_figures(checkpoint_path: str, tasks: Sequence[str], out_dir: str, writer: Any = None,
                      policies: Sequence[Any] | Mapping[str, Sequence[Any]] | None = None,
                      loss_txt: str | None = None) -> list[str]:
    """policy.png, task_correlation.png (and training_curves.png) for a policy-learning checkpoint.

    `policies`: one sampled architecture (per-task `[P, 2]`), drawn in policy.png under the
    probabilities; or `{label: architecture}`, each drawn in its own `policy_<label>.png`.
    TensorBoard figures are logged at the checkpoint's iteration. Returns the written paths.
    """
    checkpoint = load_checkpoint(checkpoint_path)
    tasks = list(tasks)
    probabilities = checkpoint_execute_probabilities(checkpoint, tasks, checkpoint_path)
    step = int(checkpoint.get('iter', 0))
    name = os.path.basename(checkpoint_path)
    os.makedirs(out_dir, exist_ok=True)
    single = policies if policies is not None and not isinstance(policies, Mapping) else None
    paths = [plot_policy(probabilities, tasks, os.path.join(out_dir, 'policy.png'), policies=single,
                         title=f'{name} (iter {step})', writer=writer, step=step)]
    if isinstance(policies, Mapping):
        for label, architecture in policies.items():
            safe = re.sub(r'[^A-Za-z0-9_.-]+', '_', str(label))
            paths.append(plot_policy(probabilities, tasks, os.path.join(out_dir, f'policy_{safe}.png'),
                                     policies=architecture, title=f'{name} (iter {step}), policy {label}',
                                     writer=writer, step=step, tag=f'figures/policy_{safe}'))
    correlation_path = os.path.join(out_dir, 'task_correlation.png')
    plot_task_correlation(probabilities, tasks, correlation_path, writer=writer, step=step)
    paths.append(correlation_path)
    if loss_txt is not None:
        curves_path = os.path.join(out_dir, 'training_curves.png')
        plot_training_curves(loss_txt, curves_path, writer=writer, step=step)
        paths.append(curves_path)
    return paths


def checkpoint_tasks(checkpoint_path: str, checkpoint: Mapping[str, Any] | None = None) -> list[str]:
    """Task names of a policy-learning checkpoint: from the run record beside it (run_complete.json or the
    resume state's config), else task1..taskK from its logits."""
    import json
    folder = os.path.dirname(os.path.abspath(checkpoint_path))
    record = os.path.join(folder, 'run_complete.json')
    try:
        with open(record, encoding='utf-8') as handle:
            tasks = ((json.load(handle).get('config') or {}).get('tasks'))
        if tasks:
            return list(tasks)
    except (OSError, ValueError):
        pass
    resume = os.path.join(folder, 'resume_state.pth.tar')
    if os.path.isfile(resume):
        try:
            tasks = (torch.load(resume, map_location='cpu', weights_only=True, mmap=True).get('config') or {}).get('tasks')
            if tasks:
                return list(tasks)
        except Exception:  # noqa: BLE001 - fall back to generic names
            pass
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(checkpoint_path)
    count = len([k for k in checkpoint['mtl-net'] if re.fullmatch(r'task\d+_logits', k)])
    return [f'task{t + 1}' for t in range(count)]


def run_figure_inputs(opt: Mapping[str, Any], label: str | None = None) -> dict[str, Any]:
    """Where a config's run keeps what its figures need: checkpoint, tasks, loss.txt (None if absent), out folder."""
    paths, name = opt['paths'], opt['exp_name']
    label = label or str(opt['train']['policy_iter'])
    loss_txt = os.path.join(paths['log_dir'], name, 'loss.txt')
    return {'checkpoint': os.path.join(paths['checkpoint_dir'], name, f'{label}_model.pth.tar'),
            'tasks': list(opt['tasks']), 'loss_txt': loss_txt if os.path.isfile(loss_txt) else None,
            'out': os.path.join(paths['result_dir'], name, 'figures')}
