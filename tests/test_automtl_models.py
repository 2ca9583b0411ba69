"""AutoMTL models layer (models/automtl, docs/automtl.md): conversion, forward modes, policy, regulariser, counts.

CPU, tiny shapes; the large backbones are built on the meta device (shapes only, no values).
"""
import copy
import math

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from models.automtl import (CODE_SCALE, HARD, PAPER_SCALE, PRETRAIN, SHARED, SKIP, SOFT, SPECIFIC,
                            AutoMTLConversionError, AutoMTLNet, ConvNode, TaskBatchNorm, build_automtl,
                            choices_from_one_hot, compact_parameter_count, depth_weights, export_compact,
                            gumbel_softmax_weights, hard_choices, is_policy_step, make_skip, one_hot,
                            paper_parameter_count, policy_regulariser, policy_steps_before, sample_choices,
                            temperature)
from models.backbones import build_backbone, example_names

TASKS = [3, 2]


def tiny_model(name="ResNet10", seed=0):
    torch.manual_seed(seed)
    backbone = build_backbone(name)
    return backbone, AutoMTLNet(backbone, TASKS, head_channels=4)


def image(seed=1, size=32):
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def choices(model, option):
    return [torch.full((model.num_convs,), option, dtype=torch.int64) for _ in range(model.num_tasks)]


def random_policy(model, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 3, (model.num_convs,), generator=g) for _ in range(model.num_tasks)]


def perturb(module, seed):
    """Give every parameter and BN statistic of `module` fresh values (so copies differ from the shared op)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, value in module.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=g) + 0.5 if name.endswith("running_var")
                            else torch.randn(value.shape, generator=g) * 0.1)


# ------------------------------------------------------------------ conversion of every registry backbone
@pytest.mark.parametrize("name", example_names())
def test_every_registry_backbone_converts(name):
    with torch.device("meta"):  # shapes only: the 100-layer ResNets stay cheap
        backbone = build_backbone(name)
        model = AutoMTLNet(backbone, TASKS, head_channels=4)
        x = torch.empty(1, 3, 32, 32)
        expected = backbone(x).shape
        soft = torch.full((model.num_convs, 3), 1 / 3)
        for task, mode, policy in [(0, PRETRAIN, None), (1, SOFT, soft), (1, HARD, [SKIP] * model.num_convs),
                                   (0, HARD, [SPECIFIC] * model.num_convs)]:
            assert model.features(x, task, mode, policy).shape == expected
    convs = [n for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(model.conv_names) == sorted(convs)
    assert len(model.bn_names) == sum(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
    assert all(isinstance(n, ConvNode) for n in model.conv_nodes())
    assert [n.index for n in model.conv_nodes()] == list(range(model.num_convs))
    assert min(model.conv_depths) == 1 and model.max_depth == max(model.conv_depths)


@pytest.mark.parametrize("name", ["ResNet10", "MobileNetV2-0.5", "WRN-10-2", "tv:resnet18"])
def test_all_shared_hard_policy_is_the_backbone(name):
    backbone, model = tiny_model(name)
    backbone.eval(), model.eval()
    x = image()
    with torch.no_grad():
        reference = backbone(x)
        for t in range(model.num_tasks):
            assert torch.equal(model.features(x, t, HARD, choices(model, SHARED)[t]), reference)


def test_all_specific_policy_is_independent_networks():
    backbone, model = tiny_model()
    for node in model.conv_nodes() + model.bn_nodes():
        for t, module in node.copies.items():
            perturb(module, seed=10 + int(t))
    model.eval()
    x = image()
    policy = choices(model, SPECIFIC)
    for t in range(model.num_tasks):
        own = copy.deepcopy(backbone).eval()  # task t's network: its copies in the backbone's places
        for name in model.conv_names + model.bn_names:
            own.get_submodule(name).load_state_dict(model.backbone.get_submodule(name).copies[str(t)].state_dict())
        with torch.no_grad():
            assert torch.equal(model.features(x, t, HARD, policy[t]), own(x))
    # Gradients of task t's loss reach only task t's copies and BNs (and its head).
    model.train()
    for t in range(model.num_tasks):
        model.zero_grad(set_to_none=True)
        model.forward_task(x, t, HARD, policy[t]).sum().backward()
        for name, p in model.named_parameters():
            own_branch = f".copies.{t}." in name or name.startswith(f"task{t + 1}_fc1")
            assert (p.grad is not None) == own_branch, name


def test_forward_modes_on_one_node():
    conv = nn.Conv2d(4, 8, 3, stride=2, padding=1)
    node = ConvNode(conv, num_tasks=2, index=0, depth=1)
    perturb(node.copies, 5)
    x = torch.randn(2, 4, 9, 7)
    from models.automtl import Route
    outs = [node.branch(o, 1)(x) for o in (SHARED, SPECIFIC, SKIP)]
    assert torch.equal(node(x, Route(PRETRAIN, 1)), torch.stack(outs).mean(0))
    w = torch.tensor([[0.2, 0.5, 0.3]])
    assert torch.equal(node(x, Route(SOFT, 1, weights=w)), outs[0] * w[0, 0] + outs[1] * w[0, 1] + outs[2] * w[0, 2])
    for option in (SHARED, SPECIFIC, SKIP):
        assert torch.equal(node(x, Route(HARD, 1, choices=[option])), outs[option])
        assert torch.equal(node(x, Route(SOFT, 1, weights=one_hot(torch.tensor([option])))), outs[option])
    bn = TaskBatchNorm(nn.BatchNorm2d(8), 2).eval()
    perturb(bn.copies, 6)
    y = outs[0]
    assert torch.equal(bn(y, Route(PRETRAIN, 0)), torch.stack([bn.shared(y), bn.copies["0"](y)]).mean(0))
    assert torch.equal(bn(y, Route(SOFT, 0)), bn.copies["0"](y))


def test_hard_mode_runs_only_the_chosen_branches():
    _, model = tiny_model()
    policy = random_policy(model)
    ran = []
    handles = []
    for node in model.conv_nodes():
        for option, modules in ((SHARED, {"s": node.shared}), (SPECIFIC, node.copies), (SKIP, node.skips)):
            for key, module in modules.items():
                handles.append(module.register_forward_hook(
                    lambda *_, i=node.index, o=option, k=key: ran.append((i, o, k))))
    x = image()
    for t in range(model.num_tasks):
        ran.clear()
        model.forward_task(x, t, HARD, policy[t])
        expected = {(l, int(o), "s" if o == SHARED else str(t)) for l, o in enumerate(policy[t].tolist())}
        assert set(ran) == expected and len(ran) == model.num_convs
    ran.clear()
    model.forward_task(x, 0, SOFT, torch.full((model.num_convs, 3), 1 / 3))
    assert len(ran) == 3 * model.num_convs  # the soft mode computes every branch
    for h in handles:
        h.remove()


# ------------------------------------------------------------------ skips
@pytest.mark.parametrize("conv, projection", [
    (nn.Conv2d(4, 8, 3, padding=1), True),                             # channels change
    (nn.Conv2d(4, 4, 3, stride=2, padding=1), True),                   # stride
    (nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2, groups=4), True),  # depthwise, stride 2 -> dense 1x1
    (nn.Conv2d(4, 4, 3, padding=2, dilation=2), False),                # same shape: identity
    (nn.Conv2d(4, 4, 3, padding=1, groups=4), False),
    (nn.Conv2d(3, 8, 7, stride=2, padding=3), True),                   # a ResNet stem
])
def test_skip_shapes(conv, projection):
    skip = make_skip(conv)
    if projection:
        assert isinstance(skip, nn.Sequential) and isinstance(skip[1], nn.BatchNorm2d)
        one = skip[0]
        assert (one.kernel_size, one.stride, one.bias, one.groups) == ((1, 1), conv.stride, None, 1)
        assert (one.in_channels, one.out_channels) == (conv.in_channels, conv.out_channels)
    else:
        assert isinstance(skip, nn.Identity)
    for h, w in ((9, 7), (16, 16), (5, 12)):
        x = torch.randn(1, conv.in_channels, h, w)
        assert skip(x).shape == conv(x).shape


# ------------------------------------------------------------------ unconvertible backbones
class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

    def forward(self, x):
        return F.conv2d(x, self.weight, padding=1)


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0:  # a branch on tensor values
            return self.conv(x)
        return x


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(self.conv(x))


class ValidPadding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3)

    def forward(self, x):
        return self.conv(x)


class GroupNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.GroupNorm(2, 4)

    def forward(self, x):
        return self.norm(self.conv(x))


@pytest.mark.parametrize("module, words", [
    (FunctionalConv(), ["'weight'", "F.conv2d(x, self.weight"]),
    (DataDependent(), ["control flow", "if x.mean() > 0"]),
    (CalledTwice(), ["'conv'", "called 2 times"]),
    (ValidPadding(), ["'conv'", "padding"]),
    (GroupNormNet(), ["'norm'", "GroupNorm"]),
])
def test_unconvertible_backbones_raise_clear_errors(module, words):
    with pytest.raises(AutoMTLConversionError) as info:
        AutoMTLNet(module, TASKS, head_channels=4, out_channels=4)
    for word in words:
        assert word in str(info.value)


def test_linear_stays_shared_and_caller_backbone_is_untouched():
    class WithLinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.mix = nn.Linear(4, 4)
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.mix(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2))

    backbone = WithLinear()
    model = AutoMTLNet(backbone, TASKS, head_channels=4, out_channels=4)
    assert isinstance(backbone.conv, nn.Conv2d) and backbone.relu.inplace  # the caller's module is not converted
    groups = model.parameter_groups()
    assert [p.shape for p in groups["other_backbone"]] == [torch.Size([4, 4]), torch.Size([4])]
    assert len(model.shared_parameters(choices(model, SPECIFIC))) == 2  # the Linear is every task's


# ------------------------------------------------------------------ ResNet-34 figures
def test_deeplab_resnet34_figures():
    with torch.device("meta"):
        model = AutoMTLNet(build_backbone("ResNet34"), TASKS, head_channels=4)
    assert model.num_convs == 36 and model.max_depth == 33
    shortcuts = [d for n, d in zip(model.conv_names, model.conv_depths) if n.startswith("ds.")]
    assert shortcuts == [8, 16, 28]
    assert sorted(model.conv_depths) == sorted(list(range(1, 34)) + [8, 16, 28])
    weight_sum = sum((33 - d) / 33 for d in model.conv_depths)
    assert round(weight_sum, 3) == 17.424 and math.isclose(float(depth_weights(model.conv_depths).sum()), weight_sum,
                                                          rel_tol=1e-6)
    count = paper_parameter_count(model, choices(model, SHARED))
    assert (count.single_conv, count.single_conv_bn) == (21_267_648, 21_284_672)
    assert count.relative == -0.5 and count.absolute == 21_284_672
    assert paper_parameter_count(model, choices(model, SPECIFIC)).relative == 0.0
    assert paper_parameter_count(model, choices(model, SKIP)).relative == -1.0  # skips count 0 (paper)
    # One task shares everything, the other owns the first conv (9,408 weights) and skips the rest.
    mixed = [[SHARED] * 36, [SPECIFIC] + [SKIP] * 35]
    count = paper_parameter_count(model, mixed)
    assert count.mtl_conv == 21_267_648 + 3 * 64 * 7 * 7
    assert math.isclose(count.absolute, 2 * 21_284_672 * count.mtl_conv / (2 * 21_267_648))
    exact = compact_parameter_count(model, mixed)
    assert exact["shared_conv"] == 21_267_648 and exact["task_conv"] == 9408
    projections = [n for n in model.conv_nodes()[1:] if isinstance(n.skips["1"], nn.Sequential)]
    assert exact["skip"] == sum(sum(p.numel() for p in n.skips["1"].parameters()) for n in projections)
    assert exact["task_bn"] == 2 * 17_024


@pytest.mark.parametrize("scale", [PAPER_SCALE, CODE_SCALE])
def test_regulariser_closed_form_on_equal_logits(scale):
    with torch.device("meta"):
        model = AutoMTLNet(build_backbone("ResNet34"), TASKS, head_channels=4)
    weights = depth_weights(model.conv_depths)
    logits = torch.zeros(model.num_convs, 3)
    for tau in (5.0, 1.0):
        reg = policy_regulariser(logits, weights, tau, scale=scale, noise=False)
        assert math.isclose(float(reg), 2 * math.log(2) * 17.424242, rel_tol=1e-5)
    assert abs(float(reg) - 24.155) < 5e-4  # 2 ln 2 * 17.4242 = 24.155 ("24.15" to two digits, truncated)


def test_regulariser_pushes_towards_sharing_most_near_the_input():
    weights = depth_weights([1, 2, 3, 4])
    logits = torch.zeros(4, 3, requires_grad=True)
    policy_regulariser(logits, weights, tau=5.0, noise=False).backward()
    shared_grad = logits.grad[:, SHARED]
    assert (shared_grad[:3] < 0).all() and shared_grad[3] == 0  # descent raises the shared logit
    assert (shared_grad[:-1] < shared_grad[1:]).all()
    # The noisy form: a Gumbel sample, reproducible with a generator.
    a = policy_regulariser(logits, weights, 5.0, noise=True, generator=torch.Generator().manual_seed(4))
    b = policy_regulariser(logits, weights, 5.0, noise=True, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


# ------------------------------------------------------------------ policy functions
def test_gumbel_softmax_weights_match_torch():
    logits = torch.randn(6, 3)
    torch.manual_seed(7)
    expected = F.gumbel_softmax(logits, tau=2.5, hard=False)
    torch.manual_seed(7)
    assert torch.equal(gumbel_softmax_weights(logits, 2.5), expected)
    first = gumbel_softmax_weights(logits, 2.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, gumbel_softmax_weights(logits, 2.5, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(first.sum(-1), torch.ones(6))


def test_temperature_schedule():
    # The authors' loop: policy_count += 1 after each policy step; after every iteration, when the count
    # exceeds 100, tau *= 0.965 and the count restarts. Iteration i thus trains with
    # temperature(policy_steps_before(i)).
    tau, count = 5.0, 0
    for i in range(20_000):
        assert temperature(policy_steps_before(i, 100, 400)) == tau, i
        if is_policy_step(i, 100, 400):
            count += 1
        if count > 100 and tau > 1e-6:
            tau, count = tau * 0.965, 0
    assert policy_steps_before(20_000, 100, 400) == 4000
    assert temperature(4000) == tau and math.isclose(tau, 5 * 0.965 ** 39, rel_tol=1e-12)  # 39 decays
    assert round(temperature(4000), 3) == 1.246
    assert round(temperature(policy_steps_before(15_200, 50, 50)), 3) == 0.346  # NYUv2, (50, 50) alternation
    assert temperature(100) == 5.0 and temperature(101) == 5 * 0.965
    low = temperature(10_000_000)
    assert low <= 1e-6 < low / 0.965  # decays stop at the first value <= 1e-6


def test_hard_choices_and_one_hot():
    logits = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.3, 0.2], [0.0, -1.0, 2.0]])
    assert hard_choices(logits).tolist() == [SHARED, SPECIFIC, SKIP]  # ties -> shared
    rows = one_hot(hard_choices(logits))
    assert rows.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert choices_from_one_hot(rows).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        choices_from_one_hot(torch.tensor([[0.5, 0.5, 0.0]]))


def test_sampling_recipe():
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(12, 3, generator=g) for _ in range(3)]
    first = sample_choices(logits, seed=10)
    assert all(torch.equal(a, b) for a, b in zip(first, sample_choices(logits, seed=10)))
    assert any(not torch.equal(a, b) for a, b in zip(first, sample_choices(logits, seed=20)))
    # The authors' code, verbatim in substance.
    np.random.seed(10)
    for task_logits, sampled in zip(logits, first):
        for row, choice in zip(task_logits.numpy(), sampled.tolist()):
            d = scipy.special.softmax(row, axis=-1)
            d /= sum(d)
            assert np.random.choice((0, 1, 2), p=d) == choice
    # Forced convs are shared and draw nothing: the rest equals sampling the remaining rows.
    forced = sample_choices(logits, seed=10, force_shared=4)
    tails = sample_choices([l[4:] for l in logits], seed=10)
    for f, tail in zip(forced, tails):
        assert f[:4].tolist() == [SHARED] * 4 and torch.equal(f[4:], tail)
    confident = sample_choices([torch.tensor([[-20.0, -20.0, 20.0]] * 5)], seed=1)
    assert confident[0].tolist() == [SKIP] * 5


# ------------------------------------------------------------------ model interface, counts, export
def test_checkpoint_keys_are_stable():
    _, a = tiny_model(seed=0)
    _, b = tiny_model(seed=1)
    assert list(a.state_dict()) == list(b.state_dict())
    keys = set(a.state_dict())
    for key in ("backbone.conv1.shared.weight", "backbone.conv1.copies.1.weight", "backbone.conv1.skips.0.0.weight",
                "backbone.conv1.skips.0.1.running_mean",
                "backbone.bn1.shared.weight", "backbone.bn1.copies.1.running_var", "backbone.ds.1.0.shared.weight",
                "task1_logits", "task2_fc1_c3.conv3.bias"):
        assert key in keys, key
    assert not any(k.startswith("backbone.blocks.0.0.conv1.skips.0.") for k in keys)  # 64 -> 64, stride 1: identity
    b.load_state_dict(a.state_dict())
    assert a.task1_logits.shape == (a.num_convs, 3) and not a.task1_logits.any()


def test_parameter_groups_partition_the_parameters():
    _, model = tiny_model()
    groups = model.parameter_groups()
    flat = [id(p) for ps in groups.values() for p in ps]
    assert len(flat) == len(set(flat)) == len(list(model.parameters()))
    assert groups["policy"] == model.policy_logits() == model.arch_parameters()
    assert {id(p) for p in model.network_parameters()} == set(flat) - {id(p) for p in groups["policy"]}
    policy = random_policy(model)
    shared = {id(p) for p in model.shared_parameters(policy)}
    both = [n for n in model.conv_nodes() if all(p[n.index] == SHARED for p in policy)]
    assert shared == {id(p) for n in both for p in n.shared.parameters()}
    used = {id(p) for p in model.task_parameters(0, HARD, policy[0])}
    expected = {id(p) for n in model.conv_nodes() for p in n.branch(int(policy[0][n.index]), 0).parameters()}
    expected |= {id(p) for bn in model.bn_nodes() for p in bn.copies["0"].parameters()}
    assert used == expected
    pretrain = {id(p) for p in model.task_parameters(1, PRETRAIN)}
    assert {id(p) for p in groups["shared_bn"] + groups["shared_conv"]} <= pretrain
    assert not pretrain & {id(p) for n in model.conv_nodes() for p in n.copies["0"].parameters()}


def test_compact_export_matches_hard_mode_and_counts():
    _, model = tiny_model()
    policy = random_policy(model)
    policy[0][0], policy[1][0] = SPECIFIC, SKIP  # make sure the stem's shared conv goes
    model.eval()
    compact = export_compact(model, policy).eval()
    x = image()
    with torch.no_grad():
        for t, out in enumerate(compact(x)):
            assert torch.equal(out, model.forward_task(x, t, HARD, policy[t]))
    counts = compact_parameter_count(model, policy)
    assert counts["total"] == sum(p.numel() for p in compact.parameters())
    assert counts["heads"] == sum(p.numel() for p in model.head_parameters())
    assert set(compact.state_dict()) - {"choices"} < set(model.state_dict())
    assert compact.backbone.conv1.shared is None and set(compact.backbone.conv1.copies) == {"0"}
    assert set(compact.backbone.conv1.skips) == {"1"} and compact.backbone.bn1.shared is None
    assert model.backbone.conv1.shared is not None  # the supermodel keeps everything
    with pytest.raises(KeyError):
        compact.backbone(x, model.route(0, HARD, choices(model, SKIP)[0]))


def test_forward_checks_its_policy():
    _, model = tiny_model()
    x = image()
    with pytest.raises(ValueError):
        model(x, SOFT)
    with pytest.raises(ValueError):
        model(x, HARD, [[0] * model.num_convs])  # one task missing
    with pytest.raises(ValueError):
        model(x, HARD, [one_hot(c) for c in choices(model, SHARED)])
    with pytest.raises(ValueError):
        model(x, "mtl")
    outs = model(x, PRETRAIN)
    assert [o.shape[1] for o in outs] == TASKS
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is None for p in model.policy_logits())  # the pre-train mode never reads the logits
    model.zero_grad(set_to_none=True)
    # Soft weights drawn from the logits carry the gradient back to them.
    weights = [gumbel_softmax_weights(p, 5.0, generator=torch.Generator().manual_seed(t))
               for t, p in enumerate(model.policy_logits())]
    sum(o.sum() for o in model(x, SOFT, weights)).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.policy_logits())


def test_build_automtl_by_name():
    with torch.device("meta"):
        model = build_automtl("WRN-10-2", TASKS, head_channels=4)
    assert model.backbone_name == "WRN-10-2" and model.num_convs == 10
