"""Model tests: state_dict layout (docs/original.md Appendix A), init order, sizes, gate semantics, skipping."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import BACKBONES, build_model, count_parameters
from models.backbones import DeeplabResNetBackbone
from models.blocks import BasicBlock, Bottleneck
from models.heads import ClassificationModule


# ------------------------------------------- expected layout (from the rules of docs/original.md Appendix A)
def _bn(prefix, width):
    return [(f"{prefix}.{name}", [width]) for name in ("weight", "bias", "running_mean", "running_var")] + \
           [(f"{prefix}.num_batches_tracked", [])]


def appendix_a_layout(layers, tasks_num_class, hidden=1024):
    """Ordered (key, shape) list of the original MTL2 state_dict for a BasicBlock backbone."""
    table = [(f"task{t}_logits", [sum(layers), 2]) for t in range(1, len(tasks_num_class) + 1)]
    table.append(("backbone.conv1.weight", [64, 3, 7, 7]))
    table += _bn("backbone.bn1", 64)
    widths = [64, 128, 256, 512]
    cin = 64
    for s, cout in enumerate(widths):
        for b in range(layers[s]):
            prefix = f"backbone.blocks.{s}.{b}"
            table.append((f"{prefix}.conv1.weight", [cout, cin if b == 0 else cout, 3, 3]))
            table += _bn(f"{prefix}.bn1", cout)
            table.append((f"{prefix}.conv2.weight", [cout, cout, 3, 3]))
            table += _bn(f"{prefix}.bn2", cout)
        cin = cout
    for s in (1, 2, 3):  # no ds.0 for BasicBlock backbones
        table.append((f"backbone.ds.{s}.0.weight", [widths[s], widths[s - 1], 1, 1]))
        table += _bn(f"backbone.ds.{s}.1", widths[s])
    for t, n in enumerate(tasks_num_class, start=1):
        for c in range(4):
            prefix = f"task{t}_fc1_c{c}"
            table += [(f"{prefix}.conv1.weight", [hidden, 512, 3, 3]), (f"{prefix}.conv1.bias", [hidden]),
                      (f"{prefix}.conv2.weight", [hidden, hidden, 1, 1]), (f"{prefix}.conv2.bias", [hidden]),
                      (f"{prefix}.conv3.weight", [n, hidden, 1, 1]), (f"{prefix}.conv3.bias", [n])]
    return table


def _layout(model):
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


@pytest.fixture(scope="module")
def nyu3_r34():
    return build_model("ResNet34", [40, 3, 1])


CONFIGS = [("ResNet18", [2, 2, 2, 2], [40, 3], 170), ("ResNet34", [3, 4, 6, 3], [19, 1], 266)]


def test_state_dict_matches_appendix_a_nyu_3task(nyu3_r34):
    expected = appendix_a_layout([3, 4, 6, 3], [40, 3, 1])
    assert len(expected) == 291
    assert _layout(nyu3_r34) == expected  # same keys, shapes and order
    sd = nyu3_r34.state_dict()
    assert sd["backbone.bn1.num_batches_tracked"].dtype == torch.int64
    assert "backbone.ds.0.0.weight" not in sd


@pytest.mark.parametrize("backbone,layers,tasks,num_keys", CONFIGS)
def test_state_dict_matches_appendix_a_other_configs(backbone, layers, tasks, num_keys):
    model = build_model(backbone, tasks)
    expected = appendix_a_layout(layers, tasks)
    assert len(expected) == num_keys
    assert _layout(model) == expected


def test_original_layout_state_dict_loads_strictly(nyu3_r34):
    original = {}
    for key, shape in appendix_a_layout([3, 4, 6, 3], [40, 3, 1]):
        original[key] = torch.tensor(7) if key.endswith("num_batches_tracked") else torch.randn(shape)
    nyu3_r34.load_state_dict(original, strict=True)
    loaded = nyu3_r34.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in original.items())


def test_parameter_counts(nyu3_r34):
    assert count_parameters(nyu3_r34.backbone, include_buffers=False) == 21_284_672
    assert count_parameters(nyu3_r34, include_buffers=False) == 90_695_760
    assert count_parameters(nyu3_r34) == 90_695_760 + 17_060  # + BN buffers, as the original count_params
    for t, n in enumerate([40, 3, 1], start=1):
        branch = getattr(nyu3_r34, f"task{t}_fc1_c2")
        assert count_parameters(branch) == 5_769_216 + 1025 * n
    r18 = DeeplabResNetBackbone(*BACKBONES["ResNet18"])
    assert count_parameters(r18, include_buffers=False) == 11_176_512


def test_parameter_groups(nyu3_r34):
    names = [n for n, _ in nyu3_r34.named_parameters()]
    ids = {id(p): n for n, p in nyu3_r34.named_parameters()}
    assert [ids[id(p)] for p in nyu3_r34.arch_parameters()] == ["task1_logits", "task2_logits", "task3_logits"]
    assert [id(p) for p in nyu3_r34.policy_logits()] == [id(p) for p in nyu3_r34.arch_parameters()]
    heads = [ids[id(p)] for p in nyu3_r34.task_specific_parameters()]
    assert heads == [n for n in names if "_fc1_c" in n] and heads[:2] == ["task1_fc1_c0.conv1.weight",
                                                                         "task1_fc1_c0.conv1.bias"]
    backbone = [ids[id(p)] for p in nyu3_r34.backbone_parameters()]
    assert backbone == [n for n in names if n.startswith("backbone.")]
    assert len(nyu3_r34.network_parameters()) == len(names) - 3 == len(heads) + len(backbone)
    assert (nyu3_r34.num_tasks, nyu3_r34.num_blocks, nyu3_r34.num_policy_rows, nyu3_r34.skip_layer) == (3, 16, 16, 0)


def test_bottleneck_backbone_layout_and_shape():
    bb = DeeplabResNetBackbone(Bottleneck, [1, 1, 1, 1])
    assert all(ds is not None for ds in bb.ds)  # ds.0 is 64 -> 256 for bottlenecks
    assert bb.ds[0][0].weight.shape == (256, 64, 1, 1)
    first = bb.blocks[1][0]
    assert first.conv1.kernel_size == (1, 1) and first.conv1.stride == (2, 2)  # caffe style
    assert bb.blocks[3][0].conv2.dilation == (4, 4) and bb.blocks[3][0].conv2.padding == (4, 4)
    assert all(p.requires_grad for p in bb.parameters())
    assert BACKBONES["ResNet101"] == (Bottleneck, [3, 4, 23, 3])
    with torch.no_grad():
        assert bb.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 2048, 5, 5)


# ---------------------------------------------------------------- init order (bit-exact with the original)
def original_init_reference(layers, tasks_num_class, hidden, seed):
    """Consume the torch RNG as the original MTL2 construction does and return its conv/logit values."""
    torch.manual_seed(seed)
    values = {}
    stem = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    downsamples, block_convs = {}, {}
    inplanes = 64
    for s, (planes, n, stride, dilation) in enumerate(zip([64, 128, 256, 512], layers, [1, 2, 1, 1], [1, 1, 2, 4])):
        if stride != 1 or inplanes != planes or dilation in (2, 4):
            downsamples[s] = nn.Conv2d(inplanes, planes, 1, stride, bias=False)  # made before the blocks
        for b in range(n):
            cin = inplanes if b == 0 else planes
            block_convs[(s, b)] = (nn.Conv2d(cin, planes, 3, stride if b == 0 else 1, dilation, dilation, bias=False),
                                   nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False))
        inplanes = planes
    # modules() order: conv1, then all blocks, then all downsamples
    stem.weight.data.normal_(0, 0.01)
    values["backbone.conv1.weight"] = stem.weight
    for (s, b), (c1, c2) in block_convs.items():
        c1.weight.data.normal_(0, 0.01)
        c2.weight.data.normal_(0, 0.01)
        values[f"backbone.blocks.{s}.{b}.conv1.weight"] = c1.weight
        values[f"backbone.blocks.{s}.{b}.conv2.weight"] = c2.weight
    for s, conv in downsamples.items():
        conv.weight.data.normal_(0, 0.01)
        values[f"backbone.ds.{s}.0.weight"] = conv.weight
    for t, n in enumerate(tasks_num_class, start=1):
        for c, rate in enumerate([6, 12, 18, 24]):
            convs = [nn.Conv2d(512, hidden, 3, padding=rate, dilation=rate), nn.Conv2d(hidden, hidden, 1),
                     nn.Conv2d(hidden, n, 1)]
            for i, conv in enumerate(convs, start=1):
                values[f"task{t}_fc1_c{c}.conv{i}.weight"] = conv.weight
                values[f"task{t}_fc1_c{c}.conv{i}.bias"] = conv.bias
    for t in range(1, len(tasks_num_class) + 1):
        values[f"task{t}_logits"] = 1e-3 * torch.randn(sum(layers), 2)
    return values


def test_init_is_bit_exact_with_original_rng_order():
    reference = original_init_reference([2, 2, 2, 2], [3, 2], hidden=8, seed=3)
    torch.manual_seed(3)
    model = build_model("ResNet18", [3, 2], init_method="random", head_channels=8)
    sd = model.state_dict()
    for key, value in reference.items():
        assert torch.equal(sd[key], value.detach()), key
    assert torch.equal(sd["backbone.blocks.2.1.bn2.weight"], torch.ones(256))
    assert torch.equal(sd["backbone.ds.3.1.bias"], torch.zeros(512))


# ---------------------------------------------------------------- sizes and heads
def test_output_stride_8_spatial_sizes():
    torch.manual_seed(0)
    model = build_model("ResNet10", [5, 1], head_channels=8).eval()
    with torch.no_grad():
        assert [o.shape for o in model(torch.randn(1, 3, 321, 321))] == [(1, 5, 41, 41), (1, 1, 41, 41)]
        assert model(torch.randn(1, 3, 480, 640))[0].shape == (1, 5, 61, 81)


def test_task_output_is_sum_of_four_branches():
    torch.manual_seed(0)
    model = build_model("ResNet10", [4, 2], head_channels=8).eval()
    img = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        outputs = model(img)
        feature = model.backbone(img)
        expected = sum(getattr(model, f"task2_fc1_c{c}")(feature) for c in range(4))
    assert len(outputs) == 2 and outputs[1].shape == (2, 2, 5, 5)
    assert torch.allclose(outputs[1], expected, atol=1e-6)
    branch = model.task1_fc1_c3
    assert branch.conv1.dilation == (24, 24) and branch.conv1.padding == (24, 24) and branch.conv1.bias is not None


def test_classification_module_structure():
    head = ClassificationModule(16, 3, rate=12, hidden_channels=8).eval()
    x = torch.randn(1, 16, 7, 7)
    with torch.no_grad():
        expected = head.conv3(F.relu(head.conv2(F.relu(head.conv1(x)))))
        assert torch.allclose(head(x), expected)


# ---------------------------------------------------------------- gates
@pytest.fixture(scope="module")
def net():
    """ResNet18 3-task net with non-trivial weights and BN statistics, in eval mode."""
    torch.manual_seed(0)
    model = build_model("ResNet18", [3, 2, 1], head_channels=8)
    with torch.no_grad():
        for m in model.backbone.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def reference_features(bb, x, execute):
    """Independent loop of docs/original.md §3.3 with hard decisions (1 = execute, 0 = skip)."""
    x = bb.maxpool(F.relu(bb.bn1(bb.conv1(x))))
    t = 0
    for s, segment in enumerate(bb.blocks):
        for b, block in enumerate(segment):
            residual = bb.ds[s](x) if b == 0 and bb.ds[s] is not None else x
            x = F.relu(residual + block(x)) if execute[t] else residual
            t += 1
    return x


def hard_gates(execute):
    execute = torch.tensor(execute, dtype=torch.float32)
    return torch.stack([execute, 1 - execute], dim=1)


def test_block_returns_body_without_residual_or_relu():
    torch.manual_seed(0)
    block = BasicBlock(8, 8).eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        out = block(x)
        assert torch.allclose(out, block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x))))))
    assert (out < 0).any()  # no final ReLU


def test_hard_gates_follow_residual_and_downsample_paths(net):
    bb = net.backbone
    img = torch.randn(2, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(bb(img, hard_gates([1] * 8)), bb(img))  # [1,0] = plain residual block
        for execute in ([1, 0, 1, 1, 0, 1, 1, 0], [0, 1, 0, 0, 1, 1, 0, 1], [0] * 8):
            assert torch.allclose(bb(img, hard_gates(execute)), reference_features(bb, img, execute), atol=1e-6)
        # skipping everything still applies the three downsample projections (no ReLU)
        stem = bb.maxpool(F.relu(bb.bn1(bb.conv1(img))))
        assert torch.allclose(bb(img, hard_gates([0] * 8)), bb.ds[3](bb.ds[2](bb.ds[1](stem))), atol=1e-6)


def test_soft_gates_interpolate_linearly(net):
    bb = net.backbone
    img = torch.randn(2, 3, 33, 33)
    executed, skipped = [1] * 8, [1] * 7 + [0]
    soft = hard_gates(executed)
    soft[7] = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        expected = 0.3 * bb(img, hard_gates(executed)) + 0.7 * bb(img, hard_gates(skipped))
        assert torch.allclose(bb(img, soft), expected, rtol=1e-5, atol=1e-5)
        # the [L] form is the execute weight: g -> [g, 1 - g]
        weights = torch.rand(8)
        assert torch.allclose(bb(img, weights), bb(img, torch.stack([weights, 1 - weights], 1)), atol=1e-6)


def test_per_instance_gates_match_per_sample_runs(net):
    bb = net.backbone
    img = torch.randn(2, 3, 33, 33)
    per_sample = torch.stack([hard_gates([1, 0, 1, 1, 0, 1, 1, 0]), torch.rand(8, 2)])
    with torch.no_grad():
        batched = bb(img, per_sample)
        for i in range(2):
            alone = bb(img[i:i + 1], per_sample[i])
            # batch-size dependent float32 conv kernels: compare relative to the output scale
            assert (batched[i:i + 1] - alone).abs().max() <= 1e-5 * alone.abs().max()


def test_invalid_gates_raise(net):
    bb = net.backbone
    img = torch.randn(2, 3, 17, 17)
    for bad in (torch.ones(9, 2), torch.ones(8, 3), torch.ones(3, 8, 2), torch.ones(7), torch.ones(1, 2, 8, 2)):
        with pytest.raises(ValueError, match="gates have shape"):
            bb(img, bad)
    with pytest.raises(ValueError, match="hard task-level"):
        bb(img, torch.full((8, 2), 0.5), skip_unselected=True)
    with pytest.raises(ValueError, match="hard task-level"):
        bb(img, torch.stack([hard_gates([1] * 8)] * 2), skip_unselected=True)
    with pytest.raises(ValueError, match="hard task-level"):
        bb(img, torch.ones(8, 2), skip_unselected=True)  # [1, 1] is not a decision
    with pytest.raises(ValueError, match="2 gate tensors for 3 tasks"):
        net(img, [hard_gates([1] * 8)] * 2)


TASK_GATES = [[1] * 8, [1] * 7 + [0], [0] + [1] * 7]


def _count_block_calls(bb):
    counts = [0] * bb.num_blocks
    handles = []
    for t, (s, b) in enumerate(bb.block_positions):
        def hook(module, inputs, output, t=t):
            counts[t] += 1
        handles.append(bb.blocks[s][b].register_forward_hook(hook))
    return counts, handles


def test_skip_unselected_is_exact_in_eval_and_shares_prefixes(net):
    img = torch.randn(2, 3, 33, 33)
    gates = [hard_gates(g) for g in TASK_GATES]
    with torch.no_grad():
        full = net(img, gates)
        counts, handles = _count_block_calls(net.backbone)
        skipped = net(img, gates, skip_unselected=True)
        for h in handles:
            h.remove()
        single = net.backbone(img, gates[2], skip_unselected=True)
    assert all(torch.equal(a, b) for a, b in zip(full, skipped))
    assert torch.equal(single, net.backbone(img, gates[2]))
    # block 0: tasks 1 and 2 share it, task 3 skips it; later blocks: two distinct prefixes
    assert counts == [1, 2, 2, 2, 2, 2, 2, 2]


def test_skip_unselected_in_train_mode_leaves_skipped_bn_untouched(net):
    bb = net.backbone
    execute = [1, 0, 0, 1, 1, 0, 1, 1]  # block 2 = segment 1 block 0 (has a downsample)
    state = {k: v.clone() for k, v in bb.state_dict().items()}
    try:
        bb.train()
        bb(torch.randn(2, 3, 33, 33), hard_gates(execute), skip_unselected=True)
        after = bb.state_dict()
        for t, (s, b) in enumerate(bb.block_positions):
            for bn in ("bn1", "bn2"):
                for stat in ("running_mean", "num_batches_tracked"):
                    key = f"blocks.{s}.{b}.{bn}.{stat}"
                    assert torch.equal(after[key], state[key]) != bool(execute[t]), key
        assert not torch.equal(after["ds.1.1.running_mean"], state["ds.1.1.running_mean"])  # ds still applied
        # the original compute-everything path updates the skipped blocks' statistics
        bb(torch.randn(2, 3, 33, 33), hard_gates(execute))
        assert not torch.equal(bb.state_dict()["blocks.0.1.bn1.running_mean"], state["blocks.0.1.bn1.running_mean"])
    finally:
        bb.load_state_dict(state)
        bb.eval()


def test_skip_unselected_keeps_gate_gradients_of_executed_blocks(net):
    gates = hard_gates([1, 0, 1, 1, 1, 1, 1, 1]).requires_grad_()
    net.backbone(torch.randn(1, 3, 17, 17), gates, skip_unselected=True).sum().backward()
    assert gates.grad[0].abs().sum() > 0 and gates.grad[1, 1] != 0


# ---------------------------------------------------------------- construction options
def test_logit_init_options_and_errors():
    model = build_model("ResNet10", [2], init_method="all_chosen", init_neg_logits=-10, skip_layer=1, head_channels=4)
    assert model.num_policy_rows == 3 and model.task1_logits.shape == (3, 2)
    assert torch.equal(model.task1_logits.data, torch.tensor([[0.0, -10.0]] * 3))
    assert torch.equal(build_model("ResNet10", [2], head_channels=4).task1_logits.data, torch.full((4, 2), 0.5))
    with pytest.raises(ValueError, match="init_neg_logits"):
        build_model("ResNet10", [2], init_method="all_chosen", head_channels=4)
    with pytest.raises(ValueError, match="unknown init_method"):
        build_model("ResNet10", [2], init_method="uniform", head_channels=4)
    with pytest.raises(ValueError, match="ResNet10.*ResNet18.*ResNet34.*ResNet101"):
        build_model("ResNet50", [2])
    with pytest.raises(ValueError, match="skip_layer"):
        build_model("ResNet10", [2], skip_layer=4, head_channels=4)
    with pytest.raises(ValueError, match="tasks_num_class"):
        build_model("ResNet10", [], head_channels=4)


def test_reset_logits_in_place():
    model = build_model("ResNet10", [2, 1], init_method="random", head_channels=4)
    before = model.task2_logits
    with torch.no_grad():
        before.fill_(3.0)
    model.reset_logits()
    assert model.task2_logits is before and before.abs().max() < 0.01
