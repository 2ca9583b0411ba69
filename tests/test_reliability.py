"""Runs that cannot silently go wrong (docs/reliability.md): config changes on resume, stale or unfinished
policies, concurrent runs, non-finite data, and faults found at start-up in one line."""
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from _pipeline import ROOT, load_script, make_nyu, tiny_yaml
from engine import checkpoint as C
from engine import resume, validation
from engine.run import claim_folder, release_folder
from config import config_changes, load_config

PY_ENV = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)


@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    return make_nyu(tmp_path_factory.mktemp('nyu'))


@pytest.fixture(scope='module')
def trained(tmp_path_factory, nyu_root):
    """A finished tiny policy-learning run (it writes warmup, latest and best)."""
    base = tmp_path_factory.mktemp('trained')
    config, _ = tiny_yaml(base, nyu_root)
    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    return base


def copy_run(trained, tmp_path, nyu_root, **overrides):
    """A private copy of the trained run's folders and a tiny yaml pointing at them."""
    for name in ('checkpoint_dir', 'log_dir', 'result_dir'):
        shutil.copytree(trained / name, tmp_path / name)
    return tiny_yaml(tmp_path, nyu_root, **overrides)


def run(script, config, *extra, kill_at=None, timeout=300):
    env = dict(PY_ENV)
    if kill_at is not None:
        env['ADASHARE_KILL_AT_ITER'] = str(kill_at)
    return subprocess.run([sys.executable, os.path.join(ROOT, script), '--config', config, '--gpus', '-1', *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)


def exp_dir(tmp_path, opt, kind='checkpoint_dir'):
    return tmp_path / kind / opt['exp_name']


# ------------------------------------------------------------------ 1. config changes on resume
def test_config_changes_lists_keys_and_lets_harmless_ones_pass():
    old = {'train': {'lr': 0.001, 'total_iters': 10, 'print_freq': 5}, 'dataload': {'num_workers': 2}, '_source': 'a'}
    new = {'train': {'lr': 0.01, 'total_iters': 20, 'print_freq': 1}, 'dataload': {'num_workers': 0}, '_source': 'b'}
    assert config_changes(old, new, 'train_policy') == ['train.lr: 0.001 → 0.01']
    shorter = {'train': dict(old['train'], total_iters=5), 'dataload': old['dataload']}
    assert config_changes(old, shorter, 'train_policy') == ['train.total_iters: 10 → 5']


@pytest.mark.slow
def test_resume_with_changed_config_is_refused_then_applied(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root)
    assert run('train_policy.py', config, kill_at=10).returncode == -9
    state_path = exp_dir(tmp_path, opt) / 'resume_state.pth.tar'
    latest_path = exp_dir(tmp_path, opt) / 'latest_model.pth.tar'
    # One file on disk: `latest` and the resume state are two names of it (a hard link).
    assert os.path.samefile(state_path, latest_path) and os.stat(state_path).st_nlink == 2
    before = state_path.read_bytes()
    changed, _ = tiny_yaml(tmp_path, nyu_root, lr=0.01, init_temp=2.0, print_freq=1)
    refused = run('train_policy.py', changed)
    assert refused.returncode == 2
    assert 'train.lr: 0.001 → 0.01' in refused.stderr and 'train.init_temp: 5 → 2.0' in refused.stderr
    assert 'print_freq' not in refused.stderr  # cannot change the numbers
    assert '--fresh' in refused.stderr and '--resume_with_changes' in refused.stderr
    assert state_path.read_bytes() == before

    done = run('train_policy.py', changed, '--resume_with_changes')
    assert done.returncode == 0, done.stderr[-2000:]
    assert not state_path.exists(), 'the finished run removed its resume state'
    assert latest_path.exists() and os.stat(latest_path).st_nlink == 1, 'only the resume state\'s name went'
    record = json.loads((exp_dir(tmp_path, opt) / 'run_complete.json').read_text())
    assert record['config']['train']['lr'] == 0.01 and record['iteration'] == record['total']
    state = C.load_checkpoint(str(exp_dir(tmp_path, opt) / 'latest_model.pth.tar'))
    assert state['weights']['param_groups'][0]['lr'] == pytest.approx(0.01)  # applied, not dropped
    assert state['temp'] == pytest.approx(2.0 * 0.965 ** state['state']['p_epoch'])
    opt_txt = (exp_dir(tmp_path, opt, 'log_dir') / 'opt.txt').read_text()
    assert 'train.lr: 0.01' in opt_txt and '# changed at iteration 9 on ' in opt_txt
    assert 'train.lr: 0.001 → 0.01' in opt_txt
    loss_txt = (exp_dir(tmp_path, opt, 'log_dir') / 'loss.txt').read_text()
    assert 'changed at iteration 9' in loss_txt


@pytest.mark.slow
def test_retraining_resume_with_changed_config_is_refused(trained, tmp_path, nyu_root):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=6)
    retrain = load_script('re-train.py')
    assert run('re-train.py', config, kill_at=4).returncode == -9  # interrupted: its resume state (at 3) stays
    assert (exp_dir(tmp_path, opt) / 'retrain000_policyIterbest_resume_state.pth.tar').exists()
    changed, _ = tiny_yaml(tmp_path, nyu_root, retrain_total_iters=6, lr=0.01)
    with pytest.raises(resume.ConfigChangedError, match='train.lr: 0.001 → 0.01'):
        retrain.main(['--config', changed, '--gpus', '-1'])
    same, _ = tiny_yaml(tmp_path, nyu_root, retrain_total_iters=6)  # unchanged: resumes and finishes
    assert retrain.main(['--config', same, '--gpus', '-1']) == 0
    # finished: the resume state is gone, so a longer run is refused in one line pointing at --fresh
    assert not (exp_dir(tmp_path, opt) / 'retrain000_policyIterbest_resume_state.pth.tar').exists()
    longest, _ = tiny_yaml(tmp_path, nyu_root, retrain_total_iters=9)
    with pytest.raises(ValueError, match='finished at iteration 6 but retrain_total_iters is now 9.*--fresh'):
        retrain.main(['--config', longest, '--gpus', '-1'])


# ------------------------------------------------------------------ 2. stale and unfinished policies
@pytest.mark.slow
def test_policy_source_record_resampling_and_unfinished_runs(trained, tmp_path, nyu_root, capsys):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    folder = exp_dir(tmp_path, opt)
    retrain = load_script('re-train.py')
    assert retrain.main(['--config', config, '--gpus', '-1']) == 0
    pickle_path = folder / f'policyIterbest_rs{opt["seed"][0]:04d}.pickle'
    with open(pickle_path, 'rb') as f:
        assert set(pickle.load(f)) == {'task1_policy', 'task2_policy', 'task3_policy'}  # the original's keys
    source = json.loads((folder / f'policyIterbest_rs{opt["seed"][0]:04d}.source.json').read_text())
    best = C.load_checkpoint(str(folder / 'best_model.pth.tar'))
    assert source['label'] == 'best' and source['iteration'] == best['iter'] and source['run_complete'] is True
    assert source['logits_sha256'] == C.logits_digest(best['mtl-net'])

    # the policy-learning checkpoint changes (e.g. the run was resumed and finished): re-sampled
    best['mtl-net']['task1_logits'] += 1.0
    torch.save(best, folder / 'best_model.pth.tar')
    capsys.readouterr()
    assert retrain.main(['--config', config, '--gpus', '-1', '--fresh']) == 0
    assert 're-sampling the policy' in capsys.readouterr().out
    assert json.loads((folder / f'policyIterbest_rs{opt["seed"][0]:04d}.source.json').read_text())[
        'logits_sha256'] == C.logits_digest(best['mtl-net'])

    # an unfinished policy-learning run (a resume state at iteration 12) is refused unless allowed
    assert not (folder / 'resume_state.pth.tar').exists(), 'a finished run keeps no resume state'
    state = C.load_checkpoint(str(folder / 'latest_model.pth.tar'))
    state['state']['current_iter'] = 12
    torch.save(state, folder / 'resume_state.pth.tar')
    with pytest.raises(ValueError, match=r'unfinished \(iteration 12 of 26\).*--allow_unfinished'):
        retrain.main(['--config', config, '--gpus', '-1', '--fresh'])
    assert retrain.main(['--config', config, '--gpus', '-1', '--fresh', '--allow_unfinished']) == 0


@pytest.mark.slow
def test_test_py_marks_an_unfinished_retraining(trained, tmp_path, nyu_root, capsys):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1']) == 0
    tester = load_script('test.py')
    assert tester.main(['--config', config, '--gpus', '-1']) == 0
    out_file = exp_dir(tmp_path, opt, 'result_dir') / 'test_metrics_exp000.json'
    assert json.loads(out_file.read_text())['run_complete'] is True
    state_file = exp_dir(tmp_path, opt) / 'retrain000_policyIterbest_resume_state.pth.tar'
    assert not state_file.exists()  # removed at completion; an interrupted run's state looks like this:
    state = C.load_checkpoint(str(exp_dir(tmp_path, opt) / 'retrain000_policyIterbest_latest_model.pth.tar'))
    state['config'] = {'train': {'retrain_total_iters': 100}}
    torch.save(state, state_file)
    capsys.readouterr()
    assert tester.main(['--config', config, '--gpus', '-1']) == 0
    assert 'the retraining is unfinished (iteration 3 of 100' in capsys.readouterr().out
    assert json.loads(out_file.read_text())['run_complete'] is False


# ------------------------------------------------------------------ 3. one run per experiment folder
HOLD_LOCK = '''
import sys, time
from engine.run_lock import RunLock
RunLock(sys.argv[1], 'train_policy', 'holder').acquire()
print('held', flush=True)
time.sleep(120)
'''


@pytest.mark.slow
def test_a_second_run_is_refused_and_a_dead_holders_lock_taken_over(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root, total_iters=3, warm_up_iters=2)
    folder = str(exp_dir(tmp_path, opt))
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, folder], env=PY_ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        second = run('train_policy.py', config)
        assert second.returncode == 2
        assert f'another run holds this experiment folder (pid {holder.pid} on ' in second.stderr
        assert not os.path.exists(exp_dir(tmp_path, opt, 'log_dir') / 'loss.txt')
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    third = run('train_policy.py', config)
    assert third.returncode == 0, third.stderr[-2000:]
    assert f'taking over the lock {folder}/train_policy.lock of a run that is gone (pid {holder.pid}' in third.stdout
    assert not os.path.exists(os.path.join(folder, 'train_policy.lock'))  # released at the end


# ------------------------------------------------------------------ 4. non-finite data
def test_non_finite_depth_is_invalid_with_one_warning_per_file(tmp_path, nyu_root, capsys):
    from dataloaders.nyu_v2 import NYU_v2
    root = tmp_path / 'nyu'
    shutil.copytree(nyu_root, root)
    data = NYU_v2(str(root), 'test', eval_h=48, eval_w=64)
    depth_file = os.path.join(str(root), data.entries[0][3])
    depth = np.load(depth_file)
    depth[0, :5] = np.inf
    np.save(depth_file, depth)
    np.save(os.path.join(str(root), data.entries[1][3]), np.full_like(depth, np.nan))
    first = data[0]['depth']
    assert torch.isfinite(first).all() and (first[0, 0, :5] == 0).all()
    data[0]
    assert torch.equal(data[1]['depth'], torch.zeros_like(first))
    err = capsys.readouterr().err
    assert err.count(depth_file) == 1 and '5 of 3072 values are NaN/inf, treated as invalid pixels' in err
    assert 'the file has no valid pixel' in err


def test_result_json_is_standard_with_null_and_reason(tmp_path):
    tester = load_script('test.py')
    clean, undefined = tester.finite_metrics({'depth': {'abs_err': float('nan'), 'rms': 1.5}})
    assert clean == {'depth': {'abs_err': None, 'rms': 1.5}} and 'no valid pixel' in undefined['depth/abs_err']
    with pytest.raises(ValueError, match=r'depth/abs_err is not finite; standard JSON has no NaN'):
        C.atomic_write_json(str(tmp_path / 'r.json'), {'depth': {'abs_err': float('nan')}})
    from evaluation.summary import metric_tables
    assert metric_tables({**clean, 'undefined_metrics': undefined}, 'r.json') == {'depth': {'rms': 1.5}}


def test_retraining_without_a_finite_validation_score_fails(trained, tmp_path, nyu_root, monkeypatch):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    from envs.adashare_env import AdaShareEnv
    monkeypatch.setattr(AdaShareEnv, 'validate', lambda self, *a, **k: {'depth': {'abs_err': float('nan')}})
    monkeypatch.setattr(AdaShareEnv, 'validate_retrain', lambda self, *a, **k: {'depth': {'abs_err': float('nan')}},
                        raising=False)
    with pytest.raises(validation.NoFiniteValidationError, match=r"none of the 1 validation\(s\) gave a finite score "
                                                        r"\(depth/abs_err = nan\).*split 'test'"):
        load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--fresh'])


# ------------------------------------------------------------------ 5, 9. start-up checks, nothing written
def _nothing_written(tmp_path, opt):
    return not os.path.exists(exp_dir(tmp_path, opt, 'log_dir'))


def test_split_smaller_than_the_batch_is_found_at_start_up(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root, batch_size=5)  # train2: 2 items, test: 4 items
    with pytest.raises(ValueError, match=r"split 'train2' of .* has 2 item\(s\), fewer than the batch size 5"):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])
    with pytest.raises(ValueError, match=r"split 'test' of .* has 4 item\(s\), fewer than the batch size 5"):
        load_script('re-train.py').main(['--config', config, '--gpus', '-1'])
    assert _nothing_written(tmp_path, opt)


def _dataset_copy(tmp_path, nyu_root):
    """A copy of the tiny dataset and its parsed split index, to break one thing in."""
    root = tmp_path / 'nyu'
    shutil.copytree(nyu_root, root)
    return root, json.loads((root / 'nyu_v2_3task.json').read_text())


def test_empty_test_split_names_the_split(tmp_path, nyu_root):
    root, index = _dataset_copy(tmp_path, nyu_root)
    index['test'] = []
    (root / 'nyu_v2_3task.json').write_text(json.dumps(index))
    config, opt = tiny_yaml(tmp_path, root)
    with pytest.raises(ValueError, match=r"split 'test' of .* has 0 item\(s\), fewer than the batch size 1"):
        load_script('test.py').main(['--config', config, '--gpus', '-1'])
    assert _nothing_written(tmp_path, opt)


def test_missing_file_and_eval_size_are_found_at_start_up(tmp_path, nyu_root):
    root, index = _dataset_copy(tmp_path, nyu_root)
    missing = index['train2'][-1][2]
    os.remove(root / missing)
    config, opt = tiny_yaml(tmp_path, root)
    with pytest.raises(ValueError, match=rf"split '\w+' lists {missing}, but .* does not exist"):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])
    assert _nothing_written(tmp_path, opt)

    config, opt = tiny_yaml(tmp_path, nyu_root)
    opt['dataload']['eval_h'] = 40  # the data is 48x64
    (tmp_path / 'tiny.yml').write_text(yaml.safe_dump(opt))
    with pytest.raises(ValueError, match=r'is 48x64 but evaluation splits are read unresized at exactly 40x64'):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])
    assert _nothing_written(tmp_path, opt)


def test_unwritable_output_folder_is_found_at_start_up(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root)
    (tmp_path / 'log_dir').write_text('a file, not a folder')
    with pytest.raises(ValueError, match=r'paths.log_dir = .*log_dir: .*log_dir is a file, expected a folder'):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])
    assert not os.path.exists(exp_dir(tmp_path, opt))


def test_large_split_lists_are_checked_on_a_seeded_sample(tmp_path):
    from engine.preflight import check_split_files

    class Split:
        split, dataroot = 'train', str(tmp_path)
        entries = [[f'f{i}.png'] for i in range(10)]

    for i in range(10):
        (tmp_path / f'f{i}.png').write_bytes(b'')
    assert "split 'train': checked a seeded sample of 5 of 10 entries" in check_split_files([Split()], limit=5)


# ------------------------------------------------------------------ 6. segmentation labels out of range
def test_segmentation_label_out_of_range_names_file_label_and_range(tmp_path, nyu_root):
    import cv2
    from dataloaders.nyu_v2 import NYU_v2
    root = tmp_path / 'nyu'
    shutil.copytree(nyu_root, root)
    data = NYU_v2(str(root), 'train', 32, 32, num_seg_classes=40)
    seg_file = os.path.join(str(root), data.entries[3][1])
    seg = cv2.imread(seg_file, cv2.IMREAD_UNCHANGED)
    seg[5, 5] = 77
    cv2.imwrite(seg_file, seg)
    data[2]  # other files are fine, ignore pixels (255) included
    with pytest.raises(ValueError, match=rf"'{seg_file}' has label 77: expected 0..39 \(tasks_num_class 40\) or "
                                         r"255 \(ignored\)"):
        data[3]


# ------------------------------------------------------------------ 7, 8. disk full, leftover temp files
DISK_FULL = '''
import resource, torch
from engine.cli import run_main
from engine.checkpoint import atomic_save
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
run_main(lambda: atomic_save({'w': torch.zeros(100000)}, 'ckpt.pth.tar'))
'''


@pytest.mark.slow
def test_disk_full_is_one_line_and_keeps_the_old_file(tmp_path):
    (tmp_path / 'ckpt.pth.tar').write_bytes(b'old')
    done = subprocess.run([sys.executable, '-c', DISK_FULL], cwd=tmp_path, env=PY_ENV, capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[0] == 'error: cannot write ckpt.pth.tar: File too large (disk full or a file size limit?); the ' \
                       'previous file (if any) is intact' and len(lines) == 2 and 'Traceback' not in done.stderr
    assert (tmp_path / 'ckpt.pth.tar').read_bytes() == b'old' and os.listdir(tmp_path) == ['ckpt.pth.tar']


KILLED_MID_SAVE = '''
import os, sys, time
from engine.checkpoint import _atomic_write
def slow(f):
    f.write(b'partial')
    f.flush()
    print('writing', flush=True)
    time.sleep(120)
_atomic_write(os.path.join(sys.argv[1], 'latest_model.pth.tar'), slow)
'''


@pytest.mark.slow
def test_temp_files_of_killed_saves_are_removed_at_the_next_start(tmp_path, capsys):
    folder = tmp_path / 'checkpoint_dir' / 'exp'
    folder.mkdir(parents=True)
    saver = subprocess.Popen([sys.executable, '-c', KILLED_MID_SAVE, str(folder)], env=PY_ENV,
                             stdout=subprocess.PIPE, text=True)
    assert saver.stdout.readline().strip() == 'writing'
    saver.send_signal(signal.SIGKILL)
    saver.wait()
    leftover = [n for n in os.listdir(folder) if n.endswith('.tmp')]
    assert len(leftover) == 1
    live = folder / f'.other_model.pth.tar.{os.getpid()}.0123abcd.tmp'  # a live process's save: kept
    live.write_bytes(b'')
    opt = {'exp_name': 'exp', 'paths': {'checkpoint_dir': str(tmp_path / 'checkpoint_dir')}}
    claim_folder(opt, None, ['train_policy'], 'test')
    release_folder()
    assert f'removed 1 leftover temp file(s) of interrupted saves: {leftover[0]}' in capsys.readouterr().out
    assert sorted(os.listdir(folder)) == [live.name]


# ------------------------------------------------------------------ 10. messages
@pytest.mark.slow
def test_messages_of_finished_runs_resumes_and_fresh_starts(trained, tmp_path, nyu_root, capsys):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    train_policy, retrain = load_script('train_policy.py'), load_script('re-train.py')
    capsys.readouterr()
    assert train_policy.main(['--config', config, '--gpus', '-1']) == 0
    out = capsys.readouterr().out
    assert 'is complete: it already finished at iteration 26 (total_iters 26)' in out and 'resuming' not in out
    assert 'nothing to do. Results: ' in out
    assert retrain.main(['--config', config, '--gpus', '-1']) == 0
    assert retrain.main(['--config', config, '--gpus', '-1']) == 0
    out = capsys.readouterr().out
    assert 'best validation metrics None' not in out
    assert out.count('best: exp_id 0 (seed') == 2 and 'already finished at iteration 3' in out  # closing summaries
    assert out.count('best validation score') == 4  # each run's line and its closing summary
    assert retrain.main(['--config', config, '--gpus', '-1', '--fresh']) == 0
    loss_txt = (exp_dir(tmp_path, opt, 'log_dir') / 'loss.txt').read_text()
    assert 'retrain000 start' in loss_txt and 'retrain000 fresh start' in loss_txt
    from reporting.plots import parse_loss_txt
    assert parse_loss_txt(str(exp_dir(tmp_path, opt, 'log_dir') / 'loss.txt'))['skipped_lines'] == []


def test_no_policy_best_is_reported_and_retraining_points_to_latest(tmp_path, nyu_root, capsys):
    config, opt = tiny_yaml(tmp_path, nyu_root, total_iters=8)
    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    assert 'note: no policy `best` was written' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match='policy learning wrote no best .* set train.policy_iter: latest'):
        load_script('re-train.py').main(['--config', config, '--gpus', '-1'])


def test_nan_before_any_checkpoint_says_so_and_names_the_files(tmp_path, nyu_root, monkeypatch):
    import envs.losses
    config, opt = tiny_yaml(tmp_path, nyu_root)
    real = envs.losses.task_loss
    monkeypatch.setattr(envs.losses, 'task_loss', lambda task, *a, **k: real(task, *a, **k) * float('inf'))
    from envs.adashare_env import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match=r'iteration 1, warmup step: .*\(batch files: .*\.png.*\)\. Stopped '
                                                 r'before the update; no checkpoint was saved yet'):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])


def test_truncated_resume_state_mentions_fresh(trained, tmp_path, nyu_root):
    config, opt = copy_run(trained, tmp_path, nyu_root)
    path = exp_dir(tmp_path, opt) / 'resume_state.pth.tar'  # as an interrupted run leaves it, then truncated
    path.write_bytes((exp_dir(tmp_path, opt) / 'latest_model.pth.tar').read_bytes()[:1000])
    with pytest.raises(C.CheckpointError, match='truncated.*\n.*run with --fresh to start over'):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1'])


def test_refusals_never_advise_an_unsafe_load(tmp_path):
    import datetime
    torch.save({'mtl-net': {}, 'x': datetime.date(2020, 1, 1)}, tmp_path / 'evil.pth')
    with pytest.raises(C.CheckpointError) as info:
        C.load_checkpoint(str(tmp_path / 'evil.pth'))
    assert 'weights_only' not in str(info.value).replace('(weights_only) load refuses', '')
    assert 'add_safe_globals' not in str(info.value) and 'it refers to datetime.date' in str(info.value)


def test_train_policy_refuses_exp_ids(tmp_path, nyu_root, capsys):
    config, _ = tiny_yaml(tmp_path, nyu_root)
    with pytest.raises(SystemExit):
        load_script('train_policy.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '3'])
    assert '--exp_ids is for re-train.py and test.py' in capsys.readouterr().err


# ------------------------------------------------------------------ the house's fault battery (issue 23)
def _with_top_level(config, **changes):
    """The yaml at `config` with top-level keys changed (tiny_yaml changes only train.*)."""
    with open(config) as f:
        opt = yaml.safe_load(f)
    opt.update(changes)
    with open(config, 'w') as f:
        yaml.safe_dump(opt, f)
    return config


@pytest.mark.slow
def test_latest_is_the_final_iteration_and_a_changed_network_is_one_line(trained, tmp_path, nyu_root):
    # total_iters 26 is no multiple of val_freq 3: `latest` is still the final iteration
    _, opt = tiny_yaml(tmp_path, nyu_root)
    assert C.load_checkpoint(str(trained / 'checkpoint_dir' / opt['exp_name'] / 'latest_model.pth.tar'))['iter'] == 26
    # a retraining interrupted at iteration 4 resumed with another backbone: one line naming the key
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=6)
    assert run('re-train.py', config, kill_at=4).returncode == -9
    _with_top_level(config, backbone='ResNet18')
    with pytest.raises(resume.ConfigChangedError) as caught:
        load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--resume_with_changes'])
    message = str(caught.value)
    assert '\n' not in message and 'backbone: ' in message and "'ResNet10' → 'ResNet18'" in message
    assert '--fresh' in message


@pytest.mark.slow
def test_retraining_keeps_the_history_of_opt_txt(trained, tmp_path, nyu_root):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    options = exp_dir(tmp_path, opt, 'log_dir') / 'opt.txt'
    line = '# changed at iteration 5 on 2026-12-01T10:00:00+00:00: train.lr: 0.001 → 0.002'
    options.write_text(options.read_text() + line + '\n')
    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1']) == 0
    text = options.read_text()
    assert line in text.splitlines() and 'train.lr: ' in text  # the options are rewritten, the history kept


@pytest.mark.slow
def test_results_from_unfinished_runs_are_marked(trained, tmp_path, nyu_root, capsys):
    config, opt = copy_run(trained, tmp_path, nyu_root, retrain_total_iters=3)
    folder = exp_dir(tmp_path, opt)
    # a policy sampled from an unfinished policy-learning run (--allow_unfinished)
    state = C.load_checkpoint(str(folder / 'latest_model.pth.tar'))
    state['state']['current_iter'] = 12
    torch.save(state, folder / 'resume_state.pth.tar')
    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--allow_unfinished']) == 0
    done = json.loads((folder / 'retrain000_policyIterbest_run_complete.json').read_text())
    assert done['config']['policy_from_unfinished_run']['run_iteration'] == [12, 26]  # in the run record
    tester = load_script('test.py')
    capsys.readouterr()
    assert tester.main(['--config', config, '--gpus', '-1']) == 0
    result_file = exp_dir(tmp_path, opt, 'result_dir') / 'test_metrics_exp000.json'
    result = json.loads(result_file.read_text())
    assert result['run_complete'] is False and result['policy_from_unfinished_run']['run_iteration'] == [12, 26]
    assert 'sampled from an unfinished policy-learning run (iteration 12 of 26)' in capsys.readouterr().out
    # a truncated retraining resume state: unfinished, never reported like a released checkpoint
    (folder / 'resume_state.pth.tar').unlink()
    os.remove(folder / f'policyIterbest_rs{opt["seed"][0]:04d}.source.json')
    state_file = folder / 'retrain000_policyIterbest_resume_state.pth.tar'
    state_file.write_bytes((folder / 'retrain000_policyIterbest_latest_model.pth.tar').read_bytes()[:1000])
    assert tester.main(['--config', config, '--gpus', '-1']) == 0
    assert json.loads(result_file.read_text())['run_complete'] is False
    assert 'cannot be read (truncated or corrupt)' in capsys.readouterr().out


def test_missing_checkpoints_are_found_with_the_start_up_checks(tmp_path, nyu_root, capsys):
    config, opt = tiny_yaml(tmp_path, nyu_root)
    with pytest.raises(C.CheckpointNotFoundError, match=r'(?s)retrain000_policyIterbest_best_model.*re-train.py '
                                                        r'--config .*--exp_ids 0.*released.*docs/released.md'):
        load_script('test.py').main(['--config', config, '--gpus', '-1'])
    with pytest.raises(C.CheckpointNotFoundError, match=r'(?s)best_model.pth.tar.*train_policy.py --config '):
        load_script('re-train.py').main(['--config', config, '--gpus', '-1'])
    assert 'start-up checks passed' not in capsys.readouterr().out
    assert _nothing_written(tmp_path, opt)


def test_an_empty_split_is_not_told_to_shrink_the_batch(tmp_path, nyu_root):
    root, index = _dataset_copy(tmp_path, nyu_root)
    index['test'] = []
    (root / 'nyu_v2_3task.json').write_text(json.dumps(index))
    config, _ = tiny_yaml(tmp_path, root)
    with pytest.raises(ValueError, match='the split is empty') as caught:
        load_script('test.py').main(['--config', config, '--gpus', '-1'])
    assert 'smaller' not in str(caught.value)
