"""Checkpoint files, policy pickles, RNG state capture and run logs (CPU, tiny tensors)."""
import errno
import glob
import os
import pickle
import pickletools
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine import checkpoint as ckpt
from engine.logging import RunLogger
from engine.seeding import fix_random_seed, get_rng_state, set_rng_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TinyNet(nn.Module):
    """A stand-in with the original's key patterns: logits, a BN with num_batches_tracked, a head."""

    def __init__(self, num_classes: int = 3, rows: int = 4):
        super().__init__()
        self.task1_logits = nn.Parameter(torch.full((rows, 2), 0.5))
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.task1_fc1_c0 = nn.Conv2d(4, num_classes, 1)


def _policies(rows: int = 5):
    return [torch.tensor([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]][:rows]),
            torch.tensor([[1, 0], [1, 0], [0, 1], [1, 0], [1, 0]][:rows])]


# ------------------------------------------------------------------------------------------- names
def test_original_file_names():
    assert ckpt.checkpoint_path("ck", "exp", "best") == os.path.join("ck", "exp", "best_model.pth.tar")
    label = ckpt.retrain_label(0, "best", "latest")
    assert label == "retrain000_policyIterbest_latest"
    assert ckpt.checkpoint_path("ck", "exp", label).endswith("retrain000_policyIterbest_latest_model.pth.tar")
    assert ckpt.policy_label("best", 48) == "Iterbest_rs0048"
    assert ckpt.policy_path("ck", "exp", "best", 48) == os.path.join("ck", "exp", "policyIterbest_rs0048.pickle")
    assert ckpt.policy_table_path("a/policyIterbest_rs0048.pickle") == "a/policyIterbest_rs0048.txt"


# ------------------------------------------------------------------------------------------- atomic writes
def test_atomic_save_keeps_old_file_when_torch_save_fails_midway(tmp_path, monkeypatch):
    path = str(tmp_path / "latest_model.pth.tar")
    ckpt.atomic_save({"v": torch.tensor([1.0])}, path)
    before = open(path, "rb").read()
    real_save = torch.save

    def half_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        ckpt.atomic_save({"v": torch.tensor([2.0])}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["latest_model.pth.tar"]  # the temp file was removed
    assert torch.equal(torch.load(path, weights_only=True)["v"], torch.tensor([1.0]))


def test_atomic_write_keeps_old_file_when_rename_fails(tmp_path, monkeypatch):
    path = str(tmp_path / "opt.txt")
    ckpt.atomic_write_text(path, "old")

    def fail(*args, **kwargs):
        raise OSError("rename failed")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="rename failed"):
        ckpt.atomic_write_text(path, "new")
    monkeypatch.undo()
    assert open(path).read() == "old"
    assert os.listdir(tmp_path) == ["opt.txt"]


def test_crash_mid_write_leaves_previous_checkpoint(tmp_path):
    """A process that dies (os._exit, no cleanup) while writing leaves the previous file readable."""
    path = str(tmp_path / "best_model.pth.tar")
    ckpt.save_checkpoint(path, {"w": torch.ones(2)}, iteration=7, temperature=5.0)
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path.insert(0, {ROOT!r})
        from engine import checkpoint as ckpt
        def dying_save(obj, f, *a, **k):
            f.write(b"x" * 4096); f.flush()
            os._exit(3)
        torch.save = dying_save
        ckpt.save_checkpoint({path!r}, {{"w": torch.zeros(2)}}, iteration=8, temperature=4.0)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert result.returncode == 3, result.stderr.decode()
    state = ckpt.load_checkpoint(path)
    assert state["iter"] == 7 and torch.equal(state["mtl-net"]["w"], torch.ones(2))


def test_atomic_write_json_handles_numpy_and_tensors(tmp_path):
    path = str(tmp_path / "sub" / "r.json")
    ckpt.atomic_write_json(path, {"mIoU": np.float32(0.5), "cm": np.eye(2, dtype=np.int64), "t": torch.tensor(2.0)})
    import json
    assert json.load(open(path)) == {"mIoU": 0.5, "cm": [[1, 0], [0, 1]], "t": 2.0}


# ------------------------------------------------------------------------------------------- checkpoint content
def test_save_checkpoint_original_keys_and_module_prefix_stripped(tmp_path):
    net = TinyNet()
    weights = torch.optim.Adam(list(net.backbone.parameters()) + list(net.task1_fc1_c0.parameters()), lr=1e-3)
    alphas = torch.optim.Adam([net.task1_logits], lr=0.01, weight_decay=5e-4)
    loss = net.task1_fc1_c0(net.backbone(torch.randn(2, 3, 5, 5))).sum() + net.task1_logits.sum()
    loss.backward()
    weights.step()
    alphas.step()
    prefixed = {"module." + k: v for k, v in net.state_dict().items()}
    path = str(tmp_path / "exp" / "warmup_model.pth.tar")
    ckpt.save_checkpoint(path, prefixed, {"weights": weights.state_dict(), "alphas": alphas.state_dict()},
                         iteration=12, temperature=4.825, extra={"resume_note": torch.tensor([1])})
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"mtl-net", "weights", "alphas", "iter", "temp", "resume_note"}
    assert list(raw["mtl-net"]) == list(net.state_dict())  # no prefix, same order
    assert raw["iter"] == 12 and isinstance(raw["iter"], int) and raw["temp"] == pytest.approx(4.825)
    fresh = TinyNet()
    fresh_weights = torch.optim.Adam(list(fresh.backbone.parameters()) + list(fresh.task1_fc1_c0.parameters()))
    fresh_weights.load_state_dict(raw["weights"])
    assert fresh_weights.state_dict()["state"][0]["step"] == 1


def test_save_checkpoint_from_wrapped_module_and_test_env(tmp_path):
    net = TinyNet()
    path = str(tmp_path / "m_model.pth.tar")
    ckpt.save_checkpoint(path, nn.DataParallel(net), iteration=0, temperature=5)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"mtl-net", "iter", "temp"}  # test envs: no optimiser entries
    assert not any(k.startswith("module.") for k in raw["mtl-net"])
    with pytest.raises(ValueError, match="collides"):
        ckpt.save_checkpoint(path, net, iteration=0, temperature=5, extra={"temp": 1})
    with pytest.raises(ValueError, match=r"extra\['state'\]\['rng'\] is a ndarray"):
        ckpt.save_checkpoint(path, net, iteration=0, temperature=5, extra={"state": {"rng": np.zeros(2)}})


def test_load_checkpoint_strips_prefix_of_foreign_files(tmp_path):
    path = str(tmp_path / "dp_model.pth.tar")
    torch.save({"mtl-net": {"module.w": torch.ones(1)}, "iter": 3, "temp": 5.0}, path)
    assert list(ckpt.load_checkpoint(path)["mtl-net"]) == ["w"]


def test_missing_checkpoint_lists_path_and_hint(tmp_path):
    folder = tmp_path / "exp"
    folder.mkdir()
    (folder / "latest_model.pth.tar").write_bytes(b"")
    path = str(folder / "best_model.pth.tar")
    hint = "python train_policy.py --config yamls/x.yml"
    with pytest.raises(ckpt.CheckpointNotFoundError) as info:
        ckpt.load_checkpoint(path, hint=hint)
    message = str(info.value)
    assert path in message and hint in message and "latest_model.pth.tar" in message
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ckpt.CheckpointError)


@pytest.mark.parametrize("damage", ["half", "tail", "empty", "text", "legacy_half"])
def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path, damage):
    good = str(tmp_path / "good.pth")
    legacy = damage.startswith("legacy")
    torch.save({"mtl-net": {"w": torch.randn(64, 64)}, "iter": 1, "temp": 5.0}, good,
               _use_new_zipfile_serialization=not legacy)
    data = open(good, "rb").read()
    damaged = {"half": data[: len(data) // 2], "tail": data[:-40], "empty": b"",
               "text": b"not a checkpoint at all\n", "legacy_half": data[: len(data) // 2]}[damage]
    path = str(tmp_path / "best_model.pth.tar")
    open(path, "wb").write(damaged)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(path)
    message = str(info.value)
    assert path in message and ("truncated" in message or "empty" in message)
    assert info.value.__cause__ is None  # no raw zip/pickle traceback chained to ours
    assert info.value.__context__ is None or info.value.__suppress_context__


def test_checkpoint_without_network_key_names_keys(tmp_path):
    path = str(tmp_path / "x_model.pth.tar")
    torch.save({"state_dict": {}, "epoch": 3}, path)
    with pytest.raises(ckpt.CheckpointError, match=r"mtl-net.*\['epoch', 'state_dict'\]") as info:
        ckpt.load_checkpoint(path)
    assert path in str(info.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "evil_model.pth.tar")
    torch.save({"mtl-net": {}, "payload": _Evil(marker)}, path)
    with pytest.raises(ckpt.CheckpointError, match="weights_only") as info:
        ckpt.load_checkpoint(path)
    assert path in str(info.value) and "system" in str(info.value) and not marker.exists()


# ------------------------------------------------------------------------------------------- network loading
def test_tolerant_loading_skips_mismatches_and_keeps_missing(capsys):
    source = TinyNet(num_classes=5)
    target = TinyNet(num_classes=3)
    keep_head = target.task1_fc1_c0.weight.detach().clone()
    state = {"module." + k: v for k, v in source.state_dict().items() if k != "backbone.1.running_mean"}
    state["module.extra_key"] = torch.zeros(1)
    skipped = ckpt.load_state_tolerant(nn.DataParallel(target), state)
    assert sorted(skipped) == ["extra_key", "task1_fc1_c0.bias", "task1_fc1_c0.weight"]
    printed = capsys.readouterr().out
    assert "skipping task1_fc1_c0.weight" in printed and "skipping extra_key" in printed
    assert torch.equal(target.task1_fc1_c0.weight, keep_head)  # mis-shaped: kept
    assert torch.equal(target.backbone[0].weight, source.backbone[0].weight)  # matching: loaded
    assert torch.equal(target.backbone[1].running_mean, torch.zeros(4))  # missing: kept


def test_strict_loading_lists_every_problem():
    source = TinyNet(num_classes=5, rows=4)
    target = TinyNet(num_classes=3, rows=4)
    state = dict(source.state_dict())
    del state["backbone.1.num_batches_tracked"]
    state["task2_logits"] = torch.zeros(4, 2)
    with pytest.raises(ckpt.CheckpointMismatchError) as info:
        ckpt.load_state_strict(target, state, source="ck/exp/retrain000_policyIterbest_best_model.pth.tar")
    message = str(info.value)
    assert "retrain000_policyIterbest_best_model.pth.tar" in message
    assert "backbone.1.num_batches_tracked" in message and "task2_logits [4, 2]" in message
    assert "task1_fc1_c0.weight: file [5, 4, 1, 1] vs network [3, 4, 1, 1]" in message
    assert "task1_fc1_c0.bias: file [5] vs network [3]" in message
    assert info.value.missing == ["backbone.1.num_batches_tracked"]
    assert info.value.unexpected == ["task2_logits"]
    assert len(info.value.mismatched) == 2


def test_strict_loading_accepts_exact_match_with_prefix():
    source, target = TinyNet(), TinyNet()
    ckpt.load_state_strict(target, {"module." + k: v for k, v in source.state_dict().items()}, source="f")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)


# ------------------------------------------------------------------------------------------- policy pickles
def _globals_referenced(data: bytes) -> set:
    """Module.name pairs a pickle stream imports (GLOBAL, or STACK_GLOBAL after two strings)."""
    names, strings = set(), []
    for opcode, arg, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif opcode.name == "STACK_GLOBAL":
            names.add(f"{strings[-2]}.{strings[-1]}")
        if isinstance(arg, str):
            strings.append(arg)
    return names


def test_policy_round_trip_in_the_original_format(tmp_path):
    path = ckpt.policy_path(str(tmp_path), "exp", "best", 48)
    policies = _policies()
    # a non-contiguous view with grad must still be saved as a clean int64 [P, 2] tensor
    policies[1] = torch.cat([policies[1], torch.zeros(5, 1, dtype=torch.int64)], 1)[:, :2]
    ckpt.save_policy(path, policies, ["seg", "sn"])
    raw = pickle.load(open(path, "rb"))  # the original's reader: plain pickle
    assert type(raw) is dict and list(raw) == ["task1_policy", "task2_policy"]
    for value, expected in zip(raw.values(), _policies()):
        assert value.dtype == torch.int64 and value.device.type == "cpu" and torch.equal(value, expected)
    data = open(path, "rb").read()
    assert _globals_referenced(data) == {"torch._utils._rebuild_tensor_v2", "torch.storage._load_from_bytes",
                                         "collections.OrderedDict"}
    loaded = ckpt.load_policy(path, num_tasks=2, num_rows=5)
    assert all(torch.equal(a, b) and a.dtype == torch.int64 for a, b in zip(loaded, _policies()))


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
def test_policy_written_like_the_original_loads(tmp_path, protocol):
    """The original: torch.from_numpy(np.array(rows)) per task, pickle.dump(dict) of CPU int64 tensors."""
    rng = np.random.RandomState(48)
    original = {}
    for t in range(3):
        rows = []
        for _ in range(6):
            s = rng.choice((1, 0), p=[0.7, 0.3])
            rows.append([s, 1 - s])
        original[f"task{t + 1}_policy"] = torch.from_numpy(np.array(rows))
    path = str(tmp_path / "policyIterbest_rs0048.pickle")
    with open(path, "wb") as f:
        pickle.dump(original, f, protocol=protocol)
    loaded = ckpt.load_policy(path)
    assert [torch.equal(a, b) for a, b in zip(loaded, original.values())] == [True] * 3


def test_malicious_policy_pickle_is_refused_without_executing(tmp_path):
    marker = tmp_path / "pwned"
    path = str(tmp_path / "policyIterbest_rs0048.pickle")
    with open(path, "wb") as f:
        pickle.dump({"task1_policy": _Evil(marker)}, f)
    with pytest.raises(ckpt.PolicyFileError) as info:
        ckpt.load_policy(path)
    message = str(info.value)
    assert path in message and "system" in message and "refused" in message
    assert not marker.exists()


def test_policy_of_numpy_arrays_is_refused_by_name(tmp_path):
    path = str(tmp_path / "p.pickle")
    pickle.dump({"task1_policy": np.array([[1, 0]])}, open(path, "wb"))
    with pytest.raises(ckpt.PolicyFileError, match="refused to load global 'numpy"):
        ckpt.load_policy(path)


@pytest.mark.parametrize("content, match", [
    ({"task1_policy": torch.tensor([[1, 0]]), "task3_policy": torch.tensor([[1, 0]])}, "consecutive"),
    ({"task1_policy": torch.tensor([[1, 1], [0, 1]])}, "bad rows \\[0\\]"),
    ({"task1_policy": torch.tensor([1, 0])}, "shape \\[P, 2\\]"),
    ({"task1_policy": torch.tensor([[1, 0]]), "task2_policy": torch.tensor([[1, 0], [0, 1]])}, "different shapes"),
    ([torch.tensor([[1, 0]])], "expected a dict"),
])
def test_invalid_policy_content_is_a_clear_error(tmp_path, content, match):
    path = str(tmp_path / "p.pickle")
    pickle.dump(content, open(path, "wb"))
    with pytest.raises(ckpt.PolicyFileError, match=match) as info:
        ckpt.load_policy(path)
    assert path in str(info.value)


def test_policy_checks_against_the_network_and_truncation(tmp_path):
    path = str(tmp_path / "p.pickle")
    ckpt.save_policy(path, _policies())
    with pytest.raises(ckpt.PolicyFileError, match="2 task"):
        ckpt.load_policy(path, num_tasks=3)
    with pytest.raises(ckpt.PolicyFileError, match="5 policy rows .* gates 16"):
        ckpt.load_policy(path, num_rows=16)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(ckpt.PolicyFileError, match="truncated"):
        ckpt.load_policy(path)


def test_missing_policy_names_path_and_command(tmp_path):
    path = ckpt.policy_path(str(tmp_path), "exp", "best", 48)
    hint = "python re-train.py --config yamls/x.yml --exp_ids 0"
    with pytest.raises(ckpt.PolicyNotFoundError) as info:
        ckpt.load_policy(path, hint=hint)
    assert path in str(info.value) and hint in str(info.value) and isinstance(info.value, FileNotFoundError)


def test_policy_table_beside_the_pickle(tmp_path):
    path = str(tmp_path / "policyIterbest_rs0048.pickle")
    ckpt.save_policy(path, _policies(), ["seg", "sn"])
    lines = open(str(tmp_path / "policyIterbest_rs0048.txt")).read().splitlines()
    assert lines[0] == "policyIterbest_rs0048.pickle"
    seg = next(line for line in lines if line.startswith("seg"))
    sn = next(line for line in lines if line.startswith("sn"))
    assert seg.split()[1:] == ["X", ".", "X", "X", ".", "3/5"]
    assert sn.split()[1:] == ["X", "X", ".", "X", "X", "4/5"]
    assert next(line for line in lines if line.startswith("#tasks")).split()[1:] == ["2", "1", "1", "2", "1"]


def test_policy_table_with_probabilities():
    probs = [torch.softmax(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), -1), torch.tensor([0.5, 0.25])]
    text = ckpt.format_policy_table(None, ["seg", "sn"], probabilities=probs)
    seg = next(line for line in text.splitlines() if line.startswith("seg")).split()
    assert seg[1:3] == ["0.88", "0.12"]
    both = ckpt.format_policy_table(_policies(2), ["seg", "sn"], probabilities=probs)
    assert "p(execute)" in both and "X" in both


def test_save_policy_rejects_bad_policies(tmp_path):
    with pytest.raises(ckpt.PolicyFileError, match="seg"):
        ckpt.save_policy(str(tmp_path / "p.pickle"), [torch.tensor([[0.5, 0.5]])], ["seg"])
    assert not os.path.exists(tmp_path / "p.pickle")


# ------------------------------------------------------------------------------------------- RNG state
def _draws():
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(), np.random.randn(),
            torch.rand(3).tolist())


def test_rng_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    fix_random_seed(48)
    random.gauss(0, 1)  # leaves a cached gaussian in python's generator
    np.random.randn()  # and an odd number of numpy normals leaves one cached there too
    state = get_rng_state()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    path = str(tmp_path / "resume_state.pth.tar")
    ckpt.save_checkpoint(path, {}, iteration=1, temperature=5.0, extra={"rng": state})
    expected = _draws()
    fix_random_seed(0)
    _draws()
    set_rng_state(ckpt.load_checkpoint(path)["rng"])
    assert _draws() == expected


def test_fix_random_seed_is_reproducible_and_validated():
    fix_random_seed(3)
    first = _draws()
    fix_random_seed(3)
    assert _draws() == first
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    with pytest.raises(ValueError, match="seed"):
        fix_random_seed(-1)
    with pytest.raises(ValueError, match="lacks"):
        set_rng_state({"torch_cpu": torch.get_rng_state()})


# ------------------------------------------------------------------------------------------- run logs
def _event_scalars(path):
    """(tag, step, value) of every scalar in a tensorboard events file (TFRecord framing)."""
    import struct
    from tensorboardX.proto import event_pb2
    scalars, data = [], open(path, "rb").read()
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset:offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
        offset += 12 + length + 4
        scalars += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
    return scalars


def test_run_logger_writes_options_losses_and_events(tmp_path):
    logger = RunLogger(str(tmp_path), "exp")
    logger.write_options("train.lr.: 0.001")
    losses = {"seg": {"total": torch.tensor(1.25)}, "total": {"total": torch.tensor(1.25)},
              "sparsity": {"total": torch.tensor(0.5), "task1": torch.tensor(0.5)}, "hamming": {"total": 0.0}}
    logger.log_losses(10, losses, "warmup")
    logger.log_metrics(10, {"seg": {"mIoU": np.float64(0.4), "Pixel Acc": 0.6}}, "test")
    logger.log_scalars("policy/temp", {"tau": 4.8}, 10)
    logger.close()
    folder = tmp_path / "exp"
    assert (folder / "opt.txt").read_text() == "train.lr.: 0.001"
    lines = (folder / "loss.txt").read_text().splitlines()
    assert len(lines) == 2
    assert "warmup" in lines[0] and "seg/total 1.25" in lines[0] and "sparsity/task1 0.5" in lines[0]
    assert "test" in lines[1] and "seg/mIoU 0.4" in lines[1]
    events = glob.glob(str(folder / "events.out.tfevents.*"))
    assert len(events) == 1 and os.path.getsize(events[0]) > 0
    tags = {tag for tag, _, _ in _event_scalars(events[0])}
    assert ("seg/total", 10, 1.25) in _event_scalars(events[0])
    assert {"seg/total", "sparsity/task1", "hamming/total", "test/seg/mIoU", "policy/temp/tau"} <= tags


def test_disabled_run_logger_writes_nothing(tmp_path):
    logger = RunLogger(str(tmp_path), "exp", enabled=False)
    logger.write_options("x")
    logger.log_losses(1, {"total": {"total": torch.tensor(1.0)}}, "warmup")
    logger.log_metrics(1, {"seg": {"mIoU": 0.1}}, "test")
    logger.log_scalars("a", {"b": 1.0}, 1)
    logger.close()
    assert os.listdir(tmp_path) == []


def test_run_logger_rejects_non_scalars(tmp_path):
    logger = RunLogger(str(tmp_path), "exp")
    with pytest.raises(ValueError, match="seg/total"):
        logger.log_losses(1, {"seg": {"total": torch.ones(2)}}, "warmup")
    logger.close()


def test_atomic_link_gives_one_file_or_a_copy_without_hard_links(tmp_path, monkeypatch):
    source, target = tmp_path / 'resume_state.pth.tar', tmp_path / 'latest_model.pth.tar'
    source.write_bytes(b'first')
    target.write_bytes(b'old latest')
    assert ckpt.atomic_link(str(source), str(target)) is True
    assert os.path.samefile(source, target) and target.read_bytes() == b'first'
    source.unlink()  # a finished run drops the resume state's name; `latest` keeps the data
    assert target.read_bytes() == b'first'

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, 'Operation not permitted')
    monkeypatch.setattr(os, 'link', no_links)
    source.write_bytes(b'second')
    assert ckpt.atomic_link(str(source), str(target)) is False
    assert not os.path.samefile(source, target) and target.read_bytes() == b'second'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['latest_model.pth.tar', 'resume_state.pth.tar']
