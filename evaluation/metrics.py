"""Evaluation metrics of AdaShare (docs/original.md §6, §8): streaming accumulators, reference tables, score, and the
paper's metric set per dataset and task (`paper_metrics`: the metrics of Δ_t and the tables' columns).

This is the only evaluation code of the project: validation in train_policy.py / re-train.py and
test.py all go through `MultiTaskMetrics`. The default `MetricProtocol()` reproduces the original
release number for number (docs/original.md §12.2 items 11, 13-16); `MetricProtocol.standard()` switches every
quirk to the usual definition.

Per-batch work stays on the device of the predictions. The only host transfer per batch is the
valid surface-normal angles, which the median needs; everything else is kept as device running sums
and read back once in `compute()`.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.tasks import GT_KEYS, TASK_SPECS, TASKS, task_kind  # noqa: F401 - GT_KEYS, TASKS re-exported

# KnownAnswer: the synthetic sharing benchmark (docs/known_answer.md); NYU v2 rules for seg, sn and depth.
DATASETS = ("NYU_v2", "CityScapes", "Taskonomy", "KnownAnswer")
ANGLE_THRESHOLDS = (11.25, 22.5, 30.0, 45.0)
# Minimum depth of a valid NYU/CityScapes pixel (the original's `> 3e-5`).
DEPTH_MIN = 3e-5
# Value of padded / invalid pixels in Taskonomy labels and raw NYU normals.
PAD_VALUE = 255


def check_dataset(dataset: str) -> str:
    """Return `dataset` if it is one of DATASETS, else raise a ValueError naming it."""
    if dataset not in DATASETS:
        raise ValueError(f"dataload.dataset: unknown dataset {dataset!r}; expected one of {list(DATASETS)}")
    return dataset


def seg_ignore_index(dataset: str) -> int:
    """Ignore label of the segmentation ground truth (also the CE ignore_index)."""
    return -1 if check_dataset(dataset) == "CityScapes" else 255


@dataclass(frozen=True)
class MetricProtocol:
    """Which evaluation quirks of the original are switched to the standard definition (docs/original.md §0.3)."""

    miou_all_classes: bool = False  # mIoU over classes present in GT or prediction (IoU 0 when TP = 0)
    pixel_pooled: bool = False  # per-pixel pooling instead of batch-size-weighted per-batch means
    bilinear_resize: bool = False  # bilinear (align_corners=False) instead of nearest upsampling
    decode_normals: bool = False  # normals are unit vectors; a pixel is valid iff its norm > 0.5
    sigma_positive_only: bool = False  # a depth prediction <= 0 is outside every delta threshold

    @classmethod
    def original(cls) -> "MetricProtocol":
        return cls()

    @classmethod
    def standard(cls) -> "MetricProtocol":
        return cls(miou_all_classes=True, pixel_pooled=True, bilinear_resize=True, decode_normals=True,
                   sigma_positive_only=True)

    @classmethod
    def from_config(cls, opt: Mapping[str, Any]) -> "MetricProtocol":
        """Read the switches of the same names from the config section `quirks:` (missing = original)."""
        quirks = opt.get("quirks") or {}
        if not isinstance(quirks, Mapping):
            raise ValueError(f"config key 'quirks': expected a mapping, got {type(quirks).__name__} {quirks!r}")
        values = {}
        for field in fields(cls):
            value = quirks.get(field.name, False)
            if not isinstance(value, bool):
                raise ValueError(f"config key 'quirks.{field.name}': expected true/false, got {value!r}")
            values[field.name] = value
        return cls(**values)


def upsample(pred: torch.Tensor, size: Sequence[int], protocol: MetricProtocol) -> torch.Tensor:
    """Resize a [B,C,h,w] prediction to `size` (nearest as the original, or bilinear)."""
    size = tuple(int(s) for s in size)
    if tuple(pred.shape[-2:]) == size:
        return pred
    if protocol.bilinear_resize:
        return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(pred, size=size)  # default mode: legacy nearest, as the original


def _nearest_source_index(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """Source index of every output position under F.interpolate's default nearest mode (read from the kernel)."""
    source = torch.arange(in_size, dtype=torch.float32, device=device).view(1, 1, in_size)
    return F.interpolate(source, size=out_size).view(-1).long()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[B,H,W] cosine of [B,3,H,W] vectors in the original's order of operations: per-pixel rows
    [B·H·W, 3], both F.normalize'd, then F.cosine_similarity (eps 1e-8). The rows layout gives the
    original's bits (docs/parity.md); NCHW reductions round differently and move the median angle by ~1e-6.
    """
    rows_a = a.permute(0, 2, 3, 1).reshape(-1, a.shape[1])
    rows_b = b.permute(0, 2, 3, 1).reshape(-1, b.shape[1])
    cos = F.cosine_similarity(F.normalize(rows_a, dim=1), F.normalize(rows_b, dim=1), dim=1, eps=1e-8)
    return cos.reshape(a.shape[0], *a.shape[2:])


def _as_nchw(gt: torch.Tensor, name: str) -> torch.Tensor:
    """View a [B,H,W] or [B,C,H,W] ground truth as [B,C,H,W]."""
    if gt.dim() == 3:
        return gt.unsqueeze(1)
    if gt.dim() != 4:
        raise ValueError(f"ground truth {name!r}: expected shape [B,H,W] or [B,C,H,W], got {tuple(gt.shape)}")
    return gt


def _single_channel_inputs(metric: str, gt_name: str, pred: torch.Tensor, gt: torch.Tensor, batch_size: int | None,
                           protocol: MetricProtocol) -> tuple[torch.Tensor, torch.Tensor, int]:
    """First step of the depth and keypoint/edge metrics: gt as [B,1,H,W] on pred's device, pred checked
    and upsampled to it, and the batch size (default: the batch's)."""
    gt = _as_nchw(gt, gt_name)
    if pred.dim() != 4 or pred.shape[0] != gt.shape[0]:
        raise ValueError(f"{metric}: expected pred [{gt.shape[0]},1,h,w], got {tuple(pred.shape)}")
    batch_size = gt.shape[0] if batch_size is None else int(batch_size)
    pred = upsample(pred.float(), gt.shape[-2:], protocol)
    return pred, gt.to(pred.device, non_blocking=True), batch_size


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator != 0 else float("nan")


class _BatchMean:
    """One quantity aggregated over batches: Σ value_b·bs_b / Σ bs_b (original) or Σ num / Σ den (pooled).

    `value_b = num_b / den_b` is the per-batch pixel-pooled value. Sums live on the device as tensors.
    """

    def __init__(self, pixel_pooled: bool):
        self.pixel_pooled = pixel_pooled
        self.reset()

    def reset(self) -> None:
        self.weighted_sum: torch.Tensor | float = 0.0  # Σ value_b·bs_b
        self.batch_total: torch.Tensor | int = 0  # Σ bs_b
        self.numerator: torch.Tensor | float = 0.0
        self.denominator: torch.Tensor | float = 0.0

    def update(self, numerator: torch.Tensor, denominator: torch.Tensor, batch_size: int | torch.Tensor,
               skip_empty: bool = False) -> None:
        """`batch_size` may be a device tensor (a weight without a host sync). `skip_empty`: a batch without a
        valid pixel (denominator 0, weight 0) adds nothing instead of NaN."""
        numerator = numerator.double()
        denominator = denominator.double()
        value = numerator / denominator
        if skip_empty:
            value = torch.where(denominator > 0, value, torch.zeros_like(value))
        # Otherwise 0/0 gives NaN for an empty batch, as in the original (torch division, no guard).
        self.weighted_sum = self.weighted_sum + value * batch_size
        self.batch_total = self.batch_total + batch_size
        self.numerator = self.numerator + numerator
        self.denominator = self.denominator + denominator

    def compute(self) -> float:
        if self.pixel_pooled:
            return _ratio(float(self.numerator), float(self.denominator))
        return _ratio(float(self.weighted_sum), float(self.batch_total))


class SegMetric:
    """Semantic segmentation: mIoU, Pixel Acc and err (the dataset's cross entropy)."""

    def __init__(self, num_classes: int, ignore_index: int, class_weights: Any = None,
                 protocol: MetricProtocol = MetricProtocol()):
        if int(num_classes) < 1:
            raise ValueError(f"SegMetric: num_classes must be >= 1, got {num_classes!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_weights = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        if self.class_weights is not None and self.class_weights.shape != (self.num_classes,):
            raise ValueError(f"SegMetric: class_weights must have {self.num_classes} entries, "
                             f"got shape {tuple(self.class_weights.shape)}")
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        self.pixel_acc = _BatchMean(self.protocol.pixel_pooled)
        self.err = _BatchMean(self.protocol.pixel_pooled)
        self.confusion: torch.Tensor | None = None  # [C*C + 1] counts; the last bin collects dropped pairs
        self.num_batches = 0

    @torch.no_grad()
    def update(self, logits: torch.Tensor, gt: torch.Tensor, batch_size: int | None = None) -> None:
        """Add one batch: `logits` [B,C,h,w] (any h,w: upsampled to gt), `gt` [B,1,H,W] or [B,H,W] labels."""
        gt = _as_nchw(gt, "seg")
        batch, _, height, width = gt.shape
        if logits.dim() != 4 or logits.shape[0] != batch or logits.shape[1] != self.num_classes:
            raise ValueError(f"SegMetric: expected logits [{batch},{self.num_classes},h,w], got {tuple(logits.shape)}")
        batch_size = batch if batch_size is None else int(batch_size)
        logits = logits.float()
        if self.protocol.bilinear_resize:
            logits = upsample(logits, (height, width), self.protocol)
        # Nearest upsampling copies whole pixels, so argmax and log-softmax at the network resolution,
        # read back through the kernel's source indices, equal the original's full-resolution results
        # without materialising [B, C, H, W] logits (C = 40 at 480x640 would dominate evaluation time).
        rows = _nearest_source_index(logits.shape[2], height, logits.device)
        cols = _nearest_source_index(logits.shape[3], width, logits.device)
        labels = gt.to(logits.device, non_blocking=True).reshape(batch, height, width).long()
        classes = self.num_classes
        if self.protocol.pixel_pooled:
            valid = (labels >= 0) & (labels < classes) & (labels != self.ignore_index)
        else:
            # Keeps CityScapes' -1: counted as errors in Pixel Acc (docs/original.md §12.2 item 15).
            valid = labels < classes
        pred = logits.argmax(dim=1).index_select(1, rows).index_select(2, cols)

        correct = ((pred == labels) & valid).sum()
        self.pixel_acc.update(correct, valid.sum(), batch_size)

        # Cross entropy on the valid pixels with the dataset's ignore_index and class weights:
        # Σ w_y·nll / Σ w_y over pixels that are valid and not ignored (nn.CrossEntropyLoss 'mean').
        counted = valid & (labels != self.ignore_index)
        target = labels.clamp(0, classes - 1)
        log_probs = F.log_softmax(logits, dim=1)
        sample = torch.arange(batch, device=logits.device).view(batch, 1, 1)
        flat_index = ((sample * classes + target) * logits.shape[2] + rows.view(1, -1, 1)) * logits.shape[3] \
            + cols.view(1, 1, -1)
        nll = -torch.take(log_probs, flat_index)
        if self.class_weights is None:
            weight = torch.ones((), device=logits.device)
        else:
            self.class_weights = self.class_weights.to(logits.device)  # copied once, then a no-op
            weight = self.class_weights[target]
        zero = torch.zeros((), device=logits.device)
        numerator = torch.where(counted, weight * nll, zero).sum(dtype=torch.float64)
        denominator = torch.where(counted, weight.expand_as(nll), zero).sum(dtype=torch.float64)
        self.err.update(numerator, denominator, batch_size)

        # Confusion matrix rows = GT, cols = prediction; pairs outside [0, C) are dropped (as sklearn's
        # confusion_matrix with labels=arange(C)). scatter_add_ is torch.bincount without its host sync.
        in_range = (labels >= 0) & (labels < classes) & (pred >= 0) & (pred < classes)
        index = torch.where(in_range, labels * classes + pred, torch.full_like(labels, classes * classes))
        if self.confusion is None:
            self.confusion = torch.zeros(classes * classes + 1, dtype=torch.int64, device=logits.device)
        self.confusion.scatter_add_(0, index.reshape(-1), torch.ones_like(index.reshape(-1)))
        self.num_batches += 1

    def confusion_matrix(self) -> np.ndarray:
        """The accumulated [C, C] confusion matrix (rows GT, columns prediction)."""
        classes = self.num_classes
        if self.confusion is None:
            return np.zeros((classes, classes), dtype=np.int64)
        return self.confusion[:-1].reshape(classes, classes).cpu().numpy()

    def miou(self) -> float:
        cm = self.confusion_matrix().astype(np.float64)
        true_positive = np.diag(cm)
        union = cm.sum(axis=0) + cm.sum(axis=1) - true_positive
        if self.protocol.miou_all_classes:
            used = union > 0  # every class present in GT or prediction; IoU 0 when it has no TP
        else:
            used = true_positive != 0  # the original drops classes without a true positive (§12.2 item 13)
        if not used.any():
            # The original returns NaN here (np.sum([]) / 0), which makes the score NaN so that no
            # `best` checkpoint is ever saved. No class is right: the mIoU is 0.
            return 0.0
        return float(np.mean(true_positive[used] / union[used]))

    def compute(self) -> dict[str, float]:
        _require_updates(self.num_batches, "SegMetric")
        return {"mIoU": self.miou(), "Pixel Acc": self.pixel_acc.compute(), "err": self.err.compute()}


class NormalMetric:
    """Surface normals: angle statistics in degrees, pixel-pooled over everything evaluated."""

    def __init__(self, protocol: MetricProtocol = MetricProtocol(), extras: bool = False, cosine: bool = False):
        self.protocol = protocol
        self.extras = extras
        # cosine_similarity is an extra, except where it is the paper's sn metric (Taskonomy, Table 4).
        self.cosine = cosine or extras
        self.reset()

    def reset(self) -> None:
        self.angles: list[torch.Tensor] = []  # float32 CPU angles of valid pixels, for the median
        self.count: torch.Tensor | int = 0
        self.angle_sum: torch.Tensor | float = 0.0
        self.angle_sq_sum: torch.Tensor | float = 0.0
        self.cos_sum: torch.Tensor | float = 0.0
        self.within: list[torch.Tensor | int] = [0] * len(ANGLE_THRESHOLDS)
        self.num_batches = 0

    def valid_mask(self, gt: torch.Tensor) -> torch.Tensor:
        """[B,H,W] validity of normal pixels: not the 255 padding, and with decoded normals norm > 0.5."""
        valid = gt.amax(dim=1) != PAD_VALUE
        if self.protocol.decode_normals:
            # Decoded NYU normals mark invalid pixels as (0,0,0); Taskonomy keeps its 255 padding.
            valid = valid & (gt.float().norm(dim=1) > 0.5)
        return valid

    @torch.no_grad()
    def update(self, pred: torch.Tensor, gt: torch.Tensor) -> None:
        """Add one batch: `pred` [B,3,h,w] (upsampled to gt), `gt` [B,3,H,W] (raw uint8 or decoded float)."""
        if pred.dim() != 4 or gt.dim() != 4 or pred.shape[:2] != gt.shape[:2]:
            raise ValueError(f"NormalMetric: expected pred [B,3,h,w] and gt [B,3,H,W], got "
                             f"{tuple(pred.shape)} and {tuple(gt.shape)}")
        pred = upsample(pred.float(), gt.shape[-2:], self.protocol)
        gt = gt.to(pred.device, non_blocking=True)
        valid = self.valid_mask(gt)
        # Faithful mode normalises the raw uint8 colour vectors (docs/original.md §12.2 item 11).
        cos = _cosine(gt.float(), pred).clamp(-1.0, 1.0)
        angle = torch.rad2deg(torch.arccos(cos))
        zero = torch.zeros((), dtype=angle.dtype, device=angle.device)
        valid_angle = torch.where(valid, angle, zero)
        self.count = self.count + valid.sum()
        self.angle_sum = self.angle_sum + valid_angle.sum(dtype=torch.float64)
        self.angle_sq_sum = self.angle_sq_sum + valid_angle.double().square().sum()
        self.cos_sum = self.cos_sum + torch.where(valid, cos, zero).sum(dtype=torch.float64)
        for i, threshold in enumerate(ANGLE_THRESHOLDS):
            self.within[i] = self.within[i] + ((angle <= threshold) & valid).sum()
        self.angles.append(angle[valid].cpu())  # the one host transfer per batch (needed by the median)
        self.num_batches += 1

    def compute(self) -> dict[str, float]:
        _require_updates(self.num_batches, "NormalMetric")
        count = int(self.count)
        angles = torch.cat(self.angles).numpy()
        result = {
            "Angle Mean": _ratio(float(self.angle_sum), count),
            "Angle Median": float(np.median(angles)) if count else float("nan"),
        }
        for threshold, within in zip(ANGLE_THRESHOLDS, self.within):
            result[f"Angle {threshold:g}"] = 100.0 * _ratio(float(within), count)
        if self.cosine:
            result["cosine_similarity"] = _ratio(float(self.cos_sum), count)
        if self.extras:
            result["Angle RMSE"] = math.sqrt(_ratio(float(self.angle_sq_sum), count))
        return result


# Items whose depth ground truth had no valid pixel, already named in a warning (once per process, as the
# loaders' warnings about non-finite files).
_WARNED_EMPTY_DEPTH: set[str] = set()


def _item_names(names: Any, count: int) -> list[str] | None:
    """The batch's item names (`batch['name']`: a list of file names, or one name unbatched), or None."""
    if isinstance(names, str):
        names = [names]
    if isinstance(names, (list, tuple)) and len(names) == count:
        return [str(n) for n in names]
    return None


def _warn_empty_depth(names: Sequence[str]) -> None:
    fresh = [n for n in names if n not in _WARNED_EMPTY_DEPTH]
    for name in fresh:
        _WARNED_EMPTY_DEPTH.add(name)
        print(f"warning: the depth ground truth of item {name} has no valid pixel (NaN/inf or no depth): the item "
              f"is left out of the depth metrics", file=sys.stderr, flush=True)


class DepthMetric:
    """Depth: abs/rel errors (per batch or pooled) and sigma thresholds (pixel-pooled).

    A non-finite ground-truth pixel is invalid. An image without any valid pixel (e.g. a depth file of
    NaNs, which the loaders turn into zeros) is left out: it adds no weight to the per-batch means, so
    one such image does not make abs_err/rel_err NaN for the whole split (the original's 0/0). Images
    with valid pixels are evaluated exactly as before.
    """

    def __init__(self, dataset: str, protocol: MetricProtocol = MetricProtocol(), extras: bool = False):
        self.dataset = check_dataset(dataset)
        self.protocol = protocol
        self.extras = extras
        self.reset()

    def reset(self) -> None:
        self.abs_err = _BatchMean(self.protocol.pixel_pooled)
        self.rel_err = _BatchMean(self.protocol.pixel_pooled)
        self.sq_rel_err = _BatchMean(self.protocol.pixel_pooled)
        self.count: torch.Tensor | int = 0
        self.sq_err_sum: torch.Tensor | float = 0.0
        self.within: list[torch.Tensor | int] = [0, 0, 0]
        self.num_batches = 0
        # (names, [B] bool "no valid pixel") per batch with names: resolved in compute(), so that
        # update() stays free of host syncs.
        self.empty_items: list[tuple[list[str], torch.Tensor]] = []

    def valid_mask(self, gt: torch.Tensor, depth_mask: torch.Tensor | None) -> torch.Tensor:
        finite = torch.isfinite(gt).all(dim=1, keepdim=True)  # NaN fails `> DEPTH_MIN`, but inf passes it
        if self.dataset == "Taskonomy":
            if depth_mask is None:
                raise ValueError("DepthMetric: Taskonomy needs the batch key 'depth_mask'")
            depth_mask = _as_nchw(depth_mask, "depth_mask").to(gt.device, non_blocking=True)
            return (gt != PAD_VALUE) & (depth_mask == 1) & finite
        return (gt.sum(dim=1, keepdim=True) > DEPTH_MIN) & finite

    def _batch_weight(self, valid: torch.Tensor, batch_size: int, names: Any) -> torch.Tensor:
        """The batch's weight in the per-batch means: its images that have a valid pixel (all of them,
        normally: then exactly batch_size, as the original)."""
        empty = ~valid.flatten(1).any(dim=1)
        kept = valid.shape[0] - empty.sum()
        listed = _item_names(names, valid.shape[0])
        if listed is not None:
            self.empty_items.append((listed, empty.detach()))
        return kept.double() * batch_size / valid.shape[0]

    @torch.no_grad()
    def update(self, pred: torch.Tensor, gt: torch.Tensor, depth_mask: torch.Tensor | None = None,
               batch_size: int | None = None, names: Sequence[str] | str | None = None) -> None:
        """Add one batch: `pred` [B,1,h,w] (upsampled to gt), `gt` [B,1,H,W] (+ Taskonomy `depth_mask`).

        `names` (the batch's item file names) let compute() warn once naming each item without a valid pixel.
        """
        pred, gt, batch_size = _single_channel_inputs("DepthMetric", "depth", pred, gt, batch_size, self.protocol)
        valid = self.valid_mask(gt, depth_mask)
        count = valid.sum()
        weight = self._batch_weight(valid, batch_size, names)
        f64 = torch.float64
        zero = torch.zeros((), dtype=f64, device=pred.device)
        diff = pred - gt
        abs_diff = diff.abs()
        self.abs_err.update(torch.where(valid, abs_diff, zero).sum(dtype=f64), count, weight, skip_empty=True)
        self.rel_err.update(torch.where(valid, abs_diff / gt, zero).sum(dtype=f64), count, weight, skip_empty=True)
        self.sq_rel_err.update(torch.where(valid, diff.square() / gt, zero).sum(dtype=f64), count, weight,
                               skip_empty=True)
        # max(p/g, g/p) exactly as the original: a negative prediction gives a negative ratio, which passes
        # every threshold (quirk). sigma_positive_only puts a prediction <= 0 outside them (Eigen et al.).
        ratio = torch.maximum(pred / gt, gt / pred)
        if self.protocol.sigma_positive_only:
            ratio = torch.where(pred > 0, ratio, torch.full_like(ratio, math.inf))
        for k in range(3):
            self.within[k] = self.within[k] + ((ratio <= 1.25 ** (k + 1)) & valid).sum()
        self.sq_err_sum = self.sq_err_sum + torch.where(valid, diff.square(), zero).sum(dtype=f64)
        self.count = self.count + count
        self.num_batches += 1

    def skipped_items(self) -> list[str]:
        """Names of the items left out because their ground truth has no valid pixel (named batches only)."""
        return [name for names, empty in self.empty_items for name, skip in zip(names, empty.tolist()) if skip]

    def compute(self) -> dict[str, float]:
        _require_updates(self.num_batches, "DepthMetric")
        _warn_empty_depth(self.skipped_items())
        count = int(self.count)
        result = {"abs_err": self.abs_err.compute(), "rel_err": self.rel_err.compute()}
        for k, name in enumerate(("sigma_1.25", "sigma_1.25^2", "sigma_1.25^3")):
            result[name] = 100.0 * _ratio(float(self.within[k]), count)
        if self.extras:
            result["sq_rel_err"] = self.sq_rel_err.compute()
            result["rms"] = math.sqrt(_ratio(float(self.sq_err_sum), count))
        return result


class L1Metric:
    """Keypoint / edge: mean |p - g| over pixels with g != 255."""

    def __init__(self, protocol: MetricProtocol = MetricProtocol()):
        self.protocol = protocol
        self.reset()

    def reset(self) -> None:
        self.err = _BatchMean(self.protocol.pixel_pooled)
        self.num_batches = 0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, gt: torch.Tensor, batch_size: int | None = None) -> None:
        pred, gt, batch_size = _single_channel_inputs("L1Metric", "keypoint/edge", pred, gt, batch_size,
                                                      self.protocol)
        valid = gt != PAD_VALUE
        zero = torch.zeros((), dtype=torch.float64, device=pred.device)
        abs_diff = torch.where(valid, (pred - gt).abs(), zero)
        self.err.update(abs_diff.sum(dtype=torch.float64), valid.sum(), batch_size)
        self.num_batches += 1

    def compute(self) -> dict[str, float]:
        _require_updates(self.num_batches, "L1Metric")
        return {"err": self.err.compute()}


def _require_updates(num_batches: int, name: str) -> None:
    if num_batches == 0:
        raise RuntimeError(f"{name}.compute() called before any update(): no batch was evaluated")


class MultiTaskMetrics:
    """All task metrics of one evaluation run; `update(outputs, batch)` per batch, `compute()` at the end."""

    def __init__(self, tasks: Sequence[str], tasks_num_class: Sequence[int], dataset: str,
                 protocol: MetricProtocol = MetricProtocol(), extras: bool = False, seg_class_weights: Any = None):
        self.tasks = list(tasks)
        self.dataset = check_dataset(dataset)
        if len(self.tasks) != len(tasks_num_class):
            raise ValueError(f"tasks {self.tasks} and tasks_num_class {list(tasks_num_class)} differ in length")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks: unknown task(s) {unknown}; expected a subset of {list(TASKS)}")
        self.protocol = protocol
        self.extras = extras
        self.metrics: dict[str, Any] = {}
        # One metric per task kind (utils/tasks.py); Taskonomy's class weights belong to its own `seg` only.
        self.kinds = {task: task_kind(task) for task in self.tasks}
        for task, num_class in zip(self.tasks, tasks_num_class):
            kind = self.kinds[task]
            if kind == "seg":
                weights = seg_class_weights if task == "seg" else None
                self.metrics[task] = SegMetric(num_class, seg_ignore_index(dataset), weights, protocol)
            elif kind == "sn":
                self.metrics[task] = NormalMetric(protocol, extras, cosine=dataset == "Taskonomy")
            elif kind == "depth":
                self.metrics[task] = DepthMetric(dataset, protocol, extras)
            else:
                self.metrics[task] = L1Metric(protocol)

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    def update(self, outputs: Sequence[torch.Tensor], batch: Mapping[str, Any]) -> None:
        """Add one batch: `outputs[i]` is the prediction of tasks[i] at network resolution."""
        if len(outputs) != len(self.tasks):
            raise ValueError(f"MultiTaskMetrics.update: got {len(outputs)} outputs for tasks {self.tasks}")
        for task, pred in zip(self.tasks, outputs):
            key = GT_KEYS[task]
            if key not in batch:
                raise ValueError(f"MultiTaskMetrics.update: the batch lacks the ground-truth key {key!r} "
                                 f"of task {task!r} (keys: {sorted(batch)})")
            gt = batch[key]
            batch_size = len(batch["img"]) if "img" in batch else gt.shape[0]
            metric = self.metrics[task]
            if self.kinds[task] == "sn":
                metric.update(pred, gt)
            elif self.kinds[task] == "depth":
                metric.update(pred, gt, batch.get("depth_mask"), batch_size=batch_size, names=batch.get("name"))
            else:
                metric.update(pred, gt, batch_size=batch_size)

    def compute(self) -> dict[str, dict[str, float]]:
        return {task: self.metrics[task].compute() for task in self.tasks}


# Reference metrics of the score (docs/original.md §6): fractions for mIoU / Pixel Acc, degrees and %
# for sn, % for sigmas.
_NYU_2TASK = {
    "seg": {"mIoU": 0.413, "Pixel Acc": 0.691},
    "sn": {"Angle Mean": 15.0, "Angle Median": 11.5, "Angle 11.25": 49.2, "Angle 22.5": 76.7, "Angle 30": 86.8},
}
_NYU_3TASK = {
    "seg": {"mIoU": 0.275, "Pixel Acc": 0.589},
    "sn": {"Angle Mean": 17.5, "Angle Median": 14.2, "Angle 11.25": 34.9, "Angle 22.5": 73.3, "Angle 30": 85.7},
    "depth": {"abs_err": 0.62, "rel_err": 0.25, "sigma_1.25": 57.9, "sigma_1.25^2": 85.8, "sigma_1.25^3": 95.7},
}
_CITYSCAPES_SEG = {  # (num classes, small_res) -> seg reference
    (7, True): {"mIoU": 0.519, "Pixel Acc": 0.722},
    (7, False): {"mIoU": 0.644, "Pixel Acc": 0.778},
    (19, False): {"mIoU": 0.402, "Pixel Acc": 0.747},
}
_CITYSCAPES_DEPTH = {"abs_err": 0.017, "rel_err": 0.33, "sigma_1.25": 70.3, "sigma_1.25^2": 86.3, "sigma_1.25^3": 93.3}
_TASKONOMY = {
    "seg": {"err": 0.517},
    "sn": {"cosine_similarity": 0.716},
    "depth": {"abs_err": 0.021},
    "keypoint": {"err": 0.197},
    "edge": {"err": 0.212},
}
# KnownAnswer has no published numbers: the validation score only needs a scale per metric, so seg, sn and
# depth take NYU v2's 3-task references (the same scenes and label formats), seg_perm seg's (its duplicate),
# texture a 4-class scale, blur and noise the L1 of a constant prediction (noise: E|U - 0| = 0.5 for U uniform
# on [-1, 1]; blur: about the spread of a grey image in [-1, 1]).
_KNOWN_ANSWER = {
    **_NYU_3TASK,
    "seg_perm": dict(_NYU_3TASK["seg"]),
    "texture": {"mIoU": 0.5, "Pixel Acc": 0.7},
    "blur": {"err": 0.2},
    "noise": {"err": 0.5},
}


def reference_metrics(dataset: str, tasks: Sequence[str], num_seg_classes: int | None = None,
                      small_res: bool = False) -> dict[str, dict[str, float]]:
    """The score's reference table for this setup, restricted to `tasks`."""
    check_dataset(dataset)
    tasks = list(tasks)
    if dataset == "NYU_v2":
        if len(tasks) == 2:
            table = _NYU_2TASK
        elif len(tasks) == 3:
            table = _NYU_3TASK
        else:
            raise ValueError(f"reference metrics: NYU_v2 has tables for 2 or 3 tasks, got {len(tasks)} tasks {tasks}")
    elif dataset == "CityScapes":
        table = {"depth": _CITYSCAPES_DEPTH}
        if "seg" in tasks:
            key = (None if num_seg_classes is None else int(num_seg_classes), bool(small_res))
            if key not in _CITYSCAPES_SEG:
                raise ValueError(f"reference metrics: no CityScapes table for {num_seg_classes} seg classes with "
                                 f"small_res={bool(small_res)}; expected one of (7, small_res true), "
                                 f"(7, small_res false), (19, small_res false)")
            table = {"seg": _CITYSCAPES_SEG[key], "depth": _CITYSCAPES_DEPTH}
    elif dataset == "KnownAnswer":
        table = _KNOWN_ANSWER
    else:
        table = _TASKONOMY
    return {task: dict(table[task]) for task in tasks if task in table}


def lower_is_better(task: str, metric: str) -> bool:
    """Direction of any metric key of a result: angle errors, non-sigma depth metrics and every `err`
    (by the task's kind, utils/tasks.py; a name outside the registry is its own kind)."""
    kind = TASK_SPECS[task].kind if task in TASK_SPECS else task
    return ((kind == "sn" and metric in ("Angle Mean", "Angle Median", "Angle RMSE"))
            or (kind == "depth" and not metric.startswith("sigma"))
            or metric == "err")


# The metrics of the paper's tables (Tables 1-6, 8), per dataset and task, in the tables' column order.
# They alone enter Δ_t, and they are the columns of the rendered tables.
_SEG = ("mIoU", "Pixel Acc")
_SN = ("Angle Mean", "Angle Median", "Angle 11.25", "Angle 22.5", "Angle 30")
_DEPTH = ("abs_err", "rel_err", "sigma_1.25", "sigma_1.25^2", "sigma_1.25^3")
PAPER_METRICS: dict[str, dict[str, tuple[str, ...]]] = {
    "NYU_v2": {"seg": _SEG, "sn": _SN, "depth": _DEPTH},  # Tables 1, 3, 6, 8
    "CityScapes": {"seg": _SEG, "depth": _DEPTH},  # Tables 2, 5
    # Table 4: each task's test loss, except sn: cosine similarity (higher is better).
    "Taskonomy": {"seg": ("err",), "sn": ("cosine_similarity",), "depth": ("abs_err",), "keypoint": ("err",),
                  "edge": ("err",)},
    # Not a paper table: the known-answer benchmark's columns, NYU v2's per kind (docs/known_answer.md).
    "KnownAnswer": {"seg": _SEG, "sn": _SN, "depth": _DEPTH, "seg_perm": _SEG, "texture": _SEG, "blur": ("err",),
                    "noise": ("err",)},
}


def paper_metrics(dataset: str, task: str) -> list[tuple[str, bool]]:
    """The paper's metrics of `task` on `dataset` as (result key, lower_is_better), in the table's order."""
    table = PAPER_METRICS[check_dataset(dataset)]
    if task not in table:
        raise ValueError(f"paper metrics: the paper reports no task {task!r} on {dataset}; "
                         f"expected one of {list(table)}")
    return [(name, lower_is_better(task, name)) for name in table[task]]


def score(val_metrics: Mapping[str, Mapping[str, float]], refer_metrics: Mapping[str, Mapping[str, float]]) -> float:
    """Σ over tasks of the mean ratio to the reference (ref/val when lower is better, else val/ref)."""
    total = 0.0
    for task, reference in refer_metrics.items():
        if task not in val_metrics:
            continue
        common = [name for name in val_metrics[task] if name in reference]
        for name in common:
            value, ref = float(val_metrics[task][name]), float(reference[name])
            if lower_is_better(task, name):
                # numpy semantics of the original: x/0 -> inf (or nan for 0/0) instead of an exception.
                ratio = ref / value if value != 0 else (math.copysign(math.inf, ref) if ref != 0 else math.nan)
            else:
                ratio = value / ref
            total += ratio / len(common)
    return total


def seg_classes(opt: dict) -> int | None:
    """C, the number of segmentation classes, or None without a seg task."""
    if 'seg' not in opt['tasks']:
        return None
    return int(opt['tasks_num_class'][opt['tasks'].index('seg')])


def reference_for(opt: dict) -> dict:
    """The reference metrics the validation score is computed against (docs/original.md §6)."""
    return reference_metrics(opt['dataload']['dataset'], opt['tasks'], seg_classes(opt),
                             bool(opt['dataload'].get('small_res', False)))
