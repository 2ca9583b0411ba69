"""Figures of reporting.plots and tools/plots.py: valid PNGs, the correlation matrix, loss.txt parsing, run figures, TensorBoard (CPU)."""
import glob
import json
import shutil
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import models
from _pipeline import tiny_yaml
from tools.plots import main as plots_main
from reporting import plots
from engine.checkpoint import save_checkpoint, save_policy
from engine.logging import RunLogger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
TASKS = ['seg', 'sn', 'depth']


def read_png(path: str) -> np.ndarray:
    """Check the file is a non-empty PNG that matplotlib reads back; return its pixels [H, W, C]."""
    import matplotlib.image
    assert os.path.getsize(path) > 1000
    with open(path, 'rb') as f:
        assert f.read(8) == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.05  # something is drawn, not a blank canvas
    return pixels


def no_temp_files(folder: str) -> bool:
    return not [name for name in os.listdir(folder) if name.endswith('.tmp')]


PROBABILITIES = [torch.tensor([0.9, 0.2, 0.55, 0.1]), torch.tensor([0.8, 0.7, 0.3, 0.6]),
                 np.array([0.1, 0.95, 0.5, 0.45])]
POLICIES = [torch.tensor([[1, 0], [0, 1], [1, 0], [0, 1]]), torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0]]),
            torch.tensor([[0, 1], [1, 0], [1, 0], [0, 1]])]


# ------------------------------------------------------------------------------------------------ policy
def test_plot_policy_writes_png_with_and_without_decisions(tmp_path):
    alone = plots.plot_policy(PROBABILITIES, TASKS, str(tmp_path / 'alone.png'))
    both = plots.plot_policy(PROBABILITIES, TASKS, str(tmp_path / 'both.png'), policies=POLICIES, title='run')
    alone_px, both_px = read_png(alone), read_png(both)
    assert alone_px.shape[1] == both_px.shape[1] >= 500          # landscape, blocks across
    assert both_px.shape[0] > alone_px.shape[0] * 1.5              # a second panel below
    assert no_temp_files(str(tmp_path))


def test_plot_policy_accepts_softmax_rows_and_many_blocks(tmp_path):
    logits = torch.randn(33, 2)
    rows = torch.softmax(logits, dim=-1)                           # [P, 2] softmax rows: column 0 = execute
    path = plots.plot_policy([rows, rows.flip(1)], ['seg', 'sn'], str(tmp_path / 'r101.png'))
    assert read_png(path).shape[1] > 1500                          # the figure widens with the block count


@pytest.mark.parametrize('kwargs, message', [
    (dict(probabilities=PROBABILITIES, tasks=['seg', 'sn']), '2 task names'),
    (dict(probabilities=[torch.tensor([0.5, 1.5])], tasks=['seg']), 'in \\[0, 1\\]'),
    (dict(probabilities=[torch.ones(4), torch.ones(3)], tasks=['seg', 'sn']), 'same number of blocks'),
    (dict(probabilities=PROBABILITIES, tasks=TASKS, policies=[p[:3] for p in POLICIES]), r'\[4, 2\]'),
    (dict(probabilities=PROBABILITIES, tasks=TASKS, policies=[p * 2 for p in POLICIES]), '0 or 1'),
])
def test_plot_policy_rejects_bad_input(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.plot_policy(path=str(tmp_path / 'x.png'), **kwargs)
    assert not os.path.exists(tmp_path / 'x.png')


# ------------------------------------------------------------------------------------------------ correlation
def test_task_correlation_is_the_cosine_similarity_of_execute_probabilities(tmp_path):
    vectors = [np.asarray(p, dtype=np.float64) for p in PROBABILITIES]
    expected = np.array([[float(a @ b) / (np.sqrt(a @ a) * np.sqrt(b @ b)) for b in vectors] for a in vectors])
    matrix = plots.task_correlation(PROBABILITIES)
    np.testing.assert_allclose(matrix, expected, rtol=1e-12)
    # e.g. seg . sn by hand: (0.72 + 0.14 + 0.165 + 0.06) / (|seg| |sn|)
    seg_sn = 1.085 / (np.sqrt(0.81 + 0.04 + 0.3025 + 0.01) * np.sqrt(0.64 + 0.49 + 0.09 + 0.36))
    assert matrix[0, 1] == pytest.approx(seg_sn, rel=1e-6)  # the tensors are float32
    assert np.array_equal(matrix, matrix.T)
    assert np.array_equal(np.diag(matrix), np.ones(3))
    # [P, 2] softmax rows give the same matrix as their column 0
    rows = [torch.stack([torch.as_tensor(p, dtype=torch.float64), 1 - torch.as_tensor(p, dtype=torch.float64)], 1)
            for p in PROBABILITIES]
    np.testing.assert_allclose(plots.task_correlation(rows), matrix, rtol=1e-12)

    returned = plots.plot_task_correlation(PROBABILITIES, TASKS, str(tmp_path / 'corr.png'))
    np.testing.assert_array_equal(returned, matrix)
    pixels = read_png(str(tmp_path / 'corr.png'))
    assert 0.7 < pixels.shape[0] / pixels.shape[1] < 1.2           # roughly square


def test_task_correlation_rejects_an_all_zero_vector():
    with pytest.raises(ValueError, match=r'task\(s\) \[1\]'):
        plots.task_correlation([np.ones(4), np.zeros(4)])


# ------------------------------------------------------------------------------------------------ loss.txt
LOSS_TXT = textwrap.dedent("""\
    iter      10 | warmup   | seg/total 2.221  sn/total 0.0739269  depth/total 1.33878  total/total 7.71587
    iter      20 | warmup   | seg/total 1.71742  sn/total 0.0701756  depth/total 1.65058  total/total 8.07267
    iter      20 | val      | seg/mIoU 0.591178  seg/Pixel Acc 0.656332  sn/Angle 11.25 25.8445  depth/abs_err 1.9
    iter      30 | weights  | seg/total 2.0  sn/total 0.11  depth/total 1.88  total/total 9.9
    this line is not a log line
    iter      35 | policy   | seg/total 1.9  sn/total 0.1  depth/total 1.8  total/total 9.0  sparsity/total 2.1  sparsity/task1 0.7  hamming/total 0.00024
    iter      40 | val      | seg/mIoU nan  seg/Pixel Acc 0.7  sn/Angle 11.25 33.1  depth/abs_err 1.3  new/metric 5
    iter      45 | policy   | seg/total 1.7  sn/total 0.09  depth/total 1.6  total/total 8.0  sparsity/total 2.0  sparsity/task1 0.6  hamming/total 0.087

    iter       5 | retrain000 | seg/total 3.9  sn/total 0.75  depth/total 2.49  total/total 26.5
    iter       6 | retrain000_val | seg/mIoU 0.0109  seg/Pixel Acc 0.0105  sn/Angle 11.25 0  depth/abs_err 2.28
    """)


def test_parse_loss_txt_reads_phases_splits_and_extra_keys(tmp_path):
    path = tmp_path / 'loss.txt'
    path.write_text(LOSS_TXT)
    data = plots.parse_loss_txt(str(path))
    assert list(data['losses']) == ['warmup', 'weights', 'policy', 'retrain000']
    assert list(data['metrics']) == ['val', 'retrain000_val']
    assert data['skipped_lines'] == [5]
    warmup = data['losses']['warmup']
    assert warmup['iter'] == [10, 20]
    assert warmup['values']['seg/total'] == [2.221, 1.71742]
    assert list(warmup['values']) == ['seg/total', 'sn/total', 'depth/total', 'total/total']
    policy = data['losses']['policy']
    assert policy['iter'] == [35, 45] and policy['values']['hamming/total'] == [0.00024, 0.087]
    assert policy['values']['sparsity/task1'] == [0.7, 0.6]
    val = data['metrics']['val']
    assert val['iter'] == [20, 40]
    assert val['values']['seg/Pixel Acc'] == [0.656332, 0.7]          # tags with spaces
    assert val['values']['sn/Angle 11.25'] == [25.8445, 33.1]
    assert np.isnan(val['values']['seg/mIoU'][1])
    new = val['values']['new/metric']                                   # a tag first seen on line 2
    assert np.isnan(new[0]) and new[1] == 5.0
    assert data['metrics']['retrain000_val']['values']['depth/abs_err'] == [2.28]


def test_parse_loss_txt_reads_what_run_logger_writes(tmp_path):
    logger = RunLogger(str(tmp_path), 'exp')
    logger.log_losses(10, {'seg': {'total': 2.5}, 'total': {'total': torch.tensor(7.25)}}, 'warmup')
    logger.log_metrics(10, {'seg': {'mIoU': 0.25, 'Pixel Acc': 0.5}, 'sn': {'Angle 22.5': 81.0}}, 'val')
    logger.log_losses(3, {'seg': {'total': 1.5}}, 'retrain001')
    logger.close()
    data = plots.parse_loss_txt(logger.loss_file)
    assert data['losses']['warmup'] == {'iter': [10], 'values': {'seg/total': [2.5], 'total/total': [7.25]}}
    assert data['metrics']['val']['values'] == {'seg/mIoU': [0.25], 'seg/Pixel Acc': [0.5], 'sn/Angle 22.5': [81.0]}
    assert data['losses']['retrain001']['iter'] == [3]
    assert data['skipped_lines'] == []


def test_plot_training_curves_writes_png_and_returns_the_parsed_log(tmp_path):
    path = tmp_path / 'loss.txt'
    path.write_text(LOSS_TXT)
    data = plots.plot_training_curves(str(path), str(tmp_path / 'curves.png'))
    assert list(data['losses']) == ['warmup', 'weights', 'policy', 'retrain000']
    assert data['metrics']['val']['iter'] == [20, 40]
    pixels = read_png(str(tmp_path / 'curves.png'))
    assert pixels.shape[1] > 2 * pixels.shape[0]                    # panels side by side, losses over metrics
    assert no_temp_files(str(tmp_path))


def test_plot_training_curves_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        plots.plot_training_curves(str(tmp_path / 'missing.txt'), str(tmp_path / 'c.png'))
    (tmp_path / 'empty.txt').write_text('')
    with pytest.raises(ValueError, match='empty.txt: no log lines'):
        plots.plot_training_curves(str(tmp_path / 'empty.txt'), str(tmp_path / 'c.png'))


# ------------------------------------------------------------------------------------------------ predictions
def nyu_batch(height: int = 24, width: int = 32, batch: int = 2) -> dict:
    """A loader-style NYU batch: BGR minus IMG_MEAN, seg with ignore, raw normals with invalid, depth with zeros."""
    generator = torch.Generator().manual_seed(0)
    bgr = torch.randint(0, 256, (batch, 3, height, width), generator=generator).float()
    seg = torch.randint(0, 40, (batch, 1, height, width), generator=generator).to(torch.uint8)
    seg[:, :, :3] = 255
    normal = torch.randint(0, 255, (batch, 3, height, width), generator=generator).to(torch.uint8)
    normal[:, :, :, :4] = 255
    depth = torch.rand(batch, 1, height, width, generator=generator) * 9 + 0.5
    depth[:, :, -2:] = 0
    return {'img': bgr - torch.from_numpy(plots.IMG_MEAN_BGR)[:, None, None], 'seg': seg, 'normal': normal,
            'depth': depth, 'name': [f'im{i}.png' for i in range(batch)]}


def test_image_helpers_undo_the_loader_encoding():
    batch = nyu_batch()
    rgb = plots._image_rgb(batch['img'][0].numpy())
    np.testing.assert_allclose(rgb * 255, (batch['img'][0].numpy() + plots.IMG_MEAN_BGR[:, None, None])[::-1]
                               .transpose(1, 2, 0), atol=1e-3)
    palette = plots.segmentation_palette()
    assert palette.shape == (40, 3) and len({tuple(c) for c in palette}) == 40 and palette.sum(1).min() > 0
    labels = np.array([[0, 39, 255]])
    colours = plots._colour_labels(labels, palette, 40)
    assert (colours[0, 0] == palette[0]).all() and (colours[0, 2] == 0).all()
    # raw normals: PNG B,G,R channels shown reversed as RGB, invalid (255,255,255) black
    gt = np.zeros((3, 1, 2), dtype=np.uint8)
    gt[:, 0, 0] = (255, 128, 0)                                       # B, G, R
    gt[:, 0, 1] = 255
    prediction = torch.tensor([255.0, 128.0, 0.0])[:, None, None].expand(3, 1, 2)
    gt_rgb, pred_rgb = plots._normals_rgb(gt, prediction, (1, 2), decoded=False)
    np.testing.assert_allclose(gt_rgb[0, 0], [0.0, 128 / 255, 1.0])
    assert (gt_rgb[0, 1] == 0).all()
    np.testing.assert_allclose(pred_rgb[0, 0], gt_rgb[0, 0], atol=0.01)  # pointing along the GT colour = same colour
    # decoded normals: (x, y, z) -> (n + 1) / 2 as RGB, zero vectors black
    gt = np.zeros((3, 1, 2), dtype=np.float32)
    gt[:, 0, 0] = (0.0, 0.0, 1.0)
    gt_rgb, pred_rgb = plots._normals_rgb(gt, torch.from_numpy(gt[:, :, :1] * 3).expand(3, 1, 2), (1, 2), True)
    np.testing.assert_allclose(gt_rgb[0, 0], [0.5, 0.5, 1.0])
    assert (gt_rgb[0, 1] == 0).all()
    np.testing.assert_allclose(pred_rgb[0, 0], [0.5, 0.5, 1.0])


def test_plot_prediction_panel_draws_nyu_tasks_and_skips_others(tmp_path):
    batch = nyu_batch()
    outputs = [torch.randn(2, 40, 6, 8, requires_grad=True), torch.randn(2, 3, 6, 8), torch.rand(2, 1, 6, 8) * 5,
               torch.randn(2, 1, 6, 8)]
    path = plots.plot_prediction_panel(batch, outputs, TASKS + ['edge'], str(tmp_path / 'pred.png'), index=[0, 1])
    two_rows = read_png(path)
    one_row = read_png(plots.plot_prediction_panel(batch, outputs[:3], TASKS, str(tmp_path / 'one.png'), index=1))
    assert two_rows.shape[1] > 4 * one_row.shape[0]                   # image + 3 x (GT, prediction) across
    assert two_rows.shape[0] > 1.5 * one_row.shape[0]
    # one unbatched sample, decoded normals, no depth ground truth
    single = {'img': batch['img'][0], 'seg': batch['seg'][0], 'name': 'one.png',
              'normal': torch.nn.functional.normalize(torch.randn(3, 24, 32), dim=0)}
    path = plots.plot_prediction_panel(single, [o[:1] for o in outputs[:3]], TASKS, str(tmp_path / 'single.png'),
                                       decode_normals=True)
    read_png(path)
    with pytest.raises(ValueError, match='index 5 out of range'):
        plots.plot_prediction_panel(batch, outputs[:3], TASKS, str(tmp_path / 'bad.png'), index=5)
    with pytest.raises(ValueError, match='3 outputs for 2 tasks'):
        plots.plot_prediction_panel(batch, outputs[:3], TASKS[:2], str(tmp_path / 'bad.png'))


# ------------------------------------------------------------------------------------------------ one run
@pytest.fixture(scope='module')
def policy_checkpoint(tmp_path_factory):
    """A ResNet10 checkpoint with distinct learned logits per task."""
    model = models.build_model('ResNet10', [5, 3, 1], head_channels=8)
    logits = {'task1_logits': [[2.0, 0.0], [0.0, 0.0], [-1.0, 1.0], [0.5, 0.0]],
              'task2_logits': [[1.0, 0.0], [1.0, -1.0], [0.0, 2.0], [0.0, 0.0]],
              'task3_logits': [[-2.0, 0.0], [0.0, 0.0], [3.0, 0.0], [0.0, 1.0]]}
    with torch.no_grad():
        for name, value in logits.items():
            getattr(model, name).copy_(torch.tensor(value))
    path = str(tmp_path_factory.mktemp('ckpt') / 'best_model.pth.tar')
    save_checkpoint(path, model, iteration=120, temperature=4.2)
    expected = [torch.softmax(torch.tensor(v), -1)[:, 0].numpy() for v in logits.values()]
    return path, expected


def test_write_run_figures(tmp_path, policy_checkpoint):
    checkpoint, expected = policy_checkpoint
    (tmp_path / 'loss.txt').write_text(LOSS_TXT)
    out = tmp_path / 'figures'
    paths = plots.write_run_figures(checkpoint, TASKS, str(out), policies=POLICIES, loss_txt=str(tmp_path / 'loss.txt'))
    assert [os.path.basename(p) for p in paths] == ['policy.png', 'task_correlation.png', 'training_curves.png']
    for path in paths:
        read_png(path)
    probabilities = plots.checkpoint_execute_probabilities(torch.load(checkpoint, weights_only=True), TASKS)
    for got, want in zip(probabilities, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # several sampled architectures: one figure each, policy.png shows the probabilities only
    paths = plots.write_run_figures(checkpoint, TASKS, str(out), policies={'Iterbest_rs0048': POLICIES,
                                                                           'a/b': POLICIES})
    assert [os.path.basename(p) for p in paths] == ['policy.png', 'policy_Iterbest_rs0048.png', 'policy_a_b.png',
                                                    'task_correlation.png']
    with pytest.raises(ValueError, match=r"task1_logits.*2 task\(s\)"):
        plots.write_run_figures(checkpoint, ['seg', 'sn'], str(out))


def test_tensorboard_writer_gets_the_figures(tmp_path, policy_checkpoint):
    from tensorboardX import SummaryWriter
    checkpoint, _ = policy_checkpoint
    writer = SummaryWriter(logdir=str(tmp_path / 'tb'))
    plots.write_run_figures(checkpoint, TASKS, str(tmp_path / 'figures'), writer=writer)
    writer.close()
    events = glob.glob(str(tmp_path / 'tb' / 'events.out.tfevents.*'))
    assert len(events) == 1
    with open(events[0], 'rb') as f:
        content = f.read()
    assert b'figures/policy' in content and b'figures/task_correlation' in content
    assert PNG_SIGNATURE in content                                    # the figures are stored as PNG images


def test_cli_writes_the_figures(tmp_path, policy_checkpoint, capsys):
    checkpoint, _ = policy_checkpoint
    pickle_path = str(tmp_path / 'policyIterbest_rs0048.pickle')
    save_policy(pickle_path, POLICIES, TASKS)
    (tmp_path / 'loss.txt').write_text(LOSS_TXT)
    code = plots_main(['--checkpoint', checkpoint, '--tasks', *TASKS, '--out', str(tmp_path / 'out'),
                       '--loss-txt', str(tmp_path / 'loss.txt'), '--policy', pickle_path])
    assert code == 0
    printed = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in printed] == ['policy.png', 'policy_Iterbest_rs0048.png',
                                                      'task_correlation.png', 'training_curves.png']
    assert all(os.path.getsize(p) > 0 for p in printed)
    assert plots_main(['--checkpoint', str(tmp_path / 'nope.pth.tar'), '--tasks', 'seg', '--out', str(tmp_path)]) == 1
    assert 'nope.pth.tar' in capsys.readouterr().err


def test_import_and_draw_without_a_display(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import reporting.plots as plots
        assert 'matplotlib' not in sys.modules, 'importing reporting.plots must not import matplotlib'
        plots.plot_policy([[0.2, 0.9]], ['seg'], {str(tmp_path / 'p.png')!r})
        assert 'matplotlib.pyplot' not in sys.modules, 'figures are drawn without pyplot'
    """)
    env = {k: v for k, v in os.environ.items() if k not in ('DISPLAY', 'WAYLAND_DISPLAY', 'MPLBACKEND')}
    result = subprocess.run([sys.executable, '-c', code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / 'p.png').stat().st_size > 0


def test_task_correlation_uses_a_fixed_labelled_scale_with_values_in_the_cells():
    near = np.array([[1.0, 0.988], [0.988, 1.0]])
    fig = plots.correlation_figure(near, ['seg', 'sn'])
    ax = fig.axes[0]
    assert ax.images[0].get_clim() == (0.0, 1.0)  # not stretched over 0.988..1
    assert sorted(t.get_text() for t in ax.texts) == ['0.988', '0.988', '1.000', '1.000']
    assert 'cosine similarity' in fig.axes[1].get_ylabel()


def test_cli_takes_the_run_from_the_config(tmp_path, policy_checkpoint, capsys):
    checkpoint, _ = policy_checkpoint
    config, opt = tiny_yaml(tmp_path, str(tmp_path / 'data'))
    folder = tmp_path / 'checkpoint_dir' / opt['exp_name']
    folder.mkdir(parents=True)
    shutil.copy(checkpoint, folder / 'best_model.pth.tar')
    (tmp_path / 'log_dir' / opt['exp_name']).mkdir(parents=True)
    (tmp_path / 'log_dir' / opt['exp_name'] / 'loss.txt').write_text(LOSS_TXT)
    save_policy(str(folder / f'policyIterbest_rs{opt["seed"][1]:04d}.pickle'), POLICIES, TASKS)
    assert plots_main(['--config', config, '--exp_ids', '1']) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == str(tmp_path / 'result_dir' / opt['exp_name'] / 'figures' / 'policy.png')
    assert [os.path.basename(p) for p in printed] == ['policy.png', f'policy_Iterbest_rs{opt["seed"][1]:04d}.png',
                                                      'task_correlation.png', 'training_curves.png']


def test_tasks_come_from_the_run_record_beside_the_checkpoint(tmp_path, policy_checkpoint):
    checkpoint, _ = policy_checkpoint
    assert plots.checkpoint_tasks(checkpoint) == ['task1', 'task2', 'task3']  # no record: names from the logits
    shutil.copy(checkpoint, tmp_path / 'best_model.pth.tar')
    (tmp_path / 'run_complete.json').write_text(json.dumps({'iteration': 1, 'total': 1,
                                                            'config': {'tasks': ['seg', 'sn', 'depth']}}))
    assert plots.checkpoint_tasks(str(tmp_path / 'best_model.pth.tar')) == ['seg', 'sn', 'depth']
