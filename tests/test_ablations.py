"""Ablations: Random #1/#2 policies, the random_policies command, and the w/o-curriculum/sparsity/sharing configs."""
import os
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import yaml

from envs import AdaShareEnv
from envs import losses as L
from models.policy import sample_policy_numpy
from models.random_policy import KINDS, random1_policies, random2_policies, random_policies, skip_counts
from tools import random_policies as tool
from engine import checkpoint as C
from config import load_config

from _pipeline import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = torch.device('cpu')
PAPER = ['nyu_v2_2task', 'nyu_v2_3task', 'cityscapes_2task', 'taskonomy_5task']
SWITCHES = {'no_curriculum': 'is_curriculum', 'no_sparsity': 'is_sparse', 'no_sharing': 'is_sharing'}
ABLATIONS = ('random1', 'random2') + tuple(SWITCHES)
# (ablation yaml, its base yaml), relative to the repository root
PAIRS = [(f'yamls/ablations/{s}/{a}.yml', f'yamls/adashare/{s}.yml') for s in PAPER for a in ABLATIONS] + \
        [(f'yamls/synthetic/ablations/nyu_v2_3task/{a}.yml', 'yamls/synthetic/nyu_v2_3task.yml') for a in ABLATIONS]
SYNTH_BASE = 'yamls/synthetic/nyu_v2_3task.yml'


def policy(execute):
    """[P, 2] int64 policy from a list of execute flags."""
    flags = torch.tensor(execute, dtype=torch.int64)
    return torch.stack((flags, 1 - flags), dim=1)


# A learned 3-task policy with different skip counts per task (2, 0, 3 of 5 blocks skipped).
LEARNED = [policy([1, 0, 1, 0, 1]), policy([1, 1, 1, 1, 1]), policy([0, 1, 0, 1, 0])]


# ----------------------------------------------------------------------------------------- library
def test_random1_keeps_the_total_and_spreads_it_over_tasks():
    per_task = set()
    for seed in range(200):
        out = random1_policies(LEARNED, np.random.default_rng(seed))
        assert sum(skip_counts(out)) == 5
        per_task.add(tuple(skip_counts(out)))
    assert len(per_task) > 3  # not the per-task counts of Random #2


def test_random2_keeps_every_tasks_count():
    for seed in range(200):
        assert skip_counts(random2_policies(LEARNED, np.random.default_rng(seed))) == [2, 0, 3]


@pytest.mark.parametrize('kind', KINDS)
def test_random_positions_are_uniform(kind):
    draws = np.stack([torch.stack(random_policies(kind, LEARNED, seed))[:, :, 1].numpy() for seed in range(3000)])
    skipped = draws.mean(axis=0)  # [K, P] frequency of skipping each cell
    if kind == 'random1':
        assert np.allclose(skipped, 5 / 15, atol=0.04)
    else:
        assert np.allclose(skipped, np.array([[2 / 5], [0], [3 / 5]]).repeat(5, axis=1), atol=0.04)


@pytest.mark.parametrize('kind', KINDS)
def test_reproducible_per_seed_different_across_seeds(kind):
    first = random_policies(kind, LEARNED, 48)
    assert all(torch.equal(a, b) for a, b in zip(first, random_policies(kind, LEARNED, 48)))
    sampler = random1_policies if kind == 'random1' else random2_policies
    assert all(torch.equal(a, b) for a, b in zip(first, sampler(LEARNED, np.random.default_rng(48))))
    distinct = {tuple(torch.cat(random_policies(kind, LEARNED, seed)).flatten().tolist()) for seed in range(8)}
    assert len(distinct) > 4


@pytest.mark.parametrize('kind', KINDS)
def test_global_rngs_untouched(kind):
    np.random.seed(0)
    torch.manual_seed(0)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(0)
    torch.manual_seed(0)
    random_policies(kind, LEARNED, 7)
    assert np.random.rand() == expected_np and torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize('kind', KINDS)
def test_format_round_trips_through_the_policy_pickle(kind, tmp_path):
    out = random_policies(kind, LEARNED, 3)
    assert all(p.dtype == torch.int64 and tuple(p.shape) == (5, 2) and bool((p.sum(1) == 1).all()) for p in out)
    path = C.policy_path(str(tmp_path), 'exp', 'best', 3)
    C.save_policy(path, out, ['seg', 'sn', 'depth'])
    loaded = C.load_policy(path, num_tasks=3, num_rows=5)
    assert all(torch.equal(a, b) for a, b in zip(loaded, out))


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('flag', [0, 1])
def test_all_skipped_or_all_executed(kind, flag):
    learned = [policy([flag] * 4), policy([flag] * 4)]
    for seed in range(5):
        assert all(torch.equal(a, b) for a, b in zip(random_policies(kind, learned, seed), learned))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="unknown random policy kind 'random3'"):
        random_policies('random3', LEARNED, 0)
    with pytest.raises(ValueError, match='numpy Generator'):
        random1_policies(LEARNED, np.random.RandomState(0))
    with pytest.raises(ValueError, match=r'task2 policy: every row must be \[1, 0\]'):
        random2_policies([policy([1, 0]), torch.tensor([[1, 1], [0, 1]])], np.random.default_rng(0))
    with pytest.raises(ValueError, match='different row counts'):
        random1_policies([policy([1, 0]), policy([1, 0, 1])], np.random.default_rng(0))
    with pytest.raises(ValueError, match='seed must be a non-negative integer'):
        random_policies('random1', LEARNED, -1)


# ----------------------------------------------------------------------------------------- the command
def _tiny(tmp_path, rel: str, name: str) -> tuple[str, dict]:
    """A copy of a shipped yaml with paths in tmp_path and 8-channel heads; returns (path, raw dict)."""
    with open(os.path.join(ROOT, rel)) as f:
        raw = yaml.safe_load(f)
    raw['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    raw['head_channels'] = 8
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path), raw


def _base_checkpoint(tmp_path) -> tuple[dict, AdaShareEnv]:
    """A policy-learning `best` checkpoint of the (tiny) synthetic base, with varied learned logits."""
    base_path, _ = _tiny(tmp_path, SYNTH_BASE, 'base.yml')
    opt = load_config(base_path, 'train_policy')
    env = AdaShareEnv(opt, CPU)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for logits in env.policy_logits():
            logits.copy_(2 * torch.randn(logits.shape, generator=generator))
    env.save_label('best')
    return opt, env


def _written(opt: dict, exp_ids) -> list[list[torch.Tensor]]:
    return [C.load_policy(C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], 'best', opt['seed'][e]),
                          num_tasks=3, num_rows=4) for e in exp_ids]


@pytest.mark.parametrize('kind', KINDS)
def test_command_from_a_pickle_then_retrain_loads_it(kind, tmp_path, capsys):
    ablation_path, _ = _tiny(tmp_path, f'yamls/synthetic/ablations/nyu_v2_3task/{kind}.yml', 'ablation.yml')
    opt = load_config(ablation_path, 're-train')
    learned = [policy([1, 0, 0, 1]), policy([1, 1, 1, 0]), policy([0, 0, 0, 0])]
    source = C.policy_path(str(tmp_path / 'checkpoint_dir'), 'synthetic_nyu_v2_3task', 'best', 88)
    C.save_policy(source, learned)
    assert tool.main(['--config', ablation_path, '--kind', kind, '--source', source, '--exp_ids', '0', '1', '2']) == 0
    written = _written(opt, [0, 1, 2])
    for exp_id, policies in enumerate(written):
        assert all(torch.equal(a, b) for a, b in zip(policies, random_policies(kind, learned, opt['seed'][exp_id])))
        if kind == 'random1':
            assert sum(skip_counts(policies)) == 7
        else:
            assert skip_counts(policies) == [2, 1, 4]
    out = capsys.readouterr().out
    assert out.count('X = execute the block') == 4  # the learned policy, then one table per seed
    assert f'next: python re-train.py --config {ablation_path} --exp_ids 0 1 2' in out

    # re-train.py's own policy step loads the pickle (it would otherwise need a best checkpoint to sample from)
    retrain = load_script('re-train.py')
    env = AdaShareEnv(opt, CPU)
    for exp_id, policies in enumerate(written):
        loaded = retrain.obtain_policy(env, opt, opt['seed'][exp_id], types.SimpleNamespace(is_main=True))
        assert all(torch.equal(a, b) for a, b in zip(loaded, policies))
        env.set_fixed_policy(loaded)
    assert not os.path.exists(env.checkpoint_file('best'))


@pytest.mark.parametrize('kind', KINDS)
def test_command_from_a_checkpoint_matches_the_bases_sampled_policy(kind, tmp_path, capsys):
    base_opt, base_env = _base_checkpoint(tmp_path)
    ablation_path, _ = _tiny(tmp_path, f'yamls/synthetic/ablations/nyu_v2_3task/{kind}.yml', 'ablation.yml')
    opt = load_config(ablation_path, 're-train')
    source = base_env.checkpoint_file('best')
    assert tool.main(['--config', ablation_path, '--kind', kind, '--source', source]) == 0
    written = _written(opt, range(8))  # default: exp_ids 0..7
    retrain = load_script('re-train.py')
    learned_counts = set()
    for exp_id, policies in enumerate(written):
        seed = opt['seed'][exp_id]
        # the policy the base experiment's re-train.py samples for this seed (global numpy RNG seeded with it)
        np.random.seed(seed)
        base_policy = retrain.obtain_policy(base_env, base_opt, seed, types.SimpleNamespace(is_main=True))
        assert all(torch.equal(a, b) for a, b in zip(
            tool.sampled_policy([lg.detach() for lg in base_env.policy_logits()], seed), base_policy))
        assert all(torch.equal(a, b) for a, b in zip(policies, random_policies(kind, base_policy, seed)))
        counts, learned = skip_counts(policies), skip_counts(base_policy)
        assert (sum(counts) == sum(learned)) if kind == 'random1' else (counts == learned)
        learned_counts.add(tuple(learned))
    assert len(learned_counts) > 1  # the learned policy really is sampled per seed
    assert 'p(execute)' in capsys.readouterr().out
    # deterministic: a second run writes the same files
    assert tool.main(['--config', ablation_path, '--kind', kind, '--source', source]) == 0
    assert 'replaced' not in capsys.readouterr().out
    again = _written(opt, range(8))
    assert all(torch.equal(a, b) for x, y in zip(written, again) for a, b in zip(x, y))


def test_command_refusals(tmp_path):
    ablation_path, _ = _tiny(tmp_path, 'yamls/synthetic/ablations/nyu_v2_3task/random1.yml', 'ablation.yml')
    missing = str(tmp_path / 'checkpoint_dir' / 'synthetic_nyu_v2_3task' / 'best_model.pth.tar')
    with pytest.raises(tool.RandomPolicyError, match=re.escape(
            f'--source {missing} does not exist; it is written by: python train_policy.py --config '
            '<yaml with exp_name: synthetic_nyu_v2_3task>')):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', missing])
    with pytest.raises(tool.RandomPolicyError, match='re-train.py --config'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', missing[:-len('best_model.pth.tar')]
                   + 'policyIterbest_rs0088.pickle'])
    two_tasks = str(tmp_path / 'two.pickle')
    C.save_policy(two_tasks, [policy([1, 0, 1, 1])] * 2)
    with pytest.raises(C.PolicyFileError, match='holds policies for 2 task\\(s\\) but the config has 3'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', two_tasks])
    long_rows = str(tmp_path / 'rows.pickle')
    C.save_policy(long_rows, [policy([1, 0, 1, 1, 0, 0, 1, 1])] * 3)
    with pytest.raises(C.PolicyFileError, match='has 8 policy rows per task but the network gates 4'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', long_rows])
    other = load_config(_tiny(tmp_path, 'yamls/synthetic/nyu_v2_2task.yml', 'two_task.yml')[0], 'train_policy')
    AdaShareEnv(other, CPU).save_label('best')
    with pytest.raises(tool.RandomPolicyError, match='holds policy logits .*task1_logits.*task2_logits.* but the '
                                                     'config has 3 task'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source',
                   C.checkpoint_path(other['paths']['checkpoint_dir'], other['exp_name'], 'best')])
    with pytest.raises(tool.RandomPolicyError, match='expected a policy pickle'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', ablation_path])
    with pytest.raises(SystemExit):  # argparse: invalid choice
        tool.main(['--config', ablation_path, '--kind', 'random3', '--source', two_tasks])
    own = C.policy_path(str(tmp_path / 'checkpoint_dir'), 'synthetic_nyu_v2_3task_random1', 'best', 88)
    C.save_policy(own, [policy([1, 0, 1, 1])] * 3)
    with pytest.raises(tool.RandomPolicyError, match='is one of the files this command writes'):
        tool.main(['--config', ablation_path, '--kind', 'random1', '--source', own])


def test_command_error_is_one_line(tmp_path):
    ablation_path, _ = _tiny(tmp_path, 'yamls/synthetic/ablations/nyu_v2_3task/random2.yml', 'ablation.yml')
    result = subprocess.run([sys.executable, '-m', 'tools.random_policies', '--config', ablation_path, '--kind',
                             'random2', '--source', str(tmp_path / 'nowhere' / 'best_model.pth.tar')],
                            cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'ADASHARE_DEBUG': ''})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(f'error: --source {tmp_path}/nowhere/best_model.pth.tar '
                                                    'does not exist; it is written by: python train_policy.py')


# ----------------------------------------------------------------------------------------- the ablation configs
def _flat(node, prefix=''):
    out = {}
    for key, value in node.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f'{prefix}{key}.'))
        elif key != '_source':
            out[f'{prefix}{key}'] = value
    return out


@pytest.mark.parametrize('ablation, base', PAIRS)
@pytest.mark.parametrize('script', ['train_policy', 're-train', 'test'])
def test_ablation_config_differs_from_its_base_only_in_name_and_switch(ablation, base, script):
    kind = os.path.splitext(os.path.basename(ablation))[0]
    got, ref = _flat(load_config(ablation, script)), _flat(load_config(base, script))
    assert set(got) == set(ref)
    differing = {key for key in got if got[key] != ref[key]}
    assert got['exp_name'] == f'{ref["exp_name"]}_{kind}'
    if kind in SWITCHES:
        assert differing == {'exp_name', SWITCHES[kind]}
        assert ref[SWITCHES[kind]] is True and got[SWITCHES[kind]] is False
    else:
        assert differing == {'exp_name'}


@pytest.mark.parametrize('ablation, base', PAIRS)
def test_ablation_header_gives_its_own_commands(ablation, base):
    kind = os.path.splitext(os.path.basename(ablation))[0]
    with open(os.path.join(ROOT, ablation)) as f:
        header = ''.join(line for line in f if line.startswith('#'))
    assert f'python re-train.py --config {ablation}' in header
    assert f'python test.py --config {ablation}' in header
    if kind in SWITCHES:
        assert f'python train_policy.py --config {ablation}' in header
        assert f'{SWITCHES[kind]}: False' in header
    else:
        base_exp = load_config(base, 'test')['exp_name']
        assert f'python train_policy.py --config {base}' in header
        assert f'python tools/random_policies.py --config {ablation} --kind {kind}' in header
        assert f'--source experiments/checkpoints/{base_exp}/best_model.pth.tar' in header
    if kind == 'no_sharing':
        assert 'depth-weighted' in header


def _small_env(rel: str, tmp_path) -> AdaShareEnv:
    """The env of a shipped yaml on a small network (ResNet10, 8-channel heads), nothing else changed."""
    path, raw = _tiny(tmp_path, rel, 'small.yml')
    raw['backbone'] = 'ResNet10'
    with open(path, 'w') as f:
        yaml.safe_dump(raw, f)
    return AdaShareEnv(load_config(path, 'train_policy'), CPU)


def _randomise(env: AdaShareEnv) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for logits in env.policy_logits():
            logits.copy_(torch.randn(logits.shape, generator=generator))


SETTINGS = [(f'yamls/ablations/{s}', f'yamls/adashare/{s}.yml') for s in PAPER] + \
           [('yamls/synthetic/ablations/nyu_v2_3task', SYNTH_BASE)]


@pytest.mark.parametrize('folder, base', SETTINGS)
def test_switches_act_in_the_env(folder, base, tmp_path):
    envs = {'base': _small_env(base, tmp_path)}
    for kind in SWITCHES:
        envs[kind] = _small_env(f'{folder}/{kind}.yml', tmp_path)
    for env in envs.values():
        _randomise(env)
        assert env.state.p_epoch == 0
    rows = envs['base'].network.num_policy_rows
    # base: both regularisers, and the curriculum gates fewer than all rows at p_epoch 0
    assert set(envs['base'].regularisers()) == {'sparsity', 'hamming'}
    assert envs['base'].num_train_layers() == 1 < rows
    # w/o curriculum: all rows gated from the start; the regularisers as in the base
    assert envs['no_curriculum'].num_train_layers() in (None, rows)
    assert set(envs['no_curriculum'].regularisers()) == {'sparsity', 'hamming'}
    # w/o L_sparsity: no sparsity term; sharing and curriculum unchanged
    regs = envs['no_sparsity'].regularisers()
    assert set(regs) == {'hamming'} and envs['no_sparsity'].num_train_layers() == 1
    assert torch.equal(regs['hamming']['total'], envs['base'].regularisers()['hamming']['total'])
    # w/o L_sharing: no sharing term; the sparsity term takes its depth-weighted form (the original's semantics)
    regs = envs['no_sharing'].regularisers()
    assert set(regs) == {'sparsity'} and envs['no_sharing'].num_train_layers() == 1
    logits = envs['no_sharing'].policy_logits()
    assert torch.equal(regs['sparsity']['total'], L.sparsity_loss(logits, 1, True, False)[0])
    assert not torch.equal(regs['sparsity']['total'], envs['base'].regularisers()['sparsity']['total'])


def test_every_ablation_yaml_is_tested():
    shipped = sorted(os.path.relpath(p, ROOT) for folder in ('yamls/ablations', 'yamls/synthetic/ablations')
                     for p in _walk(os.path.join(ROOT, folder)))
    assert shipped == sorted(a for a, _ in PAIRS)


def _walk(folder):
    for root, _, files in os.walk(folder):
        yield from (os.path.join(root, f) for f in files if f.endswith('.yml'))
