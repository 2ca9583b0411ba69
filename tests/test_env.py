"""The env: optimisers per phase, freezing, alternation, temperature, checkpoints."""
import copy
import os

import pytest
import torch

from envs import AdaShareEnv
from engine.checkpoint import load_checkpoint

H, W = 40, 48


def tiny_opt(tmp_path, tasks=('seg', 'sn', 'depth'), num_class=(5, 3, 1), **overrides):
    opt = {
        'exp_name': 'tiny', 'seed': [1, 2], 'backbone': 'ResNet10', 'head_channels': 8,
        'tasks': list(tasks), 'tasks_num_class': list(num_class), 'lambdas': [1.0] * len(tasks),
        'policy_model': 'task-specific', 'policy': True, 'init_neg_logits': None,
        'is_sparse': True, 'is_sharing': True, 'skip_layer': 0, 'is_curriculum': True,
        'fix_BN': False, 'diff_sparsity_weights': True, 'retrain_from_pl': False, 'curriculum_speed': 1,
        'paths': {'log_dir': str(tmp_path / 'logs'), 'result_dir': str(tmp_path / 'results'),
                  'checkpoint_dir': str(tmp_path / 'ckpt')},
        'dataload': {'dataset': 'NYU_v2', 'dataroot': str(tmp_path), 'crop_h': H, 'crop_w': W,
                     'small_res': False},
        'train': {'batch_size': 2, 'total_iters': 10, 'warm_up_iters': 4, 'lr': 0.01, 'backbone_lr': 0.01,
                  'policy_lr': 0.01, 'reg_w': 0.05, 'reg_w_hamming': 0.05, 'print_freq': 1, 'val_freq': 2,
                  'decay_lr_freq': 4000, 'decay_lr_rate': 0.5, 'init_temp': 5.0, 'decay_temp': 0.965,
                  'resume': False, 'which_iter': 'warmup', 'retrain_resume': False, 'policy_iter': 'best',
                  'init_method': 'equal', 'hard_sampling': False,
                  'weight_iter_alternate': 2, 'alpha_iter_alternate': 2},
        'quirks': {},
    }
    for key, value in overrides.items():
        section, _, leaf = key.rpartition('.')
        (opt[section] if section else opt)[leaf] = value
    return opt


def nyu_batch(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    seg = torch.randint(0, 5, (batch, 1, H, W), generator=g).to(torch.uint8)
    seg[:, :, :2] = 255
    normal = torch.randint(0, 255, (batch, 3, H, W), generator=g).to(torch.uint8)
    depth = torch.rand(batch, 1, H, W, generator=g) * 5
    return {'img': torch.randn(batch, 3, H, W, generator=g) * 50, 'seg': seg, 'normal': normal,
            'depth': depth, 'name': [f'{i}.png' for i in range(batch)]}


def snapshot(params):
    return [p.detach().clone() for p in params]


def changed(before, params):
    return any(not torch.equal(b, p.detach()) for b, p in zip(before, params))


def test_weight_steps_change_only_weights_and_policy_steps_only_logits(tmp_path):
    torch.manual_seed(0)
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    env.start_alternation()
    env.fix_alpha()
    env.free_w()
    env.train()
    env.set_inputs(nyu_batch())
    logits, weights = snapshot(env.network.arch_parameters()), snapshot(env.network.network_parameters())
    env.optimize('weights')
    assert changed(weights, env.network.network_parameters())
    assert not changed(logits, env.network.arch_parameters())
    assert isinstance(env.optimizers['weights'], torch.optim.SGD)

    env.fix_w()
    env.free_alpha()
    logits, weights = snapshot(env.network.arch_parameters()), snapshot(env.network.network_parameters())
    losses = env.optimize('policy')
    assert changed(logits, env.network.arch_parameters())
    assert not changed(weights, env.network.network_parameters())
    assert set(losses) == {'seg', 'sn', 'depth', 'total', 'sparsity', 'hamming'}
    assert set(losses['sparsity']) == {'total', 'task1', 'task2', 'task3'}


def test_warmup_uses_adam_and_shared_network(tmp_path):
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    env.fix_alpha()
    env.free_w()
    env.set_inputs(nyu_batch())
    logits = snapshot(env.network.arch_parameters())
    env.optimize('warmup')
    assert env.last_gates is None
    assert isinstance(env.optimizers['weights'], torch.optim.Adam)
    assert env.optimizers['weights'].defaults['betas'] == (0.5, 0.999)
    assert not changed(logits, env.network.arch_parameters())


def test_fix_bn_freezes_block_bns_but_not_downsample_bns(tmp_path):
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    env.free_w(fix_bn=True)
    frozen = {n for n, p in env.network.backbone.named_parameters() if not p.requires_grad}
    assert 'bn1.weight' in frozen and 'blocks.0.0.bn1.weight' in frozen
    assert 'ds.1.1.weight' not in frozen and 'blocks.0.0.conv1.weight' not in frozen


def test_weight_lr_schedule_orphaned_after_warmup_unless_quirk(tmp_path):
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    assert 'weights' in env.schedulers
    env.start_alternation()
    assert 'weights' not in env.schedulers  # faithful: constant SGD learning rate
    fixed = AdaShareEnv(tiny_opt(tmp_path, **{'quirks.weight_lr_schedule_after_warmup': True}),
                        torch.device('cpu'))
    fixed.start_alternation()
    assert fixed.schedulers['weights'].optimizer is fixed.optimizers['weights']


def test_temperature_and_curriculum(tmp_path):
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    assert env.num_train_layers() == 1
    env.state.p_epoch = 3
    env.decay_temperature()
    env.decay_temperature()
    assert env.num_train_layers() == 4
    assert env.temperature == pytest.approx(5 * 0.965 ** 2)
    gates = env.gumbel_gates()
    assert all(g.shape == (env.network.num_blocks, 2) for g in gates)


def test_checkpoint_has_original_keys_and_no_module_prefix(tmp_path):
    env = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    env.state.current_iter = 7
    path = env.save_label('latest')
    state = load_checkpoint(path)
    assert {'mtl-net', 'weights', 'alphas', 'iter', 'temp'} <= set(state)
    assert state['iter'] == 7 and state['temp'] == pytest.approx(5.0)
    assert not any(k.startswith('module.') for k in state['mtl-net'])
    other = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    assert other.load_label('latest') == 7
    for key, value in env.network.state_dict().items():
        assert torch.equal(value, other.network.state_dict()[key])


def test_save_optimizer_false_keeps_only_weights_in_snapshots(tmp_path):
    faithful = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    assert {'weights', 'alphas'} <= set(load_checkpoint(faithful.save_label('best')))
    env = AdaShareEnv(tiny_opt(tmp_path, **{'train.save_optimizer': False}), torch.device('cpu'))
    env.state.current_iter = 5
    state = load_checkpoint(env.save_label('best'))
    assert not {'weights', 'alphas'} & set(state) and state['iter'] == 5
    assert set(state['mtl-net']) == set(env.network.state_dict())
    resume = tmp_path / 'resume_state.pth.tar'
    env.save_resume(str(resume), {})
    assert {'weights', 'alphas'} <= set(load_checkpoint(str(resume))), 'the resume state keeps the optimisers'
    other = AdaShareEnv(tiny_opt(tmp_path), torch.device('cpu'))
    assert other.load_label('best') == 5  # loads as a checkpoint of the original does


def test_retrain_with_fixed_policy_and_true_skip(tmp_path):
    torch.manual_seed(0)
    opt = tiny_opt(tmp_path, **{'quirks.true_skip': True})
    env = AdaShareEnv(opt, torch.device('cpu'))
    rows = env.network.num_policy_rows
    policies = [torch.tensor([[1, 0]] * rows), torch.tensor([[0, 1]] * rows),
                torch.tensor([[1, 0], [0, 1]] * (rows // 2))]
    env.set_fixed_policy(policies)
    env.set_inputs(nyu_batch())
    env.train()
    env.optimize('retrain')
    with pytest.raises(ValueError, match='shape'):
        env.set_fixed_policy([torch.zeros(rows + 1, 2, dtype=torch.long)] * 3)
