"""Reliability: a run killed (SIGKILL) in warm-up, in a weight phase and in a policy phase resumes exactly."""
import json
import os
import subprocess
import sys

import pytest
import torch

import envs.losses
from _pipeline import ROOT, load_script, make_nyu, tiny_yaml
from envs.adashare_env import NonFiniteLossError
from engine.checkpoint import load_checkpoint

# warm-up 1..6 (latest at 3, 6); alternation from 7: weights 7-9 (latest at 9), policy 10-11,
# weights 12-14 (latest at 14), policy 15-16, ... weights 27-29 (latest, and best: 29 - 7 >= 4*1*5), policy 30
# (the run completes: its resume state is replaced by run_complete.json).
SCHEDULE = dict(total_iters=30, warm_up_iters=7, val_freq=3, weight_iter_alternate=3, alpha_iter_alternate=2)


@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    return make_nyu(tmp_path_factory.mktemp('nyu'))


def run(script, config, kill_at=None, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('ADASHARE_KILL_AT_ITER', None)
    if kill_at is not None:
        env['ADASHARE_KILL_AT_ITER'] = str(kill_at)
    cmd = [sys.executable, os.path.join(ROOT, script), '--config', config, '--gpus', '-1', *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def final_state(tmp_path, opt, prefix=''):
    """The last `latest` checkpoint; a finished run keeps a completion record instead of its resume state."""
    ckpt_dir = tmp_path / 'checkpoint_dir' / opt['exp_name']
    assert not (ckpt_dir / f'{prefix}resume_state.pth.tar').exists(), 'a finished run removes its resume state'
    assert (ckpt_dir / f'{prefix}run_complete.json').exists()
    return load_checkpoint(str(ckpt_dir / f'{prefix}latest_model.pth.tar'))


def assert_same_run(a, b):
    assert a['iter'] == b['iter']
    assert a['temp'] == pytest.approx(b['temp'])
    assert a['state'] == b['state']
    for key, value in a['mtl-net'].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, b['mtl-net'][key], rtol=1e-5, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, b['mtl-net'][key]), key


@pytest.mark.slow
def test_policy_learning_killed_in_each_phase_resumes_exactly(tmp_path, nyu_root):
    ref_dir, cut_dir = tmp_path / 'reference', tmp_path / 'interrupted'
    ref_dir.mkdir()
    cut_dir.mkdir()
    ref_config, opt = tiny_yaml(ref_dir, nyu_root, **SCHEDULE)
    cut_config, _ = tiny_yaml(cut_dir, nyu_root, **SCHEDULE)

    done = run('train_policy.py', ref_config)
    assert done.returncode == 0, done.stderr[-3000:]
    for kill_at in (5, 13, 16):  # warm-up, weight phase, policy phase
        killed = run('train_policy.py', cut_config, kill_at=kill_at)
        assert killed.returncode == -9, killed.stderr[-3000:]
        assert (cut_dir / 'checkpoint_dir' / opt['exp_name'] / 'resume_state.pth.tar').exists(), 'kept when interrupted'
    resumed = run('train_policy.py', cut_config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming the interrupted run' in resumed.stdout

    reference, interrupted = final_state(ref_dir, opt), final_state(cut_dir, opt)
    assert reference['state']['p_epoch'] == 4
    records = [json.loads((d / 'checkpoint_dir' / opt['exp_name'] / 'run_complete.json').read_text())
               for d in (ref_dir, cut_dir)]
    assert records[0]['best_value'] > 0 and records[0]['best_value'] == pytest.approx(records[1]['best_value'])
    assert_same_run(reference, interrupted)
    for name in ('weights', 'alphas'):
        ref_states = reference[name]['state']
        for index, values in ref_states.items():
            for key, tensor in values.items():
                if torch.is_tensor(tensor):
                    torch.testing.assert_close(tensor, interrupted[name]['state'][index][key], rtol=1e-5, atol=1e-6)

    fresh = run('train_policy.py', cut_config, extra=('--fresh',), kill_at=2)
    assert fresh.returncode == -9 and 'resuming' not in fresh.stdout


@pytest.mark.slow
def test_retraining_killed_resumes_exactly(tmp_path, nyu_root):
    schedule = dict(SCHEDULE, retrain_total_iters=9)
    ref_dir, cut_dir = tmp_path / 'reference', tmp_path / 'interrupted'
    ref_dir.mkdir()
    cut_dir.mkdir()
    ref_config, opt = tiny_yaml(ref_dir, nyu_root, **schedule)
    cut_config, _ = tiny_yaml(cut_dir, nyu_root, **schedule)
    for config in (ref_config, cut_config):
        assert run('train_policy.py', config).returncode == 0
    assert run('re-train.py', ref_config).returncode == 0
    killed = run('re-train.py', cut_config, kill_at=5)
    assert killed.returncode == -9
    resumed = run('re-train.py', cut_config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming the interrupted retraining' in resumed.stdout
    prefix = 'retrain000_policyIterbest_'
    assert_same_run(final_state(ref_dir, opt, prefix), final_state(cut_dir, opt, prefix))


def test_nan_loss_stops_with_message_and_keeps_last_checkpoint(tmp_path, nyu_root, monkeypatch):
    config, opt = tiny_yaml(tmp_path, nyu_root, **SCHEDULE)
    real = envs.losses.task_loss
    calls = {'n': 0}

    def poisoned(task, *args, **kwargs):
        loss = real(task, *args, **kwargs)
        if task == 'depth':
            calls['n'] += 1
            if calls['n'] == 8:
                return loss * float('nan')
        return loss

    monkeypatch.setattr(envs.losses, 'task_loss', poisoned)
    with pytest.raises(NonFiniteLossError, match=r'iteration 8, weights step: depth loss = nan'):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])
    latest = load_checkpoint(str(tmp_path / 'checkpoint_dir' / opt['exp_name'] / 'latest_model.pth.tar'))
    assert latest['iter'] == 6
    assert all(torch.isfinite(v).all() for v in latest['mtl-net'].values() if v.is_floating_point())


def test_nan_loss_skip_mode_finishes(tmp_path, nyu_root, monkeypatch, capsys):
    config, opt = tiny_yaml(tmp_path, nyu_root, nonfinite='skip', **dict(SCHEDULE, total_iters=10))
    real = envs.losses.task_loss
    calls = {'n': 0}

    def poisoned(task, *args, **kwargs):
        loss = real(task, *args, **kwargs)
        if task == 'seg':
            calls['n'] += 1
            if calls['n'] == 2:
                return loss * float('nan')
        return loss

    monkeypatch.setattr(envs.losses, 'task_loss', poisoned)
    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    assert 'iteration 2, warmup step: seg loss = nan' in capsys.readouterr().out
    latest = load_checkpoint(str(tmp_path / 'checkpoint_dir' / opt['exp_name'] / 'latest_model.pth.tar'))
    assert all(torch.isfinite(v).all() for v in latest['mtl-net'].values() if v.is_floating_point())
