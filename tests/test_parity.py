"""Training parity with the original AdaShare release, step by step (docs/parity.md).

The golden values in tests/data/original_steps.pt were produced by running the original AdaShare release
on a CPU through the protocol described in docs/parity.md. This test drives the project's own env
(AdaShareEnv, the model, models.policy) through the same protocol on the stored batches and compares
every optimiser step (task losses, regularisers, total, gates, learning rate), the state_dict checksums
after every phase, the RNG fingerprints and the validation metrics.

Under the golden's conditions (torch 2.14.1, CPU, 2 intra-op threads) everything must be bit-equal.
Elsewhere float reductions may legitimately differ in the last bits, and Adam amplifies such noise
over the steps, so the test still runs the whole protocol but asserts closeness with the measured
tolerances of `DRIFT` and says so in its output; it never skips.
"""
from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from envs import AdaShareEnv
from models import policy as P
from utils.config import load_config
from utils.seeding import fix_random_seed

GOLDEN_PATH = Path(__file__).parent / 'data' / 'original_steps.pt'
GOLDEN_TORCH = '2.14.1'
GOLDEN_THREADS = 2
# Validation metrics are float statistics; the original accumulates them in float32 / numpy, we in float64.
METRIC_RTOL = 1e-6
CPU = torch.device('cpu')

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Tolerance:
    """Relative tolerances of the closeness mode (another torch build or thread count)."""
    loss: float
    weights_sum: float
    metric: float


# Measured with 1 thread instead of 2 on torch 2.14.1 (AVX2 and AVX-512 CPUs): the largest relative
# differences over both protocols were about 1e-5 for the losses, 1e-4 for the state_dict sums and
# 1e-4 for the metrics (the 36 steps are too few for the drift to grow further); the bounds below
# leave a factor of about 10.
DRIFT = Tolerance(loss=1e-4, weights_sum=1e-3, metric=1e-3)


@pytest.fixture(scope='module')
def golden() -> dict:
    return torch.load(GOLDEN_PATH, weights_only=True)


@pytest.fixture
def golden_threads():
    """Run with the golden's thread count (conftest sets 1 for the rest of the suite)."""
    before = torch.get_num_threads()
    torch.set_num_threads(GOLDEN_THREADS)
    yield
    torch.set_num_threads(before)


def exact_conditions() -> bool:
    """True where bit-equality is expected: the golden's torch version and thread count, on the CPU."""
    return torch.__version__.split('+')[0] == GOLDEN_TORCH and torch.get_num_threads() == GOLDEN_THREADS


# ------------------------------------------------------------------------------------------ fingerprints
def tensor_sha256(tensor: torch.Tensor) -> bytes:
    """sha256 of a tensor's raw little-endian bytes (contiguous, on the CPU)."""
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).digest()


def numpy_rng_sha256() -> str:
    """sha256 of numpy's legacy global state: key words (uint32), [pos, has_gauss] (int64), gaussian (float64)."""
    _, keys, pos, has_gauss, gaussian = np.random.get_state(legacy=True)
    data = (keys.astype(np.uint32).tobytes() + np.array([pos, has_gauss], dtype=np.int64).tobytes()
            + np.array([gaussian], dtype=np.float64).tobytes())
    return hashlib.sha256(data).hexdigest()


def torch_rng_sha256() -> str:
    return hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------ comparison
@dataclass
class Comparison:
    """Collects every mismatch instead of stopping at the first, and counts the steps that match."""
    exact: bool
    problems: list[str] = field(default_factory=list)
    steps_equal: int = 0
    steps: int = 0
    worst: dict[str, float] = field(default_factory=lambda: {'loss': 0.0, 'weights_sum': 0.0, 'metric': 0.0})

    def _track(self, kind: str, ours: float, theirs: float) -> None:
        """Largest relative difference per kind (printed; how DRIFT was measured)."""
        if math.isfinite(ours) and math.isfinite(theirs) and theirs != 0:
            self.worst[kind] = max(self.worst[kind], abs(ours - theirs) / abs(theirs))

    def same(self, label: str, ours: torch.Tensor, theirs: torch.Tensor, rtol: float) -> bool:
        ours = ours.detach().cpu()
        if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
            self.problems.append(f'{label}: {ours.dtype}{list(ours.shape)} vs {theirs.dtype}{list(theirs.shape)}')
            return False
        if torch.equal(ours, theirs):
            return True
        difference = ((ours.double() - theirs.double()).abs() / theirs.double().abs().clamp_min(1e-30)).max()
        self.worst['loss'] = max(self.worst['loss'], float(difference))
        if not self.exact and torch.allclose(ours.double(), theirs.double(), rtol=rtol, atol=0.0):
            return True
        self.problems.append(f'{label}: {ours.tolist()} vs {theirs.tolist()}')
        return False

    def step(self, env: AdaShareEnv, record: dict, lr: list[float], report: dict) -> None:
        """Compare one optimiser step with its golden record."""
        label = f"{record['phase']} {record['index']}"
        ok = [lr == record['lr'] or self._note(f'{label} lr: {lr} vs {record["lr"]}'),
              env.temperature == record['temperature'] or self._note(f'{label} temperature'),
              self.same(f'{label} total', report['total']['total'], record['total'], DRIFT.loss)]
        for task, value in record['losses'].items():
            ok.append(self.same(f'{label} {task}', report[task]['total'], value, DRIFT.loss))
        for name, value in (record.get('regularisers') or {}).items():
            group, _, part = name.partition('_')
            ok.append(self.same(f'{label} {name}', report[group][part or 'total'], value, DRIFT.loss))
        if record['gates'] is not None:
            for t, (ours, theirs) in enumerate(zip(env.last_gates, record['gates'])):
                ok.append(self.same(f'{label} gates task{t + 1}', ours, theirs, DRIFT.loss))
        self.steps += 1
        self.steps_equal += all(ok)

    def snapshot(self, env: AdaShareEnv, protocol: dict, label: str, rng: bool = True) -> None:
        """Compare the state_dict checksums (and the RNG fingerprints) after a phase."""
        golden = protocol['snapshots'][label]
        state = env.network.state_dict()
        differing = []
        for i, key in enumerate(protocol['state_keys']):
            if key not in state:
                differing.append(f'{key} missing')
                continue
            if tensor_sha256(state[key]) == bytes(golden['sha256'][i].tolist()):
                continue
            ours, theirs = state[key].double().sum().item(), golden['sum'][i].item()
            self._track('weights_sum', ours, theirs)
            if self.exact or not math.isclose(ours, theirs, rel_tol=DRIFT.weights_sum, abs_tol=1e-6):
                differing.append(f'{key} (sum {ours!r} vs {theirs!r})')
        if set(state) != set(protocol['state_keys']):
            differing.append(f'extra keys {sorted(set(state) - set(protocol["state_keys"]))}')
        if differing:
            self.problems.append(f'snapshot {label}: {len(differing)} entries differ, first {differing[:3]}')
        if rng and torch_rng_sha256() != golden['torch_rng_sha256']:
            self.problems.append(f'snapshot {label}: torch RNG state differs')
        if rng and numpy_rng_sha256() != golden['numpy_rng_sha256']:
            self.problems.append(f'snapshot {label}: numpy RNG state differs')

    def metrics(self, label: str, ours: dict, theirs: dict) -> None:
        """Validation metrics: the same keys, values within METRIC_RTOL (DRIFT.metric off the golden's conditions).

        The one deliberate deviation: mIoU is 0 where the original's is NaN (no class has a true positive).
        """
        rtol = METRIC_RTOL if self.exact else DRIFT.metric
        for task, values in theirs.items():
            if set(ours.get(task, {})) != set(values):
                self.problems.append(f'val {label} {task} keys: {sorted(ours.get(task, {}))} vs {sorted(values)}')
                continue
            for name, value in values.items():
                if name == 'mIoU' and math.isnan(value):
                    value = 0.0
                self._track('metric', ours[task][name], value)
                if not math.isclose(ours[task][name], value, rel_tol=rtol, abs_tol=1e-12):
                    self.problems.append(f'val {label} {task} {name}: {ours[task][name]!r} vs {value!r}')

    def _note(self, problem: str) -> bool:
        self.problems.append(problem)
        return False


# ------------------------------------------------------------------------------------------ the protocol
def make_opt(protocol: dict, tmp_path: Path, script: str) -> dict:
    """The golden's config written to a yaml with our paths, loaded as the scripts load it."""
    config = copy.deepcopy(protocol['config'])
    config['paths'] = {k: str(tmp_path / k) for k in ('log_dir', 'result_dir', 'checkpoint_dir')}
    config['dataload']['dataroot'] = str(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{config['exp_name']}.yml"
    path.write_text(yaml.safe_dump(config))
    return load_config(str(path), script)


def learning_rates(env: AdaShareEnv, phase: str) -> list[float]:
    optimizer = env.optimizers['alphas' if phase == 'policy' else 'weights']
    return [group['lr'] for group in optimizer.param_groups]


def run_step(env: AdaShareEnv, check: Comparison, record: dict, inputs: dict) -> None:
    """One optimiser step on the stored batch named by the record, compared with it."""
    pool, index = record['batch']
    env.train()
    env.state.current_iter = record['iteration']
    env.set_inputs(inputs[pool][index])
    lr = learning_rates(env, record['phase'])
    report = env.optimize(record['phase'])
    check.step(env, record, lr, report)


def validate(env: AdaShareEnv, inputs: dict, mode: str) -> dict:
    """Validation on the stored `val` batch as the training scripts run it."""
    if mode == 'eval_fixed':
        return env.validate_retrain([inputs['val'][0]], eval_iter=10)
    return env.validate([inputs['val'][0]], mode, 10, extras=True)


def policy_learning(protocol: dict, inputs: dict, tmp_path: Path, check: Comparison) -> None:
    """Warm-up and alternation as train_policy.py runs them, on the stored batches."""
    opt = make_opt(protocol, tmp_path, 'train_policy')
    train = opt['train']
    steps = iter(protocol['steps'])
    fix_random_seed(protocol['train_seed'])
    env = AdaShareEnv(opt, CPU, is_train=True)
    env.apply_phase_freezing(bool(opt['fix_BN']))
    check.snapshot(env, protocol, 'init')
    for k in range(1, protocol['warm_up_steps'] + 1):
        run_step(env, check, next(steps), inputs)
        if k % int(train['val_freq']) == 0:
            check.metrics(f'warmup{k}', validate(env, inputs, 'eval_shared'), protocol['val'][f'warmup{k}'])
    check.snapshot(env, protocol, 'warmup')
    env.start_alternation()
    env.fix_alpha()
    for cycle in range(1, protocol['cycles'] + 1):
        for _ in range(int(train['weight_iter_alternate'])):
            run_step(env, check, next(steps), inputs)
        env.fix_w()
        env.free_alpha()
        check.metrics(f'weights{cycle}', validate(env, inputs, 'eval_policy'), protocol['val'][f'weights{cycle}'])
        check.snapshot(env, protocol, f'weights{cycle}')
        for _ in range(int(train['alpha_iter_alternate'])):
            run_step(env, check, next(steps), inputs)
        env.fix_alpha()
        env.free_w(bool(opt['fix_BN']))
        env.decay_temperature()
        env.state.p_epoch += 1
        check.snapshot(env, protocol, f'policy{cycle}')
    for t, (ours, theirs) in enumerate(zip(env.policy_logits(), protocol['final_logits'])):
        check.same(f'final task{t + 1}_logits', ours, theirs, DRIFT.weights_sum)
    if env.temperature != protocol['final_temperature']:
        check.problems.append(f'final temperature {env.temperature!r} vs {protocol["final_temperature"]!r}')


def retraining(protocol: dict, inputs: dict, tmp_path: Path, check: Comparison) -> None:
    """re-train.py's steps for one exp_id with the stored sampled policy."""
    opt = make_opt(protocol, tmp_path, 're-train')
    steps = [s for s in protocol['steps'] if s['phase'] == 'retrain']
    fix_random_seed(protocol['retrain_seed'])
    env = AdaShareEnv(opt, CPU, is_train=True)
    init_state = copy.deepcopy(env.network.state_dict())
    sampled = P.sample_policy_numpy(protocol['final_logits'])
    for t, (ours, theirs) in enumerate(zip(sampled, protocol['sampled_policy'])):
        if not torch.equal(ours, theirs):
            check.problems.append(f'sampled policy task{t + 1}: {ours.tolist()} vs {theirs.tolist()}')
    env.network.load_state_dict(init_state)
    env.set_fixed_policy(protocol['sampled_policy'])
    env.define_optimizers(policy_learning=False)
    env.define_schedulers(policy_learning=False)
    env.apply_phase_freezing(bool(opt['fix_BN']))
    check.snapshot(env, protocol, 'retrain_init')
    for k, record in enumerate(steps, start=1):
        run_step(env, check, record, inputs)
        if k % int(opt['train']['val_freq']) == 0:
            check.metrics(f'retrain{k}', validate(env, inputs, 'eval_fixed'), protocol['val'][f'retrain{k}'])
    check.snapshot(env, protocol, 'retrain')


@pytest.mark.parametrize('name', ['nyu2', 'nyu3'])
def test_training_matches_the_original_step_by_step(name, golden, golden_threads, tmp_path):
    protocol = golden['protocols'][name]
    check = Comparison(exact=exact_conditions())
    if not check.exact:
        print(f'parity {name}: torch {torch.__version__} with {torch.get_num_threads()} threads differs from the '
              f"golden's torch {GOLDEN_TORCH}, {GOLDEN_THREADS} threads: asserting closeness with {DRIFT}")
    policy_learning(protocol, golden['inputs'], tmp_path / 'policy', check)
    retraining(protocol, golden['inputs'], tmp_path / 'retrain', check)
    total = len(protocol['steps'])
    print(f'parity {name}: {check.steps_equal}/{total} steps bit-equal; largest relative differences {check.worst}')
    assert check.steps == total
    assert not check.problems, f'{name}: {check.steps_equal}/{total} steps match; ' + '\n'.join(check.problems[:30])
