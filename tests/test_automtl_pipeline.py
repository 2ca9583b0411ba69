"""AutoMTL beside AdaShare (docs/automtl.md "Training"): the env's stages, the loop's schedule, the regulariser
in the policy loss, forced sharing, policy files, config checks, sizes, the policy figure, and end to end
train_policy.py -> re-train.py --exp_ids -> test.py with an exact resume mid policy-train."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from _pipeline import ROOT, load_script, make_nyu, tiny_automtl_yaml
from config import ConfigError, load_config
from engine.automtl_loop import step_kind
from engine.checkpoint import load_checkpoint
from engine.validation import LoopConfig
from envs import AdaShareEnv, AutoMTLEnv, env_class
from models import automtl as A

CPU = torch.device('cpu')


@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    return make_nyu(tmp_path_factory.mktemp('nyu'))


def _env(tmp_path, nyu_root, automtl=None, script='train_policy', **train):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config, _ = tiny_automtl_yaml(tmp_path, nyu_root, automtl=automtl, **train)
    return AutoMTLEnv(load_config(config, script), CPU)


def _batch(env, seed=0):
    from engine.data import build_split
    dataset = build_split(env.opt, 'train')
    items = [dataset[i] for i in range(2)]
    batch = torch.utils.data.default_collate(items)
    env.set_inputs(batch)
    return batch


# ----------------------------------------------------------------------------------------- the method registry
def test_architecture_picks_the_env(tmp_path, nyu_root):
    assert env_class({'architecture': 'automtl'}) is AutoMTLEnv
    assert env_class({'architecture': 'adashare'}) is AdaShareEnv
    assert env_class({'architecture': 'mtan'}) is AdaShareEnv
    env = _env(tmp_path, nyu_root)
    assert isinstance(env.network, A.AutoMTLNet) and env.network.num_convs == 10
    assert os.path.basename(env.policy_file(10)) == 'automtl_policyIterlatest_rs0010.json'


# ----------------------------------------------------------------------------------------- schedule
def test_loop_schedule_pretrain_then_policy_weight_ratio():
    schedule = LoopConfig(total_iters=30, warm_up_iters=4, weight_iter_alternate=3, alpha_iter_alternate=2,
                          print_freq=1, val_freq=1)
    kinds = [step_kind(i, schedule) for i in range(1, 31)]
    assert kinds[:4] == ['pretrain'] * 4
    assert kinds[4:14] == ['policy', 'policy', 'weights', 'weights', 'weights'] * 2
    for i in range(5, 31):  # the models layer's rule on the 0-based policy-train iteration
        assert (kinds[i - 1] == 'policy') == A.is_policy_step(i - 5, 2, 3)


def test_optimisers_per_stage_and_temperature(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root, automtl={'temp_update_iters': 1, 'init_temp': 4.0, 'temp_decay': 0.5})
    weights = env.optimizers['weights']
    assert isinstance(weights, torch.optim.Adam) and weights.defaults['betas'] == (0.5, 0.999)
    assert weights.defaults['weight_decay'] == 1e-4 and 'alphas' not in env.optimizers
    env.start_policy_train()
    sgd, adam = env.optimizers['weights'], env.optimizers['alphas']
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults['momentum'] == 0.9 and sgd.defaults['weight_decay'] == 1e-4
    assert isinstance(adam, torch.optim.Adam) and adam.defaults['lr'] == 0.01 and adam.defaults['weight_decay'] == 5e-4
    assert {id(p) for p in adam.param_groups[0]['params']} == {id(p) for p in env.policy_logits()}
    _batch(env)
    taus = []
    for _ in range(5):
        taus.append(env.current_temperature())
        env.optimize('policy')
    # decays once per temp_update_iters + 1 = 2 policy steps; weight steps do not count
    assert taus == [4.0, 4.0, 2.0, 2.0, 1.0]
    env.optimize('weights')
    assert env.current_temperature() == 1.0 and env.state.policy_steps == 5 and env.state.weight_steps == 1
    env.start_retrain()
    assert isinstance(env.optimizers['weights'], torch.optim.Adam)
    assert env.schedulers['weights'].step_size == 3  # train.decay_lr_freq


def test_weight_step_moves_no_logit_and_policy_step_no_weight(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root)
    env.start_policy_train()
    _batch(env)
    logits = [lg.detach().clone() for lg in env.policy_logits()]
    conv = env.network.conv_nodes()[0].shared.weight
    before = conv.detach().clone()
    env.optimize('weights')
    assert all(torch.equal(a, b) for a, b in zip(logits, env.policy_logits()))
    assert not torch.equal(before, conv)
    before = conv.detach().clone()
    env.optimize('policy')
    assert torch.equal(before, conv)
    assert any(not torch.equal(a, b) for a, b in zip(logits, env.policy_logits()))


def test_regulariser_enters_the_policy_loss_with_lambda(tmp_path, nyu_root):
    """The logits' gradient of a policy step = task part + reg_lambda * d(sum_t L_reg(t)): with the same weights
    and noise, the gradients for two lambdas differ by exactly the regulariser's gradient times the difference
    (the noise-free regulariser, so that its value does not depend on the RNG)."""
    grads, batch = {}, None
    for lam in (0.0, 2.0):
        torch.manual_seed(0)
        env = _env(tmp_path / str(lam), nyu_root, automtl={'reg_lambda': lam, 'reg_noise': False})
        env.start_policy_train()
        batch = batch or _batch(env)  # one batch for both (the crops are random)
        env.set_inputs(batch)
        torch.manual_seed(5)
        env.optimizers['alphas'].step = lambda *a, **k: None  # keep the logits, read the gradients
        report = env.optimize('policy')
        grads[lam] = [lg.grad.clone() for lg in env.policy_logits()]
    for t in range(3):
        logits = env.policy_logits()[t]
        logits.grad = None
        env.regulariser(t).backward()
        torch.testing.assert_close(grads[2.0][t] - grads[0.0][t], 2.0 * logits.grad, rtol=1e-4, atol=1e-6)
        assert logits.grad.abs().sum() > 0
    # the logged regulariser is the sum over tasks; equal logits without noise: 2 ln 2 sum_l w_l per task
    expected = 3 * 2 * torch.log(torch.tensor(2.0)) * A.depth_weights(env.network.conv_depths).sum()
    torch.testing.assert_close(report['reg']['total'], expected)


def test_reg_scale_switch_changes_the_value(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root, automtl={'reg_noise': False})
    with torch.no_grad():
        env.policy_logits()[0][:, 1] += 1.0
    paper = float(env.regulariser(0).detach())
    env.options['reg_scale'] = A.CODE_SCALE
    assert float(env.regulariser(0).detach()) > paper


def test_forced_bottom_sharing(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root, automtl={'share_num': 3})
    with torch.no_grad():
        for lg in env.policy_logits():
            lg[:, 2] = 5.0  # every conv prefers skip
    for w in env.soft_weights():
        assert torch.equal(w[:3], A.one_hot(torch.zeros(3, dtype=torch.int64)))
        assert (w[3:, 2] > 0.2).all()
    for choices in env.argmax_policy():
        assert choices[:3].tolist() == [0, 0, 0] and choices[3:].tolist() == [2] * 7
    for choices in env.sample_policy(10):
        assert choices[:3].tolist() == [0, 0, 0]
    env.start_policy_train()
    _batch(env)
    env.optimize('policy')
    for lg in env.policy_logits():
        assert lg.grad[:3].abs().sum() == 0  # constant rows get no gradient


def test_policy_file_roundtrip_and_refusals(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root)
    policies = env.sample_policy(20)
    assert [p.tolist() for p in policies] == [p.tolist() for p in A.sample_choices(env.policy_logits(), 20)]
    path = str(tmp_path / 'p.json')
    env.save_policy_file(path, policies, {'iteration': 7}, seed=20)
    data = json.loads(open(path).read())
    assert data['format'] == 'automtl-policy/1' and data['options'] == ['shared', 'specific', 'skip']
    assert data['one_hot'][0][0] == A.one_hot(policies[0])[0].int().tolist()
    assert [p.tolist() for p in env.load_policy_file(path)] == [p.tolist() for p in policies]
    assert env.read_policy_source(path) == {'iteration': 7}
    data['choices'][0][0] = 3
    (tmp_path / 'bad.json').write_text(json.dumps(data))
    with pytest.raises(Exception, match='0/1/2'):
        env.load_policy_file(str(tmp_path / 'bad.json'))
    (tmp_path / 'pickle.json').write_text(json.dumps({'task1_policy': [[1, 0]]}))
    with pytest.raises(Exception, match='automtl-policy/1'):
        env.load_policy_file(str(tmp_path / 'pickle.json'))


def test_hard_evaluation_runs_only_the_chosen_options(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root, script='test')
    policies = [torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]), torch.zeros(10, dtype=torch.int64),
                torch.ones(10, dtype=torch.int64)]
    env.set_fixed_policy(policies)
    calls = {}
    hooks = []

    def count(key):
        return lambda *_: calls.__setitem__(key, calls.get(key, 0) + 1)

    for node in env.network.conv_nodes():
        hooks.append(node.shared.register_forward_hook(count((node.index, 0))))  # one module for every task
        for option in (1, 2):
            for t in range(3):
                module = node.branch(option, t)
                if module is not None and list(module.parameters()):  # an identity skip computes nothing
                    hooks.append(module.register_forward_hook(count((node.index, option, t))))
    _batch(env)
    env.eval()
    with torch.no_grad():
        env.forward('eval_fixed')
    for key, value in calls.items():
        l, option = key[:2]
        if option == 0:
            assert value == sum(int(p[l]) == 0 for p in policies), f'shared conv {l} ran {value} times'
        else:
            assert option == int(policies[key[2]][l]) and value == 1, f'conv {l} option {option} of task {key[2]} ran'
    assert sum(calls.values()) >= 10 and (0, 0) in calls and (1, 1, 0) in calls
    for h in hooks:
        h.remove()


def test_model_size_both_conventions(tmp_path, nyu_root):
    env = _env(tmp_path, nyu_root, script='test')
    policies = [torch.zeros(10, dtype=torch.int64), torch.ones(10, dtype=torch.int64), torch.full((10,), 2)]
    size = env.model_size((48, 64), policies)
    paper = A.paper_parameter_count(env.network, policies)
    compact = A.compact_parameter_count(env.network, policies)
    assert size['paper']['relative'] == pytest.approx(paper.relative) == pytest.approx(2 / 3 - 1)
    assert size['compact'] == compact
    assert size['total_params'] == sum(p.numel() for p in A.export_compact(env.network, policies).parameters())
    assert size['params_ratio'] == pytest.approx(2.0)
    assert size['flops_g'] > 0
    shared = env.model_size((48, 64), None)
    assert shared['paper']['relative'] == pytest.approx(-2 / 3)


def test_config_checks(tmp_path, nyu_root):
    config, opt = tiny_automtl_yaml(tmp_path, nyu_root)
    assert load_config(config, 'train_policy')['automtl']['reg_scale'] == 1.0
    for change, message in [({'automtl': {**opt['automtl'], 'pretrain_iters': 16}}, 'automtl.pretrain_iters = 16'),
                            ({'automtl': {**opt['automtl'], 'reg_scale': 0}}, 'automtl.reg_scale = 0'),
                            ({'automtl': {**opt['automtl'], 'share_nun': 2}}, 'did you mean automtl.share_num'),
                            ({'weighting': 'pcgrad'}, 'expected equal with architecture automtl')]:
        bad = dict(opt, **change)
        path = tmp_path / 'bad.yml'
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError) as err:
            load_config(str(path), 'train_policy')
        assert message in str(err.value), str(err.value)
    # AdaShare's policy keys are neither needed nor required for automtl, and still required for adashare
    assert 'is_sparse' not in opt and 'skip_layer' not in opt
    adashare = dict(opt, architecture='adashare')
    path = tmp_path / 'adashare.yml'
    path.write_text(yaml.safe_dump(adashare))
    with pytest.raises(ConfigError, match='is_sparse is missing'):
        load_config(str(path), 'train_policy')


def test_paper_configs_load():
    for name in ('cityscapes_2task', 'nyu_v2_3task', 'taskonomy_5task'):
        for script in ('train_policy', 're-train', 'test'):
            opt = load_config(os.path.join(ROOT, 'yamls', 'automtl', f'{name}.yml'), script)
            assert opt['architecture'] == 'automtl' and opt['backbone'] == 'ResNet34'
    opt = load_config(os.path.join(ROOT, 'yamls', 'automtl', 'cityscapes_2task.yml'), 'train_policy')
    assert opt['automtl']['reg_lambda'] == 0.0005 and opt['train']['lr'] == 0.001
    assert opt['train']['total_iters'] - opt['automtl']['pretrain_iters'] == 20000


def test_policy_figure_renders(tmp_path, nyu_root):
    from reporting.plots import plot_automtl_policy
    env = _env(tmp_path, nyu_root, script='test')
    probs = env.policy_probabilities()
    out = plot_automtl_policy(probs, env.sample_policy(10), env.tasks, env.network.conv_names,
                              str(tmp_path / 'policy.png'), title='tiny')
    assert os.path.getsize(out) > 1000


# ----------------------------------------------------------------------------------------- end to end
def _run(script, config, kill_at=None, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('ADASHARE_KILL_AT_ITER', None)
    if kill_at is not None:
        env['ADASHARE_KILL_AT_ITER'] = str(kill_at)
    cmd = [sys.executable, os.path.join(ROOT, script), '--config', config, '--gpus', '-1', *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_train_policy_retrain_test(tmp_path, nyu_root, capsys):
    config, opt = tiny_automtl_yaml(tmp_path, nyu_root)
    folder = tmp_path / 'checkpoint_dir' / opt['exp_name']
    assert load_script('train_policy.py').main(['--config', config, '--gpus', '-1']) == 0
    latest = load_checkpoint(str(folder / 'latest_model.pth.tar'))
    assert latest['iter'] == 16 and latest['state']['policy_steps'] == 6 and latest['state']['stage'] == 'policy_train'
    assert load_checkpoint(str(folder / 'pretrain_model.pth.tar'))['iter'] == 4
    assert latest['temp'] == pytest.approx(A.temperature(6, 5.0, 0.965, 2))
    assert max(float(latest['mtl-net'][f'task{t}_logits'].abs().max()) for t in (1, 2, 3)) > 0.01
    out = capsys.readouterr().out
    assert '== train_policy.py' in out and 'argmax policy' in out

    assert load_script('re-train.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0']) == 0
    policy_path = folder / 'automtl_policyIterlatest_rs0010.json'
    policy = json.loads(policy_path.read_text())
    assert policy['source']['iteration'] == 16 and policy['source']['run_complete'] is True
    expected = A.sample_choices([latest['mtl-net'][f'task{t}_logits'] for t in (1, 2, 3)], 10)
    assert policy['choices'] == [c.tolist() for c in expected]
    assert not list(folder.glob('*.pickle'))
    retrained = load_checkpoint(str(folder / 'retrain000_policyIterlatest_latest_model.pth.tar'))
    assert retrained['iter'] == 6 and retrained['state']['stage'] == 'retrain'
    # from scratch: the logits of the retrained model are the fresh init, not the learned ones
    assert all(float(retrained['mtl-net'][f'task{t}_logits'].abs().max()) == 0 for t in (1, 2, 3))
    out = capsys.readouterr().out
    assert 'retraining the policy above' in out and '== re-train.py' in out

    assert load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0']) == 0
    result = json.loads((tmp_path / 'result_dir' / opt['exp_name'] / 'test_metrics_exp000.json').read_text())
    assert result['architecture'] == 'automtl' and result['run_complete'] is True
    assert result['policy']['task1_policy'] == policy['choices'][0]
    assert {'paper', 'compact', 'flops_g', 'params_ratio'} <= set(result['model_size'])
    assert 'mIoU' in result['seg']

    # tools/flops.py reads the same policy file
    from tools.flops import config_size
    size = config_size(config, 0)
    assert size['paper'] == result['model_size']['paper']
    # tools/plots.py draws the three-option policy figure of the sampled architecture and the curves
    from tools import plots
    assert plots.main(['--config', config, '--exp_ids', '0', '--out', str(tmp_path / 'figures')]) == 0
    assert sorted(os.listdir(tmp_path / 'figures')) == ['policy_rs0010.png', 'training_curves.png']


@pytest.mark.slow
def test_policy_train_killed_resumes_exactly(tmp_path, nyu_root):
    ref_dir, cut_dir = tmp_path / 'reference', tmp_path / 'interrupted'
    ref_dir.mkdir()
    cut_dir.mkdir()
    schedule = dict(val_freq=2)
    ref_config, opt = tiny_automtl_yaml(ref_dir, nyu_root, **schedule)
    cut_config, _ = tiny_automtl_yaml(cut_dir, nyu_root, **schedule)
    done = _run('train_policy.py', ref_config)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = _run('train_policy.py', cut_config, kill_at=11)  # a policy step; the last save was at 10
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = _run('train_policy.py', cut_config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming the interrupted run' in resumed.stdout and 'at iteration 10' in resumed.stdout
    a = load_checkpoint(str(ref_dir / 'checkpoint_dir' / opt['exp_name'] / 'latest_model.pth.tar'))
    b = load_checkpoint(str(cut_dir / 'checkpoint_dir' / opt['exp_name'] / 'latest_model.pth.tar'))
    assert a['state'] == b['state'] and a['iter'] == b['iter'] == 16
    for key, value in a['mtl-net'].items():
        assert torch.equal(value, b['mtl-net'][key]), key
    for name in ('weights', 'alphas'):
        for index, values in a[name]['state'].items():
            for key, tensor in values.items():
                if torch.is_tensor(tensor):
                    assert torch.equal(tensor, b[name]['state'][index][key]), (name, index, key)


@pytest.mark.slow
def test_cpu_table_runs_an_automtl_row(tmp_path, nyu_root):
    """tools/cpu_table.py --quick on a spec with an AutoMTL row (the tiny config): the row gets its policy
    learning, retraining and test like AdaShare's (the method's `learns_policy`), and a table line."""
    from tools import cpu_table
    config, _ = tiny_automtl_yaml(tmp_path, nyu_root)
    spec = tmp_path / 'automtl_row.yml'
    spec.write_text(yaml.safe_dump({'title': 'one row', 'paper_table': None, 'reference': None, 'rows': [
        {'method': 'AutoMTL', 'config': config, 'exp_ids': [0]}]}))
    out = tmp_path / 'table'
    assert cpu_table.main(['--spec', str(spec), '--quick', '--seeds', '1', '--out', str(out), '--dataroot',
                           str(nyu_root), '--jobs', '1']) == 0
    logs = sorted(os.listdir(out / 'logs'))
    assert [name.split('_', 1)[1] for name in logs] == ['automtl__policy_learning.log', 'automtl__retrain_exp_0.log',
                                                        'automtl__test_exp_0.log', 'tables.log'], logs
    quick = yaml.safe_load(open(next((out / 'configs').glob('*tiny_automtl.yml'))))
    assert quick['automtl'] == {**quick['automtl'], **cpu_table.QUICK_AUTOMTL} and 'warm_up_iters' not in quick['train']
    text = (out / 'automtl_row.md').read_text()
    line = next(row for row in text.splitlines() if row.startswith('| AutoMTL |'))
    cells = [c.strip() for c in line.split('|')[1:-1]]
    assert cells[1] == 'exp0' and all(c != '–' for c in cells[2:6]), line  # # Params and metrics measured


def test_unconvertible_backbone_is_one_line_naming_the_operator(tmp_path, nyu_root, monkeypatch, capsys):
    """A backbone the conversion cannot handle stops train_policy.py with one line naming the operator."""
    import models.backbones
    from torch import nn

    class GroupNormBackbone(nn.Module):
        out_channels = 4

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.norm = nn.GroupNorm(2, 4)

        def forward(self, x):
            return self.norm(self.conv(x))

    monkeypatch.setattr(models.backbones, 'build_backbone', lambda name: GroupNormBackbone())
    config, _ = tiny_automtl_yaml(tmp_path, nyu_root)
    with pytest.raises(SystemExit) as info:
        from engine.cli import run_main
        run_main(lambda: load_script('train_policy.py').main(['--config', config, '--gpus', '-1']))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'norm' in err and 'GroupNorm' in err, err
