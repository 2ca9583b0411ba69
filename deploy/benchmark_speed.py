"""Speed benchmark (issue 7): inference and training speed of a config and a policy, side by side.

    python tools/benchmark_speed.py --gpus 0                                 # paper batch, crop and eval size
    python tools/benchmark_speed.py --gpus -1 --batch-size 1 --crop 161      # CPU, reduced
    python tools/benchmark_speed.py --gpus 0 --policy experiments/checkpoints/<exp>/policyIterbest_rs0088.pickle
    python tools/benchmark_speed.py --options fp32 bf16 bf16+channels_last+compile

Prints, in one run, for the config (default: the NYU v2 3-task ResNet-34 paper config) and a policy (a pickle,
or a seeded random one):
  * inference s/image in eval mode, compute-everything (`skip_unselected=False`) vs ours (executed blocks
    only, shared prefixes once), next to the FLOP ratio of deploy.flops.policy_cost and the achieved fraction;
  * training s/iter of each phase (warm-up, weights, policy, retrain, retrain with quirks.true_skip) for each
    speed option (`+` combines them: fp32, bf16, fp16, channels_last, cudnn_benchmark, compile);
  * peak memory (CUDA max_memory_allocated per phase; on CPU the process's max RSS so far);
  * achieved convolution TFLOP/s and, on a GPU, the model FLOP utilisation against --peak-tflops;
  * images/s of the data pipeline (make_loader with the config's workers), on --dataroot or on a small
    synthetic NYU v2 set generated into a temp dir.
Training and inference inputs are random tensors with the dataset's conventions (deploy.benchmark.random_batch).
"""
from __future__ import annotations

import argparse
import copy
import gc
import resource
import sys
import tempfile
import time
from typing import Any, Callable

import torch

from envs import AdaShareEnv
from engine import checkpoint as C
from deploy.benchmark import random_batch
from config import load_config
from engine.device import resolve_device
from deploy.flops import policy_cost
from engine.seeding import fix_random_seed

PHASES = ('warm-up', 'weights', 'policy', 'retrain', 'retrain true-skip')
OPTION_TOKENS = ('fp32', 'bf16', 'fp16', 'channels_last', 'cudnn_benchmark', 'compile')
# Dense bf16 tensor-core peak in TFLOP/s (fp16 for the V100, which has no bf16); first match in the device name.
PEAK_TFLOPS = (('H200', 989.0), ('H100 PCIe', 756.0), ('H100 NVL', 835.0), ('H100', 989.0), ('A100', 312.0),
               ('L40S', 362.0), ('V100', 125.0))
# Conv FLOPs of a training step per forward FLOP: backward = 2x forward (input and weight gradients); the policy
# step freezes the weights, so its backward computes input gradients only.
TRAIN_FLOP_FACTOR = {'warm-up': 3, 'weights': 3, 'policy': 2, 'retrain': 3, 'retrain true-skip': 3}


# ------------------------------------------------------------------------------------------------ helpers
def speed_section(option: str) -> dict[str, Any]:
    """`bf16+channels_last` -> the `speed:` config section it stands for."""
    tokens = option.split('+')
    unknown = [t for t in tokens if t not in OPTION_TOKENS]
    if unknown:
        raise ValueError(f'unknown speed option {"+".join(unknown)!r}; combine with +: {", ".join(OPTION_TOKENS)}')
    amp = next((t for t in tokens if t in ('bf16', 'fp16')), None)
    return {'amp': amp, 'channels_last': 'channels_last' in tokens,
            'cudnn_benchmark': 'cudnn_benchmark' in tokens, 'compile': 'compile' in tokens}


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given is not None:
        return given
    if device.type != 'cuda':
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for key, value in PEAK_TFLOPS if key in name), None)


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, iters: int, warmup: int) -> float:
    """Mean seconds of `fn()` over `iters` calls after `warmup` untimed calls (compilation, autotuning)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def memory_mark(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)


def memory_peak_gib(device: torch.device) -> float:
    """CUDA: peak allocated since the last mark; CPU: the process's max RSS so far (it never decreases)."""
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def load_or_draw_policy(path: str | None, seed: int, num_tasks: int, rows: int) -> tuple[list[torch.Tensor], str]:
    if path:
        return C.load_policy(path, num_tasks=num_tasks, num_rows=rows), path
    generator = torch.Generator().manual_seed(seed)
    executes = [(torch.rand(rows, generator=generator) < 0.5).long() for _ in range(num_tasks)]
    return [torch.stack([e, 1 - e], dim=1) for e in executes], f'random (seed {seed}, execute probability 0.5)'


def phase_flops(cost: dict) -> dict[str, float]:
    """Forward conv FLOPs per image of each training phase's network call."""
    everything = cost['compute_everything']['flops']
    return {'warm-up': cost['single_pass']['flops'], 'weights': everything, 'policy': everything,
            'retrain': everything, 'retrain true-skip': sum(t['flops'] for t in cost['per_task'])}


# ------------------------------------------------------------------------------------------------ measurements
def build_env(opt: dict, option: str, device: torch.device, policies: list[torch.Tensor]) -> AdaShareEnv:
    opt = copy.deepcopy(opt)
    opt['speed'] = speed_section(option)
    opt['quirks']['true_skip'] = False
    fix_random_seed(0)  # as the training scripts do before building the env (it also resets the cuDNN flags)
    env = AdaShareEnv(opt, device, is_train=True)
    env.set_fixed_policy(policies)
    return env


def measure_inference(env: AdaShareEnv, img: torch.Tensor, iters: int, warmup: int) -> dict[str, float]:
    """Seconds per image, eval mode, fixed policy: every block for every task vs the selected blocks."""
    env.eval()
    gates = env.fixed_gates()
    batch = img.shape[0]
    result: dict[str, float] = {}
    outputs = {}
    with torch.no_grad():
        for name, skip in (('everything', False), ('ours', True)):
            outputs[name] = env.run_network(img, gates, skip_unselected=skip)
            result[name] = timed(lambda: env.run_network(img, gates, skip_unselected=skip),
                                 env.device, iters, warmup) / batch
    result['max_abs_diff'] = max(float((a - b).abs().max()) for a, b in zip(outputs['everything'], outputs['ours']))
    env.train()
    return result


def measure_training(env: AdaShareEnv, batch: dict, iters: int, warmup: int) -> dict[str, dict[str, float]]:
    """s/iter and peak memory of every phase on one fixed batch."""
    env.set_inputs(batch)
    env.train()
    results: dict[str, dict[str, float]] = {}

    def run(label: str, phase: str) -> None:
        memory_mark(env.device)
        seconds = timed(lambda: env.optimize(phase), env.device, iters, warmup)
        results[label] = {'s_iter': seconds, 'memory_gib': memory_peak_gib(env.device)}

    env.fix_alpha()
    env.free_w()
    run('warm-up', 'warmup')
    env.start_alternation()
    run('weights', 'weights')
    env.fix_w()
    env.free_alpha()
    run('policy', 'policy')
    env.fix_alpha()
    env.free_w()
    env.define_optimizers(policy_learning=False)
    run('retrain', 'retrain')
    env.quirks['true_skip'] = True
    run('retrain true-skip', 'retrain')
    env.quirks['true_skip'] = False
    return results


class _Repeated(torch.utils.data.Dataset):
    """`length` items cycling over `dataset`, so that one loader epoch covers the whole measurement."""

    def __init__(self, dataset: torch.utils.data.Dataset, length: int):
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % len(self.dataset)]


def measure_data_pipeline(opt: dict, dataroot: str, batch_size: int, batches: int,
                          device: torch.device) -> float:
    """Images/s of the train loader (make_loader: workers, pinning, prefetch of the config), copies to the
    device included; timed after the first batch, so worker start-up is excluded."""
    from engine.data import build_split, make_loader
    opt = copy.deepcopy(opt)
    opt['dataload']['dataroot'] = dataroot
    dataset = _Repeated(build_split(opt, 'train'), (batches + 1) * batch_size)
    loader = make_loader(opt, dataset, True, None, batch_size=batch_size)
    seen, start = 0, None
    for batch in loader:
        for value in batch.values():
            if torch.is_tensor(value):
                value.to(device, non_blocking=True)
        if start is None:
            _sync(device)
            start = time.perf_counter()
            continue
        seen += batch['img'].shape[0]
    _sync(device)
    return seen / (time.perf_counter() - start)


# ------------------------------------------------------------------------------------------------ printing
def table(title: str, rows: list[str], columns: list[str], cell: Callable[[str, str], str], width: int = 18) -> str:
    first = max(len(r) for r in rows) + 2
    lines = [title, ' ' * first + ''.join(f'{c:>{width}}' for c in columns)]
    lines += [f'{r:<{first}}' + ''.join(f'{cell(r, c):>{width}}' for c in columns) for r in rows]
    return '\n'.join(lines)


def report(res: dict) -> str:
    """The whole printout from the results dict of `run_benchmark`."""
    options = [o for o in res['options'] if o not in res['failed']]
    train, infer, flops = res['training'], res['inference'], res['flops']
    peak = res['peak_tflops']
    out = [f"config {res['config']}: {res['backbone']}, tasks {res['tasks']}, device {res['device']} "
           f"({res['device_name']}), torch {torch.__version__}, {res['threads']} CPU threads",
           f"policy: {res['policy_source']}", res['policy_table'], '']
    ratio = flops['inference']['everything'] / flops['inference']['tree']
    out.append(f"Inference, eval mode, batch {res['infer_batch']}, {res['infer_hw'][0]}x{res['infer_hw'][1]}: "
               f"conv GFLOPs/image compute-everything {flops['inference']['everything'] / 1e9:.2f}, ours (tree) "
               f"{flops['inference']['tree'] / 1e9:.2f}, FLOP ratio {ratio:.2f}x "
               f"({100 * (1 - 1 / ratio):.1f}% saved)")
    head = f"{'option':<34}{'everything s/img':>17}{'ours s/img':>12}{'speed-up':>10}{'FLOP ratio':>12}" \
           f"{'achieved':>10}{'time/FLOPs saved':>18}{'max|diff|':>11}"
    out.append(head)
    for option in options:
        if option not in infer:
            out.append(f'{option:<34}  (inference runs eagerly: same as without compile)')
            continue
        r = infer[option]
        speedup = r['everything'] / r['ours']
        saved = (1 - 1 / speedup) / (1 - 1 / ratio)
        out.append(f"{option:<34}{r['everything']:>17.4f}{r['ours']:>12.4f}{speedup:>9.2f}x{ratio:>11.2f}x"
                   f"{100 * speedup / ratio:>9.1f}%{100 * saved:>17.1f}%{r['max_abs_diff']:>11.2e}")
    out.append('  achieved = speed-up / FLOP ratio (goal >= 90%); time/FLOPs saved = fraction of time saved over '
               'fraction of FLOPs saved (docs/original.md §0.8)')
    out.append('')
    batch = res['batch_size']
    crop = f"{res['crop'][0]}x{res['crop'][1]}"
    base = options[0] if options else None
    out.append(table(f'Training s/iter (batch {batch}, crop {crop}; images/s in brackets)', list(PHASES), options,
                     lambda p, o: f"{train[o][p]['s_iter']:.3f} ({batch / train[o][p]['s_iter']:.1f})"))
    if base is not None and len(options) > 1:
        out.append(table(f'Speed-up over {base} (iterations/s ratio)', list(PHASES), options,
                         lambda p, o: f"{train[base][p]['s_iter'] / train[o][p]['s_iter']:.2f}x"))
    memory_title = ('Peak GPU memory allocated per phase, GiB' if res['device'].startswith('cuda')
                    else 'Max RSS of the process so far (CPU, cumulative over the run), GiB')
    out.append(table(memory_title, list(PHASES), options, lambda p, o: f"{train[o][p]['memory_gib']:.2f}"))

    def throughput(p: str, o: str) -> str:
        tflops = TRAIN_FLOP_FACTOR[p] * flops['train'][p] * batch / train[o][p]['s_iter'] / 1e12
        return f'{tflops:.3f}' + (f' ({100 * tflops / peak:.1f}%)' if peak else '')
    out.append(table('Achieved conv TFLOP/s = forward conv FLOPs x 3 (x 2 for policy steps) x batch / s'
                     + (f'; MFU in brackets, % of {peak:g} TFLOP/s peak' if peak else ''), list(PHASES),
                     options, throughput))
    out.append('  forward GFLOPs/image at the crop: ' + ', '.join(f"{p} {flops['train'][p] / 1e9:.2f}"
                                                                  for p in PHASES))
    out.append('')
    skip_ratio = flops['train']['retrain'] / flops['train']['retrain true-skip']
    for option in options:
        speedup = train[option]['retrain']['s_iter'] / train[option]['retrain true-skip']['s_iter']
        out.append(f'retrain true-skip vs every block, {option}: speed-up {speedup:.2f}x, FLOP ratio '
                   f'{skip_ratio:.2f}x, achieved {100 * speedup / skip_ratio:.1f}% (goal >= 80%)')
    if base is not None:
        for option in options:
            if option != base and 'bf16' in option:
                gain = train[base]['policy']['s_iter'] / train[option]['policy']['s_iter']
                out.append(f'policy step {option} vs {base}: {gain:.2f}x iterations/s (goal on a GPU >= 5x)')
    data = res['data']
    if data is not None:
        best = min(train[o]['weights']['s_iter'] for o in options) if options else None
        need = f"; the fastest weights step consumes {batch / best:.1f} images/s" if best else ''
        out.append(f"data pipeline ({data['source']}, crop {crop}, {data['num_workers']} workers, pin_memory "
                   f"{data['pin_memory']}, batch {batch}): {data['images_per_s']:.1f} images/s{need}")
    for option, error in res['failed'].items():
        out.append(f'option {option} failed: {error}')
    return '\n'.join(out)


# ------------------------------------------------------------------------------------------------ main
def run_benchmark(args: argparse.Namespace) -> dict:
    opt = load_config(args.config, 'train_policy')
    device = resolve_device(args.gpus)
    on_gpu = device.type == 'cuda'
    batch_size = args.batch_size or (int(opt['train']['batch_size']) if on_gpu else 1)
    crop = args.crop or ([int(opt['dataload']['crop_h']), int(opt['dataload']['crop_w'])] if on_gpu else [161])
    crop_h, crop_w = (crop[0], crop[-1])
    if args.infer_size:
        infer_hw = tuple(args.infer_size)
    elif on_gpu:
        from deploy.export import eval_size
        infer_hw = eval_size(opt)
    else:
        infer_hw = (crop_h, crop_w)
    if args.num_workers is not None:
        opt['dataload']['num_workers'] = args.num_workers
    options = args.options or (['fp32', 'bf16', 'channels_last', 'bf16+channels_last', 'cudnn_benchmark',
                                'bf16+channels_last+cudnn_benchmark', 'bf16+channels_last+cudnn_benchmark+compile']
                               if on_gpu else ['fp32', 'bf16', 'channels_last'])
    for option in options:
        speed_section(option)  # refuse unknown names before any work

    probe = AdaShareEnv(opt, torch.device('cpu'), is_train=False)
    policies, source = load_or_draw_policy(args.policy, args.policy_seed, len(probe.tasks),
                                           probe.network.num_policy_rows)
    cost_infer = policy_cost(probe.network, policies, infer_hw, task_names=probe.tasks)
    cost_train = policy_cost(probe.network, policies, (crop_h, crop_w), task_names=probe.tasks)
    del probe
    res: dict[str, Any] = {
        'config': args.config, 'backbone': opt['backbone'], 'tasks': list(opt['tasks']), 'device': str(device),
        'device_name': torch.cuda.get_device_name(device) if on_gpu else 'CPU', 'threads': torch.get_num_threads(),
        'policy_source': source, 'policy_table': C.format_policy_table(policies, list(opt['tasks'])),
        'policy': [p.tolist() for p in policies], 'options': options, 'failed': {},
        'batch_size': batch_size, 'crop': [crop_h, crop_w], 'infer_hw': list(infer_hw),
        'infer_batch': args.infer_batch, 'peak_tflops': peak_tflops(device, args.peak_tflops),
        'flops': {'inference': {'everything': cost_infer['compute_everything']['flops'],
                                'tree': cost_infer['tree']['flops']},
                  'train': phase_flops(cost_train)},
        'training': {}, 'inference': {}, 'data': None}

    torch.manual_seed(0)
    train_batch = random_batch(opt, batch_size, crop_h, crop_w)
    infer_img = (torch.randn(args.infer_batch, 3, *infer_hw) * 60).to(device)
    for option in options:
        print(f'... {option}', file=sys.stderr, flush=True)
        env = None
        try:
            env = build_env(opt, option, device, policies)
            if 'compile' not in option:
                res['inference'][option] = measure_inference(env, infer_img, args.iters, args.warmup)
            res['training'][option] = measure_training(env, train_batch, args.iters, args.warmup)
        except Exception as err:  # noqa: BLE001 - an option that does not work here is reported, not fatal
            res['failed'][option] = f'{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ""}'
            res['inference'].pop(option, None)
        del env
        gc.collect()
        if on_gpu:
            torch.cuda.empty_cache()
        if 'compile' in option:
            torch._dynamo.reset()  # compiled graphs of one option must not serve the next

    if args.data_batches > 0:
        res['data'] = data_pipeline(opt, args, batch_size, (crop_h, crop_w), device)
    return res


def data_pipeline(opt: dict, args: argparse.Namespace, batch_size: int, crop: tuple[int, int],
                  device: torch.device) -> dict:
    opt = copy.deepcopy(opt)
    opt['dataload']['crop_h'], opt['dataload']['crop_w'] = crop
    pin = opt['dataload'].get('pin_memory')
    info = {'num_workers': int(opt['dataload']['num_workers']),
            'pin_memory': torch.cuda.is_available() if pin is None else bool(pin)}
    if args.dataroot:
        info['source'] = args.dataroot
        info['images_per_s'] = measure_data_pipeline(opt, args.dataroot, batch_size, args.data_batches, device)
        return info
    from dataloaders.synthetic import generate_dataset
    with tempfile.TemporaryDirectory(prefix='adashare_speed_') as tmp:
        generate_dataset('nyu_v2', tmp, num_train=args.gen_num, num_test=1, progress=False)
        info['source'] = f'synthetic NYU v2, {args.gen_num} images 480x640'
        info['images_per_s'] = measure_data_pipeline(opt, tmp, batch_size, args.data_batches, device)
    return info
