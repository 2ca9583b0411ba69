"""Random batches with a dataset's conventions and per-phase step timing (the command: tools/benchmark.py).

    python tools/benchmark.py --config yamls/adashare/nyu_v2_3task.yml --gpus -1 --batch-size 2 --iters 3

No dataset is read: inputs are random tensors with the dataset's label conventions.
"""
from __future__ import annotations

import time

import torch

from envs import AdaShareEnv


def random_batch(opt: dict, batch_size: int, height: int, width: int) -> dict:
    """A batch with the dataset's keys and value conventions (docs/original.md §9)."""
    dataset = opt['dataload']['dataset']
    tasks, classes = opt['tasks'], opt['tasks_num_class']
    batch: dict = {'img': torch.randn(batch_size, 3, height, width) * 60}
    if 'seg' in tasks:
        c = classes[tasks.index('seg')]
        batch['seg'] = torch.randint(0, c, (batch_size, 1, height, width))
    if 'sn' in tasks:
        normal = torch.nn.functional.normalize(torch.randn(batch_size, 3, height, width), dim=1)
        batch['normal'] = ((normal + 1) * 127.5).to(torch.uint8) if dataset == 'NYU_v2' else normal
    if 'depth' in tasks:
        batch['depth'] = torch.rand(batch_size, 1, height, width) * 5 + 0.5
        if dataset == 'Taskonomy':
            batch['depth_mask'] = torch.ones(batch_size, 1, height, width)
    for task in ('keypoint', 'edge'):
        if task in tasks:
            batch[task] = torch.rand(batch_size, 1, height, width)
    return batch


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_phase(env: AdaShareEnv, phase: str, iters: int, warmup: int = 1) -> float:
    """Mean seconds per optimisation step of `phase` (after `warmup` untimed steps)."""
    for _ in range(warmup):
        env.optimize(phase)
    _sync(env.device)
    start = time.perf_counter()
    for _ in range(iters):
        env.optimize(phase)
    _sync(env.device)
    return (time.perf_counter() - start) / iters
