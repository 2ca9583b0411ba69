"""CPU threads: the `speed.cpu_threads` key and its `auto` rule (figures and reasons: docs/threads.md).

    note = apply_cpu_threads(opt, device)   # at start-up, after the config is loaded and the device chosen
    if note:
        print(note)

`speed.cpu_threads` (default `auto`):
  * `auto`: on a CPU device, a config of small shapes (the synthetic configs) runs with 1 intra-op thread;
    everything else keeps torch's default. Small = head_channels <= SMALL_HEAD_CHANNELS and at most
    SMALL_STEP_PIXELS pixels per step (see `step_pixels`). An OMP_NUM_THREADS or MKL_NUM_THREADS set in the
    environment wins over `auto` (tools/cpu_table.py sets it for its jobs, torchrun for several processes
    per node). On CUDA, `auto` leaves the thread count alone.
  * a positive integer: exactly that many intra-op threads (torch.set_num_threads), on any device.
  * `torch`: never touch it (torch's default: one thread per core, or OMP_NUM_THREADS).

Why (docs/threads.md): on the shared 2-core machine, while other jobs ran, the synthetic steps with 2 threads
were 2-19x slower than with 1 (most likely OpenMP threads waiting at every barrier for a thread whose
core is taken);
with the machine to itself 2 threads were 1.3-1.8x faster. The loss is far larger than the gain, and one
thread per process is also what tools/cpu_table.py gives its side-by-side jobs. The paper shapes
(Deeplab-ResNet34 at 321x321) keep torch's default: big kernels amortise the barriers (14.8 s vs 12.5 s per
step even under load), and a dedicated machine gains from every core.
Only the intra-op pool is set: the inter-op pool (torch.set_num_interop_threads) is used by neither
training nor evaluation here, and torch refuses to resize it once any parallel work has run.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch

KEY = 'speed.cpu_threads'
AUTO, TORCH = 'auto', 'torch'
SMALL_THREADS = 1
# Pixels one step pushes through the network: the synthetic configs reach 8 x 96 x 128 = 98,304 (a validation
# batch); the paper configs start at 16 x 224 x 224 = 802,816 (training) and 1 x 128 x 256 (CityScapes test).
SMALL_STEP_PIXELS = 2 ** 17
# ASPP head width: 32 in the synthetic configs, 1024 (the original) in the paper configs.
SMALL_HEAD_CHANNELS = 128
THREAD_ENV = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS')
# Evaluation sizes when eval_h / eval_w are null (the loaders' defaults, config/schema.py).
DEFAULT_EVAL_HW = {'NYU_v2': (480, 640), 'CityScapes': (256, 512), 'Taskonomy': (256, 256)}
SMALL_RES_EVAL_HW = (128, 256)


def _eval_hw(dataload: Mapping[str, Any]) -> tuple[int, int]:
    dataset = dataload.get('dataset')
    default = SMALL_RES_EVAL_HW if dataset == 'CityScapes' and dataload.get('small_res') else \
        DEFAULT_EVAL_HW.get(dataset, (480, 640))
    return int(dataload.get('eval_h') or default[0]), int(dataload.get('eval_w') or default[1])


def step_pixels(opt: Mapping[str, Any]) -> int:
    """The most pixels one step of the config's scripts processes: a training batch (batch_size x crop),
    a validation batch during training (batch_size x eval size) or a test image (1 x eval size)."""
    dataload = opt.get('dataload') or {}
    batch = int((opt.get('train') or {}).get('batch_size') or 1)
    eval_h, eval_w = _eval_hw(dataload)
    pixels = batch * eval_h * eval_w
    if dataload.get('crop_h') and dataload.get('crop_w'):
        pixels = max(pixels, batch * int(dataload['crop_h']) * int(dataload['crop_w']))
    return pixels


def is_small(opt: Mapping[str, Any]) -> bool:
    """True for configs of the synthetic kind: narrow heads and few pixels per step."""
    head = int(opt.get('head_channels') or 1024)
    return head <= SMALL_HEAD_CHANNELS and step_pixels(opt) <= SMALL_STEP_PIXELS


def _environment_threads(environ: Mapping[str, str]) -> str | None:
    for name in THREAD_ENV:
        if environ.get(name, '').strip():
            return f'{name}={environ[name].strip()}'
    return None


def choose_threads(opt: Mapping[str, Any], device: torch.device | str,
                   environ: Mapping[str, str] | None = None) -> tuple[int | None, str]:
    """(intra-op threads to set, or None = leave torch's count; the reason in a few words)."""
    value = (opt.get('speed') or {}).get('cpu_threads', AUTO)
    if value is None or value == AUTO:
        if torch.device(device).type != 'cpu':
            return None, f'{KEY} auto: not on a CPU'
        set_by = _environment_threads(os.environ if environ is None else environ)
        if set_by:
            return None, f'{KEY} auto: {set_by} in the environment'
        if not is_small(opt):
            return None, f'{KEY} auto: not a small config'
        return SMALL_THREADS, f'{KEY} auto: small config ({step_pixels(opt)} pixels per step)'
    if value == TORCH:
        return None, f'{KEY} torch'
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{KEY} = {value!r}: expected 'auto', 'torch' or an integer >= 1")
    return value, f'{KEY} {value}'


def apply_cpu_threads(opt: Mapping[str, Any], device: torch.device | str) -> str | None:
    """Set torch's intra-op thread count as `opt['speed']['cpu_threads']` says (see the module doc) for `device`.

    Returns a one-line note to print when it set the count (`CPU threads: 1 (speed.cpu_threads auto:
    small config ...; was 2)`), None when it left torch's count untouched."""
    threads, reason = choose_threads(opt, device)
    if threads is None:
        return None
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    return f'CPU threads: {threads} ({reason}; was {before})'
