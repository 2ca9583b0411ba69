"""Today's ResNet-34 defaults, bit for bit: a short run of every phase against a stored golden.

tests/data/resnet34_run_golden.pt was written from the code before the backbone registry existed
(`PYTHONPATH=. python tests/test_golden_resnet34.py --write`). It holds every step's losses and gates, the state_dict
key list, shapes, sha256 and sums after policy learning and after retraining, the sampled policy and
the eval-mode outputs. Under the golden's conditions (torch version, thread count, CPU vector path) on a
CPU whose float kernels round as the recording machine's (`kernel_fingerprint`: machines with the same
conditions string were seen to round differently, docs/parity.md) every value must be bit-equal;
elsewhere float reductions may differ in the last bits, so the test then asserts closeness within
test_parity.py's drift bounds and says so; it never skips.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from _backbone_run import run_phases, tiny_config
from test_parity import DRIFT, conditions

GOLDEN_PATH = Path(__file__).parent / 'data' / 'resnet34_run_golden.pt'


def kernel_fingerprint() -> str:
    """sha256 of the float32 results of the kernel kinds the run uses (dilated and strided convolutions
    forward and backward, batch norm, bilinear upsampling, cross-entropy, normalise/cosine, softmax, Adam):
    equal only where they round as on the machine that recorded the golden."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 17, 17, generator=gen, requires_grad=True)
    w1 = torch.randn(32, 16, 3, 3, generator=gen, requires_grad=True)
    w2 = torch.randn(8, 32, 3, 3, generator=gen, requires_grad=True)
    h = F.relu(F.batch_norm(F.conv2d(x, w1, stride=2, padding=1), None, None, training=True))
    y = F.interpolate(F.conv2d(h, w2, padding=2, dilation=2), size=(17, 17), mode='bilinear', align_corners=True)
    target = torch.randint(0, 5, (2, 17, 17), generator=gen)
    cosine = F.cosine_similarity(F.normalize(y[:, :3], dim=1), F.normalize(y[:, 3:6], dim=1), dim=1).mean()
    loss = F.cross_entropy(y[:, :5], target) + cosine + F.softmax(y, dim=1).abs().mean() + (y[:, 6:] - 1).abs().mean()
    loss.backward()
    params = [w1, w2]
    torch.optim.Adam(params, lr=0.01).step()
    digest = hashlib.sha256()
    for tensor in (h, y, loss, x.grad, w1.grad, w2.grad, w1, w2):
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _record(tmp_path) -> dict:
    run = run_phases(tiny_config(tmp_path, 'ResNet34'))
    run.pop('env')
    run['conditions'] = conditions()
    run['kernels'] = kernel_fingerprint()
    return run


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    scale = max(theirs.double().abs().max().item(), 1.0) if theirs.numel() else 1.0
    return (ours.double() - theirs.double()).abs().max().item() / scale if theirs.numel() else 0.0


def _compare_tensor(label: str, kind: str, ours: torch.Tensor, theirs: torch.Tensor, exact: bool,
                    problems: list) -> None:
    if ours.dtype != theirs.dtype or ours.shape != theirs.shape:
        problems.append(f'{label}: {ours.dtype}{list(ours.shape)} vs {theirs.dtype}{list(theirs.shape)}')
    elif not torch.equal(ours, theirs) and (exact or _relative(ours, theirs) > DRIFT[kind]):
        problems.append(f'{label}: differs by {_relative(ours, theirs):.3g} (relative)')


def _compare_state(label: str, ours: dict, theirs: dict, exact: bool, problems: list) -> None:
    if ours['keys'] != theirs['keys'] or ours['shapes'] != theirs['shapes']:
        problems.append(f'{label}: state_dict keys or shapes differ: '
                        f'{sorted(set(ours["keys"]) ^ set(theirs["keys"]))[:5]}')
        return
    if exact:
        differing = [k for k, a, b in zip(ours['keys'], ours['sha256'], theirs['sha256']) if not torch.equal(a, b)]
        if differing:
            problems.append(f'{label}: {len(differing)} entries differ, first {differing[:3]}')
    else:
        _compare_tensor(f'{label} sums', 'weights', ours['sums'], theirs['sums'], False, problems)


def test_resnet34_run_equals_golden(tmp_path):
    golden = torch.load(GOLDEN_PATH, weights_only=True)
    ours = _record(tmp_path)
    exact = ours['conditions'] == golden['conditions'] and ours['kernels'] == golden['kernels']
    problems: list = []
    assert [s['phase'] for s in ours['steps']] == [s['phase'] for s in golden['steps']]
    for i, (mine, theirs) in enumerate(zip(ours['steps'], golden['steps'])):
        label = f"step {i} ({theirs['phase']})"
        assert sorted(mine['losses']) == sorted(theirs['losses']), label
        for name, value in theirs['losses'].items():
            kind = 'regulariser' if name.startswith(('hamming', 'sparsity')) else 'loss'
            _compare_tensor(f'{label} {name}', kind, mine['losses'][name], value, exact, problems)
        for t, gates in enumerate(theirs.get('gates', [])):
            _compare_tensor(f'{label} gates task{t + 1}', 'gates', mine['gates'][t], gates, exact, problems)
    _compare_state('after policy learning', ours['learned'], golden['learned'], exact, problems)
    _compare_state('after retraining', ours['retrained'], golden['retrained'], exact, problems)
    for t, (mine, theirs) in enumerate(zip(ours['policies'], golden['policies'])):
        assert torch.equal(mine, theirs), f'sampled policy of task{t + 1} differs'
    for key in ('eval_skipped', 'eval_everything'):
        for t, (mine, theirs) in enumerate(zip(ours[key], golden[key])):
            _compare_tensor(f'{key} task{t + 1}', 'loss', mine, theirs, exact, problems)
    mode = 'bit for bit' if exact else (f'within drift bounds (golden: {golden["conditions"]}, kernels {golden["kernels"][:12]}; '
                                         f'here: {ours["conditions"]}, kernels {ours["kernels"][:12]})')
    print(f'ResNet-34 run compared {mode}')
    assert not problems, '\n'.join(problems)


def test_resnet_state_dict_layouts_unchanged():
    """ResNet18/101 keys and shapes as before the registry (ResNet34's are in the golden run)."""
    from models import build_model
    golden = torch.load(GOLDEN_PATH, weights_only=True)
    for name in ('ResNet10', 'ResNet18', 'ResNet101'):
        with torch.device('meta'):
            state = build_model(name, [40, 3], head_channels=8).state_dict()
        assert [[k, list(v.shape)] for k, v in state.items()] == golden['layouts'][name], name


def write_golden(tmp_dir: Path) -> None:
    """Regenerate the golden (only from code whose ResNet numerics are known to be unchanged)."""
    from models import build_model
    torch.set_num_threads(1)
    record = _record(tmp_dir)
    layouts = {}
    for name in ('ResNet10', 'ResNet18', 'ResNet101'):
        with torch.device('meta'):
            state = build_model(name, [40, 3], head_channels=8).state_dict()
        layouts[name] = [[k, list(v.shape)] for k, v in state.items()]
    record['layouts'] = layouts
    torch.save(record, GOLDEN_PATH)
    print(f'wrote {GOLDEN_PATH} ({GOLDEN_PATH.stat().st_size} bytes) under {record["conditions"]}')


if __name__ == '__main__':
    if '--write' not in sys.argv:
        sys.exit('usage: PYTHONPATH=. python tests/test_golden_resnet34.py --write   (overwrites the golden)')
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        write_golden(Path(tmp))
