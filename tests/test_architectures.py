"""The `architecture:` key end to end: config rules, the shipped baseline yamls, the env's optimiser
groups and losses for baselines, and re-train.py -> test.py for every paper baseline."""
import copy
import glob
import json
import os

import pytest
import torch
import yaml

from _pipeline import ROOT, load_script, make_nyu, tiny_yaml
from envs import AdaShareEnv
from models.baselines import ARCHITECTURES as BASELINE_REGISTRY
from config import ARCHITECTURES, ConfigError, load_config

BASELINES = ('single_task', 'multi_task', 'cross_stitch', 'sluice', 'nddr', 'mtan')
SETTINGS = {  # baseline folder -> the AdaShare config it is derived from
    'baselines/nyu_v2_2task': 'adashare/nyu_v2_2task.yml',
    'baselines/nyu_v2_3task': 'adashare/nyu_v2_3task.yml',
    'baselines/cityscapes_2task': 'adashare/cityscapes_2task.yml',
    'baselines/taskonomy_5task': 'adashare/taskonomy_5task.yml',
    'synthetic/baselines/nyu_v2_3task': 'synthetic/nyu_v2_3task.yml',
}


def _raw(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _write(tmp_path, opt, name='x.yml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(opt))
    return str(path)


# ----------------------------------------------------------------------------------------- config
def test_config_choices_are_the_registry_plus_adashare():
    # automtl: the AutoMTL supermodel (models/automtl, envs.METHOD_ENVS), beside AdaShare and the baselines
    from envs import METHOD_ENVS
    assert set(ARCHITECTURES) == {'adashare', *METHOD_ENVS} | set(BASELINE_REGISTRY) == {'adashare', 'automtl', *BASELINES}


def test_architecture_defaults_to_adashare_and_bad_values_are_one_line(tmp_path):
    base = _raw(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    assert load_config(_write(tmp_path, base), 'train_policy')['architecture'] == 'adashare'
    bad = dict(base, architecture='crossstitch')
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, bad), 're-train')
    message = str(info.value)
    assert 'architecture' in message and 'crossstitch' in message and 'cross_stitch' in message
    assert '\n' not in message


def test_baselines_refuse_policy_learning_and_single_task_mixing(tmp_path):
    base = _raw(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml'))
    with pytest.raises(ConfigError, match=r"architecture = 'nddr': expected adashare: baselines have no "
                                          r"policy to learn; train them from scratch with re-train.py"):
        load_config(_write(tmp_path, dict(base, architecture='nddr')), 'train_policy')
    one_task = dict(base, architecture='cross_stitch', tasks=['seg'], tasks_num_class=[40], lambdas=[1])
    with pytest.raises(ConfigError, match=r"architecture = 'cross_stitch': needs at least 2 tasks"):
        load_config(_write(tmp_path, one_task), 'test')
    single = dict(one_task, architecture='single_task')
    assert load_config(_write(tmp_path, single), 'test')['architecture'] == 'single_task'
    with pytest.raises(ConfigError, match=r'retrain_from_pl = True: expected False with architecture mtan'):
        load_config(_write(tmp_path, dict(base, architecture='mtan', retrain_from_pl=True)), 're-train')


@pytest.mark.parametrize('folder', sorted(SETTINGS))
@pytest.mark.parametrize('arch', BASELINES)
def test_shipped_baseline_yaml_is_its_setting_with_one_key_switched(folder, arch):
    path = os.path.join(ROOT, 'yamls', folder, f'{arch}.yml')
    for script in ('re-train', 'test'):
        load_config(path, script)
    raw, base = _raw(path), _raw(os.path.join(ROOT, 'yamls', SETTINGS[folder]))
    assert raw.pop('architecture') == arch
    assert raw.pop('exp_name') == f"{base.pop('exp_name')}_{arch}"
    if arch == 'sluice':
        assert raw.pop('baseline') == {'sluice_orthogonality': 0.01}
    assert raw == base


def test_every_baseline_folder_is_complete():
    for folder in SETTINGS:
        names = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, 'yamls', folder, '*.yml')))
        assert names == sorted(BASELINES), folder


# ----------------------------------------------------------------------------------------- env
def _opt(tmp_path, architecture, **top):
    config, _ = tiny_yaml(tmp_path, tmp_path / 'data')
    opt = load_config(config, 're-train')
    opt['architecture'] = architecture
    opt.update(top)
    return opt


def test_adashare_env_keeps_two_weight_groups_and_the_policy_optimiser(tmp_path):
    env = AdaShareEnv(_opt(tmp_path, 'adashare'), torch.device('cpu'))
    assert env.has_policy and len(env.optimizers['weights'].param_groups) == 2 and 'alphas' in env.optimizers


def test_baseline_env_groups_fusion_parameters_with_their_learning_rate(tmp_path):
    opt = _opt(tmp_path, 'nddr', baseline={'fusion_lr_mult': 100.0, 'sluice_orthogonality': 0.0})
    env = AdaShareEnv(opt, torch.device('cpu'))
    assert not env.has_policy and 'alphas' not in env.optimizers
    heads, backbone, fusion = env.optimizers['weights'].param_groups
    assert heads['lr'] == opt['train']['lr'] and backbone['lr'] == opt['train']['backbone_lr']
    assert fusion['lr'] == pytest.approx(100.0 * opt['train']['backbone_lr'])
    grouped = {id(p) for g in (heads, backbone, fusion) for p in g['params']}
    assert grouped == {id(p) for p in env.network.parameters()}


def _sluice_env(tmp_path, weight, batch):
    """A freshly seeded Sluice env in train mode with `batch` set (the same weights for the same seed)."""
    torch.manual_seed(0)
    opt = _opt(tmp_path, 'sluice', baseline={'sluice_orthogonality': weight, 'fusion_lr_mult': 1.0})
    env = AdaShareEnv(opt, torch.device('cpu'))
    env.train()
    env.set_inputs(batch)
    return env


def test_sluice_loss_adds_the_weighted_orthogonality_penalty(tmp_path):
    batch = {'img': torch.randn(2, 3, 32, 32), 'seg': torch.randint(0, 40, (2, 1, 32, 32)),
             'normal': torch.rand(2, 3, 32, 32) * 255, 'depth': torch.rand(2, 1, 32, 32) + 0.5}
    totals = {}
    for weight in (0.0, 2.0):
        env = _sluice_env(tmp_path, weight, batch)
        outputs = env.forward('retrain')
        penalty = env.network.auxiliary_loss().detach()
        task = env.task_losses(outputs)
        expected = sum(lam * task[t] for lam, t in zip(env.lambdas, env.tasks)).detach() + weight * penalty
        report = _sluice_env(tmp_path, weight, batch).optimize('retrain')
        assert float(report['orthogonality']['total']) == pytest.approx(float(penalty), rel=1e-5)
        totals[weight] = (float(report['total']['total']), float(expected), float(penalty))
    assert totals[2.0][2] > 0
    # The logged total is the task-loss sum; the optimised loss adds weight x penalty.
    assert totals[0.0][1] == pytest.approx(totals[0.0][0], rel=1e-5)
    assert totals[2.0][1] == pytest.approx(totals[2.0][0] + 2.0 * totals[2.0][2], rel=1e-5)


# ----------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    return make_nyu(tmp_path_factory.mktemp('nyu'))


@pytest.mark.slow
@pytest.mark.parametrize('arch', BASELINES)
def test_retrain_and_test_every_baseline(tmp_path, nyu_root, arch, capsys):
    config, opt = tiny_yaml(tmp_path, nyu_root, retrain_total_iters=3, val_freq=3)
    opt = copy.deepcopy(opt)
    opt['architecture'] = arch
    opt['exp_name'] = f'tiny_{arch}'
    config = _write(tmp_path, opt, f'{arch}.yml')
    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0']) == 0
    assert 'baseline from scratch' in capsys.readouterr().out
    ckpt_dir = tmp_path / 'checkpoint_dir' / opt['exp_name']
    assert not glob.glob(str(ckpt_dir / '*.pickle')), 'a baseline has no policy to sample'
    assert load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0']) == 0
    with open(tmp_path / 'result_dir' / opt['exp_name'] / 'test_metrics_exp000.json') as f:
        result = json.load(f)
    assert result['architecture'] == arch and 'policy' not in result
    assert {'seg', 'sn', 'depth'} <= set(result) and 'mIoU' in result['seg']
    size = result['model_size']
    assert size['input_hw'] == [opt['dataload']['eval_h'], opt['dataload']['eval_w']]
    assert size['total_params'] > 0 and size['flops_g'] > 0
    expected_ratio = {'single_task': 3.0, 'multi_task': 1.0}.get(arch)
    if expected_ratio is not None:
        assert size['params_ratio'] == expected_ratio
    else:
        assert size['params_ratio'] >= 1.0


@pytest.mark.slow
def test_adashare_result_json_has_architecture_and_tree_flops(tmp_path, nyu_root):
    config, opt = tiny_yaml(tmp_path, nyu_root, retrain_total_iters=3, val_freq=3)
    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0', '1']) == 0
    assert load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0', '1']) == 0
    for exp_id in (0, 1):  # every given exp_id is evaluated
        with open(tmp_path / 'result_dir' / opt['exp_name'] / f'test_metrics_exp{exp_id:03d}.json') as f:
            result = json.load(f)
        assert result['architecture'] == 'adashare' and 'policy' in result
        assert result['model_size']['params_ratio'] == 1.0
        assert result['model_size']['flops_g'] > 0
