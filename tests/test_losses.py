"""envs/losses.py against hand-computed examples (expected numbers are written out or plain numpy)."""
import math

import numpy as np
import pytest
import torch

from envs.losses import (channels_last_rows, depth_loss, l1_ignore_loss, normal_loss, resize_nearest, seg_loss, sharing_loss,
                         sparsity_loss, task_loss)


def log_softmax_np(x):
    x = np.asarray(x, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softplus(x):
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- task losses

def test_resize_nearest_is_legacy_nearest():
    gt = torch.arange(5, dtype=torch.uint8).reshape(1, 1, 1, 5)
    # src = floor(dst * in / out): 5 -> 2 picks 0, 2; 5 -> 3 picks 0, 1, 3
    assert resize_nearest(gt, (1, 2)).flatten().tolist() == [0.0, 2.0]
    assert resize_nearest(gt, (1, 3)).flatten().tolist() == [0.0, 1.0, 3.0]
    assert resize_nearest(gt, (1, 2)).dtype == torch.float32


def test_seg_loss_ignore_and_class_weights():
    logits_px = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [2.0, -2.0, 0.0], [0.0, 0.5, 0.0]])
    pred = torch.tensor(logits_px, dtype=torch.float32).T.reshape(1, 3, 2, 2)
    gt = torch.tensor([2.0, 1.0, 255.0, 0.0]).reshape(1, 1, 2, 2)
    nll = -log_softmax_np(logits_px)[[0, 1, 3], [2, 1, 0]]
    assert seg_loss(pred, gt, 255).item() == pytest.approx(nll.mean(), rel=1e-6)
    weights = np.array([0.5, 2.0, 4.0])
    w = weights[[2, 1, 0]]
    assert seg_loss(pred, gt, 255, weights).item() == pytest.approx((w * nll).sum() / w.sum(), rel=1e-6)
    # CityScapes: -1 is the ignore label
    gt_city = torch.tensor([2.0, 1.0, -1.0, 0.0]).reshape(1, 1, 2, 2)
    assert seg_loss(pred, gt_city, -1).item() == pytest.approx(nll.mean(), rel=1e-6)


def test_task_loss_seg_downsamples_gt_nearest():
    # 4x4 GT at prediction size 2x2: nearest picks rows/cols 0 and 2.
    gt = torch.full((1, 1, 4, 4), 255, dtype=torch.uint8)
    gt[0, 0, 0, 0], gt[0, 0, 0, 2], gt[0, 0, 2, 0] = 0, 1, 1  # (2, 2) stays 255 = ignored
    gt[0, 0, 1, 1] = 0  # never sampled
    logits_px = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [5.0, 5.0]])  # pixels (0,0), (0,1), (1,0), (1,1)
    pred = torch.tensor(logits_px, dtype=torch.float32).T.reshape(1, 2, 2, 2)
    nll = -log_softmax_np(logits_px)[[0, 1, 2], [0, 1, 1]]
    loss = task_loss("seg", pred, {"seg": gt}, "NYU_v2")
    assert loss.item() == pytest.approx(nll.mean(), rel=1e-6)


def test_normal_loss_raw_and_decoded():
    # Raw uint8 GT, channels as stored: pixel 0 = (100,150,250), pixel 1 = (255,255,255) invalid,
    # pixel 2 = (127,127,127) valid (zero normal in raw colour space).
    gt = torch.tensor([[100, 255, 127], [150, 255, 127], [250, 255, 127]], dtype=torch.uint8).reshape(1, 3, 1, 3)
    pred = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 2.0], [3.0, 0.0, 2.0]]).reshape(1, 3, 1, 3)
    cos0 = 250 / math.sqrt(100 ** 2 + 150 ** 2 + 250 ** 2)
    assert normal_loss(pred, gt).item() == pytest.approx(1 - (cos0 + 1.0) / 2, rel=1e-5)
    # Decoded GT: (0,0,0) is invalid; pixel 0 is (0,0,1) against pred (0,1,1) -> cos = 1/sqrt2.
    gt_dec = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]]).reshape(1, 3, 1, 2)
    pred_dec = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]).reshape(1, 3, 1, 2)
    assert normal_loss(pred_dec, gt_dec, decoded=True).item() == pytest.approx(1 - 1 / math.sqrt(2), rel=1e-6)
    # Without decoding (0,0,0) counts as valid (cos = 0 with the zero vector).
    assert normal_loss(pred_dec, gt_dec).item() == pytest.approx(1 - (1 / math.sqrt(2)) / 2, rel=1e-6)


def test_depth_loss_nyu_valid_threshold():
    gt = torch.tensor([1.0, 0.0, 2e-5, 4e-5]).reshape(1, 1, 2, 2)
    pred = torch.tensor([1.5, 7.0, 7.0, 1.0]).reshape(1, 1, 2, 2)
    expected = (0.5 + (1.0 - 4e-5)) / 2
    assert depth_loss(pred, gt, "NYU_v2").item() == pytest.approx(expected, rel=1e-6)
    assert depth_loss(pred, gt, "CityScapes").item() == pytest.approx(expected, rel=1e-6)


def test_depth_loss_taskonomy_mask_downsampled():
    # 2x4 GT at prediction size 1x2: nearest picks (0,0) and (0,2).
    gt = torch.tensor([[0.3, 9.0, 0.6, 9.0], [9.0, 9.0, 9.0, 9.0]]).reshape(1, 1, 2, 4)
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(1, 1, 2, 4)
    pred = torch.tensor([0.5, 0.5]).reshape(1, 1, 1, 2)
    loss = task_loss("depth", pred, {"depth": gt, "depth_mask": mask}, "Taskonomy")
    assert loss.item() == pytest.approx((0.2 + 0.1) / 2, rel=1e-6)
    mask[0, 0, 0, 2] = 0.0  # mask out the second sampled pixel
    loss = task_loss("depth", pred, {"depth": gt, "depth_mask": mask}, "Taskonomy")
    assert loss.item() == pytest.approx(0.2, rel=1e-6)
    gt[0, 0, 0, 0] = 255.0  # padding is invalid even with mask 1
    mask[0, 0, 0, 2] = 1.0
    loss = task_loss("depth", pred, {"depth": gt, "depth_mask": mask}, "Taskonomy")
    assert loss.item() == pytest.approx(0.1, rel=1e-6)
    with pytest.raises(ValueError, match="depth_mask"):
        task_loss("depth", pred, {"depth": gt}, "Taskonomy")


def test_l1_ignore_loss_and_task_dispatch():
    gt = torch.tensor([0.5, 255.0, -1.0, 0.0]).reshape(1, 1, 2, 2)
    pred = torch.tensor([0.0, 100.0, 0.0, 0.25]).reshape(1, 1, 2, 2)
    assert l1_ignore_loss(pred, gt).item() == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    for task in ("keypoint", "edge"):
        assert task_loss(task, pred, {task: gt}, "Taskonomy").item() == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    with pytest.raises(ValueError, match="'edge'"):
        task_loss("edge", pred, {"keypoint": gt}, "Taskonomy")
    with pytest.raises(ValueError, match="unknown task"):
        task_loss("flow", pred, {}, "Taskonomy")


@pytest.mark.parametrize('masked', [False, True])
def test_all_invalid_gives_nan_value_and_zero_gradient(masked):
    pred = torch.randn(1, 1, 2, 2, requires_grad=True)
    loss = l1_ignore_loss(pred, torch.full((1, 1, 2, 2), 255.0), masked=masked)
    assert math.isnan(loss.item())
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_channels_last_rows_order():
    x = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
    rows = channels_last_rows(x)
    assert rows.shape == (8, 3)
    # row k = (batch, row, column) in that order; the columns are the channels
    assert rows[5].tolist() == x[1, :, 0, 1].tolist()


def batch_with_invalid_pixels(seed=0, classes=7):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, classes, (2, 1, 16, 16), generator=g).to(torch.uint8)
    seg[:, :, :3] = 255
    normal = torch.randint(0, 255, (2, 3, 16, 16), generator=g).to(torch.uint8)
    normal[:, :, :, :4] = 255
    depth = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64) * 4
    depth[:, :, 5:9] = 0
    preds = {'seg': torch.randn(2, classes, 8, 8, generator=g), 'sn': torch.randn(2, 3, 8, 8, generator=g),
             'depth': torch.rand(2, 1, 8, 8, generator=g) * 4}
    return {'seg': seg, 'normal': normal, 'depth': depth}, preds


def test_original_order_and_masked_forms_agree():
    # The masked forms (speed.masked_losses) compute the same quantities with another rounding.
    batch, preds = batch_with_invalid_pixels()
    for task, pred in preds.items():
        original = task_loss(task, pred, batch, 'NYU_v2')
        masked = task_loss(task, pred, batch, 'NYU_v2', masked=True)
        assert original.item() == pytest.approx(masked.item(), rel=1e-5), task


def test_original_order_matches_written_out_original_ops():
    # The original: [B·h·w, C] rows, boolean-selected valid rows, then normalise / L1 (docs/parity.md).
    batch, preds = batch_with_invalid_pixels(seed=1)
    seg_gt = resize_nearest(batch['seg'], (8, 8)).permute(0, 2, 3, 1).reshape(-1).long()
    seg_rows = preds['seg'].permute(0, 2, 3, 1).contiguous().view(-1, 7)
    assert torch.equal(task_loss('seg', preds['seg'], batch, 'NYU_v2'),
                       torch.nn.CrossEntropyLoss(ignore_index=255)(seg_rows, seg_gt))
    gt = resize_nearest(batch['normal'], (8, 8)).permute(0, 2, 3, 1).contiguous().view(-1, 3)
    rows = preds['sn'].permute(0, 2, 3, 1).contiguous().view(-1, 3)
    keep = gt.max(dim=1)[0] < 255
    expected = 1 - torch.nn.CosineSimilarity()(torch.nn.functional.normalize(rows[keep]),
                                                torch.nn.functional.normalize(gt[keep])).mean()
    assert torch.equal(task_loss('sn', preds['sn'], batch, 'NYU_v2'), expected)
    depth = resize_nearest(batch['depth'], (8, 8))
    mask = (depth.sum(dim=1) > 3e-5).unsqueeze(1)
    expected = torch.nn.L1Loss()(preds['depth'].masked_select(mask), depth.masked_select(mask))
    assert torch.equal(task_loss('depth', preds['depth'], batch, 'NYU_v2'), expected)


def test_masked_losses_need_no_host_sync():
    # Data-dependent ops (.item(), boolean indexing) fail on the meta device.
    meta = {"device": "meta"}
    batch = {"seg": torch.zeros(2, 1, 8, 8, **meta), "normal": torch.zeros(2, 3, 8, 8, **meta),
             "depth": torch.rand(2, 1, 8, 8, **meta), "depth_mask": torch.ones(2, 1, 8, 8, **meta),
             "edge": torch.rand(2, 1, 8, 8, **meta)}
    preds = {"seg": torch.randn(2, 17, 4, 4, **meta), "sn": torch.randn(2, 3, 4, 4, **meta),
             "depth": torch.randn(2, 1, 4, 4, **meta), "edge": torch.randn(2, 1, 4, 4, **meta)}
    for task, pred in preds.items():
        assert task_loss(task, pred, batch, "Taskonomy", class_weights=torch.ones(17), decode_normals=True,
                         masked=True).shape == ()
    logits = [torch.randn(4, 2, **meta) for _ in range(3)]
    assert sparsity_loss(logits, 2, True, False)[0].shape == ()
    assert sharing_loss(logits, True).shape == ()


# ---------------------------------------------------------------- policy regularisers

LOGITS = [torch.tensor([[0.5, 0.5], [1.0, -1.0], [0.0, 2.0], [3.0, 0.0]]),
          torch.tensor([[0.0, 0.0], [2.0, 1.0], [-1.0, 0.0], [0.5, 0.5]])]


def ce_skip(row):
    """CE of a row towards class 1 (skip): softplus(a0 - a1)."""
    return softplus(float(row[0] - row[1]))


def test_sparsity_loss_original_curriculum_window():
    # n = 2: rows 2 and 3 of each task.
    t1 = (ce_skip(LOGITS[0][2]) + ce_skip(LOGITS[0][3])) / 2
    t2 = (ce_skip(LOGITS[1][2]) + ce_skip(LOGITS[1][3])) / 2
    total, per_task = sparsity_loss(LOGITS, 2, diff_sparsity_weights=True, is_sharing=True)
    assert [p.item() for p in per_task] == pytest.approx([t1, t2], rel=1e-6)
    assert total.item() == pytest.approx(t1 + t2, rel=1e-6)
    # None (no curriculum) and n > P both mean all P rows.
    all_rows = sum(ce_skip(row) for logits in LOGITS for row in logits) / 4
    for n in (None, 10):
        assert sparsity_loss(LOGITS, n, False, True)[0].item() == pytest.approx(all_rows, rel=1e-6)


def test_sparsity_loss_depth_weighted_variant():
    # diff_sparsity_weights and not is_sharing: 2 * mean_{last n} ((i+1)/P * CE); P = 4, n = 3 -> w = .5, .75, 1
    weights = [0.5, 0.75, 1.0]
    expected = [2 * sum(w * ce_skip(row) for w, row in zip(weights, logits[1:])) / 3 for logits in LOGITS]
    total, per_task = sparsity_loss(LOGITS, 3, diff_sparsity_weights=True, is_sharing=False)
    assert [p.item() for p in per_task] == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(sum(expected), rel=1e-6)
    # without diff_sparsity_weights the plain mean is used even when not sharing
    plain = sum(ce_skip(row) for logits in LOGITS for row in logits[1:]) / 3
    assert sparsity_loss(LOGITS, 3, False, False)[0].item() == pytest.approx(plain, rel=1e-6)


def test_sparsity_loss_paper_form():
    # Σ_t Σ_{last n rows} log(softmax(row)[0]); n = 2
    expected = [float(log_softmax_np(logits.numpy())[2:, 0].sum()) for logits in LOGITS]
    total, per_task = sparsity_loss(LOGITS, 2, True, True, paper=True)
    assert [p.item() for p in per_task] == pytest.approx(expected, rel=1e-6)
    assert total.item() == pytest.approx(sum(expected), rel=1e-6)


def test_sparsity_loss_gradient_only_in_window():
    logits = [LOGITS[0].clone().requires_grad_(True)]
    sparsity_loss(logits, 1, True, True)[0].backward()
    assert torch.equal(logits[0].grad[:3], torch.zeros(3, 2))
    assert logits[0].grad[3].abs().sum() > 0


def test_sharing_loss_weights():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 5.0]])
    b = torch.tensor([[0.0, 9.0], [2.5, 0.0], [3.0, 0.0]])
    c = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    # |a-b| = [1, .5, 3], |a-c| = [0, 2, 1], |b-c| = [1, 2.5, 4] on column 0 (column 1 is ignored)
    diffs = np.array([[1.0, 0.5, 3.0], [0.0, 2.0, 1.0], [1.0, 2.5, 4.0]])
    assert sharing_loss([a, b, c], False).item() == pytest.approx(diffs.sum())
    assert sharing_loss([a, b, c], True).item() == pytest.approx((diffs * [1 / 3, 2 / 3, 1.0]).sum())
    assert sharing_loss([a, b, c], True, paper_weights=True).item() == pytest.approx(
        (diffs * [1.0, 2 / 3, 1 / 3]).sum())
    assert sharing_loss([a], True).item() == 0.0
    with pytest.raises(ValueError, match="task2_logits"):
        sharing_loss([a, torch.zeros(4, 2)], True)
