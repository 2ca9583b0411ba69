"""Issue 23: what a new user and a fault battery found (progress in logs, the policy grid, figure titles,
commands suggested from another folder, a depth image without a finite value, retraining validation keys,
the missing-checkpoint hint)."""
from __future__ import annotations

import io
import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import engine.checkpoint as C
import reporting.plots as plots
from evaluation.metrics import DepthMetric, MetricProtocol, MultiTaskMetrics, NormalMetric
from evaluation.summary import ResultsNotFoundError, find_results
from utils.commands import REPO_ROOT, command, script_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ 1. synthetic data generator in a log
def test_synthetic_generator_writes_no_carriage_returns_when_stderr_is_a_file(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'synthetic_data.py'), '--layout', 'nyu_v2',
                             '--out', str(tmp_path / 'nyu'), '--num-train', '2', '--num-test', '1',
                             '--height', '16', '--width', '16'], cwd=str(tmp_path), capture_output=True,
                            timeout=120)  # bytes: text mode would turn tqdm's carriage returns into newlines
    assert result.returncode == 0, result.stderr
    assert b'\r' not in result.stderr and b'\r' not in result.stdout    # no tqdm redraws in a log
    assert b'rendering nyu_v2 to' in result.stderr                       # one plain start line
    assert b'images/s' in result.stdout                                  # and the closing line


def test_synthetic_generator_draws_its_bar_only_on_a_terminal():
    sys.path.insert(0, os.path.join(ROOT, 'tools'))
    try:
        import synthetic_data
    finally:
        sys.path.remove(os.path.join(ROOT, 'tools'))

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert synthetic_data.show_bar(False, Terminal()) is True
    assert synthetic_data.show_bar(True, Terminal()) is False
    assert synthetic_data.show_bar(False, io.StringIO()) is False


# ------------------------------------------------------------------ 2. the policy grid
PROBS = [torch.tensor([0.5, 0.4999, 0.9, 0.1]), torch.tensor([0.3, 0.2, 0.7, 0.2])]
HARD = [torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]]), torch.tensor([[0, 1], [0, 1], [1, 0], [0, 1]])]


def _row(text: str, label: str) -> list[str]:
    return next(line for line in text.splitlines() if line.startswith(label)).split()


def test_policy_grid_marks_ties_and_states_the_decision_rule():
    text = C.format_policy_table(None, ['seg', 'sn'], probabilities=PROBS)
    # 0.5 and 0.4999 both read 0.50: either side of the rule, so both are marked as a tie.
    assert _row(text, 'seg')[1:5] == ['0.50?', '0.50?', '0.90', '0.10']
    assert _row(text, 'sn')[1:5] == ['0.30', '0.20', '0.70', '0.20']
    assert 'iff p >= 0.5, so a tie executes' in text and '? = a tie' in text
    # the rule is the code's: hard_policy executes a tie (logits equal -> p = 0.5)
    from models.policy import hard_policy
    assert hard_policy([torch.zeros(1, 2)])[0].tolist() == [[1, 0]]


def test_policy_grid_labels_executed_and_expected_counts():
    both = C.format_policy_table(HARD, ['seg', 'sn'], probabilities=PROBS)
    assert _row(both, 'seg')[-2:] == ['executed', '2/4']
    assert _row(both, '  p(execute)')[-4:] == ['expected', '2.0', 'of', '4']
    assert '/4 expected' not in both
    assert '  p(execute)  ' in both                                     # the label no longer touches its cells
    hard = C.format_policy_table(HARD, ['seg', 'sn'])
    assert hard.splitlines()[0].endswith('executed') and _row(hard, 'seg')[-1] == '2/4'
    probs = C.format_policy_table(None, ['seg', 'sn'], probabilities=PROBS)
    assert probs.splitlines()[0].endswith('expected executions') and _row(probs, 'sn')[-3:] == ['1.4', 'of', '4']


def test_policy_grid_shows_blocks_not_gated_yet():
    default = C.format_policy_table(HARD, ['seg', 'sn'], probabilities=PROBS)
    assert '+' not in default and 'not gated yet' not in default           # callers without num_gated: unchanged
    text = C.format_policy_table(HARD, ['seg', 'sn'], probabilities=PROBS, num_gated=2)
    assert _row(text, 'seg')[1:5] == ['+', '+', 'X', '.']
    assert _row(text, 'seg')[-1] == '3/4'                                # the two ungated blocks always run
    assert _row(text, 'sn')[1:5] == ['+', '+', 'X', '.']
    assert _row(text, '#tasks')[1:] == ['2', '2', '2', '0']
    p_rows = [line.split() for line in text.splitlines() if line.startswith('  p(execute)')]
    assert p_rows[0][1:5] == ['+', '+', '0.90', '0.10'] and p_rows[0][-3] == '3.0'
    assert '+ = not gated yet, always executed (curriculum: only blocks 2-3 are gated so far' in text
    # a task whose gated blocks are all skipped is idle although the ungated ones run
    idle = C.format_policy_table([torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]])], ['seg'], num_gated=2)
    assert 'warning: seg executes none of the 2 gated blocks' in idle
    with pytest.raises(ValueError, match='num_gated'):
        C.format_policy_table(HARD, ['seg', 'sn'], num_gated=-1)


# ------------------------------------------------------------------ 3. figure titles in words
def _figures(monkeypatch) -> list:
    captured: list = []
    monkeypatch.setattr(plots, '_save_figure', lambda fig, path, *a, **k: captured.append(fig) or path)
    return captured


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]


def test_policy_figure_subtitle_is_in_words(tmp_path, monkeypatch):
    figures = _figures(monkeypatch)
    plots.plot_policy(PROBS, ['seg', 'sn'], str(tmp_path / 'p.png'), policies=HARD)
    titles = _titles(figures[0])
    assert titles[0] == 'execute probability per task and block'
    assert not any('softmax' in t or 'logits' in t or '[:' in t for t in titles)


def test_training_curve_panels_are_titled_in_words(tmp_path, monkeypatch):
    log = tmp_path / 'loss.txt'
    log.write_text(textwrap.dedent("""\
        iter      10 | warmup   | seg/total 2.2  sn/total 0.07  depth/total 1.3  total/total 7.7
        iter      35 | policy   | seg/total 1.9  total/total 9.0  sparsity/total 2.1  sparsity/task1 0.7  hamming/total 0.1
        iter      40 | val      | seg/mIoU 0.2  sn/Angle Mean 33.1  depth/abs_err 1.3
        """))
    figures = _figures(monkeypatch)
    plots.plot_training_curves(str(log), str(tmp_path / 'c.png'))
    titles = _titles(figures[0])
    assert {'segmentation loss', 'surface normal loss', 'depth loss', 'total loss (task losses and regularisers)',
            'sparsity regulariser', 'sharing regulariser (Hamming)'} <= set(titles)
    assert 'segmentation mIoU (validation, higher is better)' in titles
    assert 'depth abs_err (validation, lower is better)' in titles
    assert not any('/' in t for t in titles)                          # no `seg/total` tags left
    assert plots.loss_title('sparsity/task1') == 'sparsity regulariser, task 1'
    assert plots.loss_title('unknown/tag') == 'unknown/tag'


# ------------------------------------------------------------------ 4. commands named from the user's folder
def test_script_path_from_the_root_above_it_and_elsewhere(tmp_path):
    assert REPO_ROOT == ROOT
    assert script_path('test.py', ROOT) == 'test.py'
    parent = os.path.dirname(ROOT)
    assert script_path('tools/summary.py', parent) == os.path.join(os.path.basename(ROOT), 'tools', 'summary.py')
    assert script_path('test.py', str(tmp_path)) == os.path.join(ROOT, 'test.py')
    assert script_path('test.py', os.path.join(ROOT, 'tools')) == os.path.join(ROOT, 'test.py')
    assert command('test.py', '--config', 'my dir/x.yml', '--exp_ids', '<E>', cwd=ROOT) == \
        "python test.py --config 'my dir/x.yml' --exp_ids <E>"


def test_summary_suggests_a_test_command_that_works_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResultsNotFoundError) as err:
        find_results(str(tmp_path / 'results'), 'exp', None, 'yamls/x_test.yml')
    assert f'python {os.path.join(ROOT, "test.py")} --config yamls/x_test.yml --gpus -1 --exp_ids E' in str(err.value)
    with pytest.raises(ResultsNotFoundError) as err:
        find_results(str(tmp_path / 'results'), 'exp', [3], 'yamls/x_test.yml')
    assert f'python {os.path.join(ROOT, "test.py")} --config yamls/x_test.yml --gpus -1 --exp_ids 3' in str(err.value)
    monkeypatch.chdir(ROOT)
    with pytest.raises(ResultsNotFoundError) as err:
        find_results(str(tmp_path / 'results'), 'exp', None, 'yamls/x_test.yml')
    assert 'python test.py --config yamls/x_test.yml --gpus -1 --exp_ids E' in str(err.value)


def test_summary_usage_names_the_script_from_another_folder(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'summary.py')], cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f'usage: python {os.path.join(ROOT, "tools", "summary.py")}' in result.stderr


# ------------------------------------------------------------------ 5. a depth image without a finite value
def _depth_batches(bad: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, str]]:
    g = torch.Generator().manual_seed(0)
    good = [(torch.rand(1, 1, 4, 4, generator=g) * 3 + 0.5, torch.rand(1, 1, 4, 4, generator=g) * 3 + 0.5)
            for _ in range(2)]
    return [(good[0][0], good[0][1], 'a.png'), (torch.ones(1, 1, 4, 4), bad, 'bad.png'),
            (good[1][0], good[1][1], 'c.png')]


@pytest.mark.parametrize('protocol', [MetricProtocol(), MetricProtocol.standard()], ids=['original', 'standard'])
@pytest.mark.parametrize('bad', ['nan', 'inf', 'zeros'])
def test_depth_image_without_a_valid_pixel_is_skipped_not_nan(protocol, bad, capsys):
    image = {'nan': torch.full((1, 1, 4, 4), math.nan), 'inf': torch.full((1, 1, 4, 4), math.inf),
             'zeros': torch.zeros(1, 1, 4, 4)}[bad]          # zeros: what the loaders make of a NaN file
    batches = _depth_batches(image)
    metric, reference = DepthMetric('NYU_v2', protocol, extras=True), DepthMetric('NYU_v2', protocol, extras=True)
    for pred, gt, name in batches:
        metric.update(pred, gt, names=[f'{bad}-{protocol.pixel_pooled}-{name}'])
    for pred, gt, _ in (batches[0], batches[2]):
        reference.update(pred, gt)
    result = metric.compute()
    assert all(math.isfinite(v) for v in result.values()), result
    assert result == pytest.approx(reference.compute())             # the other images, exactly as without it
    assert metric.skipped_items() == [f'{bad}-{protocol.pixel_pooled}-bad.png']
    err = capsys.readouterr().err
    assert err.count('bad.png') == 1 and 'has no valid pixel' in err
    metric.compute()
    assert 'bad.png' not in capsys.readouterr().err                 # warned once


def test_non_finite_depth_pixels_are_invalid_and_the_rest_of_the_image_counts():
    gt = torch.rand(1, 1, 4, 4) + 1.0
    pred = gt + 0.5
    gt_with_inf = gt.clone()
    gt_with_inf[0, 0, 0, :2] = math.inf
    metric = DepthMetric('NYU_v2')
    metric.update(pred, gt_with_inf)
    assert metric.compute()['abs_err'] == pytest.approx(0.5) and int(metric.count) == 14
    taskonomy = DepthMetric('Taskonomy')
    taskonomy.update(pred, gt_with_inf, torch.ones(1, 1, 4, 4))
    assert taskonomy.compute()['abs_err'] == pytest.approx(0.5)


def test_multitask_metrics_pass_the_batch_names_and_stay_sync_free():
    metrics = MultiTaskMetrics(['depth'], [1], 'NYU_v2')
    gt = torch.rand(2, 1, 4, 4) + 1.0
    gt[1] = math.nan
    metrics.update([gt + 0.25], {'img': torch.zeros(2, 3, 4, 4), 'depth': gt, 'name': ['mt-x.png', 'mt-y.png']})
    assert metrics.metrics['depth'].skipped_items() == ['mt-y.png']
    assert metrics.compute()['depth']['abs_err'] == pytest.approx(0.25)
    meta = {'device': 'meta'}  # any data-dependent op fails on the meta device: no host sync per batch
    DepthMetric('NYU_v2').update(torch.randn(2, 1, 2, 2, **meta), torch.rand(2, 1, 4, 4, **meta), names=['a', 'b'])


def test_env_validation_names_the_item_without_a_valid_depth_pixel(tmp_path, capsys):
    from test_env import nyu_batch, tiny_opt
    from envs import AdaShareEnv
    torch.manual_seed(0)
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'), is_train=False)
    env.set_fixed_policy([torch.tensor([[1, 0]] * env.network.num_policy_rows)] * 3)
    batches = [nyu_batch(1, seed) for seed in range(3)]
    batches[1]['depth'][:] = math.nan
    batches[1]['name'] = ['env-empty.png']
    metrics = env.validate(batches, 'eval_fixed', eval_iter=-1)
    assert math.isfinite(metrics['depth']['abs_err']) and math.isfinite(metrics['depth']['rel_err'])
    assert 'item env-empty.png has no valid pixel' in capsys.readouterr().err


# ------------------------------------------------------------------ 6. retraining validation keys
def test_validate_retrain_reports_the_originals_keys_with_cosine_similarity(tmp_path):
    from test_env import nyu_batch, tiny_opt
    from envs import AdaShareEnv
    torch.manual_seed(0)
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'), is_train=False)
    env.set_fixed_policy([torch.tensor([[1, 0]] * env.network.num_policy_rows)] * 3)
    batches = [nyu_batch(2, seed) for seed in range(2)]
    metrics = env.validate_retrain(batches)
    # the original re-train.py's eval_fix_policy: sn cosine + angles (no RMSE), depth without sq_rel/rms
    assert list(metrics['sn']) == ['Angle Mean', 'Angle Median', 'Angle 11.25', 'Angle 22.5', 'Angle 30',
                                   'Angle 45', 'cosine_similarity']
    assert list(metrics['depth']) == ['abs_err', 'rel_err', 'sigma_1.25', 'sigma_1.25^2', 'sigma_1.25^3']
    assert list(metrics['seg']) == ['mIoU', 'Pixel Acc', 'err']
    # the value is the metrics module's (one evaluation code): the same as a validation with extras
    extras = env.validate(batches, 'eval_fixed', 10, extras=True)
    assert metrics['sn']['cosine_similarity'] == extras['sn']['cosine_similarity']
    assert -1.0 <= metrics['sn']['cosine_similarity'] <= 1.0
    assert isinstance(env.metrics_for(False, cosine=True).metrics['sn'], NormalMetric)


# ------------------------------------------------------------------ 7. the missing-checkpoint message
def test_missing_checkpoint_lists_every_way_to_get_it(tmp_path):
    path = str(tmp_path / 'exp' / 'retrain000_policyIterbest_best_model.pth.tar')
    hint = ('re-train.py writes it: python re-train.py --config yamls/x.yml --exp_ids 0\n'
            'or place the released checkpoint files there: see docs/released.md')
    with pytest.raises(C.CheckpointNotFoundError) as info:
        C.load_checkpoint(path, hint=hint)
    lines = str(info.value).splitlines()
    assert lines[-3:] == ['to get it, either:',
                          '  re-train.py writes it: python re-train.py --config yamls/x.yml --exp_ids 0',
                          '  or place the released checkpoint files there: see docs/released.md']
    assert 'produce it with' not in str(info.value)
    with pytest.raises(C.CheckpointNotFoundError) as info:
        C.load_checkpoint(path, hint='python re-train.py --config yamls/x.yml --exp_ids 0')
    assert str(info.value).splitlines()[-1] == 'to get it: python re-train.py --config yamls/x.yml --exp_ids 0'
