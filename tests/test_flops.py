"""Conv FLOPs/MACs and parameter counts (docs/original.md §11), per task, for the execution tree and
compute-everything."""
import pytest
import torch
from torch import nn

from models import build_model, count_parameters
from deploy.flops import (Branch, conv_cost, count_conv_flops, execution_tree, format_execution_tree,
                         format_policy_cost, padded_gates, policy_cost, policy_decisions)

H, W = 33, 41  # -> stem 17x21, maxpool 9x11, segments 1-3 at 5x6
HEAD_CH = 8
CLASSES = [5, 3, 1]


def out_size(size, kernel, stride, padding, dilation=1, ceil=False):
    """PyTorch's conv/pool output size formula."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return (-(-span // stride) if ceil else span // stride) + 1


def conv_flops(cin, cout, k, hw, bias=False):
    """(FLOPs, MACs) of one conv on one image by the docs/original.md §11 formula."""
    positions = hw[0] * hw[1]
    macs = k * k * cin * cout * positions
    return 2 * macs + (cout * positions if bias else 0), macs


def add(*costs):
    return sum(c[0] for c in costs), sum(c[1] for c in costs)


# Hand-computed sizes of a 33x41 input.
STEM_HW = (out_size(H, 7, 2, 3), out_size(W, 7, 2, 3))                       # (17, 21)
SEG0_HW = tuple(out_size(s, 3, 2, 1, ceil=True) for s in STEM_HW)            # (9, 11)
SEG1_HW = tuple(out_size(s, 3, 2, 1) for s in SEG0_HW)                       # (5, 6)


def resnet_block_costs(layers):
    """Per flat block (FLOPs, MACs) and projection costs by block index, BasicBlock backbone."""
    widths, blocks, ds = [64, 128, 256, 512], [], {}
    cin = 64
    for s, n in enumerate(layers):
        hw = SEG0_HW if s == 0 else SEG1_HW
        for b in range(n):
            first_in = cin if b == 0 else widths[s]
            blocks.append(add(conv_flops(first_in, widths[s], 3, hw), conv_flops(widths[s], widths[s], 3, hw)))
        if s > 0:
            ds[len(blocks) - n] = conv_flops(cin, widths[s], 1, hw)
        cin = widths[s]
    return blocks, ds


def head_cost(num_class):
    branch = add(conv_flops(512, HEAD_CH, 3, SEG1_HW, True), conv_flops(HEAD_CH, HEAD_CH, 1, SEG1_HW, True),
                 conv_flops(HEAD_CH, num_class, 1, SEG1_HW, True))
    return branch[0] * 4, branch[1] * 4


STEM = conv_flops(3, 64, 7, STEM_HW)


@pytest.fixture(scope="module")
def r10():
    torch.manual_seed(0)
    return build_model("ResNet10", CLASSES, head_channels=HEAD_CH)


@pytest.fixture(scope="module")
def r18():
    torch.manual_seed(1)
    return build_model("ResNet18", CLASSES, head_channels=HEAD_CH)


def pol(bits):
    """[L, 2] int64 policy from a 0/1 execute list."""
    column = torch.tensor(bits, dtype=torch.int64)
    return torch.stack([column, 1 - column], dim=1)


def x_meta():
    return torch.empty(1, 3, H, W, device="meta")


# ---------------------------------------------------------------- counting primitives
def test_single_conv_by_hand():
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=True)
    result = count_conv_flops(conv, torch.randn(2, 3, 10, 12))
    # out 5x6 per image: MACs 9*3*8*30 = 6480, FLOPs 2*6480 + 8*30 = 13200 (per image, batch of 2)
    assert (result["flops"], result["macs"], result["conv_calls"]) == (13200, 6480, 1)
    grouped = nn.Conv2d(4, 8, 3, groups=2, bias=False)
    assert count_conv_flops(grouped, torch.randn(1, 4, 5, 5))["macs"] == 9 * 2 * 8 * 9
    assert conv_cost(grouped, (1, 8, 3, 3)).flops == 2 * 9 * 2 * 8 * 9


def test_conv_run_twice_counts_twice_and_meta_matches():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    real = count_conv_flops(model, torch.randn(3, 4, 6, 7))
    meta = count_conv_flops(model, torch.empty(3, 4, 6, 7, device="meta"))
    one = 2 * 9 * 4 * 4 * 42 + 4 * 42
    assert real["flops"] == meta["flops"] == 2 * one
    assert real["by_module"]["conv"]["calls"] == 2
    assert model.conv.weight.device.type == "cpu"


def test_stem_and_backbone_by_hand(r10):
    assert STEM_HW == (17, 21) and SEG1_HW == (5, 6)
    result = count_conv_flops(r10.backbone, torch.randn(1, 3, H, W))
    assert result["by_module"]["conv1"]["flops"] == 2 * 49 * 3 * 64 * 17 * 21 == STEM[0]
    blocks, ds = resnet_block_costs([1, 1, 1, 1])
    expected = add(STEM, *blocks, *ds.values())
    assert (result["flops"], result["macs"]) == expected
    assert count_conv_flops(r10.backbone, x_meta())["flops"] == expected[0]


def test_parameters_by_hand(r10):
    cost = policy_cost(r10, [pol([1, 1, 1, 1])] * 3, (H, W))
    stem_params = 64 * 3 * 49 + 2 * 64
    block0 = 2 * 9 * 64 * 64 + 4 * 64
    # values add BN running mean/var (2 x width) and num_batches_tracked (1) per BN
    assert count_parameters(r10.backbone.conv1) + count_parameters(r10.backbone.bn1) == stem_params + 2 * 64 + 1
    assert count_parameters(r10.backbone.blocks[0][0], include_buffers=False) == block0
    everything = cost["compute_everything"]
    assert everything["params"] == count_parameters(r10, include_buffers=False)
    assert everything["values"] == count_parameters(r10)
    assert everything["network_params"] == everything["params"] - 3 * 4 * 2  # logits [4, 2] per task
    assert cost["tree"]["params"] == everything["network_params"]  # every block used


# ---------------------------------------------------------------- policy costs
def test_compute_everything_is_k_backbones_plus_heads(r10):
    policies = [pol([1, 0, 1, 1]), pol([0, 1, 1, 0]), pol([1, 1, 0, 1])]
    cost = policy_cost(r10, policies, (H, W))
    backbone = count_conv_flops(r10.backbone, x_meta())["flops"]
    heads = sum(head_cost(n)[0] for n in CLASSES)
    assert cost["compute_everything"]["flops"] == 3 * backbone + heads
    counted = count_conv_flops(r10, torch.randn(1, 3, H, W), padded_gates(policies, 4))
    assert counted["flops"] == 3 * backbone + heads
    assert cost["single_pass"]["flops"] == backbone + heads == count_conv_flops(r10, x_meta())["flops"]


def test_identical_policies_tree_is_one_backbone_pass(r18):
    bits = [1, 0, 1, 1, 0, 1, 1, 0]
    cost = policy_cost(r18, [pol(bits)] * 3, (H, W))
    blocks, ds = resnet_block_costs([2, 2, 2, 2])
    backbone = add(STEM, *ds.values(), *(blocks[t] for t in range(8) if bits[t]))
    heads = [head_cost(n) for n in CLASSES]
    assert (cost["tree"]["flops"], cost["tree"]["macs"]) == add(backbone, *heads)
    for k, entry in enumerate(cost["per_task"]):
        assert (entry["flops"], entry["macs"]) == add(backbone, heads[k])
        assert entry["blocks"] == [0, 2, 3, 5, 6]
    tree = execution_tree([pol(bits)] * 3)
    assert tree == Branch((0, 1, 2), 0, 8, (0, 2, 3, 5, 6))
    r18.eval()
    counted = count_conv_flops(r18, torch.randn(1, 3, H, W), padded_gates([pol(bits)] * 3, 8), skip_unselected=True)
    assert counted["flops"] == cost["tree"]["flops"]


def test_disjoint_policies():
    policies = [pol([1, 0, 1, 0, 1, 0, 1, 0]), pol([0, 1, 0, 1, 0, 1, 0, 1])]
    model = build_model("ResNet18", [5, 3], head_channels=HEAD_CH)
    cost = policy_cost(model, policies, (H, W))
    blocks, ds = resnet_block_costs([2, 2, 2, 2])
    heads = [head_cost(5), head_cost(3)]
    task = [add(STEM, *ds.values(), *(blocks[t] for t in range(8) if policies[k][t, 0])) for k in range(2)]
    # split at block 0 (no projection there for BasicBlocks): only the stem is shared
    tree = (task[0][0] + task[1][0] - STEM[0] + heads[0][0] + heads[1][0],
            task[0][1] + task[1][1] - STEM[1] + heads[0][1] + heads[1][1])
    assert (cost["tree"]["flops"], cost["tree"]["macs"]) == tree
    assert [e["flops"] for e in cost["per_task"]] == [task[0][0] + heads[0][0], task[1][0] + heads[1][0]]
    assert cost["tree"]["blocks"] == list(range(8))
    root = execution_tree(policies)
    assert (root.start, root.stop, [c.tasks for c in root.children]) == (0, 0, [(0,), (1,)])
    model.eval()
    counted = count_conv_flops(model, x_meta(), padded_gates(policies, 8), skip_unselected=True)
    assert counted["flops"] == cost["tree"]["flops"]


def test_skipping_every_block_of_a_segment_keeps_the_projection(r18):
    bits = [1, 1, 0, 0, 1, 0, 1, 1]  # segment 1 (blocks 2, 3) skipped: ds.1 still runs
    cost = policy_cost(r18, [pol(bits)] * 3, (H, W))
    blocks, ds = resnet_block_costs([2, 2, 2, 2])
    backbone = add(STEM, ds[2], ds[4], ds[6], blocks[0], blocks[1], blocks[4], blocks[6], blocks[7])
    assert (cost["per_task"][0]["flops"], cost["per_task"][0]["macs"]) == add(backbone, head_cost(CLASSES[0]))
    counted = count_conv_flops(r18.backbone, x_meta(), padded_gates([pol(bits)], 8)[0], skip_unselected=True)
    assert counted["flops"] == backbone[0] and counted["by_module"]["ds.1.0"]["calls"] == 1
    assert "blocks.1.0.conv1" not in counted["by_module"]


def test_one_task():
    model = build_model("ResNet10", [4], head_channels=HEAD_CH)
    cost = policy_cost(model, [pol([0, 1, 1, 0])], (H, W), task_names=["seg"])
    blocks, ds = resnet_block_costs([1, 1, 1, 1])
    expected = add(STEM, *ds.values(), blocks[1], blocks[2], head_cost(4))
    assert (cost["tree"]["flops"], cost["tree"]["macs"]) == expected
    assert cost["per_task"][0]["flops"] == expected[0] and cost["per_task"][0]["task"] == "seg"
    full = add(STEM, *ds.values(), *blocks, head_cost(4))
    assert cost["compute_everything"]["flops"] == full[0]
    assert cost["ratio"]["tree_flops_over_everything"] == pytest.approx(expected[0] / full[0])


def test_skip_layer_policies_are_padded():
    model = build_model("ResNet18", [5, 3], head_channels=HEAD_CH, skip_layer=3)
    short = [pol([0, 1, 1, 0, 1]), pol([1, 1, 0, 0, 1])]  # P = 5 rows for the last 5 blocks
    padded = [pol([1, 1, 1, 0, 1, 1, 0, 1]), pol([1, 1, 1, 1, 1, 0, 0, 1])]
    assert policy_cost(model, short, (H, W)) == policy_cost(model, padded, (H, W))
    assert policy_decisions(short, 8) == policy_decisions(padded)


def test_tree_agrees_with_shared_prefix_forward_random_policies(r18):
    r18.eval()
    generator = torch.Generator().manual_seed(3)
    for _ in range(6):
        policies = [pol(torch.randint(0, 2, (8,), generator=generator).tolist()) for _ in range(3)]
        cost = policy_cost(r18, policies, (H, W), check=True)  # raises on a disagreement
        counted = count_conv_flops(r18, x_meta(), padded_gates(policies, 8), skip_unselected=True)
        assert counted["flops"] == cost["tree"]["flops"]
        assert cost["tree"]["flops"] <= cost["compute_everything"]["flops"]
        assert cost["tree"]["flops"] >= max(e["flops"] for e in cost["per_task"])


def bottleneck_head_flops(num_class):
    branch = add(conv_flops(2048, HEAD_CH, 3, SEG1_HW, True), conv_flops(HEAD_CH, HEAD_CH, 1, SEG1_HW, True),
                 conv_flops(HEAD_CH, num_class, 1, SEG1_HW, True))
    return branch[0] * 4


def test_bottleneck_projection_at_block_zero_is_shared():
    with torch.device("meta"):  # shapes only: ResNet101 without allocating it
        model = build_model("ResNet101", [5, 3], head_channels=HEAD_CH)
    policies = [pol([1] * 33), pol([0] + [1] * 32)]  # differ at block 0, where Bottleneck nets project (ds.0)
    cost = policy_cost(model, policies, (H, W))  # also checked against forward_shared_prefix
    assert execution_tree(policies).stop == 0
    heads = [bottleneck_head_flops(5), bottleneck_head_flops(3)]
    task_backbones = [entry["flops"] - head for entry, head in zip(cost["per_task"], heads)]
    shared = STEM[0] + conv_flops(64, 256, 1, SEG0_HW)[0]  # stem and ds.0 run once for both tasks
    assert cost["tree"]["flops"] - sum(heads) == shared + sum(b - shared for b in task_backbones)


# ---------------------------------------------------------------- execution tree
def test_execution_tree_hand_made():
    policies = [pol([1, 1, 0, 1]), pol([1, 1, 1, 0]), pol([1, 0, 1, 1])]
    tree = execution_tree(policies)
    expected = Branch((0, 1, 2), 0, 1, (0,), (
        Branch((0, 1), 1, 2, (1,), (
            Branch((0,), 2, 4, (3,)),
            Branch((1,), 2, 4, (2,)),
        )),
        Branch((2,), 1, 4, (2, 3)),
    ))
    assert tree == expected
    assert tree.nodes() == [(0, (0, 1, 2), True), (1, (0, 1), True), (2, (0,), False), (3, (0,), True),
                            (2, (1,), True), (3, (1,), False), (1, (2,), False), (2, (2,), True), (3, (2,), True)]
    assert [leaf.tasks for leaf in tree.leaves()] == [(0,), (1,), (2,)]
    assert tree.children[1].skipped == (1,)
    text = format_execution_tree(tree, ["seg", "sn", "depth"])
    assert text.splitlines() == [
        "stem: [seg, sn, depth]",
        "[seg, sn, depth] blocks 0: run 0, skip -",
        "├─ [seg, sn] blocks 1: run 1, skip -",
        "│  ├─ [seg] blocks 2-3: run 3, skip 2",
        "│  └─ [sn] blocks 2-3: run 2, skip 3",
        "└─ [depth] blocks 1-3: run 2 3, skip 1",
    ]
    # [L] 0/1 vectors and [P, 2] with padding describe the same tree
    assert execution_tree([torch.tensor([1, 1, 0, 1]), torch.tensor([1, 1, 1, 0]), torch.tensor([1, 0, 1, 1])]) == tree
    assert execution_tree([p[1:] for p in policies], num_blocks=4) == tree


def test_bad_policies_raise_clear_errors(r10):
    with pytest.raises(ValueError, match="hard gates"):
        policy_decisions([torch.tensor([[0.3, 0.7]] * 4)])
    with pytest.raises(ValueError, match="different numbers of rows"):
        policy_decisions([pol([1, 0, 1]), pol([1, 0])])
    with pytest.raises(ValueError, match="2 policies for a network with 3 tasks"):
        policy_cost(r10, [pol([1, 1, 1, 1])] * 2, (H, W))
    with pytest.raises(ValueError, match="5 rows for a backbone of only 4 blocks"):
        policy_cost(r10, [pol([1, 1, 1, 1, 1])] * 3, (H, W))
    with pytest.raises(ValueError, match="input_hw"):
        policy_cost(r10, [pol([1, 1, 1, 1])] * 3, (0, W))


def test_format_policy_cost(r10):
    cost = policy_cost(r10, [pol([1, 1, 0, 1]), pol([1, 0, 1, 1]), pol([1, 1, 0, 1])], (H, W), ["seg", "sn", "depth"])
    text = format_policy_cost(cost)
    assert "task seg" in text and "tree (shared prefix)" in text and "compute-everything" in text
    assert f"{100 * cost['ratio']['flops_saved']:.1f}% saved" in text
