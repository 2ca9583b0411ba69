"""Task losses and policy regularisers of AdaShare as pure functions.

Task losses run at the prediction resolution (1/8); the ground truth is downsampled with legacy
nearest interpolation. By default every loss is computed in the original's order of operations
(channels-last flattening, boolean selection of the valid rows), so that the same batch gives the
same bits as the original release (docs/parity.md). `masked=True` (config `speed.masked_losses`)
computes the same quantities as masked sums over counts instead: no boolean indexing, hence no host
synchronisation on GPUs, but the float rounding differs, so it is not bit-equal to the original.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from evaluation.metrics import DEPTH_MIN, GT_KEYS, PAD_VALUE, check_dataset, seg_ignore_index
from utils.tasks import task_kind

# The original's nn.CosineSimilarity() default.
COSINE_EPS = 1e-8


def resize_nearest(gt: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """`F.interpolate(gt.float(), size)`: legacy nearest (src = floor(dst·in/out)), as the original."""
    return F.interpolate(gt.float(), size=tuple(int(s) for s in size))


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over `valid`; NaN (with zero gradients) when nothing is valid, like mean([])."""
    count = valid.sum()
    total = torch.where(valid, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    mean = total / count.clamp(min=1)
    return torch.where(count > 0, mean, torch.full_like(mean, float("nan")))


def channels_last_rows(tensor: torch.Tensor) -> torch.Tensor:
    """[B,C,h,w] -> [B·h·w, C]: one row per pixel, ordered by batch, row, column (the original's layout)."""
    return tensor.permute(0, 2, 3, 1).reshape(-1, tensor.shape[1])


def seg_loss(pred: torch.Tensor, gt: torch.Tensor, ignore_index: int, class_weights: Any = None,
             masked: bool = False) -> torch.Tensor:
    """Cross entropy of logits [B,C,h,w] against labels [B,1,h,w] or [B,h,w]; mean over non-ignored pixels.

    With class weights it is the weighted mean Σ w_y·nll / Σ w_y (nn.CrossEntropyLoss semantics).
    The original flattens to [B·h·w, C] rows first; `masked` keeps NCHW (same value, other rounding).
    """
    weight = None
    if class_weights is not None:
        weight = torch.as_tensor(class_weights, dtype=pred.dtype, device=pred.device)
    if masked:
        target = gt.reshape(pred.shape[0], *pred.shape[2:]).long()
        return F.cross_entropy(pred, target, weight=weight, ignore_index=int(ignore_index))
    target = gt.reshape(-1).long()  # [B,1,h,w] flattened in the same batch, row, column order
    return F.cross_entropy(channels_last_rows(pred), target, weight=weight, ignore_index=int(ignore_index))


def normal_valid_mask(gt: torch.Tensor, decoded: bool = False) -> torch.Tensor:
    """[B,h,w] validity: max_c gt < 255 (the original); decoded normals also need norm > 0.5."""
    valid = gt.amax(dim=1) < PAD_VALUE
    if decoded:
        # Decoded NYU normals mark invalid pixels as (0,0,0); Taskonomy keeps the 255 padding rule.
        valid = valid & (gt.float().norm(dim=1) > 0.5)
    return valid


def normal_loss(pred: torch.Tensor, gt: torch.Tensor, decoded: bool = False, masked: bool = False) -> torch.Tensor:
    """1 − mean cosine between normalised prediction and GT over the valid pixels of the batch.

    In the original the GT is the raw uint8 colour vector, which this keeps. Original order: [B·h·w, 3]
    rows, valid rows selected, both normalised, then the cosine; `masked` averages over a mask instead.
    """
    valid = normal_valid_mask(gt, decoded)
    if masked:
        cos = F.cosine_similarity(F.normalize(pred, dim=1), F.normalize(gt.float(), dim=1), dim=1, eps=COSINE_EPS)
        return 1 - _masked_mean(cos, valid)
    rows = valid.reshape(-1)
    pred_rows = F.normalize(channels_last_rows(pred)[rows], dim=1)
    gt_rows = F.normalize(channels_last_rows(gt.float())[rows], dim=1)
    return 1 - F.cosine_similarity(pred_rows, gt_rows, dim=1, eps=COSINE_EPS).mean()


def depth_valid_mask(gt: torch.Tensor, dataset: str, depth_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B,1,h,w] validity: Σ_c depth > 3e-5 (NYU_v2, CityScapes) or depth != 255 & depth_mask == 1 (Taskonomy)."""
    if check_dataset(dataset) == "Taskonomy":
        if depth_mask is None:
            raise ValueError("depth loss: Taskonomy needs the batch key 'depth_mask'")
        return (gt != PAD_VALUE) & (depth_mask == 1)
    return gt.sum(dim=1, keepdim=True) > DEPTH_MIN


def _l1_over(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor, masked: bool) -> torch.Tensor:
    """Mean |pred − gt| over `valid`: the original's masked_select + L1, or a masked mean (no host sync)."""
    if masked:
        return _masked_mean((pred - gt).abs(), valid)
    # Nothing valid gives mean([]) = NaN with zero gradients, as in the original.
    return F.l1_loss(pred.masked_select(valid), gt.masked_select(valid))


def depth_loss(pred: torch.Tensor, gt: torch.Tensor, dataset: str,
               depth_mask: torch.Tensor | None = None, masked: bool = False) -> torch.Tensor:
    """L1 mean over the valid depth pixels."""
    valid = depth_valid_mask(gt, dataset, depth_mask)
    return _l1_over(pred, gt, valid.expand_as(pred), masked)


def l1_ignore_loss(pred: torch.Tensor, gt: torch.Tensor, ignore: float = PAD_VALUE,
                   masked: bool = False) -> torch.Tensor:
    """L1 mean over pixels with gt != ignore (Taskonomy keypoint and edge)."""
    return _l1_over(pred, gt, gt != ignore, masked)


def task_loss(task: str, pred: torch.Tensor, batch: Mapping[str, Any], dataset: str, class_weights: Any = None,
              decode_normals: bool = False, masked: bool = False) -> torch.Tensor:
    """Loss of one task: the batch's ground truth is resized (nearest) to the prediction, then compared.

    The task's kind (utils/tasks.py) picks the loss; `class_weights` (Taskonomy's prior) weight `seg` only.
    `masked`: the host-sync-free masked-mean forms (`speed.masked_losses`), not bit-equal to the original.
    """
    if task not in GT_KEYS:
        raise ValueError(f"task loss: unknown task {task!r}; expected one of {list(GT_KEYS)}")
    key = GT_KEYS[task]
    if key not in batch:
        raise ValueError(f"task loss: the batch lacks the ground-truth key {key!r} of task {task!r} "
                         f"(keys: {sorted(batch)})")
    size = pred.shape[-2:]
    gt = batch[key]
    if gt.dim() == 3:  # [B,H,W] -> [B,1,H,W]
        gt = gt.unsqueeze(1)
    gt = resize_nearest(gt.to(pred.device, non_blocking=True), size)
    kind = task_kind(task)
    if kind == "seg":
        weights = class_weights if task == "seg" else None
        return seg_loss(pred, gt, seg_ignore_index(dataset), weights, masked=masked)
    if kind == "sn":
        return normal_loss(pred, gt, decoded=decode_normals, masked=masked)
    if kind == "depth":
        depth_mask = batch.get("depth_mask")
        if depth_mask is not None:
            if depth_mask.dim() == 3:
                depth_mask = depth_mask.unsqueeze(1)
            depth_mask = resize_nearest(depth_mask.to(pred.device, non_blocking=True), size)
        return depth_loss(pred, gt, dataset, depth_mask, masked=masked)
    return l1_ignore_loss(pred, gt, masked=masked)


def _check_logits(logits_list: Sequence[torch.Tensor]) -> int:
    """Number of policy rows P shared by all tasks' [P, 2] logits."""
    if len(logits_list) == 0:
        raise ValueError("policy regulariser: got no task logits")
    rows = logits_list[0].shape[0]
    for t, logits in enumerate(logits_list):
        if logits.dim() != 2 or logits.shape != (rows, 2):
            raise ValueError(f"policy regulariser: task{t + 1}_logits must be [{rows}, 2], got {tuple(logits.shape)}")
    return rows


def sparsity_loss(logits_list: Sequence[torch.Tensor], num_train_layers: int | None, diff_sparsity_weights: bool,
                  is_sharing: bool, paper: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sparsity regulariser over the last n = min(num_train_layers or P, P) rows; returns (total, per task).

    Original: per task mean_rows CE(row, class 1 = skip) = mean softplus(a0 − a1); with diff_sparsity_weights
    and not is_sharing, 2·mean_rows((i+1)/P · CE). Paper (`paper=True`): Σ_rows log softmax(row)[0].
    """
    rows = _check_logits(logits_list)
    n = min(num_train_layers or rows, rows)
    per_task = []
    for logits in logits_list:
        window = logits[rows - n:]
        if paper:
            per_task.append(F.log_softmax(window, dim=1)[:, 0].sum())
            continue
        skip = torch.ones(n, dtype=torch.long, device=logits.device)
        if diff_sparsity_weights and not is_sharing:
            weights = torch.arange(1, rows + 1, dtype=logits.dtype, device=logits.device)[rows - n:] / rows
            per_task.append(2 * (weights * F.cross_entropy(window, skip, reduction="none")).mean())
        else:
            per_task.append(F.cross_entropy(window, skip))
    return torch.stack(per_task).sum(), per_task


def sharing_loss(logits_list: Sequence[torch.Tensor], diff_sparsity_weights: bool,
                 paper_weights: bool = False) -> torch.Tensor:
    """Σ over task pairs t < t' of Σ_i w_i·|A_t[i,0] − A_t'[i,0]| on raw execute logits, all P rows.

    w_i = (i+1)/P with diff_sparsity_weights (else 1); `paper_weights` uses the paper's (P − i)/P
    (more weight on the bottom blocks) whatever diff_sparsity_weights says.
    """
    rows = _check_logits(logits_list)
    device, dtype = logits_list[0].device, logits_list[0].dtype
    index = torch.arange(rows, dtype=dtype, device=device)
    if paper_weights:
        weights = (rows - index) / rows
    elif diff_sparsity_weights:
        weights = (index + 1) / rows
    else:
        weights = torch.ones(rows, dtype=dtype, device=device)
    total = torch.zeros((), dtype=dtype, device=device)
    for i in range(len(logits_list)):
        for j in range(i + 1, len(logits_list)):
            total = total + (weights * (logits_list[i][:, 0] - logits_list[j][:, 0]).abs()).sum()
    return total
