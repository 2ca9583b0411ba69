"""Seconds per step with 1 or 2 CPU threads, quiet and under a load we create (the command: tools/bench_threads.py).

    python tools/bench_threads.py --configs yamls/synthetic/nyu_v2_3task.yml --threads 1 2 --busy 0 1

For each config, thread count and load level (n busy `while True: pass` processes started here and stopped
afterwards), a fresh environment on random inputs of the config's crop size (deploy/benchmark.py) times the
warm-up, weight and policy steps and one validation batch (eval size, `eval_policy`, metrics included);
each figure is the median over `repeats`, and the load average is read before and after every cell.
The figures behind docs/threads.md and the `cpu_threads: auto` rule (engine/threads.py).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import time
from typing import Iterator, Sequence

import torch

from deploy.benchmark import random_batch, time_phase
from envs import AdaShareEnv

PHASES = ('warm-up', 'weights', 'policy', 'validation')
BUSY_CODE = 'while True: pass'


def load_average() -> float:
    """The 1-minute load average (0.0 where the platform has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - Windows
        return 0.0


@contextlib.contextmanager
def busy_load(processes: int, limit_s: int = 1800) -> Iterator[list[subprocess.Popen]]:
    """`processes` busy Python loops (each bounded by `limit_s`) for the duration of the block, then stopped."""
    started = [subprocess.Popen([sys.executable, '-c', f'import signal; signal.alarm({limit_s})\n{BUSY_CODE}'])
               for _ in range(processes)]
    try:
        if started:
            time.sleep(1.0)  # let the scheduler see them
        yield started
    finally:
        for proc in started:
            proc.terminate()
        for proc in started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover
                proc.kill()


def _timed(fn, iters: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def time_steps(opt: dict, threads: int, iters: int = 3, batch_size: int | None = None,
               phases: Sequence[str] = PHASES, device: torch.device | None = None) -> dict[str, float]:
    """Seconds per step of each phase with `threads` intra-op threads (set here) on a fresh env.

    batch_size: default the config's `train.batch_size`; the validation batch has the same size at the
    config's eval size (crop size where there is none)."""
    device = device or torch.device('cpu')
    torch.set_num_threads(threads)
    batch_size = batch_size or int(opt['train']['batch_size'])
    height, width = int(opt['dataload']['crop_h']), int(opt['dataload']['crop_w'])
    eval_h = int(opt['dataload'].get('eval_h') or height)
    eval_w = int(opt['dataload'].get('eval_w') or width)
    torch.manual_seed(0)
    env = AdaShareEnv(opt, device, is_train=True)
    env.set_inputs(random_batch(opt, batch_size, height, width))
    env.train()
    results: dict[str, float] = {}
    env.fix_alpha()
    env.free_w()
    if 'warm-up' in phases:
        results['warm-up'] = time_phase(env, 'warmup', iters)
    env.start_alternation()
    if 'weights' in phases:
        results['weights'] = time_phase(env, 'weights', iters)
    env.fix_w()
    env.free_alpha()
    if 'policy' in phases:
        results['policy'] = time_phase(env, 'policy', iters)
    if 'validation' in phases:
        batch = [random_batch(opt, batch_size, eval_h, eval_w)]
        eval_mode = 'eval_policy' if env.has_policy else 'eval_fixed'
        results['validation'] = _timed(lambda: env.validate(batch, eval_mode, eval_iter=0), iters)
    return results


def run_grid(configs: Sequence[tuple[str, dict]], threads: Sequence[int] = (1, 2), busy: Sequence[int] = (0, 1),
             repeats: int = 3, iters: int = 3, batch_size: int | None = None,
             phases: Sequence[str] = PHASES, log=print) -> list[dict]:
    """One row per (config, busy, threads, phase): median s/iter over `repeats`, all samples, load averages.

    The thread counts alternate inside every repeat, so a change of the machine's load hits both alike."""
    rows: list[dict] = []
    default_threads = torch.get_num_threads()
    try:
        for n_busy in busy:
            with busy_load(n_busy):
                for name, opt in configs:
                    samples: dict[int, dict[str, list[float]]] = {t: {p: [] for p in phases} for t in threads}
                    load_before = load_average()
                    for _ in range(repeats):
                        for t in threads:
                            for phase, seconds in time_steps(opt, t, iters, batch_size, phases).items():
                                samples[t][phase].append(seconds)
                    load_after = load_average()
                    for t in threads:
                        for phase in phases:
                            values = samples[t][phase]
                            rows.append({'config': name, 'busy': n_busy, 'threads': t, 'phase': phase,
                                         'median_s': statistics.median(values), 'samples': values,
                                         'load_before': load_before, 'load_after': load_after})
                        log(f'{name} busy={n_busy} threads={t}: ' + ', '.join(
                            f'{p} {statistics.median(samples[t][p]):.3f}' for p in phases)
                            + f' s/iter (load {load_before:.2f} -> {load_after:.2f})')
    finally:
        torch.set_num_threads(default_threads)
    return rows


def markdown_table(rows: Sequence[dict]) -> str:
    """The figures as a markdown table: config, phase, threads, load, median s/iter, load average."""
    lines = ['| config | phase | threads | load | median s/iter | 2 thr / 1 thr | load avg (1 min) before -> after |',
             '|---|---|---|---|---|---|---|']
    one = {(r['config'], r['busy'], r['phase']): r['median_s'] for r in rows if r['threads'] == 1}
    for r in rows:
        base = one.get((r['config'], r['busy'], r['phase']))
        ratio = f"{r['median_s'] / base:.2f}x" if base and r['threads'] != 1 else ''
        load = 'no load of ours' if r['busy'] == 0 else f"+{r['busy']} busy"
        lines.append(f"| {r['config']} | {r['phase']} | {r['threads']} | {load} | {r['median_s']:.3f} | {ratio} | "
                     f"{r['load_before']:.2f} -> {r['load_after']:.2f} |")
    return '\n'.join(lines) + '\n'
