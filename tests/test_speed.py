"""Speed options (issue 7): each runs on CPU; the defaults keep the float32 numerics bit for bit; checkpoints
keep their key names; the fp16 GradScaler is part of the resume state; the benchmark prints its tables."""
import pytest
import torch

from envs import AdaShareEnv
from test_env import nyu_batch, tiny_opt
from engine import speed
from engine.checkpoint import load_checkpoint
from config import load_config
from engine.data import make_loader

CPU = torch.device('cpu')
OPTIONS = {
    'bf16': {'amp': 'bf16'},
    'fp16': {'amp': 'fp16'},
    'channels_last': {'channels_last': True},
    'cudnn_benchmark': {'cudnn_benchmark': True},
    'compile': {'compile': True},
}
ALL_ON = {'amp': 'bf16', 'channels_last': True, 'cudnn_benchmark': True, 'compile': True}


@pytest.fixture(autouse=True)
def fast_compile(monkeypatch):
    """torch.compile with dynamo's graph capture (graph breaks, guards, recompiles per phase) but the eager
    backend: inductor's C++ code generation takes minutes on a small CPU."""
    monkeypatch.setattr(speed, 'COMPILE_KWARGS', {'backend': 'eager'})
    yield
    torch._dynamo.reset()


def policies(rows):
    """Task 1 runs everything, task 2 skips everything, task 3 alternates."""
    return [torch.tensor([[1, 0]] * rows), torch.tensor([[0, 1]] * rows),
            torch.tensor([[1, 0], [0, 1]] * (rows // 2))]


def small_batch():
    """One 24x24 image: reduced-precision convolutions are emulated (slow) on CPUs without bf16/fp16 units."""
    return {k: v[:1, :, :24, :24].contiguous() if torch.is_tensor(v) else v[:1] for k, v in nyu_batch().items()}


def make_env(tmp_path, speed_section=None, **overrides):
    opt = tiny_opt(tmp_path, **overrides)
    if speed_section is not None:
        opt['speed'] = dict(speed_section)
    torch.manual_seed(0)
    env = AdaShareEnv(opt, CPU)
    env.set_fixed_policy(policies(env.network.num_policy_rows))
    env.set_inputs(small_batch())
    env.train()
    return env


def all_phases(env):
    """One step of each phase, in the order of a run; returns the loss reports."""
    reports = []
    env.fix_alpha()
    env.free_w()
    reports.append(env.optimize('warmup'))
    env.start_alternation()
    reports.append(env.optimize('weights'))
    env.fix_w()
    env.free_alpha()
    reports.append(env.optimize('policy'))
    env.fix_alpha()
    env.free_w()
    env.define_optimizers(policy_learning=False)
    reports.append(env.optimize('retrain'))
    env.quirks['true_skip'] = True
    reports.append(env.optimize('retrain'))
    env.quirks['true_skip'] = False
    return reports


def state(env):
    return {k: v.detach().clone() for k, v in env.network.state_dict().items()}


@pytest.mark.parametrize('name', list(OPTIONS))
def test_each_option_trains_and_validates_on_cpu(tmp_path, name):
    env = make_env(tmp_path, OPTIONS[name])
    if name == 'fp16':
        # A small initial loss scale, so that these few steps are not all skipped as fp16 overflows.
        env.scaler = torch.amp.GradScaler('cpu', init_scale=256.0)
    before = state(env)
    reports = all_phases(env)
    for report in reports:
        for task in env.tasks:
            assert torch.isfinite(report[task]['total']), (name, report)
    after = state(env)
    assert any(not torch.equal(before[k], after[k]) for k in before if 'logits' not in k)
    assert any(not torch.equal(before[k], after[k]) for k in before if 'logits' in k)
    metrics = env.validate([small_batch()], 'eval_fixed')
    assert set(metrics) == set(env.tasks)
    assert env.network.training  # validate restores the training mode


def test_defaults_are_bit_identical_to_the_plain_float32_step(tmp_path):
    env, ref = make_env(tmp_path), make_env(tmp_path)
    explicit = make_env(tmp_path, {'amp': None, 'channels_last': False, 'cudnn_benchmark': False, 'compile': False})
    assert env.train_network is env.network and not env.scaler.is_enabled()

    def reference_step(gates_fn=lambda: None, skip=False):
        """The step as it was before the speed options: float32 forward, losses, backward, step."""
        outputs = ref.network(ref.batch['img'].float(), gates_fn(), skip_unselected=skip)
        losses = ref.task_losses(outputs)
        loss = sum(lam * losses[task] for lam, task in zip(ref.lambdas, ref.tasks))
        optimizer = ref.optimizers['weights']
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ref.schedulers.get('weights') is not None:
            ref.schedulers['weights'].step()

    def seeded(fn):  # the same dropout masks and Gumbel noise for every env
        torch.manual_seed(5)
        fn()

    for e in (env, ref, explicit):
        e.fix_alpha()
        e.free_w()
    for phase, gates_fn, skip in (('warmup', lambda: None, False), ('weights', ref.gumbel_gates, False),
                                  ('retrain', ref.fixed_gates, True)):
        if phase == 'weights':
            for e in (env, ref, explicit):
                e.start_alternation()
        if phase == 'retrain':
            for e in (env, ref, explicit):
                e.define_optimizers(policy_learning=False)
                e.quirks['true_skip'] = True
        seeded(lambda: env.optimize(phase))
        seeded(lambda: explicit.optimize(phase))
        seeded(lambda: reference_step(gates_fn, skip))
        expected = state(env)
        for other in (ref, explicit):
            assert all(torch.equal(expected[k], v) for k, v in state(other).items()), phase
    env.eval()
    ref.eval()
    with torch.no_grad():
        fast = env.forward('eval_fixed')
        assert all(torch.equal(a, b) for a, b in zip(fast, ref.network(ref.batch['img'].float(), ref.fixed_gates(),
                                                                       skip_unselected=True)))


def test_bf16_autocast_runs_convolutions_in_bf16_with_float32_outputs(tmp_path):
    env = make_env(tmp_path, {'amp': 'bf16'})
    seen = []
    env.network.backbone.conv1.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    outputs = env.forward('warmup')
    assert seen == [torch.bfloat16]
    assert all(out.dtype == torch.float32 for out in outputs)
    assert env.network.backbone.conv1.weight.dtype == torch.float32  # master weights stay float32
    assert not env.scaler.is_enabled()  # bf16 needs no loss scaling


@pytest.mark.parametrize('section', [ALL_ON, {'channels_last': True}])
def test_checkpoints_keep_the_original_key_names(tmp_path, section):
    env = make_env(tmp_path, section)
    env.fix_alpha()
    env.free_w()
    env.optimize('warmup')
    plain = make_env(tmp_path)
    path = env.save_label('latest')
    saved = load_checkpoint(path)['mtl-net']
    assert list(saved) == list(plain.network.state_dict())
    assert not any('_orig_mod' in key or key.startswith('module.') for key in saved)
    plain.load_label('latest', strict=True)
    for key, value in env.network.state_dict().items():
        assert torch.equal(value, plain.network.state_dict()[key]), key
    assert env.network.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.filterwarnings(r'ignore:Detected call of .lr_scheduler.step\(\). before')  # a skipped fp16 step
def test_resume_state_holds_the_fp16_grad_scaler(tmp_path):
    env = make_env(tmp_path, {'amp': 'fp16'})
    assert env.scaler.is_enabled()
    env.fix_alpha()
    env.free_w()
    env.optimize('warmup')
    env.scaler.update(new_scale=512.0)
    path = str(tmp_path / 'resume_state.pth.tar')
    env.save_resume(path, {'loaders': {}})
    assert load_checkpoint(path)['scaler']['scale'] == 512.0
    other = make_env(tmp_path, {'amp': 'fp16'})
    other.load_resume(path)
    assert other.scaler.get_scale() == 512.0
    plain = make_env(tmp_path)  # float32: an empty scaler entry, ignored when loading
    plain.save_resume(path, {'loaders': {}})
    assert load_checkpoint(path)['scaler'] == {}
    plain.load_resume(path)


def test_config_defaults_and_loader_options(tmp_path):
    opt = load_config('yamls/adashare/nyu_v2_3task.yml', 'train_policy')
    assert opt['speed'] == {'amp': None, 'channels_last': False, 'cudnn_benchmark': False, 'compile': False,
                            'masked_losses': False}
    assert opt['dataload']['pin_memory'] is None and opt['dataload']['prefetch_factor'] is None
    data = [{'img': torch.zeros(3, 4, 4)} for _ in range(4)]
    opt['dataload'].update(num_workers=1, pin_memory=False, prefetch_factor=3)
    loader = make_loader(opt, data, False, None, batch_size=2)
    assert loader.prefetch_factor == 3 and loader.pin_memory is False
    opt['dataload']['num_workers'] = 0  # prefetch_factor needs workers: ignored without them
    assert make_loader(opt, data, False, None, batch_size=2).num_workers == 0
    with pytest.raises(ValueError, match='speed.amp'):
        speed.SpeedOptions.from_config({'speed': {'amp': 'fp8'}})


def test_benchmark_prints_its_tables(tmp_path, capsys):
    from dataloaders.synthetic import generate_dataset
    from tools import benchmark_speed as tool
    from deploy import benchmark_speed as B
    generate_dataset('nyu_v2', str(tmp_path / 'nyu'), num_train=2, num_test=1, height=40, width=48, progress=False)
    tool.main(['--config', 'yamls/synthetic/nyu_v2_3task.yml', '--gpus', '-1', '--batch-size', '1', '--crop', '32',
            '--options', 'fp32', 'bf16+channels_last', '--iters', '1', '--warmup', '0', '--num-workers', '0',
            '--dataroot', str(tmp_path / 'nyu'), '--data-batches', '2', '--json', str(tmp_path / 'r.json')])
    out = capsys.readouterr().out
    for text in ('FLOP ratio', 'Training s/iter', 'retrain true-skip', 'Max RSS', 'Achieved conv TFLOP/s',
                 'data pipeline', 'images/s'):
        assert text in out, text
    assert 'failed' not in out
    assert (tmp_path / 'r.json').exists()
    assert B.speed_section('bf16+compile') == {'amp': 'bf16', 'channels_last': False, 'cudnn_benchmark': False,
                                               'compile': True}
    with pytest.raises(ValueError, match='unknown speed option'):
        B.speed_section('fp8')
