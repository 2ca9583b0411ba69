"""End to end on generated data: train_policy.py -> re-train.py -> test.py, and a 2-process DDP run."""
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from _pipeline import ROOT, load_script, make_nyu, tiny_yaml
from engine.checkpoint import load_checkpoint, load_policy


@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    return make_nyu(tmp_path_factory.mktemp('nyu'))


@pytest.mark.slow
def test_policy_learning_retraining_and_testing(tmp_path, nyu_root, capsys):
    config, opt = tiny_yaml(tmp_path, nyu_root)
    ckpt_dir = tmp_path / 'checkpoint_dir' / opt['exp_name']

    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    for label in ('warmup', 'latest', 'best'):
        state = load_checkpoint(str(ckpt_dir / f'{label}_model.pth.tar'))
        assert {'mtl-net', 'weights', 'alphas', 'iter', 'temp'} <= set(state)
    warmup = load_checkpoint(str(ckpt_dir / 'warmup_model.pth.tar'))
    assert warmup['iter'] == 4
    latest = load_checkpoint(str(ckpt_dir / 'latest_model.pth.tar'))
    moved = max(float((latest['mtl-net'][f'task{t}_logits'] - 0.5).abs().max()) for t in (1, 2, 3))
    assert moved > 0.02, 'the policy logits did not move away from their init'
    assert latest['temp'] < 5.0
    assert os.path.exists(tmp_path / 'log_dir' / opt['exp_name'] / 'loss.txt')

    retrain = load_script('re-train.py')
    assert retrain.main(['--config', config, '--gpus', '-1', '--exp_ids', '0', '1']) == 0
    policies = {}
    for exp_id in (0, 1):
        seed = opt['seed'][exp_id]
        policies[exp_id] = load_policy(str(ckpt_dir / f'policyIterbest_rs{seed:04d}.pickle'))
        assert os.path.exists(ckpt_dir / f'policyIterbest_rs{seed:04d}.txt')
        assert os.path.exists(ckpt_dir / f'retrain{exp_id:03d}_policyIterbest_best_model.pth.tar')
        assert os.path.exists(ckpt_dir / f'retrain{exp_id:03d}_policyIterbest_latest_model.pth.tar')

    out = capsys.readouterr().out
    # a finished run keeps a completion record, not its resume state, and says so in a closing summary
    assert not any(ckpt_dir.glob('*resume_state.pth.tar'))
    assert (ckpt_dir / 'run_complete.json').exists() and (ckpt_dir / 'retrain001_policyIterbest_run_complete.json').exists()
    assert '== train_policy.py' in out and '== re-train.py' in out
    best_iter = load_checkpoint(str(ckpt_dir / 'best_model.pth.tar'))['iter']
    assert f'best: iteration {best_iter}, validation score ' in out
    assert str(ckpt_dir / 'best_model.pth.tar') in out and 'files written (' in out
    assert out.count('retraining the policy above') == 2

    assert load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0', '1']) == 0
    out = capsys.readouterr().out
    for exp_id in (0, 1):
        assert f'exp_id {exp_id} test metrics: seg: mIoU 0.' in out
        assert f'best: exp_id {exp_id} (seed {opt["seed"][exp_id]}): checkpoint retrain{exp_id:03d}_policyIterbest_best' in out
    assert "{'seg'" not in out, 'metrics print as one tidy line, not a dict'
    result = json.loads((tmp_path / 'result_dir' / opt['exp_name'] / 'test_metrics_exp001.json').read_text())
    assert set(result['seg']) == {'mIoU', 'Pixel Acc', 'err'}
    assert set(result['sn']) == {'Angle Mean', 'Angle Median', 'Angle 11.25', 'Angle 22.5', 'Angle 30', 'Angle 45'}
    assert set(result['depth']) == {'abs_err', 'rel_err', 'sigma_1.25', 'sigma_1.25^2', 'sigma_1.25^3'}
    assert result['policy']['task1_policy'] == policies[1][0].tolist()
    assert isinstance(result['val_score'], float) and result['run_complete'] is True

    from tools.summary import main as summary_main
    assert summary_main(['--config', config, '--exp_ids', '0', '1']) in (0, None)
    out = capsys.readouterr().out
    assert 'mean' in out and 'best run by validation score' in out


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_only_rank0_writes(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root, total_iters=10, val_freq=3)
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
           '--master_port', str(_free_port()), os.path.join(ROOT, 'train_policy.py'),
           '--config', config, '--gpus', '-1']
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt_dir = tmp_path / 'checkpoint_dir' / opt['exp_name']
    assert (ckpt_dir / 'warmup_model.pth.tar').exists()
    lines = (tmp_path / 'log_dir' / opt['exp_name'] / 'loss.txt').read_text().splitlines()
    assert lines and len(lines) == len(set(lines)), 'loss.txt was written by more than one rank'
    events = [f for f in os.listdir(tmp_path / 'log_dir' / opt['exp_name']) if f.startswith('events')]
    assert len(events) == 1
    state = load_checkpoint(str(ckpt_dir / 'latest_model.pth.tar'))
    assert not any(k.startswith('module.') for k in state['mtl-net'])
    assert torch.isfinite(state['mtl-net']['task1_logits']).all()
