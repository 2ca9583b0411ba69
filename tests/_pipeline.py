"""Helpers for the end-to-end tests: a tiny generated NYU v2 dataset and a tiny config."""
import importlib.util
import os
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 48, 64


def load_script(name):
    """Import a top-level script (e.g. 're-train.py') as a module."""
    spec = importlib.util.spec_from_file_location(name.replace('-', '_').replace('.py', ''),
                                                  os.path.join(ROOT, name))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as `import` does: dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def make_nyu(root):
    from dataloaders.synthetic import generate_dataset
    generate_dataset('nyu_v2', str(root), num_train=10, num_test=4, height=HEIGHT, width=WIDTH, seed=3,
                     progress=False)
    return root


def tiny_yaml(tmp_path, dataroot, name='tiny.yml', quirks=None, **train_overrides):
    """The synthetic NYU v2 3-task yaml, shrunk to seconds on a CPU; returns (path, dict)."""
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_3task.yml')) as f:
        opt = yaml.safe_load(f)
    opt['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    opt['head_channels'] = 8
    opt['dataload'].update({'dataroot': str(dataroot), 'crop_h': 32, 'crop_w': 32, 'eval_h': HEIGHT,
                            'eval_w': WIDTH, 'num_workers': 0})
    opt['train'].update({'batch_size': 2, 'total_iters': 26, 'warm_up_iters': 4, 'print_freq': 5,
                         'val_freq': 3, 'weight_iter_alternate': 2, 'alpha_iter_alternate': 2,
                         'retrain_total_iters': 6, 'save_optimizer': True})  # the original's files
    opt['train'].update(train_overrides)
    opt['quirks'] = {'eval_iter': 1, **(quirks or {})}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(opt))
    return str(path), opt


def tiny_automtl_yaml(tmp_path, dataroot, name='tiny_automtl.yml', automtl=None, **train_overrides):
    """A tiny AutoMTL config on the generated NYU v2 data (3 tasks, WRN-10-2, 8-channel heads); returns (path, dict).

    Default schedule: iterations 1-4 pre-train, then policy-train from 5: cycles of 2 policy + 3 weight steps."""
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'automtl', 'cityscapes_2task.yml')) as f:
        opt = yaml.safe_load(f)
    opt.update({'exp_name': 'tiny_automtl', 'tasks': ['seg', 'sn', 'depth'], 'tasks_num_class': [40, 3, 1],
                'lambdas': [1, 20, 3], 'head_channels': 8, 'backbone': 'WRN-10-2'})
    opt['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    opt['dataload'] = {'dataset': 'NYU_v2', 'dataroot': str(dataroot), 'crop_h': 32, 'crop_w': 32, 'eval_h': HEIGHT,
                       'eval_w': WIDTH, 'num_workers': 0}
    opt['automtl'] = {'pretrain_iters': 4, 'policy_iters': 2, 'weight_iters': 3, 'reg_lambda': 0.01,
                      'temp_update_iters': 2, **(automtl or {})}
    opt['train'].update({'batch_size': 2, 'total_iters': 16, 'print_freq': 5, 'val_freq': 3,
                         'retrain_total_iters': 6, 'save_optimizer': True, 'decay_lr_freq': 3})
    opt['train'].update(train_overrides)
    opt['quirks'] = {'eval_iter': 1}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(opt))
    return str(path), opt
