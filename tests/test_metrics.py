"""evaluation/metrics.py against hand-computed examples (expected numbers are written out or plain numpy)."""
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import confusion_matrix

from evaluation.metrics import (DepthMetric, L1Metric, MetricProtocol, MultiTaskMetrics, NormalMetric, SegMetric,
                           lower_is_better, paper_metrics, reference_metrics, score, seg_ignore_index)

ORIGINAL = MetricProtocol.original()
STANDARD = MetricProtocol.standard()


def one_hot_logits(pred_labels, num_classes):
    """[B,H,W] predicted labels -> [B,C,H,W] logits whose argmax is that label."""
    labels = torch.as_tensor(pred_labels)
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * 5.0


def seg_gt(labels, dtype=torch.uint8):
    return torch.as_tensor(labels, dtype=dtype).unsqueeze(1)


# ---------------------------------------------------------------- protocol

def test_protocol_constructors_and_config():
    assert MetricProtocol() == ORIGINAL
    assert not any([ORIGINAL.miou_all_classes, ORIGINAL.pixel_pooled, ORIGINAL.bilinear_resize,
                    ORIGINAL.decode_normals, ORIGINAL.sigma_positive_only])
    assert all([STANDARD.miou_all_classes, STANDARD.pixel_pooled, STANDARD.bilinear_resize, STANDARD.decode_normals,
                STANDARD.sigma_positive_only])
    assert MetricProtocol.from_config({"quirks": {"sigma_positive_only": True}}) == MetricProtocol(
        sigma_positive_only=True)
    assert MetricProtocol.from_config({}) == ORIGINAL
    assert MetricProtocol.from_config({"quirks": None}) == ORIGINAL
    proto = MetricProtocol.from_config({"quirks": {"pixel_pooled": True, "eval_iter": 5}})
    assert proto == MetricProtocol(pixel_pooled=True)
    with pytest.raises(ValueError, match="quirks.bilinear_resize"):
        MetricProtocol.from_config({"quirks": {"bilinear_resize": "yes"}})


def test_seg_ignore_index():
    assert seg_ignore_index("NYU_v2") == 255
    assert seg_ignore_index("CityScapes") == -1
    assert seg_ignore_index("Taskonomy") == 255
    with pytest.raises(ValueError, match="NYU"):
        seg_ignore_index("nyu")


# ---------------------------------------------------------------- segmentation

def test_confusion_matrix_equals_sklearn():
    rng = np.random.default_rng(0)
    num_classes = 5
    metric = SegMetric(num_classes, -1)
    all_gt, all_pred = [], []
    for _ in range(3):
        gt = rng.integers(-1, num_classes + 1, size=(2, 6, 7))  # includes -1 and C (both dropped)
        pred = rng.integers(0, num_classes, size=(2, 6, 7))
        metric.update(one_hot_logits(pred, num_classes), torch.as_tensor(gt).unsqueeze(1))
        all_gt.append(gt.ravel())
        all_pred.append(pred.ravel())
    expected = confusion_matrix(np.concatenate(all_gt), np.concatenate(all_pred), labels=np.arange(num_classes))
    np.testing.assert_array_equal(metric.confusion_matrix(), expected)


def test_miou_original_drops_zero_tp_classes_standard_counts_them():
    # gt    = 0 0 1 1 2 2 ; pred = 0 0 0 0 2 1 ; class 3 never occurs.
    # CM rows gt: [2,0,0,0] [2,0,0,0] [0,1,1,0] [0,0,0,0]
    # IoU0 = 2/(2+4-2) = .5, IoU1 = 0/(2+1-0) = 0, IoU2 = 1/(2+1-1) = .5
    gt = seg_gt([[[0, 0, 1], [1, 2, 2]]])
    pred = one_hot_logits([[[0, 0, 0], [0, 2, 1]]], 4)
    for protocol, expected in [(ORIGINAL, 0.5), (MetricProtocol(miou_all_classes=True), 1 / 3)]:
        metric = SegMetric(4, 255, protocol=protocol)
        metric.update(pred, gt)
        assert metric.compute()["mIoU"] == pytest.approx(expected)


def test_pixel_acc_batch_weighted_vs_pooled():
    metric_orig, metric_pool = SegMetric(3, 255), SegMetric(3, 255, protocol=MetricProtocol(pixel_pooled=True))
    # batch A: 1 image, 4 valid pixels, all correct -> 1.0
    gt_a = seg_gt([[[0, 1], [2, 0]]])
    pred_a = one_hot_logits([[[0, 1], [2, 0]]], 3)
    # batch B: 2 images; one all-ignore, the other 1 of 4 correct -> 0.25 over 4 valid pixels
    gt_b = seg_gt([[[255, 255], [255, 255]], [[0, 0], [0, 0]]])
    pred_b = one_hot_logits([[[1, 1], [1, 1]], [[0, 1], [2, 2]]], 3)
    for metric in (metric_orig, metric_pool):
        metric.update(pred_a, gt_a)
        metric.update(pred_b, gt_b)
    assert metric_orig.compute()["Pixel Acc"] == pytest.approx((1.0 * 1 + 0.25 * 2) / 3)  # 0.5
    assert metric_pool.compute()["Pixel Acc"] == pytest.approx((4 + 1) / (4 + 4))  # 0.625


def log_softmax_np(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.max(axis=-1, keepdims=True) - np.log(np.exp(x - x.max(axis=-1, keepdims=True)).sum(-1, keepdims=True))


def test_cityscapes_ignore_counts_as_error_in_pixel_acc_only_in_original():
    # 2 classes, gt = [-1, 0, 1, 1], pred = [1, 0, 1, 0]
    logits_px = np.array([[0.0, 2.0], [1.0, 0.0], [0.5, 1.5], [3.0, 1.0]])  # per-pixel logits, argmax 1,0,1,0
    logits = torch.tensor(logits_px, dtype=torch.float32).T.reshape(1, 2, 2, 2)
    gt = torch.tensor([[-1, 0], [1, 1]]).reshape(1, 1, 2, 2)
    nll = -log_softmax_np(logits_px)[[1, 2, 3], [0, 1, 1]]  # CE ignores the -1 pixel
    for protocol, acc in [(ORIGINAL, 2 / 4), (STANDARD, 2 / 3)]:
        metric = SegMetric(2, seg_ignore_index("CityScapes"), protocol=protocol)
        metric.update(logits, gt)
        result = metric.compute()
        assert result["Pixel Acc"] == pytest.approx(acc)
        assert result["err"] == pytest.approx(nll.mean(), rel=1e-5)


def test_seg_err_class_weights_and_nyu_ignore():
    logits_px = np.array([[1.0, 0.0, -1.0], [0.2, 0.3, 0.1], [2.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    logits = torch.tensor(logits_px, dtype=torch.float32).T.reshape(1, 3, 1, 4)
    gt = torch.tensor([[2, 1, 255, 0]], dtype=torch.int32).reshape(1, 1, 1, 4)
    weights = np.array([0.5, 2.0, 4.0])
    nll = -log_softmax_np(logits_px)[[0, 1, 3], [2, 1, 0]]
    w = weights[[2, 1, 0]]
    metric = SegMetric(3, 255, class_weights=weights)
    metric.update(logits, gt)
    result = metric.compute()
    assert result["err"] == pytest.approx((w * nll).sum() / w.sum(), rel=1e-5)
    assert result["Pixel Acc"] == pytest.approx(2 / 3)  # pixel 0 predicts 0 (gt 2), pixel 1 predicts 1, pixel 3 0


def test_seg_err_per_batch_mean_vs_pooled():
    # Two single-image batches with different numbers of valid pixels.
    logits_a = torch.tensor([[0.0, 1.0]]).T.reshape(1, 2, 1, 1)  # gt 0: nll = log(1+e)
    logits_b = torch.tensor([[0.0, 0.0], [0.0, 0.0]]).T.reshape(1, 2, 1, 2)  # nll = log 2 each
    gt_a = torch.tensor([0]).reshape(1, 1, 1, 1)
    gt_b = torch.tensor([0, 1]).reshape(1, 1, 1, 2)
    nll_a, nll_b = math.log(1 + math.e), math.log(2)
    orig, pooled = SegMetric(2, 255), SegMetric(2, 255, protocol=MetricProtocol(pixel_pooled=True))
    for m in (orig, pooled):
        m.update(logits_a, gt_a)
        m.update(logits_b, gt_b)
    assert orig.compute()["err"] == pytest.approx((nll_a + nll_b) / 2, rel=1e-6)
    assert pooled.compute()["err"] == pytest.approx((nll_a + 2 * nll_b) / 3, rel=1e-6)


def test_seg_nearest_upsampling_of_logits():
    # 1x2 logits upsampled (nearest) to 1x4: the left prediction covers columns 0-1, the right one 2-3.
    logits = one_hot_logits([[[0, 1]]], 2)
    gt = seg_gt([[[0, 0, 1, 0]]])
    metric = SegMetric(2, 255)
    metric.update(logits, gt)
    assert metric.compute()["Pixel Acc"] == pytest.approx(3 / 4)


def test_compute_before_update_raises():
    with pytest.raises(RuntimeError, match="before any update"):
        SegMetric(3, 255).compute()


# ---------------------------------------------------------------- normals

def angle_field(degrees):
    """Predictions at the given angles from the x axis, as a [1,3,1,N] tensor."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    vec = np.stack([np.cos(rad), np.sin(rad), np.zeros_like(rad)])
    return torch.tensor(vec, dtype=torch.float32).reshape(1, 3, 1, -1)


def test_normal_angles_pooled_over_batches_decoded():
    # Decoded GT = +x everywhere except an invalid (0,0,0) pixel; the invalid prediction is ignored.
    metric = NormalMetric(MetricProtocol(decode_normals=True), extras=True)
    gt_a = torch.zeros(1, 3, 1, 3)
    gt_a[:, 0, :, :2] = 1.0  # batch A: pixels 0, 1 valid; pixel 2 is (0,0,0)
    gt_b = torch.zeros(1, 3, 1, 3)
    gt_b[:, 0] = 1.0  # batch B: all valid
    metric.update(angle_field([0.0, 10.0, 100.0]), gt_a)
    metric.update(angle_field([20.0, 40.0, 60.0]), gt_b)
    valid = np.array([0.0, 10.0, 20.0, 40.0, 60.0])
    result = metric.compute()
    assert result["Angle Mean"] == pytest.approx(valid.mean(), abs=1e-3)
    assert result["Angle Median"] == pytest.approx(20.0, abs=1e-3)
    assert result["Angle 11.25"] == pytest.approx(40.0)
    assert result["Angle 22.5"] == pytest.approx(60.0)
    assert result["Angle 30"] == pytest.approx(60.0)
    assert result["Angle 45"] == pytest.approx(80.0)
    assert result["Angle RMSE"] == pytest.approx(math.sqrt((valid ** 2).mean()), abs=1e-3)
    assert result["cosine_similarity"] == pytest.approx(np.cos(np.deg2rad(valid)).mean(), abs=1e-6)


def test_normal_median_even_count_averages_middle_values():
    gt = torch.zeros(1, 3, 1, 2)
    gt[:, 0] = 1.0
    metric = NormalMetric(MetricProtocol(decode_normals=True))
    metric.update(angle_field([0.0, 10.0]), gt)
    metric.update(angle_field([20.0, 40.0]), gt)
    assert metric.compute()["Angle Median"] == pytest.approx(15.0, abs=1e-3)
    assert set(metric.compute()) == {"Angle Mean", "Angle Median", "Angle 11.25", "Angle 22.5", "Angle 30",
                                     "Angle 45"}


def test_normal_raw_uint8_colour_direction_and_255_invalid():
    # Raw NYU GT (channels as stored): pixel 0 = (100,150,250), pixel 1 = (255,255,255) invalid,
    # pixel 2 = (127,127,127) "zero normal", valid; pixel 3 = (0,0,255) invalid too (max_c == 255).
    gt = torch.tensor([[100, 255, 127, 0], [150, 255, 127, 0], [250, 255, 127, 255]],
                      dtype=torch.uint8).reshape(1, 3, 1, 4)
    pred = torch.tensor([[0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0], [1.0, 0.0, 1.0, 0.0]]).reshape(1, 3, 1, 4)
    cos0 = 250 / math.sqrt(100 ** 2 + 150 ** 2 + 250 ** 2)  # raw colour direction vs (0,0,1)
    angles = [math.degrees(math.acos(cos0)), 0.0]  # pixel 2: (1,1,1) direction == pred
    metric = NormalMetric(ORIGINAL)
    metric.update(pred, gt)
    assert metric.compute()["Angle Mean"] == pytest.approx(np.mean(angles), abs=1e-3)
    # Decoded protocol on decoded GT: (0,0,1) valid, (0,0,0) invalid, 255 padding invalid.
    gt_dec = torch.tensor([[0.0, 0.0, 255.0], [0.0, 0.0, 255.0], [1.0, 0.0, 255.0]]).reshape(1, 3, 1, 3)
    pred_dec = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]).reshape(1, 3, 1, 3)
    metric = NormalMetric(MetricProtocol(decode_normals=True))
    metric.update(pred_dec, gt_dec)
    result = metric.compute()
    assert result["Angle Mean"] == pytest.approx(45.0, abs=1e-3)  # only pixel 0: (0,0,1) vs (0,1,1)
    assert result["Angle 45"] == pytest.approx(100.0)


# ---------------------------------------------------------------- depth and L1

def test_depth_errors_per_batch_vs_pooled_and_sigmas():
    # batch A (1 image): gt [1, 2, 0(invalid)], pred [2, 2, 5]
    # batch B (1 image): gt [4, 1e-5 (invalid), 2], pred [4, 9, 1]
    gt_a, pred_a = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([2.0, 2.0, 5.0])
    gt_b, pred_b = torch.tensor([4.0, 1e-5, 2.0]), torch.tensor([4.0, 9.0, 1.0])
    shape = (1, 1, 1, 3)
    orig = DepthMetric("NYU_v2", extras=True)
    pooled = DepthMetric("NYU_v2", MetricProtocol(pixel_pooled=True), extras=True)
    for m in (orig, pooled):
        m.update(pred_a.reshape(shape), gt_a.reshape(shape))
        m.update(pred_b.reshape(shape), gt_b.reshape(shape))
    # valid abs diffs: A [1, 0], B [0, 1]; rel: A [1, 0], B [0, .5]; sq_rel: A [1, 0], B [0, .5]
    r_orig, r_pool = orig.compute(), pooled.compute()
    assert r_orig["abs_err"] == pytest.approx((0.5 + 0.5) / 2)
    assert r_pool["abs_err"] == pytest.approx(2 / 4)
    assert r_orig["rel_err"] == pytest.approx((0.5 + 0.25) / 2)
    assert r_pool["rel_err"] == pytest.approx(1.5 / 4)
    assert r_orig["sq_rel_err"] == pytest.approx((0.5 + 0.25) / 2)
    # ratios max(p/g, g/p): 2, 1, 1, 2 -> sigma_1.25: 2/4, 1.25^2 = 1.5625: 2/4, 1.25^3 = 1.953: 2/4
    for r in (r_orig, r_pool):
        assert r["sigma_1.25"] == pytest.approx(50.0)
        assert r["sigma_1.25^2"] == pytest.approx(50.0)
        assert r["sigma_1.25^3"] == pytest.approx(50.0)
        assert r["rms"] == pytest.approx(math.sqrt(2 / 4))


def test_negative_depth_prediction_and_the_delta_thresholds():
    # The reproduction: pred -1 everywhere, gt 2. max(p/g, g/p) = max(-0.5, -2) = -0.5 <= every threshold.
    pred, gt = torch.full((1, 1, 4, 4), -1.0), torch.full((1, 1, 4, 4), 2.0)
    quirk = DepthMetric("NYU_v2", ORIGINAL)
    quirk.update(pred, gt)
    assert quirk.compute()["abs_err"] == pytest.approx(3.0)
    assert [quirk.compute()[k] for k in ("sigma_1.25", "sigma_1.25^2", "sigma_1.25^3")] == [100.0, 100.0, 100.0]
    for protocol in (MetricProtocol(sigma_positive_only=True), STANDARD):
        fixed = DepthMetric("NYU_v2", protocol)
        fixed.update(pred, gt)
        assert [fixed.compute()[k] for k in ("sigma_1.25", "sigma_1.25^2", "sigma_1.25^3")] == [0.0, 0.0, 0.0]
        assert fixed.compute()["abs_err"] == pytest.approx(3.0)
    # Mixed: gt 1 everywhere; preds 1 (ratio 1), 1.5 (1.5), 0 (outside), -1 (outside when fixed).
    pred = torch.tensor([1.0, 1.5, 0.0, -1.0]).reshape(1, 1, 1, 4)
    gt = torch.ones(1, 1, 1, 4)
    expected = {ORIGINAL: [50.0, 75.0, 75.0], MetricProtocol(sigma_positive_only=True): [25.0, 50.0, 50.0]}
    for protocol, sigmas in expected.items():
        metric = DepthMetric("NYU_v2", protocol)
        metric.update(pred, gt)
        result = metric.compute()
        assert [result[k] for k in ("sigma_1.25", "sigma_1.25^2", "sigma_1.25^3")] == pytest.approx(sigmas)


def test_depth_taskonomy_mask_and_padding():
    gt = torch.tensor([0.5, 255.0, 0.2, 0.4]).reshape(1, 1, 1, 4)
    mask = torch.tensor([1.0, 1.0, 0.0, 1.0]).reshape(1, 1, 1, 4)
    pred = torch.tensor([0.6, 0.0, 0.0, 0.4]).reshape(1, 1, 1, 4)
    metric = DepthMetric("Taskonomy")
    metric.update(pred, gt, mask)
    result = metric.compute()
    assert result["abs_err"] == pytest.approx(0.1 / 2, rel=1e-5)
    assert set(result) == {"abs_err", "rel_err", "sigma_1.25", "sigma_1.25^2", "sigma_1.25^3"}
    with pytest.raises(ValueError, match="depth_mask"):
        DepthMetric("Taskonomy").update(pred, gt)


def test_nearest_vs_bilinear_upsampling():
    pred = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2)
    gt = torch.tensor([1.0, 1.5, 2.5, 3.0]).reshape(1, 1, 1, 4)
    # nearest: [1,1,3,3]; bilinear (align_corners=False): [1, 1.5, 2.5, 3]
    nearest, bilinear = DepthMetric("NYU_v2"), DepthMetric("NYU_v2", MetricProtocol(bilinear_resize=True))
    nearest.update(pred, gt)
    bilinear.update(pred, gt)
    assert nearest.compute()["abs_err"] == pytest.approx(0.25)
    assert bilinear.compute()["abs_err"] == pytest.approx(0.0, abs=1e-7)
    # legacy nearest at a non-integer ratio: 2 -> 3 columns takes sources floor(j*2/3) = 0, 0, 1
    odd = DepthMetric("NYU_v2")
    odd.update(pred, torch.tensor([1.0, 1.0, 3.0]).reshape(1, 1, 1, 3))
    assert odd.compute()["abs_err"] == pytest.approx(0.0)


def test_l1_metric_ignores_255_batch_weighted_vs_pooled():
    gt_a, pred_a = torch.tensor([0.5, 255.0]).reshape(1, 1, 1, 2), torch.tensor([0.0, 9.0]).reshape(1, 1, 1, 2)
    gt_b = torch.tensor([[0.0, 0.0], [0.0, 255.0]]).reshape(2, 1, 1, 2)
    pred_b = torch.tensor([[0.1, 0.1], [0.4, 0.0]]).reshape(2, 1, 1, 2)
    orig, pooled = L1Metric(), L1Metric(MetricProtocol(pixel_pooled=True))
    for m in (orig, pooled):
        m.update(pred_a, gt_a)
        m.update(pred_b, gt_b)
    # per batch: A 0.5 (bs 1), B (0.1+0.1+0.4)/3 = 0.2 (bs 2)
    assert orig.compute()["err"] == pytest.approx((0.5 * 1 + 0.2 * 2) / 3, rel=1e-6)
    assert pooled.compute()["err"] == pytest.approx((0.5 + 0.6) / 4, rel=1e-6)


# ---------------------------------------------------------------- multi-task, references, score

def nyu_batch(height=8, width=8, batch=2):
    gen = torch.Generator().manual_seed(0)
    seg = torch.randint(0, 4, (batch, 1, height, width), generator=gen).to(torch.uint8)
    seg[:, :, 0] = 255
    normal = torch.randint(0, 256, (batch, 3, height, width), generator=gen).to(torch.uint8)
    normal[:, :, :, 0] = 255
    depth = torch.rand(batch, 1, height, width, generator=gen) + 0.5
    return {"img": torch.zeros(batch, 3, height, width), "seg": seg, "normal": normal, "depth": depth,
            "name": ["a"] * batch}


def test_multitask_metrics_dict_layout_and_reset():
    tasks = ["seg", "sn", "depth"]
    metrics = MultiTaskMetrics(tasks, [4, 3, 1], "NYU_v2")
    batch = nyu_batch()
    outputs = [torch.randn(2, 4, 1, 1), torch.randn(2, 3, 1, 1), torch.rand(2, 1, 1, 1) + 0.5]
    metrics.update(outputs, batch)
    result = metrics.compute()
    assert list(result) == tasks
    assert set(result["seg"]) == {"mIoU", "Pixel Acc", "err"}
    assert set(result["sn"]) == {"Angle Mean", "Angle Median", "Angle 11.25", "Angle 22.5", "Angle 30", "Angle 45"}
    assert set(result["depth"]) == {"abs_err", "rel_err", "sigma_1.25", "sigma_1.25^2", "sigma_1.25^3"}
    assert all(type(v) is float for task in result.values() for v in task.values())
    metrics.reset()
    with pytest.raises(RuntimeError):
        metrics.compute()
    extras = MultiTaskMetrics(tasks, [4, 3, 1], "NYU_v2", extras=True)
    extras.update(outputs, batch)
    result = extras.compute()
    assert {"cosine_similarity", "Angle RMSE"} <= set(result["sn"])
    assert {"sq_rel_err", "rms"} <= set(result["depth"])
    with pytest.raises(ValueError, match="'normal'"):
        extras.update(outputs, {k: v for k, v in batch.items() if k != "normal"})


def test_multitask_metrics_match_single_metrics():
    batch = nyu_batch()
    outputs = [torch.randn(2, 4, 2, 2), torch.rand(2, 1, 2, 2) + 0.5]
    metrics = MultiTaskMetrics(["seg", "depth"], [4, 1], "NYU_v2", protocol=STANDARD)
    metrics.update(outputs, batch)
    seg, depth = SegMetric(4, 255, protocol=STANDARD), DepthMetric("NYU_v2", STANDARD)
    seg.update(outputs[0], batch["seg"])
    depth.update(outputs[1], batch["depth"])
    assert metrics.compute() == {"seg": seg.compute(), "depth": depth.compute()}


def test_multitask_taskonomy_five_tasks():
    gen = torch.Generator().manual_seed(1)
    b, h, w = 2, 4, 4
    batch = {"img": torch.zeros(b, 3, h, w), "seg": torch.randint(0, 17, (b, 1, h, w), generator=gen).int(),
             "normal": torch.rand(b, 3, h, w, generator=gen) * 2 - 1, "depth": torch.rand(b, 1, h, w, generator=gen),
             "depth_mask": torch.ones(b, 1, h, w), "keypoint": torch.rand(b, 1, h, w, generator=gen),
             "edge": torch.rand(b, 1, h, w, generator=gen)}
    tasks = ["seg", "sn", "depth", "keypoint", "edge"]
    metrics = MultiTaskMetrics(tasks, [17, 3, 1, 1, 1], "Taskonomy", seg_class_weights=np.linspace(0.5, 2, 17))
    metrics.update([torch.randn(b, 17, 2, 2), torch.randn(b, 3, 2, 2)] + [torch.rand(b, 1, 2, 2)] * 3, batch)
    result = metrics.compute()
    assert set(result["keypoint"]) == {"err"} and set(result["edge"]) == {"err"}
    # Without extras (test.py, re-train.py) Taskonomy's sn still reports the paper's Table 4 metric.
    assert "cosine_similarity" in result["sn"] and "Angle RMSE" not in result["sn"]
    refer = reference_metrics("Taskonomy", tasks)
    terms = (refer["seg"]["err"] / result["seg"]["err"] + refer["depth"]["abs_err"] / result["depth"]["abs_err"]
             + refer["keypoint"]["err"] / result["keypoint"]["err"] + refer["edge"]["err"] / result["edge"]["err"]
             + result["sn"]["cosine_similarity"] / refer["sn"]["cosine_similarity"])
    assert score(result, refer) == pytest.approx(terms)
    # On NYU v2 it stays an extra.
    nyu = MultiTaskMetrics(["sn"], [3], "NYU_v2")
    nyu.update([torch.randn(b, 3, 2, 2)], {"img": batch["img"], "normal": batch["normal"]})
    assert "cosine_similarity" not in nyu.compute()["sn"]


def test_paper_metric_sets():
    sn = [("Angle Mean", True), ("Angle Median", True), ("Angle 11.25", False), ("Angle 22.5", False),
          ("Angle 30", False)]
    depth = [("abs_err", True), ("rel_err", True), ("sigma_1.25", False), ("sigma_1.25^2", False),
             ("sigma_1.25^3", False)]
    for dataset in ("NYU_v2", "CityScapes"):
        assert paper_metrics(dataset, "seg") == [("mIoU", False), ("Pixel Acc", False)]
        assert paper_metrics(dataset, "depth") == depth
    assert paper_metrics("NYU_v2", "sn") == sn
    assert [paper_metrics("Taskonomy", t) for t in ("seg", "sn", "depth", "keypoint", "edge")] == [
        [("err", True)], [("cosine_similarity", False)], [("abs_err", True)], [("err", True)], [("err", True)]]
    with pytest.raises(ValueError, match="no task 'sn' on CityScapes"):
        paper_metrics("CityScapes", "sn")
    with pytest.raises(ValueError, match="unknown dataset"):
        paper_metrics("KITTI", "seg")
    assert lower_is_better("sn", "Angle RMSE") and not lower_is_better("sn", "Angle 45")


def test_reference_tables():
    nyu2 = reference_metrics("NYU_v2", ["seg", "sn"])
    assert nyu2 == {"seg": {"mIoU": 0.413, "Pixel Acc": 0.691},
                    "sn": {"Angle Mean": 15, "Angle Median": 11.5, "Angle 11.25": 49.2, "Angle 22.5": 76.7,
                           "Angle 30": 86.8}}
    nyu3 = reference_metrics("NYU_v2", ["seg", "sn", "depth"])
    assert nyu3["seg"] == {"mIoU": 0.275, "Pixel Acc": 0.589}
    assert nyu3["sn"] == {"Angle Mean": 17.5, "Angle Median": 14.2, "Angle 11.25": 34.9, "Angle 22.5": 73.3,
                          "Angle 30": 85.7}
    assert nyu3["depth"] == {"abs_err": 0.62, "rel_err": 0.25, "sigma_1.25": 57.9, "sigma_1.25^2": 85.8,
                             "sigma_1.25^3": 95.7}
    with pytest.raises(ValueError, match="2 or 3"):
        reference_metrics("NYU_v2", ["seg"])
    city_depth = {"abs_err": 0.017, "rel_err": 0.33, "sigma_1.25": 70.3, "sigma_1.25^2": 86.3, "sigma_1.25^3": 93.3}
    assert reference_metrics("CityScapes", ["seg", "depth"], 7, True) == {
        "seg": {"mIoU": 0.519, "Pixel Acc": 0.722}, "depth": city_depth}
    assert reference_metrics("CityScapes", ["seg", "depth"], 7, False)["seg"] == {"mIoU": 0.644, "Pixel Acc": 0.778}
    assert reference_metrics("CityScapes", ["seg", "depth"], 19, False)["seg"] == {"mIoU": 0.402, "Pixel Acc": 0.747}
    with pytest.raises(ValueError, match="19 seg classes"):
        reference_metrics("CityScapes", ["seg", "depth"], 19, True)
    with pytest.raises(ValueError):
        reference_metrics("CityScapes", ["seg", "depth"], 2, False)
    assert reference_metrics("Taskonomy", ["seg", "sn", "depth", "keypoint", "edge"]) == {
        "seg": {"err": 0.517}, "sn": {"cosine_similarity": 0.716}, "depth": {"abs_err": 0.021},
        "keypoint": {"err": 0.197}, "edge": {"err": 0.212}}
    assert reference_metrics("Taskonomy", ["depth", "edge"]) == {"depth": {"abs_err": 0.021}, "edge": {"err": 0.212}}
    with pytest.raises(ValueError, match="dataset"):
        reference_metrics("KITTI", ["seg"])


def test_reference_tables_are_copies():
    refer = reference_metrics("NYU_v2", ["seg", "sn"])
    refer["seg"]["mIoU"] = 99.0
    assert reference_metrics("NYU_v2", ["seg", "sn"])["seg"]["mIoU"] == 0.413


@pytest.mark.parametrize("dataset,tasks,classes,small", [
    ("NYU_v2", ["seg", "sn"], 40, False), ("NYU_v2", ["seg", "sn", "depth"], 40, False),
    ("CityScapes", ["seg", "depth"], 7, True), ("Taskonomy", ["seg", "sn", "depth", "keypoint", "edge"], 17, False)])
def test_score_of_reference_equals_number_of_tasks(dataset, tasks, classes, small):
    refer = reference_metrics(dataset, tasks, classes, small)
    val = {task: dict(values) for task, values in refer.items()}
    val["seg"]["unused metric"] = 123.0  # metrics absent from the reference are skipped
    assert score(val, refer) == pytest.approx(len(tasks))


def test_score_hand_example():
    refer = {"seg": {"mIoU": 0.4, "Pixel Acc": 0.5},
             "sn": {"Angle Mean": 20.0, "Angle Median": 10.0, "Angle 30": 80.0},
             "depth": {"abs_err": 0.5, "sigma_1.25": 50.0}}
    val = {"seg": {"mIoU": 0.8, "Pixel Acc": 0.5, "err": 1.0},  # err not in the reference: ignored
           "sn": {"Angle Mean": 10.0, "Angle Median": 20.0, "Angle 30": 40.0, "Angle 45": 1.0},
           "depth": {"abs_err": 0.25, "sigma_1.25": 25.0}}
    expected = (2.0 + 1.0) / 2 + (2.0 + 0.5 + 0.5) / 3 + (2.0 + 0.5) / 2
    assert score(val, refer) == pytest.approx(expected)
    # A task missing from val_metrics contributes nothing; 'err' is lower-is-better everywhere.
    assert score({"keypoint": {"err": 0.1}}, {"keypoint": {"err": 0.2}, "edge": {"err": 0.2}}) == pytest.approx(2.0)


def test_per_batch_updates_need_no_host_sync():
    # On the meta device any data-dependent op (.item(), boolean indexing, numpy) fails, so these updates
    # would not force a host sync on a GPU either. (Normals transfer their valid angles for the median.)
    meta = {"device": "meta"}
    seg = SegMetric(3, 255, class_weights=[1.0, 2.0, 3.0], protocol=STANDARD)
    seg.update(torch.randn(2, 3, 2, 2, **meta), torch.zeros(2, 1, 4, 4, dtype=torch.uint8, **meta))
    DepthMetric("NYU_v2").update(torch.randn(2, 1, 2, 2, **meta), torch.rand(2, 1, 4, 4, **meta))
    DepthMetric("Taskonomy", STANDARD, extras=True).update(
        torch.randn(2, 1, 2, 2, **meta), torch.rand(2, 1, 4, 4, **meta), torch.ones(2, 1, 4, 4, **meta))
    L1Metric().update(torch.randn(2, 1, 2, 2, **meta), torch.rand(2, 1, 4, 4, **meta))


@pytest.mark.parametrize("low,high", [((61, 81), (480, 640)), ((7, 9), (50, 71)), ((5, 5), (5, 5))])
def test_seg_nearest_path_equals_full_resolution_upsampling(low, high):
    # The metric reads argmax / log-softmax at network resolution through nearest source indices; it must
    # equal upsampling the logits to full resolution first, as the original does.
    gen = torch.Generator().manual_seed(0)
    classes = 6
    logits = torch.randn(2, classes, *low, generator=gen)
    weights = torch.linspace(0.5, 2.0, classes)
    gt = torch.randint(0, classes + 1, (2, 1, *high), generator=gen)
    gt[gt == classes] = 255
    metric = SegMetric(classes, 255, class_weights=weights)
    metric.update(logits, gt)
    up = torch.nn.functional.interpolate(logits, size=high)
    labels = gt[:, 0].long()
    valid = labels < classes
    pred = up.argmax(1)
    target = torch.where(valid, labels, torch.full_like(labels, 255))
    err = torch.nn.functional.cross_entropy(up, target, weight=weights, ignore_index=255).item()
    cm = confusion_matrix(labels[valid].numpy(), pred[valid].numpy(), labels=np.arange(classes))
    result = metric.compute()
    np.testing.assert_array_equal(metric.confusion_matrix(), cm)
    assert result["Pixel Acc"] == pytest.approx((pred == labels)[valid].double().mean().item(), rel=1e-12)
    assert result["err"] == pytest.approx(err, rel=1e-5)
