"""AutoMTL vs AdaShare (or any two methods) per policy step and per evaluation batch, through the method
interface of the envs (`benchmark_policy_steps`, `benchmark_fixed_policy`): the command is
tools/benchmark_methods.py, the figures are in docs/automtl.md "Speed".

Timings are medians over repeats of a few steps each, on random inputs with the dataset's conventions
(deploy/benchmark.py random_batch), after untimed warm-up steps.
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from deploy.benchmark import _sync, random_batch


def _median_seconds(run, device: torch.device, repeats: int, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            run()
        _sync(device)
        samples.append((time.perf_counter() - start) / steps)
    return samples


def time_method(env: Any, opt: dict, batch_size: int, eval_hw: tuple[int, int], repeats: int = 5, steps: int = 3,
                warmup: int = 2, seed: int = 0) -> dict:
    """{'policy_step': [s, ...], 'eval_batch': [s, ...]}: seconds per policy step on a crop-size batch of
    `batch_size`, and per evaluation forward (no gradients, eval mode, the hard policy: only its branches
    run) on one batch of `batch_size` at `eval_hw`."""
    crop = (int(opt['dataload']['crop_h']), int(opt['dataload']['crop_w']))
    torch.manual_seed(seed)
    env.set_inputs(random_batch(opt, batch_size, *crop))
    env.train()
    phase = env.benchmark_policy_steps()
    policy = _median_seconds(lambda: env.optimize(phase), env.device, repeats, steps, warmup)
    mode = env.benchmark_fixed_policy(seed)
    env.set_inputs(random_batch(opt, batch_size, *eval_hw))
    env.eval()

    def evaluate():
        with torch.no_grad():
            env.forward(mode)

    evaluation = _median_seconds(evaluate, env.device, repeats, steps, warmup)
    return {'policy_step': policy, 'eval_batch': evaluation}


def summary(samples: dict) -> dict:
    return {k: statistics.median(v) for k, v in samples.items()}
