"""engine/threads.py: the `speed.cpu_threads` key, its `auto` rule and applying it (docs/threads.md)."""
import copy
import glob
import os

import pytest
import torch
import yaml

from config import ConfigError, load_config
from engine import threads as T
from engine.threads import apply_cpu_threads, choose_threads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC = sorted(glob.glob(os.path.join(ROOT, 'yamls', 'synthetic', '**', '*.yml'), recursive=True))
PAPER = sorted(p for folder in ('adashare', 'baselines', 'ablations')
               for p in glob.glob(os.path.join(ROOT, 'yamls', folder, '**', '*.yml'), recursive=True))
NO_ENV: dict = {}


def _load(path: str) -> dict:
    """The config as the script that reads it first loads it (baselines have no policy learning)."""
    if path.endswith('_test.yml'):
        return load_config(path, 'test')
    with open(path) as handle:
        architecture = (yaml.safe_load(handle) or {}).get('architecture', 'adashare')
    return load_config(path, 'train_policy' if architecture == 'adashare' else 're-train')


@pytest.fixture
def threads():
    """Restore torch's intra-op thread count after the test; no thread variables in the environment."""
    before = torch.get_num_threads()
    saved = {name: os.environ.pop(name) for name in T.THREAD_ENV if name in os.environ}
    yield before
    torch.set_num_threads(before)
    os.environ.update(saved)


@pytest.fixture
def base() -> dict:
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml')) as handle:
        return yaml.safe_load(handle)


def _with(opt: dict, value) -> dict:
    """A copy of `opt` with speed.cpu_threads = value."""
    out = copy.deepcopy(opt)
    out.setdefault('speed', {})['cpu_threads'] = value
    return out


def _write(tmp_path, cfg) -> str:
    path = tmp_path / 'x.yml'
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


# ----------------------------------------------------------------------------------------- the rule
def test_config_lists_are_not_empty():
    assert len(SYNTHETIC) >= 20 and len(PAPER) >= 30


@pytest.mark.parametrize('path', SYNTHETIC, ids=lambda p: os.path.relpath(p, ROOT))
def test_auto_gives_the_synthetic_configs_one_thread_on_cpu(path):
    opt = _load(path)
    assert opt['speed']['cpu_threads'] == 'auto'  # the default: no synthetic yaml needs to set it
    assert T.is_small(opt)
    assert choose_threads(opt, 'cpu', NO_ENV)[0] == 1
    assert choose_threads(opt, torch.device('cpu'), NO_ENV)[0] == 1


@pytest.mark.parametrize('path', PAPER, ids=lambda p: os.path.relpath(p, ROOT))
def test_auto_leaves_the_paper_configs_at_torchs_default(path):
    opt = _load(path)
    assert opt['speed']['cpu_threads'] == 'auto' and not T.is_small(opt)
    assert choose_threads(opt, 'cpu', NO_ENV) == (None, 'speed.cpu_threads auto: not a small config')


def test_step_pixels_counts_training_validation_and_test_batches():
    synthetic = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    assert T.step_pixels(synthetic) == 4 * 96 * 128  # a validation batch beats 4 x 48 x 48 crops
    paper = _load(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task.yml'))
    assert T.step_pixels(paper) == 16 * 480 * 640
    test_only = _load(os.path.join(ROOT, 'yamls', 'adashare', 'cityscapes_2task_test.yml'))
    assert T.step_pixels(test_only) == 256 * 512  # test.py: one image at the default eval size
    small_res = dict(test_only, dataload=dict(test_only['dataload'], small_res=True))
    assert T.step_pixels(small_res) == 128 * 256
    assert not T.is_small(small_res)  # few pixels, but 1024-channel heads on ResNet34


def test_shape_thresholds():
    opt = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_2task.yml'))
    big_crop = copy.deepcopy(opt)
    big_crop['dataload'].update(crop_h=321, crop_w=321)
    assert not T.is_small(big_crop)
    wide_head = dict(opt, head_channels=T.SMALL_HEAD_CHANNELS * 2)
    assert not T.is_small(wide_head)
    big_batch = copy.deepcopy(opt)
    big_batch['train']['batch_size'] = 64
    assert not T.is_small(big_batch)


def test_auto_is_off_on_gpus_and_yields_to_the_environment():
    opt = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    assert choose_threads(opt, 'cuda:0', NO_ENV) == (None, 'speed.cpu_threads auto: not on a CPU')
    assert choose_threads(opt, 'cpu', {'OMP_NUM_THREADS': '2'}) == (
        None, 'speed.cpu_threads auto: OMP_NUM_THREADS=2 in the environment')
    assert choose_threads(opt, 'cpu', {'MKL_NUM_THREADS': '1'})[0] is None
    assert choose_threads(opt, 'cpu', {'OMP_NUM_THREADS': ''})[0] == 1  # empty = unset


def test_explicit_values():
    opt = _load(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task.yml'))
    assert choose_threads(_with(opt, 3), 'cpu', {'OMP_NUM_THREADS': '1'}) == (3, 'speed.cpu_threads 3')
    assert choose_threads(_with(opt, 2), 'cuda', NO_ENV)[0] == 2
    small = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    assert choose_threads(_with(small, 'torch'), 'cpu', NO_ENV) == (None, 'speed.cpu_threads torch')
    assert choose_threads({k: v for k, v in small.items() if k != 'speed'}, 'cpu', NO_ENV)[0] == 1  # absent = auto
    for bad in (0, -1, True, 1.5, 'two'):
        with pytest.raises(ValueError, match='speed.cpu_threads'):
            choose_threads(_with(small, bad), 'cpu', NO_ENV)


# ----------------------------------------------------------------------------------------- the key
@pytest.mark.parametrize('value', ['auto', 'torch', 1, 2, 16])
def test_key_accepts(tmp_path, base, value):
    base.setdefault('speed', {})['cpu_threads'] = value
    assert load_config(_write(tmp_path, base), 'train_policy')['speed']['cpu_threads'] == value
    assert load_config(_write(tmp_path, base), 'test')['speed']['cpu_threads'] == value


@pytest.mark.parametrize('value, shown, tail', [
    (0, '0', ''), (-2, '-2', ''), (1.5, '1.5', ''), (True, 'True', ''), ('all', "'all'", ''),
    ('2', "'2'", ', not a string (remove the quotes)'), (None, 'None', ''), ([1], '[1]', '')])
def test_key_refuses_with_the_key_named(tmp_path, base, value, shown, tail):
    base.setdefault('speed', {})['cpu_threads'] = value
    path = _write(tmp_path, base)
    with pytest.raises(ConfigError) as info:
        load_config(path, 'train_policy')
    assert str(info.value) == f"{path}: speed.cpu_threads = {shown}: expected 'auto', 'torch' or an integer >= 1{tail}"


# ----------------------------------------------------------------------------------------- applying it
def test_apply_sets_one_thread_for_a_small_config_and_returns_the_note(threads):
    torch.set_num_threads(2)
    opt = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    note = apply_cpu_threads(opt, torch.device('cpu'))
    assert torch.get_num_threads() == 1
    assert note == 'CPU threads: 1 (speed.cpu_threads auto: small config (49152 pixels per step); was 2)'
    assert '\n' not in note


def test_apply_an_integer(threads):
    torch.set_num_threads(1)
    opt = _with(_load(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task.yml')), 2)
    assert apply_cpu_threads(opt, 'cpu') == 'CPU threads: 2 (speed.cpu_threads 2; was 1)'
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize('case', ['torch', 'paper', 'gpu', 'environment'])
def test_apply_leaves_torchs_count_untouched(threads, case):
    torch.set_num_threads(2)
    small = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    device = 'cpu'
    if case == 'torch':
        opt = _with(small, 'torch')
    elif case == 'paper':
        opt = _load(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task.yml'))
    elif case == 'gpu':
        opt, device = small, torch.device('cuda', 0)
    else:
        opt = small
        os.environ['OMP_NUM_THREADS'] = '2'
    try:
        assert apply_cpu_threads(opt, device) is None
    finally:
        os.environ.pop('OMP_NUM_THREADS', None)
    assert torch.get_num_threads() == 2


# ----------------------------------------------------------------------------------------- the benchmark
def test_benchmark_grid_and_table(threads):
    from deploy.threads_benchmark import busy_load, markdown_table, run_grid
    opt = _load(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    lines = []
    rows = run_grid([('synthetic/nyu_v2_3task', opt)], threads=(1, 2), busy=(0,), repeats=1, iters=1,
                    batch_size=2, phases=('warm-up', 'validation'), log=lines.append)
    assert torch.get_num_threads() == threads  # restored
    assert [(r['threads'], r['phase']) for r in rows] == [(1, 'warm-up'), (1, 'validation'), (2, 'warm-up'),
                                                          (2, 'validation')]
    assert all(r['median_s'] > 0 and len(r['samples']) == 1 for r in rows) and len(lines) == 2
    table = markdown_table(rows).splitlines()
    assert table[0].startswith('| config | phase | threads | load | median s/iter |') and len(table) == 6
    assert '| synthetic/nyu_v2_3task | warm-up | 2 | no load of ours |' in table[4]
    with busy_load(1) as procs:
        assert procs[0].poll() is None
    assert procs[0].poll() is not None  # stopped
