"""Every registry backbone through every phase, FLOPs, export and weights loading (tiny shapes, CPU)."""
from __future__ import annotations

import os

import pytest
import torch
import yaml
from torch import nn

from _backbone_run import ROOT, SIZE, nyu_batch, run_phases, tiny_config
from envs import AdaShareEnv
from models import build_model, build_network
from models.backbones import build_backbone, find_family, num_gated_blocks
from models.backbones.mobilenet_v2 import InvertedResidual
from config import ConfigError, load_config
from deploy.export import export_compact, load_compact
from deploy.flops import policy_cost
from engine.pretrained import PretrainedWeightsError, load_backbone_weights
from reporting.tables import load_spec

# One of each family, CPU-sized: WRN-16-1 has blocks with and without a projection.
BACKBONES = ["ResNet10", "WRN-16-1", "MobileNetV2-0.5", "tv:resnet18"]


def policies_for(num_blocks: int) -> list:
    """Two different hard [L, 2] policies that skip some blocks and share a prefix."""
    first = [1 if t % 3 != 1 else 0 for t in range(num_blocks)]
    second = [1 if t < 1 or t % 2 == 0 else 0 for t in range(num_blocks)]
    return [torch.tensor([[e, 1 - e] for e in execute]) for execute in (first, second)]


def randomised(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so eval-mode comparisons are meaningful."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


@pytest.mark.parametrize("name", BACKBONES)
def test_every_phase_and_eval_skipping_equals_compute_everything(tmp_path, name):
    opt = tiny_config(tmp_path, name)
    L = num_gated_blocks(name)
    run = run_phases(opt, p_epoch=min(2, L - 1), policies=policies_for(L))
    for step in run["steps"]:
        assert all(torch.isfinite(v) for v in step["losses"].values()), step["phase"]
        if step["phase"] in ("weights", "policy"):
            assert [tuple(g.shape) for g in step["gates"]] == [(L, 2)] * 2
    policy_step = next(s for s in run["steps"] if s["phase"] == "policy")
    assert {"hamming_total", "sparsity_total"} <= set(policy_step["losses"])
    for skipped, everything in zip(run["eval_skipped"], run["eval_everything"]):
        assert torch.allclose(skipped, everything, atol=1e-5, rtol=1e-5)
    network = run["env"].network
    assert network.num_policy_rows == L
    # 1/8 resolution (the Deeplab-ResNet's ceil-mode max-pool rounds up)
    assert run["eval_skipped"][0].shape[-1] in (SIZE // 8, SIZE // 8 + 1)


@pytest.mark.parametrize("name", BACKBONES)
def test_flops_drop_with_skipped_blocks_and_match_the_forward(name):
    torch.manual_seed(0)
    model = build_model(name, [40, 3], head_channels=8)
    L = model.num_blocks
    everything = [torch.tensor([[1, 0]] * L)] * 2
    full = policy_cost(model, everything, (SIZE, SIZE))  # check=True: analytic == hook counts
    cost = policy_cost(model, policies_for(L), (SIZE, SIZE))
    for k in range(2):
        assert cost["per_task"][k]["flops"] < full["per_task"][k]["flops"]
    # Tasks that split early each run the later always-executed modules (MobileNetV2), so the tree can
    # cost more than one shared pass, but never more than compute-everything.
    assert cost["tree"]["flops"] < cost["compute_everything"]["flops"] == full["compute_everything"]["flops"]


@pytest.mark.parametrize("name", BACKBONES)
def test_export_round_trip(tmp_path, name):
    torch.manual_seed(0)
    model = randomised(build_model(name, [40, 3], head_channels=8))
    policies = policies_for(model.num_blocks)
    policies[1][:, :] = torch.tensor([1, 0])  # task 2 runs everything but block 1 ...
    policies[1][1] = torch.tensor([0, 1])
    policies[0][1] = torch.tensor([0, 1])    # ... which nobody runs: dropped from the file
    payload = export_compact(model, policies, str(tmp_path / "compact.pth"))
    assert payload["backbone"] == name and 1 not in payload["kept_blocks"]
    body = {f"backbone.{n}" for n, m in model.backbone.named_modules()
            if any(m is b for b in model.backbone.body_modules(1))}
    assert not any(k.rsplit(".", 1)[0] in body for k in payload["state"])
    compact = load_compact(str(tmp_path / "compact.pth"))
    img = torch.randn(2, 3, SIZE, SIZE)
    gates = [torch.stack([p[:, 0], p[:, 1]], dim=1).float() for p in policies]
    with torch.no_grad():
        for ours, full in zip(compact(img), model(img, gates)):
            assert torch.allclose(ours, full, atol=1e-5, rtol=1e-5)


def test_mobilenet_v2_non_residual_blocks_always_execute():
    backbone = randomised(build_backbone("MobileNetV2-0.5"))
    blocks = [m for m in backbone.features if isinstance(m, InvertedResidual)]
    gated = [m for m in blocks if m.use_res_connect]
    assert len(gated) == backbone.num_blocks == 10 and len(blocks) == 17
    calls = {id(m): 0 for m in blocks}
    for m in blocks:
        for part in (m, m.conv):
            part.register_forward_hook(lambda mod, i, o, key=id(m): calls.__setitem__(key, calls[key] + 1))
    skip_all = torch.tensor([[0.0, 1.0]] * backbone.num_blocks)
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, SIZE, SIZE), skip_all, skip_unselected=True)
    assert out.shape[1] == backbone.out_channels
    assert all(calls[id(m)] == 0 for m in gated)           # skipped: identity
    assert all(calls[id(m)] >= 1 for m in blocks if not m.use_res_connect)  # always run


def test_output_stride_and_torchvision_dilation():
    torchvision = pytest.importorskip("torchvision")
    ours = build_backbone("tv:resnet50")
    reference = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    for (name, a), (_, b) in zip(ours.named_modules(), reference.named_modules()):
        if isinstance(a, nn.Conv2d):
            assert (a.stride, a.dilation, a.padding) == (b.stride, b.dilation, b.padding), name
    ours.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")})
    ours.eval(), reference.eval()
    img = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        expected = reference.layer4(reference.layer3(reference.layer2(reference.layer1(
            reference.maxpool(reference.relu(reference.bn1(reference.conv1(img))))))))
        assert torch.allclose(ours(img), expected, atol=1e-5)
    for name in ("WRN-10-2", "MobileNetV2", "tv:resnet34"):
        with torch.device("meta"):
            assert build_backbone(name)(torch.empty(1, 3, 64, 64)).shape[-2:] == (8, 8), name


def test_registry_and_config_errors(tmp_path):
    for bad in ("ResNet50", "WRN-16", "tv:resnet152", "mobilenetv2"):
        with pytest.raises(ValueError, match="unknown backbone"):
            find_family(bad)
    with pytest.raises(ValueError, match="6n \\+ 4"):
        build_backbone("WRN-15-2")
    with pytest.raises(ConfigError, match="backbone = 'WRN-15-2'.*6n \\+ 4"):
        tiny_config(tmp_path, "WRN-15-2")
    with pytest.raises(ConfigError, match="skip_layer"):
        tiny_config(tmp_path, "WRN-10-2", skip_layer=3)
    with pytest.raises(ConfigError, match="architecture nddr reads the Deeplab-ResNet"):
        tiny_config(tmp_path, "MobileNetV2-0.5", architecture="nddr")
    with pytest.raises(ConfigError, match="backbone_weights.*no such file"):
        tiny_config(tmp_path, "WRN-10-2", backbone_weights=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("architecture", ["multi_task", "single_task"])
@pytest.mark.parametrize("name", ["WRN-16-1", "MobileNetV2-0.5"])
def test_multi_and_single_task_baselines_take_any_backbone(name, architecture):
    torch.manual_seed(0)
    net = build_network(architecture, name, [40, 3], head_channels=8).eval()
    with torch.no_grad():
        outputs = net(torch.randn(1, 3, SIZE, SIZE))
    assert [tuple(o.shape) for o in outputs] == [(1, 40, 4, 4), (1, 3, 4, 4)]
    assert net.params_ratio() == (1.0 if architecture == "multi_task" else 2.0)


def test_weights_from_a_local_torchvision_file(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(reference, path)
    net = build_model("tv:resnet18", [40, 3], head_channels=8)
    assert load_backbone_weights(net, "tv:resnet18", str(path)) == len(reference) - 2  # fc.weight, fc.bias
    assert all(torch.equal(net.backbone.state_dict()[k], v) for k, v in reference.items() if not k.startswith("fc."))
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "mnv2.pth")
    load_backbone_weights(build_model("MobileNetV2", [2], head_channels=4), "MobileNetV2", str(tmp_path / "mnv2.pth"))

    torch.save(torchvision.models.resnet34(weights=None).state_dict(), tmp_path / "resnet34.pth")
    with pytest.raises(PretrainedWeightsError, match=r"resnet34.pth.*unexpected keys: layer1\.2\."):
        load_backbone_weights(net, "tv:resnet18", str(tmp_path / "resnet34.pth"))
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(PretrainedWeightsError, match="unexpected keys.*shape mismatches"):
        load_backbone_weights(net, "tv:resnet18", str(tmp_path / "resnet50.pth"))


def test_weights_round_trip_through_the_env(tmp_path):
    for name in ("WRN-10-2", "MobileNetV2-0.5"):
        torch.manual_seed(1)
        saved = build_backbone(name).state_dict()
        path = tmp_path / f"{name}.pth"
        torch.save({"state_dict": saved}, path)
        env = AdaShareEnv(tiny_config(tmp_path, name, backbone_weights=str(path)), torch.device("cpu"))
        assert all(torch.equal(env.network.backbone.state_dict()[k], v) for k, v in saved.items()), name
        env.set_inputs(nyu_batch(0))
        env.train()
        env.optimize("warmup")
    torch.save({"bogus.weight": torch.zeros(1)}, tmp_path / "bogus.pth")
    with pytest.raises(PretrainedWeightsError, match="bogus.pth.*missing keys: conv1.weight.*unexpected keys: bogus"):
        AdaShareEnv(tiny_config(tmp_path, "WRN-10-2", backbone_weights=str(tmp_path / "bogus.pth")),
                    torch.device("cpu"))


@pytest.mark.parametrize("short, backbone", [("mobilenetv2", "MobileNetV2"), ("wrn", "WRN-16-4")])
@pytest.mark.parametrize("architecture", [None, "multi_task"])
def test_shipped_backbone_yamls_are_the_synthetic_setting_with_named_keys_switched(short, backbone, architecture):
    name = short if architecture is None else f"{short}_{architecture}"
    path = os.path.join(ROOT, "yamls", "synthetic", "backbones", "nyu_v2_2task", f"{name}.yml")
    for script in (("train_policy", "re-train", "test") if architecture is None else ("re-train", "test")):
        load_config(path, script)
    with open(path) as f:
        raw = yaml.safe_load(f)
    with open(os.path.join(ROOT, "yamls", "synthetic", "nyu_v2_2task.yml")) as f:
        base = yaml.safe_load(f)
    assert raw.pop("backbone") == backbone and base.pop("backbone") == "ResNet10"
    assert raw.pop("exp_name") == f"{base.pop('exp_name')}_{name}"
    assert raw.pop("architecture", None) == architecture
    assert raw == base
    for spec in ("synthetic_backbones.yml", f"synthetic_backbones_{short}.yml"):
        rows = load_spec(os.path.join(ROOT, "yamls", "tables", spec)).rows
        assert f"yamls/synthetic/backbones/nyu_v2_2task/{name}.yml" in [r.config for r in rows], spec


@pytest.mark.parametrize("name", ["WRN-16-1", "MobileNetV2-0.5", "tv:resnet18"])
def test_speed_options_on_other_backbones(tmp_path, monkeypatch, name):
    """bf16 autocast, channels_last and torch.compile (dynamo capture, eager backend) through every phase."""
    from engine import speed
    monkeypatch.setattr(speed, "COMPILE_KWARGS", {"backend": "eager"})
    opt = tiny_config(tmp_path, name, speed={"amp": "bf16", "channels_last": True, "compile": True})
    L = num_gated_blocks(name)
    try:
        run = run_phases(opt, p_epoch=min(2, L - 1), policies=policies_for(L))
    finally:
        torch._dynamo.reset()
    assert [s["phase"] for s in run["steps"]] == ["warmup"] * 2 + ["weights"] * 2 + ["policy", "retrain", "retrain"]
    for step in run["steps"]:
        assert all(torch.isfinite(v) for v in step["losses"].values()), step["phase"]
    assert run["learned"]["sums"].isfinite().all() and run["retrained"]["sums"].isfinite().all()
    for skipped, everything in zip(run["eval_skipped"], run["eval_everything"]):
        assert skipped.dtype == torch.float32 and torch.isfinite(skipped).all()
        assert skipped.shape == everything.shape


def _ddp_backbone_worker(rank: int, port: int, out_dir: str, opt: dict) -> None:
    """One rank: its own initial weights and batches; warm-up, Gumbel weight steps and a policy step."""
    from engine import device as dev
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": "2",
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    context = dev.init_distributed([-1])
    try:
        env = AdaShareEnv(opt, torch.device("cpu"), dist=context)
        initial = {k: v.detach().clone() for k, v in env.network.named_parameters()}
        env.train()
        env.fix_alpha()
        env.free_w(bool(opt["fix_BN"]))
        for step in range(2):
            env.set_inputs(nyu_batch(10 * rank + step))
            env.optimize("warmup")
        env.start_alternation()
        env.state.p_epoch = 3
        for step in range(2):
            env.set_inputs(nyu_batch(10 * rank + 2 + step))
            env.optimize("weights")
        env.fix_w()
        env.free_alpha()
        env.set_inputs(nyu_batch(10 * rank + 4))
        env.optimize("policy")
        final = {k: v.detach().clone() for k, v in env.network.named_parameters()}
        torch.save({"initial": initial, "final": final}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dev.cleanup_distributed()


@pytest.mark.parametrize("weighting", ["equal", "pcgrad"])
@pytest.mark.parametrize("name", ["ResNet10", "MobileNetV2-0.5"])
def test_ddp_ranks_stay_identical(tmp_path, name, weighting):
    """2 gloo processes on different data and Gumbel noise: after every phase each rank holds the same
    parameters (always-executed and gated blocks alike; pcgrad's shared set is decided on rank-averaged gates)."""
    import time

    import torch.multiprocessing as mp

    from test_device import _free_port
    opt = tiny_config(tmp_path, name, weighting=weighting)
    context = mp.spawn(_ddp_backbone_worker, args=(_free_port(), str(tmp_path), opt), nprocs=2, join=False)
    deadline = time.time() + 600  # generous: each rank imports torch and the repository on a busy CPU
    while not context.join(timeout=5):
        if time.time() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process gloo group did not finish within 600 s")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for key, value in ranks[0]["final"].items():
        assert torch.equal(value, ranks[1]["final"][key]), key
    moved = [k for k in ranks[0]["final"] if not torch.equal(ranks[0]["final"][k], ranks[0]["initial"][k])]
    assert any("logits" in k for k in moved) and any(k.startswith("backbone.") for k in moved)
