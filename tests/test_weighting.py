"""Loss weighting (envs/weighting, docs/weighting.md): each method against a hand-computed 2-task example, the
gradient mechanics (shared parameters, auxiliary loss, AMP, DDP), config errors, the env and exact resume."""
import copy
import json
import math
import os
import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import yaml
from torch import nn

from envs import AdaShareEnv
from envs.weighting import (WEIGHTINGS, Weighting, WeightingContext, build_weighting, combined_backward,
                            resolved_arguments)
from envs.weighting.cagrad import cagrad_weights
from envs.weighting.gradients import _flat_gradient
from envs.weighting.nash_mtl import nash_weights
from models import build_network
from test_env import nyu_batch, tiny_opt
import config as C

CPU = torch.device('cpu')


def method(name, lambdas=(1.0, 1.0), **args):
    return build_weighting(name, WeightingContext(len(lambdas), tuple(lambdas), seed=7, steps_per_epoch=2), args)


def t(*values):
    """A float32 scalar for one value, a vector for several."""
    return torch.tensor(values[0] if len(values) == 1 else values, dtype=torch.float32)


# ------------------------------------------------------------------------------------------ registry, config
def test_registry_matches_the_config_choices():
    assert set(WEIGHTINGS) == set(C.WEIGHTING_METHODS)
    assert C.KEYS['weighting'].default == 'equal'


def test_bad_names_arguments_and_values_are_refused():
    with pytest.raises(ValueError, match=r"weighting_args\.T = -1: expected a number > 0"):
        method('dwa', T=-1)
    with pytest.raises(ValueError, match=r"weighting_args\.tau = 1: unknown argument of weighting 'dwa'; "
                                         r"valid arguments: T, window"):
        method('dwa', tau=1)
    with pytest.raises(ValueError, match="it takes no arguments"):
        method('pcgrad', c=0.4)
    assert resolved_arguments('cagrad', None) == {'c': 0.4}


@pytest.mark.parametrize('weighting, args, message', [
    ('sum', None, r"weighting = 'sum': expected one of 'equal', 'uw'"),
    ('cagrad', {'c': -1}, r'weighting_args\.c = -1: expected a number >= 0'),
    ('famo', {'lr': '0.1'}, r"weighting_args\.lr = '0\.1': expected a number > 0, not a string"),
    ('nash_mtl', {'alpha': 1}, r"weighting_args\.alpha = 1: unknown argument of weighting 'nash_mtl'; valid "
                               r"arguments: max_norm"),
    ('dwa', [2], r'weighting_args = \[2\]: expected a mapping'),
])
def test_config_names_the_key_and_the_valid_choices(tmp_path, weighting, args, message):
    with open(os.path.join(C.REPO_ROOT, 'yamls', 'synthetic', 'nyu_v2_2task.yml')) as f:
        raw = yaml.safe_load(f)
    raw.update(weighting=weighting, weighting_args=args)
    with pytest.raises(C.ConfigError, match=message):
        C.validate(raw, 're-train', 'x.yml')


def test_config_default_is_equal_and_arguments_are_documented():
    opt = C.load_config('yamls/synthetic/nyu_v2_2task.yml', 'train_policy')
    assert opt['weighting'] == 'equal' and opt['weighting_args'] is None
    reference = C.schema_markdown()
    for name, cls in WEIGHTINGS.items():
        assert f'`{name}`' in reference or not cls.ARGS
        for arg in cls.ARGS:
            assert f'| `{name}` | `{arg}` |' in reference


# ------------------------------------------------------------------------------------------ loss methods
def test_equal_is_the_lambda_sum_bit_for_bit():
    losses = [t(0.3).requires_grad_(), t(1.7).requires_grad_()]
    lambdas = (1.0, 20.0)
    got = method('equal', lambdas).loss(losses)
    assert torch.equal(got, sum(lam * loss for lam, loss in zip(lambdas, losses)))


def test_uw_closed_form():
    uw = method('uw', lambdas=(1.0, 4.0))
    losses = [t(2.0), t(0.5)]  # ℓ = λL = [2, 2]
    loss = uw.loss(losses)
    assert float(loss.detach()) == pytest.approx(0.5 * (2 + 0) + 0.5 * (2 + 0))
    loss.backward()
    assert uw.log_vars.grad.tolist() == pytest.approx([0.5 * (1 - 2.0)] * 2)  # ½(1 − e^{−s}ℓ)
    with torch.no_grad():
        uw.log_vars.copy_(torch.log(t(2.0, 2.0)))  # the minimiser s = log ℓ
    uw.log_vars.grad = None
    uw.loss(losses).backward()
    assert uw.log_vars.grad.abs().max() < 1e-6
    assert uw.weight_parameter_groups(0.01) == [{'params': [uw.log_vars], 'lr': 0.01, 'weight_decay': 0.0}]


def test_dwa_weights_from_a_known_history():
    dwa = method('dwa', T=2.0, window=2)
    for values in ([2.0, 4.0], [2.0, 4.0], [1.0, 4.0]):  # windows 1 and 2 (step 3 opens window 2)
        assert torch.equal(dwa.task_weights(), torch.ones(2))
        dwa.loss([t(v) for v in values])
    dwa.loss([t(1.0), t(4.0)])  # closes window 2: means [2, 4] then [1, 4]
    ratio = np.array([1 / 2, 4 / 4]) / 2.0
    expected = 2 * np.exp(ratio) / np.exp(ratio).sum()
    assert dwa.task_weights().tolist() == pytest.approx(expected.tolist())
    loss = dwa.loss([t(3.0), t(5.0)])
    assert float(loss.detach()) == pytest.approx(expected[0] * 3 + expected[1] * 5)


def test_famo_loss_and_logit_update():
    famo = method('famo', lr=0.025, gamma=0.0)
    losses = [t(2.0).requires_grad_(), t(4.0).requires_grad_()]
    loss = famo.loss(losses)
    c = 0.5 / 2 + 0.5 / 4
    assert float(loss.detach()) == pytest.approx((0.5 * math.log(2) + 0.5 * math.log(4)) / c)
    loss.backward()
    assert [float(x.grad) for x in losses] == pytest.approx([0.5 / c / 2, 0.5 / c / 4])  # z_t/c · 1/ℓ_t
    # Task 1 halves its loss, task 2 does not: ∇ξ = z ⊙ (δ − z·δ) = [+, −]; Adam's first step is −lr·sign.
    famo.loss([t(1.0), t(4.0)])
    assert famo.logits.detach().tolist() == pytest.approx([-0.025, 0.025], abs=1e-6)
    assert famo.task_weights()[1] > famo.task_weights()[0]


# ------------------------------------------------------------------------------------------ gradient methods
def test_pcgrad_projects_conflicting_gradients():
    pc = method('pcgrad')
    direction, weights = pc.combine(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]), t(1, 1))
    # g1' = g1 − (g1·g2)/|g2|² g2 = (0.5, 0.5); g2' = g2 − (g2·g1)/|g1|² g1 = (0, 1)
    assert direction.tolist() == pytest.approx([0.5, 1.5])
    assert weights.tolist() == [1.0, 1.0]
    direction, _ = pc.combine(torch.tensor([[1.0, 0.0], [1.0, 1.0]]), t(1, 1))
    assert direction.tolist() == pytest.approx([2.0, 1.0])  # no conflict: the plain sum
    assert pc.step == 2


def test_pcgrad_order_is_seeded_by_seed_and_step():
    grads = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    first, second = method('pcgrad', (1.0,) * 4), method('pcgrad', (1.0,) * 4)
    a = [first.combine(grads, torch.ones(4))[0] for _ in range(3)]
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    second.step = 0
    b = [second.combine(grads, torch.ones(4))[0] for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_cagrad_orthogonal_example_and_optimality():
    c = 0.4
    direction, _ = method('cagrad', c=c).combine(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), t(1, 1))
    # symmetric: w = (½, ½), g_w = g_0, d = (1 + c)·g_0 / (1 + c²)
    assert direction.tolist() == pytest.approx([(1 + c) / (1 + c * c) * 0.5] * 2, rel=1e-5)
    grads = np.array([[2.0, 0.3], [-0.5, 1.0]])
    gram = grads @ grads.T
    w = cagrad_weights(gram, c)
    g0 = grads.mean(axis=0)

    def objective(x):
        gw = x @ grads
        return gw @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(gw)

    grid = min(objective(np.array([a, 1 - a])) for a in np.linspace(0, 1, 20001))
    assert objective(w) <= grid + 1e-9
    mean, _ = method('cagrad', c=0.0).combine(torch.tensor(grads, dtype=torch.float32), t(1, 1))
    assert mean.tolist() == pytest.approx(g0.tolist(), rel=1e-6)


def test_nash_mtl_closed_form_and_optimality_conditions():
    direction, alpha = method('nash_mtl', max_norm=0.0).combine(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), t(1, 1))
    # M̂ = diag(1, 4)/√17, α_t = 1/sqrt(M̂_tt): α = 17^¼·(1, ½), d = 17^¼·(1, 1)
    root = 17 ** 0.25
    assert alpha.tolist() == pytest.approx([root, root / 2], rel=1e-5)
    assert direction.tolist() == pytest.approx([root, root], rel=1e-5)
    clipped, _ = method('nash_mtl').combine(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), t(1, 1))
    assert clipped.tolist() == pytest.approx([2 ** -0.5] * 2, rel=1e-5)  # max_norm 1
    grads = np.array([[1.0, 0.5, 0.0], [-0.3, 1.0, 0.2], [0.1, -0.4, 2.0]])
    gram = grads @ grads.T
    alpha = nash_weights(gram)
    matrix = gram / np.linalg.norm(gram)
    assert np.all(alpha > 0)
    np.testing.assert_allclose(matrix @ alpha, 1 / alpha, rtol=1e-5)
    assert nash_weights(np.array([[1.0, 0.0], [0.0, 0.0]]))[1] == 0  # a task without shared gradient


def test_imtl_closed_form_equal_projections():
    direction, weights = method('imtl').combine(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), t(1, 1))
    assert direction.tolist() == pytest.approx([2 / 3, 2 / 3])  # α = (2/3, 1/3)
    assert weights.tolist() == [1.0, 1.0]
    grads = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    direction, _ = method('imtl', (1.0,) * 3).combine(grads, torch.ones(3))
    projections = grads @ direction / grads.norm(dim=1)
    assert torch.allclose(projections, projections[0].expand(3), rtol=1e-4)


def test_gradnorm_weight_update():
    gn = method('gradnorm', alpha=1.5, lr=0.025)
    grads = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    direction, weights = gn.combine(grads, t(1.0, 1.0))
    # G = w·|g| = (3, 1), target = mean(G)·r^α = (2, 2): ∂/∂w = sign(G − target)·|g| = (3, −1);
    # Adam's first step −lr·sign: w = (0.975, 1.025), already summing to K = 2.
    assert direction.tolist() == [3.0, 1.0] and weights.tolist() == [1.0, 1.0]
    assert gn.weights.detach().tolist() == pytest.approx([0.975, 1.025], abs=1e-6)
    direction, weights = gn.combine(grads, t(0.5, 1.0))
    assert weights.tolist() == pytest.approx([0.975, 1.025], abs=1e-6)
    assert direction.tolist() == pytest.approx([3 * 0.975, 1.025], abs=1e-5)
    assert gn.initial.tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------------------ mechanics
class _Sum(Weighting):
    """A test method whose combination is the plain sum (not registered)."""
    uses_gradients = True
    name = 'sum'

    def combine(self, grads, losses):
        return grads.sum(dim=0), torch.ones(grads.shape[0])


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk, self.head1, self.head2, self.unused = nn.Linear(3, 4), nn.Linear(4, 1), nn.Linear(4, 1), nn.Linear(1, 1)

    def losses(self, x, y):
        h = torch.tanh(self.trunk(x))
        return [((self.head1(h) - y) ** 2).mean(), ((self.head2(h) + y).abs()).mean()]


def _context(k=2, lambdas=(1.0, 3.0)):
    return WeightingContext(k, lambdas)


def test_combined_backward_with_the_plain_sum_equals_backward():
    net = _TwoHeads()
    x, y = torch.randn(5, 3), torch.randn(5, 1)
    shared = list(net.trunk.parameters())
    others = list(net.head1.parameters()) + list(net.head2.parameters()) + list(net.unused.parameters())
    scaler = torch.amp.GradScaler('cpu', enabled=False)
    losses = net.losses(x, y)
    penalty = 0.1 * net.trunk.weight.pow(2).sum()
    combined_backward(_Sum(_context()), losses, shared, others, scaler, penalty)
    got = [p.grad.clone() if p.grad is not None else None for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    losses = net.losses(x, y)
    (1.0 * losses[0] + 3.0 * losses[1] + 0.1 * net.trunk.weight.pow(2).sum()).backward()
    for mine, ref in zip(got, [p.grad for p in net.parameters()]):
        assert (mine is None) == (ref is None)
        if ref is not None:
            torch.testing.assert_close(mine, ref)
    assert net.unused.weight.grad is None  # unreached parameters keep no gradient


def test_amp_scaled_gradients_and_skipped_steps():
    net = _TwoHeads()
    x, y = torch.randn(5, 3), torch.randn(5, 1)
    shared, others = list(net.trunk.parameters()), list(net.head1.parameters()) + list(net.head2.parameters())
    combined_backward(method('pcgrad', (1.0, 3.0)), net.losses(x, y), shared, others,
                      torch.amp.GradScaler('cpu', enabled=False))
    plain = [p.grad.clone() for p in shared + others]
    net.zero_grad(set_to_none=True)
    scaler = torch.amp.GradScaler('cpu', init_scale=1024.0)
    combined_backward(method('pcgrad', (1.0, 3.0)), net.losses(x, y), shared, others, scaler)
    for p, ref in zip(shared + others, plain):
        torch.testing.assert_close(p.grad, ref * 1024.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    net.zero_grad(set_to_none=True)
    losses = net.losses(x, y)
    losses[1] = losses[1] * float('inf')
    before = [p.detach().clone() for p in net.parameters()]
    combined_backward(method('cagrad', (1.0, 3.0)), losses, shared, others, scaler)
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, net.parameters()))  # skipped
    assert scaler.get_scale() == 512.0


def _ddp_worker(rank, port, out_dir, name):
    from engine import device as dev
    torch.set_num_threads(1)
    os.environ.update({'RANK': str(rank), 'WORLD_SIZE': '2', 'LOCAL_RANK': str(rank), 'LOCAL_WORLD_SIZE': '2',
                       'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port)})
    dev.init_distributed([-1])
    try:
        net = _TwoHeads()
        g = torch.Generator().manual_seed(100 + rank)  # each rank its own data
        x, y = torch.randn(5, 3, generator=g), torch.randn(5, 1, generator=g)
        shared, others = list(net.trunk.parameters()), list(net.head1.parameters()) + list(net.head2.parameters())
        weighting = method(name, (1.0, 3.0))
        combined_backward(weighting, net.losses(x, y), shared, others, torch.amp.GradScaler('cpu', enabled=False))
        torch.save({'grads': [p.grad for p in shared + others], 'state': weighting.state_dict()},
                   os.path.join(out_dir, f'{name}{rank}.pt'))
    finally:
        dev.cleanup_distributed()


@pytest.mark.parametrize('name', ['pcgrad', 'gradnorm'])
def test_ddp_ranks_combine_the_rank_averaged_gradients_identically(tmp_path, name):
    from test_device import _free_port
    context = mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path), name), nprocs=2, join=False)
    deadline = time.time() + 600  # generous: each rank imports torch, scipy and the repository on a busy CPU
    while not context.join(timeout=5):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail('the 2-process gloo group did not finish within 600 s')
    results = [torch.load(tmp_path / f'{name}{r}.pt') for r in range(2)]
    for a, b in zip(results[0]['grads'], results[1]['grads']):
        assert torch.equal(a, b)
    # The same as one process combining the mean of the two ranks' per-task gradients.
    net = _TwoHeads()
    shared, others = list(net.trunk.parameters()), list(net.head1.parameters()) + list(net.head2.parameters())
    rows = []
    for rank in range(2):
        g = torch.Generator().manual_seed(100 + rank)
        x, y = torch.randn(5, 3, generator=g), torch.randn(5, 1, generator=g)
        rows.append([_flat_gradient(lam * loss, shared + others)[0] for lam, loss in zip((1.0, 3.0), net.losses(x, y))])
    grads = torch.stack([(a + b) / 2 for a, b in zip(*rows)])
    n = sum(p.numel() for p in shared)
    values = None
    for rank in range(2):
        g = torch.Generator().manual_seed(100 + rank)
        x, y = torch.randn(5, 3, generator=g), torch.randn(5, 1, generator=g)
        ell = torch.stack([lam * loss.detach() for lam, loss in zip((1.0, 3.0), net.losses(x, y))])
        values = ell / 2 if values is None else values + ell / 2
    direction, weights = method(name, (1.0, 3.0)).combine(grads[:, :n], values)
    expected = torch.cat([direction, weights @ grads[:, n:]])
    torch.testing.assert_close(torch.cat([g.reshape(-1) for g in results[0]['grads']]), expected)


# ------------------------------------------------------------------------------------------ shared parameters
def _ids(params):
    return {id(p) for p in params}


def test_shared_blocks_follow_the_hard_decision_of_the_gates():
    net = build_network('adashare', 'ResNet10', [5, 3], init_method='equal', init_neg_logits=None, skip_layer=0,
                        head_channels=8)
    execute, skip = [1.0, 0.0], [0.0, 1.0]
    gates = [torch.tensor([execute, execute, skip, skip]), torch.tensor([execute, skip, execute, skip])]
    shared = _ids(net.shared_parameters(gates))
    blocks = [_ids(net.backbone.block_parameters(b)) for b in range(4)]
    assert blocks[0] <= shared and not (blocks[1] | blocks[2] | blocks[3]) & shared
    stem_and_projections = _ids(net.backbone_parameters()) - blocks[0] - blocks[1] - blocks[2] - blocks[3]
    assert stem_and_projections and stem_and_projections <= shared  # always shared
    soft = [torch.tensor([[0.6, 0.4], [0.3, 0.7], [0.9, 0.1], [0.5, 0.5]])] * 2  # argmax, ties execute
    assert _ids(net.shared_parameters(soft)) == _ids(net.backbone_parameters()) - blocks[1]
    assert _ids(net.shared_parameters(None)) == _ids(net.backbone_parameters())  # warm-up
    assert not _ids(net.shared_parameters(None)) & _ids(net.task_specific_parameters())


def test_shared_parameters_of_the_baselines():
    def build(name):
        return build_network(name, 'ResNet10', [5, 3], init_method='equal', init_neg_logits=None, skip_layer=0,
                             head_channels=8)
    assert build('single_task').shared_parameters() == []
    multi = build('multi_task')
    assert _ids(multi.shared_parameters()) == _ids(multi.backbone_parameters())
    mtan = build('mtan')
    assert _ids(mtan.shared_parameters()) == _ids(mtan.backbone_parameters())
    stitch = build('cross_stitch')
    assert _ids(stitch.shared_parameters()) == _ids(stitch.backbone_parameters() + stitch.fusion_parameters())
    nddr = build('nddr')
    assert _ids(nddr.shared_parameters()) == (_ids(nddr.backbone_parameters() + nddr.fusion_parameters())
                                              - _ids(nddr.nddr[-1].parameters()))
    sluice = build('sluice')
    assert _ids(sluice.layer_stitch.parameters()) & _ids(sluice.fusion_parameters())
    assert not _ids(sluice.shared_parameters()) & _ids(sluice.layer_stitch.parameters())
    for net in (multi, mtan, stitch, nddr, sluice):
        assert not _ids(net.shared_parameters()) & _ids(net.task_specific_parameters())


# ------------------------------------------------------------------------------------------ the env
def _env(tmp_path, name, architecture='adashare', **args):
    torch.manual_seed(0)
    opt = tiny_opt(tmp_path, tasks=('seg', 'sn'), num_class=(5, 3), lambdas=[1.0, 20.0], weighting=name,
                   weighting_args=args or None, architecture=architecture)
    return AdaShareEnv(opt, CPU)


def test_policy_steps_keep_the_paper_loss(tmp_path):
    logits = []
    for name in ('equal', 'pcgrad', 'famo'):
        env = _env(tmp_path / name, name)
        env.start_alternation()
        env.fix_w()
        env.free_alpha()
        torch.manual_seed(3)
        env.set_inputs(nyu_batch(seed=1))
        env.optimize('policy')
        logits.append([p.detach().clone() for p in env.policy_logits()])
    for other in logits[1:]:
        assert all(torch.equal(a, b) for a, b in zip(logits[0], other))


@pytest.mark.parametrize('name', sorted(set(WEIGHTINGS) - {'equal'}))
def test_every_method_trains_each_phase(tmp_path, name):
    env = _env(tmp_path, name)
    before = [p.detach().clone() for p in env.network.network_parameters()]
    env.set_inputs(nyu_batch(seed=0))
    report = env.optimize('warmup')
    assert math.isfinite(float(report['total']['total']))
    env.start_alternation()
    env.set_inputs(nyu_batch(seed=1))
    env.optimize('weights')
    env.set_fixed_policy([torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0]]), torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0]])])
    env.set_inputs(nyu_batch(seed=2))
    env.optimize('retrain')
    after = list(env.network.network_parameters())
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, after))
    assert all(torch.isfinite(p).all() for p in after)


@pytest.mark.parametrize('architecture', ['single_task', 'multi_task', 'cross_stitch', 'sluice', 'nddr', 'mtan'])
def test_gradient_methods_train_every_baseline(tmp_path, architecture):
    for name in ('cagrad', 'uw'):
        env = _env(tmp_path / name, name, architecture=architecture)
        env.set_inputs(nyu_batch(seed=0))
        report = env.optimize('retrain')
        assert math.isfinite(float(report['total']['total']))
        assert ('orthogonality' in report) == (architecture == 'sluice')


def test_uw_log_variances_train_with_the_weights(tmp_path):
    env = _env(tmp_path, 'uw', lr=0.1)
    group = env.optimizers['weights'].param_groups[-1]
    assert group['params'] == [env.weighting.log_vars] and group['lr'] == 0.1 and group['weight_decay'] == 0.0
    env.set_inputs(nyu_batch(seed=0))
    env.optimize('warmup')
    assert not torch.equal(env.weighting.log_vars.detach(), torch.zeros(2))
    assert len(_env(tmp_path / 'equal', 'equal').optimizers['weights'].param_groups) == 2  # the original layout


@pytest.mark.parametrize('name', sorted(WEIGHTINGS))
def test_state_survives_save_and_resume(tmp_path, name):
    """A resumed env continues exactly as the uninterrupted one (weights, optimiser and method state)."""
    args = {'window': 1} if name == 'dwa' else {}
    reference = _env(tmp_path / 'a', name, **args)
    for seed in range(3):
        reference.set_inputs(nyu_batch(seed=seed))
        reference.optimize('warmup')
    path = str(tmp_path / 'resume.pth.tar')
    reference.save_resume(path, {})
    resumed = _env(tmp_path / 'b', name, **args)
    resumed.load_resume(path)
    for env in (reference, resumed):
        torch.manual_seed(11)  # the heads' dropout: the scripts restore the RNG states from the resume state
        for seed in range(3, 5):
            env.set_inputs(nyu_batch(seed=seed))
            env.optimize('warmup')
    for a, b in zip(reference.network.state_dict().values(), resumed.network.state_dict().values()):
        assert torch.equal(a, b)
    sa, sb = reference.weighting.state_dict(), resumed.weighting.state_dict()
    assert sa['extra'] == sb['extra']
    assert all(torch.equal(sa['tensors'][k], sb['tensors'][k]) for k in sa['tensors'])
    if name in ('famo', 'uw', 'gradnorm', 'dwa', 'pcgrad'):
        assert sa['extra'] or sa['tensors'], 'a stateful method saves state'


# ------------------------------------------------------------------------------------------ yamls and whole runs
WEIGHTING_ROWS = ('equal', 'uw', 'dwa', 'pcgrad', 'cagrad', 'nash_mtl')


def test_weighting_yamls_differ_from_the_base_only_in_name_and_method():
    from _pipeline import ROOT
    folder = os.path.join(ROOT, 'yamls', 'synthetic', 'weighting', 'nyu_v2_2task')
    with open(os.path.join(ROOT, 'yamls', 'synthetic', 'nyu_v2_2task.yml')) as f:
        base = yaml.safe_load(f)
    del base['exp_name']
    assert sorted(os.listdir(folder)) == sorted(f'{m}.yml' for m in WEIGHTING_ROWS)
    for name in WEIGHTING_ROWS:
        with open(os.path.join(folder, f'{name}.yml')) as f:
            raw = yaml.safe_load(f)
        assert raw.pop('weighting') == name
        raw.pop('weighting_args', None)
        assert raw.pop('exp_name') == f'synthetic_nyu_v2_2task_weighting_{name}'
        assert raw == base, name
        C.load_config(os.path.join(folder, f'{name}.yml'), 'train_policy')
    with open(os.path.join(ROOT, 'yamls', 'tables', 'synthetic_weighting.yml')) as f:
        spec = yaml.safe_load(f)
    assert [row['config'] for row in spec['rows']] == [f'yamls/synthetic/weighting/nyu_v2_2task/{m}.yml'
                                                       for m in WEIGHTING_ROWS]
    assert spec['reference'] == spec['rows'][0]['method'] and all(row['exp_ids'] == [0, 1, 2] for row in spec['rows'])


@pytest.fixture(scope='module')
def nyu_root(tmp_path_factory):
    from _pipeline import make_nyu
    return make_nyu(tmp_path_factory.mktemp('nyu'))


def _tiny_config(tmp_path, nyu_root, **keys):
    from _pipeline import tiny_yaml
    path, opt = tiny_yaml(tmp_path, nyu_root, total_iters=12, warm_up_iters=4, val_freq=2, weight_iter_alternate=2,
                          alpha_iter_alternate=2, retrain_total_iters=6, policy_iter='latest')
    opt.update(keys)
    with open(path, 'w') as f:
        yaml.safe_dump(opt, f)
    return path, opt


@pytest.mark.slow
@pytest.mark.parametrize('name, architecture', [('pcgrad', 'adashare'), ('cagrad', 'multi_task')])
def test_policy_learning_retraining_and_test_with_a_gradient_method(tmp_path, nyu_root, name, architecture):
    from _pipeline import load_script
    config, opt = _tiny_config(tmp_path, nyu_root, weighting=name, architecture=architecture)
    args = ['--config', config, '--gpus', '-1']
    if architecture == 'adashare':
        assert load_script('train_policy.py').main(args) == 0
    assert load_script('re-train.py').main(args + ['--exp_ids', '0']) == 0
    assert load_script('test.py').main(args + ['--exp_ids', '0']) == 0
    with open(tmp_path / 'result_dir' / opt['exp_name'] / 'test_metrics_exp000.json') as f:
        result = json.load(f)
    assert result['architecture'] == architecture or architecture == 'adashare'
    from engine.checkpoint import load_checkpoint
    latest = load_checkpoint(str(tmp_path / 'checkpoint_dir' / opt['exp_name'] / 'retrain000_policyIterlatest_latest_model.pth.tar'))
    assert latest['weighting']['name'] == name


@pytest.mark.slow
@pytest.mark.parametrize('name', ['uw', 'dwa', 'famo', 'gradnorm', 'pcgrad'])
def test_retraining_killed_resumes_the_method_state_exactly(tmp_path, nyu_root, name):
    from test_resume import assert_same_run, final_state, run
    configs = {}
    for run_name in ('reference', 'interrupted'):
        (tmp_path / run_name).mkdir()
        configs[run_name] = _tiny_config(tmp_path / run_name, nyu_root, weighting=name, architecture='multi_task',
                                         weighting_args={'window': 1} if name == 'dwa' else None)
    assert run('re-train.py', configs['reference'][0]).returncode == 0
    killed = run('re-train.py', configs['interrupted'][0], kill_at=3)  # resume state written at iteration 2
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run('re-train.py', configs['interrupted'][0])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert 'resuming the interrupted retraining' in resumed.stdout
    prefix = 'retrain000_policyIterlatest_'
    opt = configs['reference'][1]
    a, b = final_state(tmp_path / 'reference', opt, prefix), final_state(tmp_path / 'interrupted', opt, prefix)
    assert_same_run(a, b)
    sa, sb = a['weighting'], b['weighting']
    assert sa['extra'] == sb['extra'] and sa['name'] == name
    for key, value in sa['tensors'].items():
        torch.testing.assert_close(value, sb['tensors'][key], rtol=1e-5, atol=1e-6)


def test_the_weighting_table_plans_every_row(tmp_path):
    """tools/cpu_table.py on the weighting spec: a policy-learning run per method, then retrain + test per seed."""
    from _pipeline import ROOT
    from tools import cpu_table
    spec_path = os.path.join(ROOT, 'yamls', 'tables', 'synthetic_weighting.yml')
    spec = cpu_table.read_spec(spec_path)
    quick = cpu_table.quick_copies(spec_path, spec, str(tmp_path))
    effective = cpu_table.effective_spec(cpu_table.read_spec(quick), quick, str(tmp_path), 3)
    steps = cpu_table.plan(cpu_table.read_spec(effective), effective, 3, '-1', str(tmp_path), force=True)
    labels = [step.label for step in steps]
    assert sum(label.endswith('policy learning') for label in labels) == len(WEIGHTING_ROWS)
    assert sum(': retrain exp' in label for label in labels) == 3 * len(WEIGHTING_ROWS)
    assert sum(': test exp' in label for label in labels) == 3 * len(WEIGHTING_ROWS)
    assert labels[-1] == 'tables'


def test_a_skipped_non_finite_batch_leaves_the_loss_histories_alone():
    dwa, famo = method('dwa', window=1), method('famo')
    for weighting in (dwa, famo):
        weighting.loss([t(2.0), t(4.0)])
        before = copy.deepcopy(weighting.state_dict())
        weighting.loss([t(float('nan')), t(4.0)])
        after = weighting.state_dict()
        assert after['extra'] == before['extra']
        assert all(torch.equal(after['tensors'][k], v) for k, v in before['tensors'].items())
