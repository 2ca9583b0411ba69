"""Devices and ranks in one place: CPU, one GPU, or `torchrun` with DistributedDataParallel.

`--gpus -1` (or a machine without CUDA) means CPU. Under `torchrun` (env RANK / WORLD_SIZE /
LOCAL_RANK) every process owns one device and `train.batch_size` is global: each rank loads
`batch_size // world_size` samples (docs/original.md §0.8). Only rank 0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn as nn

CPU_NOTICE = "CUDA not available: running on CPU"


class DeviceError(ValueError):
    """A requested device does not exist or the device flags contradict each other."""


@dataclass
class DistContext:
    """Where this process runs and which rank it is (rank 0 of 1 when not distributed)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    is_main: bool = True
    distributed: bool = False


def _available_devices_text() -> str:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return "no CUDA devices are visible (use --gpus -1 for CPU)"
    names = [f"{i} ({torch.cuda.get_device_name(i)})" for i in range(count)]
    return "available CUDA devices: " + ", ".join(names)


def _wants_cpu(gpus: Sequence[int] | None) -> bool:
    """True for `--gpus -1` (or no ids at all); -1 mixed with GPU ids is an error."""
    ids = list(gpus) if gpus is not None else []
    if not ids:
        return True
    if any(g < 0 for g in ids):
        if len(ids) > 1:
            raise DeviceError(f"--gpus {' '.join(map(str, ids))}: -1 means CPU and cannot be combined "
                              "with GPU ids")
        return True
    if len(set(ids)) != len(ids):
        raise DeviceError(f"--gpus {' '.join(map(str, ids))}: a GPU id is listed twice")
    return False


def _check_gpu_ids(ids: Sequence[int]) -> None:
    count = torch.cuda.device_count()
    missing = [g for g in ids if g >= count]
    if missing:
        raise DeviceError(f"--gpus: GPU id(s) {missing} do not exist; {_available_devices_text()}")


def _cpu_fallback(gpus: Sequence[int] | None) -> bool:
    """True for `--gpus -1`, and (with a notice) when CUDA is not available."""
    if _wants_cpu(gpus):
        return True
    if not torch.cuda.is_available():
        print(CPU_NOTICE, flush=True)
        return True
    return False


def resolve_device(gpus: Sequence[int] | None) -> torch.device:
    """The device of a single-process run: `cuda:<gpus[0]>`, or CPU for `[-1]` / no CUDA."""
    if _cpu_fallback(gpus):
        return torch.device("cpu")
    ids = list(gpus)
    _check_gpu_ids(ids)
    if len(ids) > 1:
        print(f"--gpus {' '.join(map(str, ids))} without torchrun: running on cuda:{ids[0]} only; "
              f"launch `torchrun --nproc_per_node={len(ids)} ...` to use all of them", flush=True)
    device = torch.device("cuda", ids[0])
    torch.cuda.set_device(device)  # so library calls that use the current device agree with ours
    return device


def _launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def _rank_device(gpus: Sequence[int] | None, local_rank: int, local_world_size: int) -> torch.device:
    """Device of this rank: `gpus[local_rank]`, or `cuda:<local_rank>` for the default `--gpus 0`."""
    if _cpu_fallback(gpus):
        return torch.device("cpu")
    ids = list(gpus)
    if len(ids) >= local_world_size:
        gpu = ids[local_rank]
    elif ids == [0]:
        gpu = local_rank
    else:
        raise DeviceError(f"torchrun started {local_world_size} processes per node but --gpus lists "
                          f"{len(ids)} id(s) ({' '.join(map(str, ids))}); give one id per process "
                          "or leave --gpus at its default")
    _check_gpu_ids([gpu])
    return torch.device("cuda", gpu)


def init_distributed(gpus: Sequence[int] | None = None) -> DistContext:
    """Join the process group when launched by torchrun (NCCL on GPUs, Gloo on CPU); else one process."""
    if not _launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return DistContext(device=resolve_device(gpus))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    device = _rank_device(gpus, local_rank, local_world_size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device,
                       is_main=rank == 0, distributed=True)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def cleanup_distributed() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place; returns it (no-op in a single process)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_mean_(tensor: torch.Tensor) -> torch.Tensor:
    """Average a floating-point `tensor` over ranks in place; returns it."""
    if not tensor.is_floating_point():
        raise TypeError(f"all_reduce_mean_ needs a floating-point tensor, got {tensor.dtype}")
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        tensor.div_(dist.get_world_size())
    return tensor


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s (picklable) `obj` on every rank; `obj` itself in a single process."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def split_batch_size(global_batch: int, world_size: int) -> int:
    """Per-rank batch size: `train.batch_size` is global and split evenly across ranks."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if global_batch < world_size or global_batch % world_size != 0:
        raise ValueError(f"train.batch_size {global_batch} is the global batch and must be a multiple "
                         f"of the number of processes ({world_size}); e.g. "
                         f"{max(world_size, global_batch // world_size * world_size)}")
    return global_batch // world_size


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DistributedDataParallel / DataParallel wrappers."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    while isinstance(model, wrappers):
        model = model.module
    return model
