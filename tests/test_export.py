"""Compact export: only used blocks, no logits, weights_only loading, outputs equal to the full network."""
import os

import pytest
import torch

from models import build_model, count_parameters
from engine import checkpoint as C
from tools.export import main
from deploy.export import CompactFileError, CompactMultiTaskNet, export_compact, load_compact
from deploy.flops import count_conv_flops, padded_gates, policy_cost

H, W = 33, 41
CLASSES = [5, 3, 1]


def pol(bits):
    column = torch.tensor(bits, dtype=torch.int64)
    return torch.stack([column, 1 - column], dim=1)


def randomised(model):
    """Non-trivial BN statistics and affine values, so that eval mode really differs from identity BN."""
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.01)
            module.running_var.copy_(torch.rand(n, generator=generator) * 0.02 + 0.005)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(0)
    return randomised(build_model("ResNet18", CLASSES, head_channels=8))


# block 5 (segment 2, block 1) is used by no task; segment 1 (blocks 2, 3) is skipped by task 2
POLICIES = [pol([1, 0, 1, 1, 1, 0, 0, 1]), pol([1, 1, 0, 0, 1, 0, 1, 1]), pol([0, 1, 1, 0, 0, 0, 1, 0])]


def relative_diff(a, b):
    return max(float((x - y).abs().max()) / max(1.0, float(x.abs().max())) for x, y in zip(a, b))


def test_round_trip_equals_full_model(r18, tmp_path):
    path = str(tmp_path / "compact.pth")
    payload = export_compact(r18, POLICIES, path, meta={"note": "test", "input_hw": [H, W]},
                             tasks=["seg", "sn", "depth"])
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "adashare-compact" and raw["backbone"] == "ResNet18"
    assert raw["tasks"] == ["seg", "sn", "depth"] and raw["tasks_num_class"] == CLASSES
    assert raw["head_channels"] == 8 and raw["meta"]["note"] == "test"
    assert raw["kept_blocks"] == [0, 1, 2, 3, 4, 6, 7] == payload["kept_blocks"]
    assert raw["kept_block_names"] == ["0.0", "0.1", "1.0", "1.1", "2.0", "3.0", "3.1"]
    assert all(torch.equal(a, b) for a, b in zip(raw["policies"], POLICIES))

    keys = set(raw["state"])
    full = r18.state_dict()
    assert keys <= set(full)
    assert not any("logits" in k for k in keys)
    assert not any(k.startswith("backbone.blocks.2.1.") for k in keys)  # block 5: nobody runs it
    assert {k for k in full if k.startswith("backbone.ds.")} <= keys  # projections always run
    assert set(full) - keys == {k for k in full if "logits" in k or k.startswith("backbone.blocks.2.1.")}
    assert all(torch.equal(raw["state"][k], full[k]) for k in keys)

    compact = load_compact(path)
    assert isinstance(compact, CompactMultiTaskNet) and not compact.training
    img = torch.randn(2, 3, H, W) * 60
    with torch.no_grad():
        expected = r18(img, padded_gates(POLICIES, 8))  # compute-every-block path
        shared = r18(img, padded_gates(POLICIES, 8), skip_unselected=True)
        got = compact(img)
    assert [o.shape for o in got] == [o.shape for o in expected] == [(2, n, 5, 6) for n in CLASSES]
    assert relative_diff(expected, got) <= 1e-5
    assert relative_diff(shared, got) <= 1e-5


def test_compact_sizes_match_the_tree_cost(r18, tmp_path):
    path = str(tmp_path / "compact.pth")
    export_compact(r18, POLICIES, path)
    compact = load_compact(path)
    cost = policy_cost(r18, POLICIES, (H, W))
    assert count_parameters(compact) == cost["tree"]["values"]
    assert count_parameters(compact, include_buffers=False) == cost["tree"]["params"]
    assert count_conv_flops(compact, torch.randn(1, 3, H, W))["flops"] == cost["tree"]["flops"]
    assert compact.tasks == ["task1", "task2", "task3"]


def test_identical_policies_and_skip_layer(tmp_path):
    torch.manual_seed(2)
    model = randomised(build_model("ResNet10", CLASSES, head_channels=8, skip_layer=1))
    policies = [pol([0, 1, 0])] * 3  # P = 3 rows; block 0 always runs
    path = str(tmp_path / "c.pth")
    payload = export_compact(model, policies, path)
    assert payload["kept_blocks"] == [0, 2] and payload["skip_layer"] == 1
    compact = load_compact(path)
    img = torch.randn(1, 3, H, W)
    with torch.no_grad():
        assert relative_diff(model(img, padded_gates(policies, 4)), compact(img)) <= 1e-5


def test_bad_files_and_meta(r18, tmp_path):
    with pytest.raises(FileNotFoundError, match="compact model file not found"):
        load_compact(str(tmp_path / "missing.pth"))
    other = str(tmp_path / "other.pth")
    torch.save({"mtl-net": {}}, other)
    with pytest.raises(CompactFileError, match="not a compact model file"):
        load_compact(other)
    with pytest.raises(ValueError, match="meta\\['bad'\\] is a object"):
        export_compact(r18, POLICIES, str(tmp_path / "x.pth"), meta={"bad": object()})
    assert not os.path.exists(tmp_path / "x.pth")
    path = str(tmp_path / "c.pth")
    payload = export_compact(r18, POLICIES, path)
    del payload["state"]["task1_fc1_c0.conv1.bias"]
    C.atomic_save(payload, path)
    with pytest.raises(C.CheckpointMismatchError, match="task1_fc1_c0.conv1.bias"):
        load_compact(path)


CONFIG = """exp_name: tiny
seed: [7, 9]
backbone: ResNet10
head_channels: 8
tasks: ['seg', 'sn', 'depth']
tasks_num_class: [5, 3, 1]
policy_model: task-specific
skip_layer: 0
paths:
  log_dir: {root}/logs
  result_dir: {root}/results
  checkpoint_dir: {root}/ckpt
dataload:
  dataset: NYU_v2
  dataroot: {root}/data
  eval_h: 33
  eval_w: 41
train:
  policy_iter: best
  init_method: equal
"""


def test_command_exports_retrained_checkpoint(tmp_path, capsys):
    config = tmp_path / "tiny.yml"
    config.write_text(CONFIG.format(root=tmp_path))
    torch.manual_seed(4)
    model = randomised(build_model("ResNet10", CLASSES, head_channels=8))
    folder = tmp_path / "ckpt" / "tiny"
    C.save_checkpoint(C.checkpoint_path(str(tmp_path / "ckpt"), "tiny", C.retrain_label(1, "best", "best")),
                      model, iteration=10, temperature=5.0)
    policies = [pol([1, 0, 1, 1]), pol([1, 0, 0, 1]), pol([0, 0, 1, 1])]
    C.save_policy(C.policy_path(str(tmp_path / "ckpt"), "tiny", "best", 9), policies, ["seg", "sn", "depth"])

    assert main(["--config", str(config), "--exp_ids", "1", "--gpus", "-1"]) == 0
    out = capsys.readouterr().out
    assert "compute-everything" in out and "tree (shared prefix)" in out and "task depth" in out
    assert "per image at 33x41" in out and "max |compact - full| (relative)" in out
    path = folder / "retrain001_policyIterbest_compact.pth"
    assert path.is_file() and f"{path.stat().st_size:,} bytes" in out
    raw = torch.load(str(path), weights_only=True)
    assert raw["kept_blocks"] == [0, 2, 3] and raw["meta"]["seed"] == 9 and raw["meta"]["iter"] == 10
    expected_cost = policy_cost(model, policies, (H, W))
    assert raw["meta"]["cost"]["tree"]["flops"] == expected_cost["tree"]["flops"]

    with pytest.raises(ValueError, match="--out names one file"):
        main(["--config", str(config), "--exp_ids", "0", "1", "--gpus", "-1", "--out", str(tmp_path / "a.pth")])
    with pytest.raises(FileNotFoundError, match="retrain000_policyIterbest_best_model.pth.tar"):
        main(["--config", str(config), "--exp_ids", "0", "--gpus", "-1"])
