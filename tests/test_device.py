"""Device resolution and distributed helpers (CPU; a real 2-process Gloo group)."""
import json
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from engine import device as dev

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


@pytest.fixture
def no_torchrun(monkeypatch):
    for name in TORCHRUN_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend two CUDA devices exist (only for the id checks; nothing touches a GPU)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"FakeGPU{i}")
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)


def test_cpu_flag_means_cpu_without_notice(capsys):
    assert dev.resolve_device([-1]) == torch.device("cpu")
    assert capsys.readouterr().out == ""


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_gpu_request_without_cuda_falls_back_with_notice(capsys):
    assert dev.resolve_device([0]) == torch.device("cpu")
    assert dev.CPU_NOTICE in capsys.readouterr().out


def test_bad_gpu_flags_are_clear_errors(fake_gpus):
    with pytest.raises(dev.DeviceError, match=r"\[5\] do not exist; available CUDA devices: 0 \(FakeGPU0\)"):
        dev.resolve_device([5])
    with pytest.raises(dev.DeviceError, match="-1 means CPU"):
        dev.resolve_device([-1, 0])
    with pytest.raises(dev.DeviceError, match="twice"):
        dev.resolve_device([1, 1])
    assert dev.resolve_device([1]) == torch.device("cuda", 1)


def test_rank_devices_under_torchrun(fake_gpus):
    assert dev._rank_device([0, 1], local_rank=1, local_world_size=2) == torch.device("cuda", 1)
    assert dev._rank_device([1, 0], local_rank=0, local_world_size=2) == torch.device("cuda", 1)
    assert dev._rank_device([0], local_rank=1, local_world_size=2) == torch.device("cuda", 1)  # default flag
    assert dev._rank_device([-1], local_rank=1, local_world_size=2) == torch.device("cpu")
    with pytest.raises(dev.DeviceError, match="2 processes per node"):
        dev._rank_device([1], local_rank=0, local_world_size=2)


def test_single_process_context(no_torchrun):
    ctx = dev.init_distributed([-1])
    assert ctx == dev.DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"),
                                  is_main=True, distributed=False)


def test_torchrun_with_one_process_stays_single(monkeypatch):
    for name, value in zip(TORCHRUN_VARS, ("0", "1", "0", "1")):
        monkeypatch.setenv(name, value)
    ctx = dev.init_distributed([-1])
    assert not ctx.distributed and ctx.is_main


def test_helpers_are_no_ops_in_one_process(no_torchrun):
    t = torch.tensor([1.0, 2.0])
    assert dev.all_reduce_sum_(t) is t and t.tolist() == [1.0, 2.0]
    assert dev.all_reduce_mean_(t).tolist() == [1.0, 2.0]
    assert dev.broadcast_object({"a": 1}) == {"a": 1}
    dev.barrier()
    dev.cleanup_distributed()
    with pytest.raises(TypeError, match="floating"):
        dev.all_reduce_mean_(torch.tensor([1]))


def test_split_batch_size():
    assert dev.split_batch_size(16, 2) == 8
    assert dev.split_batch_size(16, 1) == 16
    with pytest.raises(ValueError, match="batch_size 16 .* multiple of the number of processes \\(3\\)"):
        dev.split_batch_size(16, 3)
    with pytest.raises(ValueError):
        dev.split_batch_size(1, 2)


def test_unwrap_strips_wrappers():
    net = nn.Linear(2, 2)
    assert dev.unwrap(nn.DataParallel(net)) is net
    assert dev.unwrap(net) is net


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _distributed_worker(rank: int, port: int, out_dir: str) -> None:
    """One rank as torchrun would start it: env vars, then init_distributed on CPU (Gloo)."""
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    ctx = dev.init_distributed([-1])
    try:
        summed = dev.all_reduce_sum_(torch.tensor([rank + 1.0, 10.0 * rank]))
        mean = dev.all_reduce_mean_(torch.tensor([rank + 1.0]))
        shared = dev.broadcast_object({"from": rank, "policy": [rank, 1 - rank]})
        dev.barrier()
        result = {"rank": ctx.rank, "world_size": ctx.world_size, "is_main": ctx.is_main,
                  "distributed": ctx.distributed, "device": str(ctx.device), "summed": summed.tolist(),
                  "mean": mean.tolist(), "shared": shared,
                  "per_rank_batch": dev.split_batch_size(16, ctx.world_size)}
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dev.cleanup_distributed()


def test_two_process_gloo_group_all_reduces(tmp_path):
    context = mp.spawn(_distributed_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False)
    deadline = time.time() + 120
    while not context.join(timeout=5):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process gloo group did not finish within 120 s")
    results = [json.load(open(tmp_path / f"rank{r}.json")) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["rank"] == rank and result["world_size"] == 2 and result["distributed"]
        assert result["is_main"] == (rank == 0) and result["device"] == "cpu"
        assert result["summed"] == [3.0, 10.0]
        assert result["mean"] == [1.5]
        assert result["shared"] == {"from": 0, "policy": [0, 1]}
        assert result["per_rank_batch"] == 8
