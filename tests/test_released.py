"""Released checkpoints: an original-layout checkpoint + policy pickle evaluated by test.py on nyu_v2_samples."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from _pipeline import ROOT, load_script
from models import policy as P
from engine.checkpoint import CheckpointMismatchError, PolicyFileError

BLOCKS_R34 = [(0, b) for b in range(3)] + [(1, b) for b in range(4)] + [(2, b) for b in range(6)] + \
    [(3, b) for b in range(3)]
WIDTHS = [64, 128, 256, 512]
HEAD = 8  # head_channels: the original's 1024 keeps the same key names, only widths change


def original_state_dict(num_classes=(40, 3, 1)):
    """MTL2.state_dict() of the original, key by key from docs/original.md Appendix A (random values)."""
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.randn(*shape, generator=g) * 0.01  # noqa: E731
    sd = {}
    for t in range(1, len(num_classes) + 1):
        sd[f'task{t}_logits'] = torch.full((16, 2), 0.5)

    def bn(prefix, width):
        sd[f'{prefix}.weight'] = torch.ones(width)
        sd[f'{prefix}.bias'] = torch.zeros(width)
        sd[f'{prefix}.running_mean'] = torch.zeros(width)
        sd[f'{prefix}.running_var'] = torch.ones(width)
        sd[f'{prefix}.num_batches_tracked'] = torch.tensor(100)

    sd['backbone.conv1.weight'] = rand(64, 3, 7, 7)
    bn('backbone.bn1', 64)
    inplanes = 64
    for s, b in BLOCKS_R34:
        cout = WIDTHS[s]
        cin = inplanes if b == 0 else cout
        sd[f'backbone.blocks.{s}.{b}.conv1.weight'] = rand(cout, cin, 3, 3)
        bn(f'backbone.blocks.{s}.{b}.bn1', cout)
        sd[f'backbone.blocks.{s}.{b}.conv2.weight'] = rand(cout, cout, 3, 3)
        bn(f'backbone.blocks.{s}.{b}.bn2', cout)
        if b == 0:
            inplanes = cout
    for s in (1, 2, 3):
        sd[f'backbone.ds.{s}.0.weight'] = rand(WIDTHS[s], WIDTHS[s - 1], 1, 1)
        bn(f'backbone.ds.{s}.1', WIDTHS[s])
    for t, n in enumerate(num_classes, start=1):
        for c in range(4):
            p = f'task{t}_fc1_c{c}'
            sd[f'{p}.conv1.weight'], sd[f'{p}.conv1.bias'] = rand(HEAD, 512, 3, 3), rand(HEAD)
            sd[f'{p}.conv2.weight'], sd[f'{p}.conv2.bias'] = rand(HEAD, HEAD, 1, 1), rand(HEAD)
            sd[f'{p}.conv3.weight'], sd[f'{p}.conv3.bias'] = rand(n, HEAD, 1, 1), rand(n)
    return sd


def write_original_policy(path, rows=16, tasks=3, seed=48):
    """The original's pickle: {'task{t}_policy': torch.from_numpy(np.array(rows))} (int64 [P, 2])."""
    rng = np.random.RandomState(seed)
    policy = {}
    for t in range(1, tasks + 1):
        execute = [int(rng.random_sample() < 0.6) for _ in range(rows)]
        policy[f'task{t}_policy'] = torch.from_numpy(np.array([[e, 1 - e] for e in execute]))
    with open(path, 'wb') as f:
        pickle.dump(policy, f, protocol=pickle.HIGHEST_PROTOCOL)
    return policy


def released_yaml(tmp_path):
    with open(os.path.join(ROOT, 'yamls', 'adashare', 'nyu_v2_3task_test.yml')) as f:
        opt = yaml.safe_load(f)
    opt['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    opt['head_channels'] = HEAD
    path = tmp_path / 'nyu_v2_3task_test.yml'
    path.write_text(yaml.safe_dump(opt))
    ckpt_dir = tmp_path / 'checkpoint_dir' / opt['exp_name']
    ckpt_dir.mkdir(parents=True)
    return str(path), opt, ckpt_dir


@pytest.mark.slow
def test_original_layout_checkpoint_is_evaluated_on_the_samples_folder(tmp_path):
    config, opt, ckpt_dir = released_yaml(tmp_path)
    torch.save({'mtl-net': original_state_dict(), 'iter': 20000, 'temp': 5.0},
               ckpt_dir / 'retrain000_policyIterbest_best_model.pth.tar')
    policy = write_original_policy(ckpt_dir / 'policyIterbest_rs0048.pickle')
    samples = sorted(os.listdir(os.path.join(ROOT, 'nyu_v2_samples', 'img')))
    before = {p: os.path.getmtime(os.path.join(ROOT, 'nyu_v2_samples', p)) for p in os.listdir(
        os.path.join(ROOT, 'nyu_v2_samples'))}

    assert load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0']) == 0
    result = json.loads((tmp_path / 'result_dir' / opt['exp_name'] / 'test_metrics_exp000.json').read_text())
    assert set(result) >= {'seg', 'sn', 'depth', 'policy'}
    assert result['policy']['task2_policy'] == policy['task2_policy'].tolist()
    assert all(isinstance(v, float) for task in ('seg', 'sn', 'depth') for v in result[task].values())
    assert len(samples) == 4
    after = {p: os.path.getmtime(os.path.join(ROOT, 'nyu_v2_samples', p)) for p in os.listdir(
        os.path.join(ROOT, 'nyu_v2_samples'))}
    assert before == after, 'test.py wrote into the samples folder'


def test_mismatched_checkpoint_lists_the_keys(tmp_path):
    config, opt, ckpt_dir = released_yaml(tmp_path)
    sd = original_state_dict()
    del sd['backbone.ds.1.0.weight']
    sd['backbone.extra.weight'] = torch.zeros(1)
    sd['task1_fc1_c0.conv3.weight'] = torch.zeros(19, HEAD, 1, 1)
    torch.save({'mtl-net': sd, 'iter': 1, 'temp': 5.0}, ckpt_dir / 'retrain000_policyIterbest_best_model.pth.tar')
    write_original_policy(ckpt_dir / 'policyIterbest_rs0048.pickle')
    with pytest.raises(CheckpointMismatchError) as err:
        load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0'])
    message = str(err.value)
    for key in ('backbone.ds.1.0.weight', 'backbone.extra.weight', 'task1_fc1_c0.conv3.weight'):
        assert key in message


def test_missing_files_list_paths_and_command(tmp_path):
    config, opt, ckpt_dir = released_yaml(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0'])
    assert 'retrain000_policyIterbest_best_model.pth.tar' in str(err.value)
    assert 're-train.py' in str(err.value)


class Evil:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def test_malicious_policy_pickle_is_refused(tmp_path):
    config, opt, ckpt_dir = released_yaml(tmp_path)
    torch.save({'mtl-net': original_state_dict(), 'iter': 1, 'temp': 5.0},
               ckpt_dir / 'retrain000_policyIterbest_best_model.pth.tar')
    with open(ckpt_dir / 'policyIterbest_rs0048.pickle', 'wb') as f:
        pickle.dump({'task1_policy': Evil()}, f)
    with pytest.raises(PolicyFileError, match='system'):
        load_script('test.py').main(['--config', config, '--gpus', '-1', '--exp_ids', '0'])


def test_sampling_is_reproducible_per_seed_and_differs_across_seeds():
    logits = [torch.randn(16, 2, generator=torch.Generator().manual_seed(t)) for t in range(3)]
    samples = {}
    for seed in (88, 45, 50, 100):
        np.random.seed(seed)
        first = P.sample_policy_numpy(logits)
        np.random.seed(seed)
        again = P.sample_policy_numpy(logits)
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert all(p.dtype == torch.int64 and p.shape == (16, 2) and torch.equal(p.sum(1), torch.ones(16, dtype=torch.long))
                   for p in first)
        samples[seed] = torch.cat(first).tolist()
    assert len({str(v) for v in samples.values()}) == 4
