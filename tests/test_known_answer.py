"""The known-answer sharing benchmark (docs/known_answer.md): its target generators, its loader and config rules,
the scores on hand-made policies, and a short end-to-end run (train_policy.py, then the scores tool)."""
import json
import math
import os

import numpy as np
import pytest
import torch
import yaml

from dataloaders import build_dataset
from dataloaders.synthetic import generate_dataset, item_rng
from dataloaders.synthetic import known_answer as KA
from dataloaders.synthetic.classes import NYU_IGNORE
from dataloaders.synthetic.samples import make_sample
from evaluation import sharing_scores as S
from tests._pipeline import ROOT, load_script

H, W = 32, 48


@pytest.fixture(scope='module')
def dataroot(tmp_path_factory):
    root = tmp_path_factory.mktemp('known_answer')
    generate_dataset('known_answer', str(root), num_train=8, num_test=2, num_val=2, height=H, width=W, seed=5,
                     progress=False)
    return root


def _png(path):
    import cv2
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


# ------------------------------------------------------------------------------------------------ the targets
def test_permutation_is_a_fixed_bijection_without_fixed_points():
    perm = KA.SEG_PERMUTATION
    assert sorted(perm.tolist()) == list(range(40))  # a bijection of the 40 class ids
    assert np.all(perm != np.arange(40))  # one 40-cycle: no class keeps its id
    assert np.array_equal(perm, KA._one_cycle_permutation(40, KA.PERMUTATION_SEED))  # fixed forever
    seg = np.array([[0, 5, 39, NYU_IGNORE]], dtype=np.uint8)
    permuted = KA.permute_segmentation(seg)
    assert permuted[0, 3] == NYU_IGNORE and permuted[0, :3].tolist() == perm[[0, 5, 39]].tolist()
    with pytest.raises(ValueError, match='0..39'):
        KA.permute_segmentation(np.array([[40]], dtype=np.uint8))


def test_files_are_the_nyu_items_plus_targets_that_carry_the_known_relations(dataroot, tmp_path):
    nyu = tmp_path / 'nyu'
    generate_dataset('nyu_v2', str(nyu), num_train=8, num_test=2, num_val=2, height=H, width=W, seed=5,
                     progress=False)
    for folder in ('img', 'seg', 'normal_mask'):  # the same scenes, byte for byte
        assert (dataroot / folder / 'train_00003.png').read_bytes() == (nyu / folder / 'train_00003.png').read_bytes()
    assert np.array_equal(np.load(dataroot / 'depth' / 'train_00003.npy'), np.load(nyu / 'depth' / 'train_00003.npy'))
    index = json.loads((dataroot / 'known_answer.json').read_text())
    nyu_index = json.loads((dataroot / 'nyu_v2_3task.json').read_text())
    assert [e[:4] for e in index['train']] == nyu_index['train'] and len(index['train'][0]) == 8
    info = json.loads((dataroot / 'known_answer_info.json').read_text())
    assert info['seg_permutation'] == KA.SEG_PERMUTATION.tolist()

    seg_all, perm_all = [], []
    for i in range(8):
        seg, perm = _png(dataroot / 'seg' / f'train_{i:05d}.png'), _png(dataroot / 'seg_perm' / f'train_{i:05d}.png')
        assert np.array_equal(perm, KA.permute_segmentation(seg))
        seg_all.append(seg.ravel())
        perm_all.append(perm.ravel())
    seg_all, perm_all = np.concatenate(seg_all), np.concatenate(perm_all)
    # The duplicate carries exactly seg's information: each seg id maps to one seg_perm id and back.
    pairs = set(zip(seg_all.tolist(), perm_all.tolist()))
    assert len({s for s, _ in pairs}) == len(pairs) == len({p for _, p in pairs})


def test_texture_is_the_pattern_of_the_surface_hit_and_independent_of_the_class():
    sample = make_sample('nyu_v2', item_rng(5, 'train', 0), H, W)
    labels = KA.texture_labels(sample.scene, sample.rendering.hits.prim_id)
    ids = sample.rendering.hits.prim_id
    for pid in np.unique(ids[ids >= 0])[:10]:
        assert np.all(labels[ids == pid] == sample.scene.primitives[pid].material.pattern)
    assert set(np.unique(labels).tolist()) <= {0, 1, 2, 3, KA.TEXTURE_IGNORE}
    # By construction the pattern is drawn without looking at the kind: over many primitives each kind shows
    # several patterns (the class does not tell the texture).
    kinds: dict[str, set] = {}
    for i in range(12):
        scene = make_sample('nyu_v2', item_rng(5, 'train', i), 16, 16).scene
        for prim in scene.primitives:
            kinds.setdefault(prim.kind, set()).add(prim.material.pattern)
    common = [k for k in ('chair', 'table', 'floor', 'wall', 'cabinet') if k in kinds]
    assert common and sum(len(kinds[k]) >= 2 for k in common) >= len(common) - 1


def test_blur_is_a_linear_low_pass_of_the_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    blurred = KA.blur_target(image).astype(np.float64)
    grey = image.astype(np.float64) @ KA.LUMA
    assert abs(blurred.mean() - grey.mean()) < 2.0  # the grey level is kept...
    assert blurred.std() < 0.3 * grey.std()  # ...its fine detail removed
    flat = np.full((H, W, 3), 100, dtype=np.uint8)
    assert np.all(KA.blur_target(flat) == 100)  # no darkening at the border (reflected)


def test_noise_is_independent_of_the_image(dataroot):
    # Its own stream: the same (seed, split, index) gives the same noise whatever the scene drew.
    noise = _png(dataroot / 'noise' / 'train_00002.png')
    assert np.array_equal(noise, KA.noise_target(KA.noise_rng(5, 0, 2), H, W))
    # A different item's scene does not change it, and a different item has other noise.
    assert not np.array_equal(noise, _png(dataroot / 'noise' / 'train_00003.png'))
    # Statistically: uniform, and uncorrelated with the image's grey level and with seg.
    values, grey, seg = [], [], []
    for i in range(8):
        values.append(_png(dataroot / 'noise' / f'train_{i:05d}.png').ravel().astype(np.float64))
        grey.append(_png(dataroot / 'blur' / f'train_{i:05d}.png').ravel().astype(np.float64))
        seg.append(_png(dataroot / 'seg' / f'train_{i:05d}.png').ravel().astype(np.float64))
    values, grey, seg = np.concatenate(values), np.concatenate(grey), np.concatenate(seg)
    assert abs(values.mean() - 127.5) < 3 and abs(values.std() - 256 / math.sqrt(12)) < 3
    assert abs(np.corrcoef(values, grey)[0, 1]) < 0.03
    assert abs(np.corrcoef(values, seg)[0, 1]) < 0.03


def test_loader_returns_every_target_through_the_same_augmentation(dataroot):
    train = build_dataset('KnownAnswer', str(dataroot), 'train', crop_h=24, crop_w=24, num_seg_classes=40)
    item = train[0]
    assert {'seg_perm', 'texture', 'blur', 'noise'} <= set(item)
    assert item['seg_perm'].dtype == torch.uint8 and item['blur'].dtype == torch.float32
    for key in ('seg', 'seg_perm', 'texture', 'blur', 'noise'):
        assert item[key].shape == (1, 24, 24)
    # seg_perm is still the permuted seg after scale, mirror and crop (the same transform for both).
    seg, perm = item['seg'].numpy(), item['seg_perm'].numpy()
    assert np.array_equal(perm, KA.permute_segmentation(seg))
    valid = item['noise'] != 255  # 255 pads the crop: ignored by the L1 loss and metric
    assert item['noise'][valid].min() >= -1 and item['noise'][valid].max() <= 1
    test = build_dataset('KnownAnswer', str(dataroot), 'test', eval_h=H, eval_w=W, num_seg_classes=40)
    assert test[0]['blur'].shape == (1, H, W) and test.name() == 'KnownAnswer'
    # The same folder is an NYU v2 dataroot.
    assert len(build_dataset('NYU_v2', str(dataroot), 'test', eval_h=H, eval_w=W)) == 2


def test_config_rules_of_the_new_tasks(tmp_path):
    from config import ConfigError, load_config
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'known_answer', 'cpu.yml')) as f:
        opt = yaml.safe_load(f)

    def check(change, match):
        bad = json.loads(json.dumps(opt))
        change(bad)
        path = tmp_path / 'bad.yml'
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match=match):
            load_config(str(path), 'train_policy')

    load_config(os.path.join(ROOT, 'yamls', 'synthetic', 'known_answer', 'cpu.yml'), 'train_policy')
    check(lambda o: o['tasks_num_class'].__setitem__(2, 5), r"tasks_num_class.*expected 4 for task 'texture'")
    check(lambda o: o['tasks_num_class'].__setitem__(1, 13), r"expected 40 classes for task 'seg_perm'")
    check(lambda o: o['dataload'].__setitem__('dataset', 'NYU_v2'), r"'seg_perm'.*not available with")


def test_new_tasks_use_their_kinds_loss_and_metric():
    from envs.losses import l1_ignore_loss, seg_loss, task_loss
    from evaluation.metrics import L1Metric, MultiTaskMetrics, SegMetric
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 4, 4, 4), torch.randint(0, 4, (2, 1, 4, 4), dtype=torch.uint8)
    labels[0, 0, 0, 0] = 255
    batch = {'texture': labels, 'seg_perm': labels, 'blur': torch.rand(2, 1, 4, 4), 'img': torch.zeros(2, 3, 4, 4)}
    batch['blur'][0, 0, 1, 1] = 255  # crop padding: ignored
    assert task_loss('texture', logits, batch, 'KnownAnswer') == seg_loss(logits, labels.float(), 255)
    pred = torch.randn(2, 1, 4, 4)
    assert task_loss('blur', pred, batch, 'KnownAnswer') == l1_ignore_loss(pred, batch['blur'])
    metrics = MultiTaskMetrics(['seg_perm', 'texture', 'blur'], [4, 4, 1], 'KnownAnswer')
    assert isinstance(metrics.metrics['texture'], SegMetric) and isinstance(metrics.metrics['blur'], L1Metric)
    metrics.update([logits, logits, pred], batch)
    assert set(metrics.compute()['blur']) == {'err'} and 'mIoU' in metrics.compute()['texture']


def test_build_command_writes_the_configs_dataroot(tmp_path):
    from tools.known_answer import main as tool
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'known_answer', 'cpu.yml')) as f:
        opt = yaml.safe_load(f)
    opt['dataload'].update({'dataroot': str(tmp_path / 'data'), 'eval_h': 16, 'eval_w': 24})
    config = tmp_path / 'c.yml'
    config.write_text(yaml.safe_dump(opt))
    assert tool(['build', '--config', str(config), '--num-train', '2', '--num-test', '1', '--no-progress']) == 0
    index = json.loads((tmp_path / 'data' / 'known_answer.json').read_text())
    assert len(index['train']) == 2 and _png(tmp_path / 'data' / index['test'][0][7]).shape == (16, 24)
    opt['dataload']['dataset'] = 'NYU_v2'
    opt['tasks'], opt['tasks_num_class'], opt['lambdas'] = ['seg', 'sn'], [40, 3], [1, 1]
    config.write_text(yaml.safe_dump(opt))
    with pytest.raises(ValueError, match="expected 'KnownAnswer'"):
        tool(['build', '--config', str(config)])


# ------------------------------------------------------------------------------------------------ the scores
def test_scores_of_hand_made_policies():
    p_a = np.array([1.0, 1.0, 0.0, 0.0])
    p_b = np.array([1.0, 0.0, 0.0, 1.0])
    assert S.probability_agreement(p_a, p_a) == 1.0
    assert S.probability_agreement(p_a, p_b) == 0.5
    assert S.expected_decision_agreement(p_a, p_b) == 0.5
    half = np.full(4, 0.5)
    assert S.probability_agreement(half, half) == 1.0 and S.expected_decision_agreement(half, half) == 0.5
    assert S.decision_agreement([[1, 1, 0, 0], [1, 0, 0, 1]], [[1, 0, 0, 0], [1, 0, 0, 1]]).tolist() == [0.75, 1.0]
    assert S.expected_executed([0.2, 0.4, 0.9]) == pytest.approx(1.5)
    assert S.executed([[1, 0, 1], [0, 0, 0]]).tolist() == [2, 0]
    # Centre: x_b = (b + 1/2) / P.
    assert S.expected_centre([1, 0, 0, 0]) == 0.125 and S.expected_centre([0, 0, 1, 1]) == 0.75
    assert math.isnan(S.expected_centre([0, 0]))
    centres = S.centre([[1, 1, 0, 0], [0, 0, 0, 0]])
    assert centres[0] == 0.25 and math.isnan(centres[1])
    # Top-2 sharing (Jaccard over blocks 2, 3).
    assert S.expected_top_sharing([0, 0, 1, 1], [1, 1, 1, 1], 2) == 1.0
    assert S.expected_top_sharing([0, 0, 1, 0], [0, 0, 0, 1], 2) == 0.0
    assert S.expected_top_sharing([0, 0, 0.5, 0.5], [0, 0, 0.5, 0.5], 2) == pytest.approx(0.25 / 0.75)
    assert math.isnan(S.expected_top_sharing([1, 1, 0, 0], [1, 1, 0, 0], 2))  # nobody uses the top blocks
    shared = S.top_sharing([[0, 0, 1, 1], [1, 1, 0, 0]], [[0, 0, 1, 0], [1, 1, 0, 0]], 2)
    assert shared[0] == 0.5 and math.isnan(shared[1])
    assert S.execute_probabilities(np.array([[0.0, 0.0], [math.log(3), 0.0]])).tolist() == pytest.approx([0.5, 0.75])
    with pytest.raises(ValueError, match=r'k must be in \[1, 4\]'):
        S.expected_top_sharing(p_a, p_b, 5)
    with pytest.raises(ValueError, match='0 or 1'):
        S.executed([[2, 0]])


TASKS = ['seg', 'seg_perm', 'texture', 'sn', 'depth', 'blur', 'noise']


def _check(scores, name):
    return next(s for s in scores.checks if s.name.startswith(name))


def test_the_right_answer_passes_every_check_and_a_wrong_one_fails():
    right = np.array([
        [1, 1, 1, 1, 1, 1],  # seg
        [1, 1, 1, 1, 1, 1],  # seg_perm: its duplicate, the same policy
        [1, 1, 1, 0, 0, 0],  # texture: branches off seg at the top
        [1, 1, 1, 1, 1, 1],  # sn
        [1, 1, 1, 1, 1, 0],  # depth
        [1, 1, 0, 0, 0, 0],  # blur: two bottom blocks
        [0, 0, 0, 0, 0, 0],  # noise: nothing
    ], dtype=float)
    scores = S.known_answer_scores(TASKS, right, samples=np.stack([right, right]).astype(int))
    assert scores.top_k == 3 and scores.num_samples == 2
    assert all(s.holds for s in scores.checks if s.holds is not None)
    assert _check(scores, 'duplicate: decision agreement').probability == 1.0
    assert _check(scores, 'duplicate: decision agreement').sample_mean == 1.0
    ratio = _check(scores, 'low-level: executed blocks')
    assert ratio.probability == pytest.approx(2 / np.mean([6, 6, 6, 5]))
    assert _check(scores, 'unlearnable').probability == 0.0
    assert _check(scores, 'low-level: executed-block centre').probability == pytest.approx(
        2 / 12 - np.mean([0.5, 0.5, 0.5, (0.5 + 1.5 + 2.5 + 3.5 + 4.5) / 5 / 6]))
    assert _check(scores, 'top-3 sharing: unrelated').probability == -1.0
    seg_rows = [s for s in scores.per_task if s.subject == 'seg']
    assert seg_rows[0].probability == 6 and seg_rows[0].samples == [6.0, 6.0]

    wrong = right.copy()
    wrong[1] = [0, 0, 0, 1, 1, 1]  # the duplicate takes other blocks...
    wrong[5] = [0, 0, 0, 1, 1, 1]  # ...the low-level task top ones...
    wrong[6] = [1, 1, 1, 1, 1, 1]  # ...and the noise everything
    failed = S.known_answer_scores(TASKS, wrong)
    assert not _check(failed, 'duplicate: probability agreement').holds
    assert not _check(failed, 'low-level: executed-block centre').holds
    assert not _check(failed, 'unlearnable').holds
    assert failed.num_samples == 0 and _check(failed, 'duplicate: decision agreement').sample_mean is None
    # An undecided policy (every p = 0.5) passes no check but the trivial probability agreement.
    undecided = S.known_answer_scores(TASKS, np.full((7, 6), 0.5))
    assert [s.name for s in undecided.checks if s.holds] == ['duplicate: probability agreement']


def test_relations_follow_the_task_set():
    scores = S.known_answer_scores(['seg', 'sn', 'blur'], np.array([[1, 1], [1, 1], [1, 0]], dtype=float))
    assert [s.name for s in scores.checks] == ['low-level: executed blocks ÷ high-level mean',
                                               'low-level: executed-block centre − high-level mean']
    with pytest.raises(ValueError, match=r'expected \[3, P\]'):
        S.known_answer_scores(['seg', 'sn', 'blur'], np.ones((2, 2)))


def test_scores_table_renders_in_the_paper_table_formats():
    from reporting.known_answer import scores_table
    from reporting.tables import render_csv, render_latex, render_markdown
    probs = np.array([[1, 1], [1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [0, 0]], dtype=float)
    table = scores_table(S.known_answer_scores(TASKS, probs), 'Known answer')
    markdown = render_markdown(table)
    row = '| duplicate: decision agreement (seg, seg_perm) — holds | = 1 (holds if ≥ 0.9) | 1.000 | – |'
    assert row in markdown
    assert render_latex(table).startswith('% Known answer (generated by python tools/known_answer.py score')
    rows = render_csv(table).splitlines()
    assert rows[0] == 'section,score,known_answer,run_complete,from_probabilities,from_samples,' \
                      'from_probabilities std,from_samples std'
    assert any(r.startswith('per_task,executed blocks (noise),') and ',0.0,' in r for r in rows)


# ------------------------------------------------------------------------------------------------ end to end
def test_policy_learning_then_the_scores_tool(dataroot, tmp_path):
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'known_answer', 'cpu.yml')) as f:
        opt = yaml.safe_load(f)
    opt['exp_name'] = 'tiny_known_answer'
    opt['head_channels'] = 4
    opt['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    opt['dataload'].update({'dataroot': str(dataroot), 'crop_h': 16, 'crop_w': 16, 'eval_h': H, 'eval_w': W})
    opt['train'].update({'batch_size': 2, 'total_iters': 6, 'warm_up_iters': 2, 'val_freq': 3, 'print_freq': 3,
                         'weight_iter_alternate': 1, 'alpha_iter_alternate': 1, 'decay_lr_freq': None,
                         'decay_lr_rate': None})
    opt['quirks']['eval_iter'] = 0
    config = tmp_path / 'tiny.yml'
    config.write_text(yaml.safe_dump(opt))
    assert load_script('train_policy.py').main(['--config', str(config), '--gpus', '-1']) == 0
    checkpoint = tmp_path / 'checkpoint_dir' / 'tiny_known_answer' / 'latest_model.pth.tar'
    assert checkpoint.is_file()

    from tools.known_answer import main as tool
    out = tmp_path / 'scores'
    assert tool(['score', '--config', str(config), '--label', 'latest', '--samples', '3', '--out', str(out)]) == 0
    result = json.loads((out / 'known_answer_scores.json').read_text())
    assert result['tasks'] == TASKS and result['num_samples'] == 3 and result['blocks'] == 4
    # The scores are those of the checkpoint's own logits and of re-train.py's samples for seeds 88, 45, 50.
    logits = torch.load(checkpoint, weights_only=True)['mtl-net']
    probs = np.stack([S.execute_probabilities(logits[f'task{t + 1}_logits'].float().numpy()) for t in range(7)])
    torch_probs = np.stack([torch.softmax(logits[f'task{t + 1}_logits'].float(), -1)[:, 0].numpy() for t in range(7)])
    assert probs == pytest.approx(torch_probs, abs=1e-6)  # softmax(logits)[:, 0], as the training logs show
    from models.policy import sample_policy_numpy
    samples = np.stack([[p[:, 0].numpy() for p in sample_policy_numpy(
        [logits[f'task{t + 1}_logits'].float() for t in range(7)], np.random.RandomState(s))] for s in (88, 45, 50)])
    expected = S.known_answer_scores(TASKS, probs, samples).as_dict()
    assert [c['name'] for c in result['checks']] == [c['name'] for c in expected['checks']]
    for got, want in zip(result['checks'] + result['per_task'], expected['checks'] + expected['per_task']):
        for key in ('probability', 'sample_mean', 'sample_std'):
            assert (got[key] is None) == (want[key] is None)
            if want[key] is not None:
                assert got[key] == pytest.approx(want[key], abs=1e-12, nan_ok=True)
        assert got['holds'] == want['holds']
    for ext in ('md', 'tex', 'csv'):
        assert (out / f'known_answer_scores.{ext}').stat().st_size > 0
    assert (out / 'known_answer_policy.png').read_bytes()[:4] == b'\x89PNG'


# ------------------------------------------------------------------------------------------------ the comparison
def test_architecture_checks_match_the_sampled_scores_and_map_single_task_to_private_operators():
    rng = np.random.RandomState(3)
    decisions = rng.randint(0, 2, (4, len(TASKS), 4))
    by_operator = S.architecture_checks(TASKS, S.adashare_operators(decisions))
    sampled = {c.name: c for c in S.known_answer_scores(TASKS, decisions.mean(axis=0), decisions).checks}
    for check in by_operator:
        assert check.samples == pytest.approx(sampled[check.name].samples, nan_ok=True)
        assert check.probability is None
    single = S.architecture_checks(TASKS, S.private_operators(len(TASKS), 4)[None])
    values = {c.name: c.samples[0] for c in single}
    assert values['duplicate: decision agreement'] == 0.0  # private copies: nothing shared, nothing agreed
    assert values['top-2 sharing: unrelated − duplicate'] == 0.0
    shared = S.architecture_checks(TASKS, S.adashare_operators(np.ones((1, len(TASKS), 4), dtype=int)))
    assert {c.name: c.holds for c in shared} == {
        'duplicate: decision agreement': True, 'low-level: executed blocks ÷ high-level mean': False,
        'low-level: executed-block centre − high-level mean': False,
        'unlearnable: executed blocks ÷ high-level mean': False, 'top-2 sharing: unrelated − duplicate': False}


def test_decided_fraction():
    assert S.decided_fraction([[0.05, 0.5], [0.95, 0.2]]) == 0.5
    assert S.decided_fraction(np.full((3, 4), 0.5)) == 0.0
    with pytest.raises(ValueError):
        S.decided_fraction([0.5], margin=0.6)


def test_compare_command_end_to_end_on_tiny_runs(tmp_path, capsys):
    """tools/known_answer.py compare --quick: policy learning, random policies, retraining and testing of
    AdaShare, Random #1, Multi-Task and Single-Task on 96x128 known-answer data, then both tables."""
    data = tmp_path / 'data'
    generate_dataset('known_answer', str(data), num_train=8, num_test=2, num_val=2, height=96, width=128, seed=5,
                     progress=False)
    with open(os.path.join(ROOT, 'yamls', 'tables', 'synthetic_known_answer.yml')) as f:
        spec = yaml.safe_load(f)
    keep = ('Single-Task', 'Multi-Task', 'AdaShare', 'Random #1')
    spec['rows'] = [row for row in spec['rows'] if row['method'] in keep]
    assert [row['method'] for row in spec['rows']] == list(keep)
    spec_path = tmp_path / 'spec.yml'
    spec_path.write_text(yaml.safe_dump(spec))
    out = tmp_path / 'out'
    from tools.known_answer import main as tool
    assert tool(['compare', '--quick', '--seeds', '1', '--spec', str(spec_path), '--out', str(out),
                 '--dataroot', str(data)]) == 0
    printed = capsys.readouterr().out
    checks = (out / 'known_answer_checks.md').read_text()
    for method in keep:
        assert f'| {method} |' in checks
    assert (out / 'adashare_scores' / 'known_answer_policy.png').read_bytes()[:4] == b'\x89PNG'
    metrics = (out / 'spec.md').read_text()
    assert 'Δ_T' in metrics and '| AdaShare |' in metrics
    assert 'Known-answer checks' in printed


DERIVED = {'ablations/random1.yml': {}, 'ablations/random2.yml': {},
           'ablations/no_curriculum.yml': {'is_curriculum': False}, 'ablations/no_sparsity.yml': {'is_sparse': False},
           'ablations/no_sharing.yml': {'is_sharing': False},
           'baselines/multi_task.yml': {'architecture': 'multi_task'},
           'baselines/single_task.yml': {'architecture': 'single_task'}}


@pytest.mark.parametrize('rel', sorted(DERIVED))
def test_comparison_configs_differ_from_cpu_yml_only_in_name_and_switch(rel):
    folder = os.path.join(ROOT, 'yamls', 'synthetic', 'known_answer')
    with open(os.path.join(folder, 'cpu.yml')) as f:
        base = yaml.safe_load(f)
    with open(os.path.join(folder, rel)) as f:
        raw = yaml.safe_load(f)
    assert raw.pop('exp_name') == base.pop('exp_name') + '_' + os.path.splitext(os.path.basename(rel))[0]
    assert raw == dict(base, **DERIVED[rel])
    from config import load_config
    load_config(os.path.join(folder, rel), 'test' if 'architecture' in DERIVED[rel] else 'train_policy')


def test_comparison_spec_lists_every_comparison_config():
    with open(os.path.join(ROOT, 'yamls', 'tables', 'synthetic_known_answer.yml')) as f:
        spec = yaml.safe_load(f)
    configs = {row['config'] for row in spec['rows']}
    assert configs == {'yamls/synthetic/known_answer/cpu.yml'} | {f'yamls/synthetic/known_answer/{r}' for r in DERIVED}
    from tools.known_answer import AUTOMTL_ROW, _with_optional_rows
    from config import ARCHITECTURES
    methods = [row['method'] for row in _with_optional_rows(spec)['rows']]
    config_there = os.path.isfile(os.path.join(ROOT, AUTOMTL_ROW['config']))
    assert (AUTOMTL_ROW['method'] in methods) == ('automtl' in ARCHITECTURES and config_there)
