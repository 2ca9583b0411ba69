"""A short, deterministic run of every training phase through the env, as the scripts drive it.

Used by tests/test_golden_resnet34.py (bit-for-bit against a stored golden) and tests/test_backbones.py
(every registry backbone): warm-up steps, weight steps with Gumbel gates inside a curriculum window,
a policy step, then a fresh env (as re-train.py builds one) retrained with a fixed sampled policy, and
an eval-mode forward that skips unselected blocks next to the compute-everything forward.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from envs import AdaShareEnv
from models import policy as P
from config import load_config
from engine.seeding import fix_random_seed

from test_parity import tensor_sha256

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = torch.device('cpu')
SIZE = 32


def tiny_config(tmp_path, backbone: str, **top_level: Any) -> dict:
    """The synthetic NYU v2 2-task yaml with `backbone`, 8-channel heads and 32x32 crops, loaded as the scripts load it."""
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_2task.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update({'backbone': backbone, 'head_channels': 8, **top_level})
    opt['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    opt['dataload'].update({'dataroot': str(tmp_path), 'crop_h': SIZE, 'crop_w': SIZE, 'eval_h': SIZE,
                            'eval_w': SIZE})
    opt['train'].update({'batch_size': 2})
    path = tmp_path / f'{backbone.replace(":", "_")}.yml'
    path.write_text(yaml.safe_dump(opt))
    return load_config(str(path), 'train_policy')


def nyu_batch(index: int, batch: int = 2) -> Dict[str, Any]:
    """A fixed random NYU v2 batch (seg, normals, depth) of SIZE x SIZE images."""
    g = torch.Generator().manual_seed(100 + index)
    seg = torch.randint(0, 40, (batch, 1, SIZE, SIZE), generator=g).to(torch.uint8)
    seg[:, :, :2] = 255
    normal = torch.randint(0, 255, (batch, 3, SIZE, SIZE), generator=g).to(torch.uint8)
    depth = torch.rand(batch, 1, SIZE, SIZE, generator=g) * 5
    return {'img': torch.randn(batch, 3, SIZE, SIZE, generator=g) * 50, 'seg': seg, 'normal': normal,
            'depth': depth, 'name': [f'{index}_{i}.png' for i in range(batch)]}


def sha256_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """sha256 of a tensor's raw bytes, as a uint8 tensor (storable with weights_only)."""
    return torch.tensor(list(tensor_sha256(tensor)), dtype=torch.uint8)


def state_digest(module: torch.nn.Module) -> Dict[str, Any]:
    """Keys, shapes, per-entry sha256 and float64 sums of a state_dict."""
    state = module.state_dict()
    keys = list(state)
    return {'keys': keys, 'shapes': [list(state[k].shape) for k in keys],
            'sha256': torch.stack([sha256_tensor(state[k]) for k in keys]),
            'sums': torch.tensor([state[k].double().sum().item() for k in keys], dtype=torch.float64)}


def _step(env: AdaShareEnv, phase: str, index: int, steps: List[Dict[str, Any]]) -> None:
    env.set_inputs(nyu_batch(index))
    report = env.optimize(phase)
    record = {'phase': phase, 'losses': {f'{group}_{part}': value.clone() for group, parts in report.items()
                                         for part, value in parts.items()}}
    if env.last_gates is not None:
        record['gates'] = [g.detach().clone() for g in env.last_gates]
    steps.append(record)


def run_phases(opt: dict, seed: int = 0, warmup: int = 2, weights: int = 2, policy: int = 1, retrain: int = 2,
               p_epoch: int = 2, policies: Optional[Sequence[torch.Tensor]] = None) -> Dict[str, Any]:
    """Every phase once, through AdaShareEnv as train_policy.py and re-train.py drive it; returns the record.

    The retraining policy is sampled from the learned logits (numpy RandomState(seed)) unless given.
    """
    fix_random_seed(seed)
    env = AdaShareEnv(opt, CPU)
    env.train()
    env.fix_alpha()
    env.free_w(bool(opt['fix_BN']))
    steps: List[Dict[str, Any]] = []
    for i in range(warmup):
        _step(env, 'warmup', i, steps)
    env.start_alternation()
    env.state.p_epoch = p_epoch  # a curriculum window of p_epoch + 1 gated blocks
    for i in range(weights):
        _step(env, 'weights', warmup + i, steps)
    env.fix_w()
    env.free_alpha()
    for i in range(policy):
        _step(env, 'policy', warmup + weights + i, steps)
    learned = state_digest(env.network)
    if policies is None:
        policies = P.sample_policy_numpy(env.policy_logits(), np.random.RandomState(seed))
    policies = [torch.as_tensor(p).long() for p in policies]

    fix_random_seed(seed + 1)  # re-train.py: a fresh, seeded network trained with the fixed policy
    retrain_env = AdaShareEnv(opt, CPU)
    retrain_env.set_fixed_policy(policies)
    retrain_env.train()
    retrain_env.fix_alpha()
    retrain_env.free_w(bool(opt['fix_BN']))
    for i in range(retrain):
        _step(retrain_env, 'retrain', 10 + i, steps)

    retrain_env.eval()
    retrain_env.set_inputs(nyu_batch(20))
    with torch.no_grad():
        skipped = retrain_env.forward('eval_fixed')  # eval mode: unselected blocks skipped, prefixes shared
        everything = retrain_env.network(retrain_env.batch['img'].float(), retrain_env.fixed_gates())
    return {'steps': steps, 'learned': learned, 'retrained': state_digest(retrain_env.network),
            'policies': policies, 'eval_skipped': [o.clone() for o in skipped],
            'eval_everything': [o.clone() for o in everything], 'env': retrain_env}
