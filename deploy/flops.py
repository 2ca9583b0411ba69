"""Convolution FLOPs/MACs and parameter counts of the multi-task network, per fixed policy (docs/original.md §11).

Counting rule (the original `compute_flops`): only `nn.Conv2d` layers count, once per call,
    FLOPs = 2·kh·kw·Cin·Cout/groups·(B·Hout·Wout) + Cout·B·Hout·Wout (bias term only if the conv has a bias),
    MACs  =   kh·kw·Cin·Cout/groups·(B·Hout·Wout)                    (no bias term),
divided by the number of images B. Everything here is per image.

Three ways of running K tasks with hard 0/1 policies are costed (`policy_cost`):
  * per task on its own: stem + the downsample projections (they always run, a skipped block 0 of a
    segment still applies its projection, docs/original.md §3.3 (i)) and any other always-executed modules
    of the backbone (docs/backbones.md) + the task's selected blocks + its four heads;
  * the execution tree: tasks share features up to the first block where their decisions differ, so each
    shared prefix is computed once (`GatedBackbone.forward_shared_prefix`, docs/original.md §0.5);
  * compute-everything, as the original MTL2 computes it: K full backbone passes (every block) + all heads.
The analytic numbers come from a per-component cost table and are cross-checked against hook counts of
the real forward paths, run on the `meta` device (shapes only, no arithmetic).

The execution tree (`execution_tree`) is a nested `Branch`: a run of consecutive blocks that a group of
tasks computes together, with one child branch per decision group where their decisions first differ.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.func import functional_call

from models import count_parameters

# A policy for one task: [R, 2] rows [1, 0] (execute) / [0, 1] (skip), or [R] of 0/1 (1 = execute);
# tensor, numpy array or nested list. R = P (skip_layer rows dropped) or L.
PolicyLike = Any


# ---------------------------------------------------------------------------------------------- counting
@dataclass(frozen=True)
class Cost:
    """Convolution cost of one image."""

    flops: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.flops + other.flops, self.macs + other.macs)

    def __mul__(self, times: int) -> "Cost":
        return Cost(self.flops * times, self.macs * times)

    def as_dict(self) -> Dict[str, int]:
        return {"flops": self.flops, "macs": self.macs}


def conv_cost(conv: nn.Conv2d, output_shape: Sequence[int]) -> Cost:
    """Cost of one call of `conv` producing `output_shape` = [B, Cout, Hout, Wout], summed over the batch."""
    batch, out_channels, height, width = (int(v) for v in output_shape)
    kh, kw = conv.kernel_size
    positions = batch * height * width
    macs = kh * kw * (conv.in_channels // conv.groups) * out_channels * positions
    bias = out_channels * positions if conv.bias is not None else 0
    return Cost(2 * macs + bias, macs)


def _per_image(total: int, images: int) -> int | float:
    """Total / images, kept an int when exact (always, when every conv sees the whole batch)."""
    return total // images if total % images == 0 else total / images


def _first_tensor(values: Sequence[Any]) -> Optional[torch.Tensor]:
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


def _meta_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """Shape-only stand-ins for every parameter and buffer, so a forward on meta inputs does no arithmetic."""
    named = list(model.named_parameters()) + list(model.named_buffers())
    return {name: torch.empty_like(value, device="meta") for name, value in named}


def count_conv_flops(model: nn.Module, *inputs: Any, **kwargs: Any) -> Dict[str, Any]:
    """Conv FLOPs and MACs per image of one `model(*inputs, **kwargs)` call, counted with forward hooks.

    A conv run K times counts K times. The number of images is the batch size of the first tensor
    input. If that input is on the `meta` device, the model runs with meta stand-ins for its
    parameters and buffers: shapes only, nothing computed and the model's own tensors untouched.
    The model's train/eval mode is used as is (it selects the forward path of MultiTaskNet).
    Returns {'flops', 'macs', 'conv_calls', 'by_module': {name: {'flops', 'macs', 'calls'}}}.
    """
    first = _first_tensor(inputs) if inputs else _first_tensor(list(kwargs.values()))
    if first is None or first.dim() == 0:
        raise ValueError("count_conv_flops needs a batched tensor input (its first dimension = number of images)")
    images = int(first.shape[0])
    if images < 1:
        raise ValueError(f"count_conv_flops: the first input has batch size {images}; need at least one image")
    by_module: Dict[str, List[int]] = {}  # name -> [flops, macs, calls], batch totals

    def hook(name: str):
        def record(module: nn.Conv2d, _inputs: Any, output: torch.Tensor) -> None:
            cost = conv_cost(module, output.shape)
            entry = by_module.setdefault(name, [0, 0, 0])
            entry[0] += cost.flops
            entry[1] += cost.macs
            entry[2] += 1
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules()
               if isinstance(module, nn.Conv2d)]
    try:
        with torch.no_grad():
            if first.device.type == "meta":
                functional_call(model, _meta_state(model), tuple(inputs), kwargs)
            else:
                model(*inputs, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    flops = sum(v[0] for v in by_module.values())
    macs = sum(v[1] for v in by_module.values())
    return {
        "flops": _per_image(flops, images),
        "macs": _per_image(macs, images),
        "conv_calls": sum(v[2] for v in by_module.values()),
        "by_module": {name: {"flops": _per_image(f, images), "macs": _per_image(m, images), "calls": c}
                      for name, (f, m, c) in by_module.items()},
    }


# ---------------------------------------------------------------------------------------------- policies
def policy_decisions(policies: Sequence[PolicyLike], num_blocks: Optional[int] = None) -> List[List[bool]]:
    """Per task, per block: True = execute, from hard 0/1 policies.

    Each policy is [R, 2] (column 0 = execute) or [R] (1 = execute). With `num_blocks` = L given, a
    policy of R = P < L rows (skip_layer) is padded in front with always-executed blocks, as the model
    pads it; without it every policy must have the same number of rows.
    """
    if isinstance(policies, torch.Tensor) or not isinstance(policies, Sequence) or len(policies) == 0:
        raise ValueError("policies must be a non-empty list with one hard 0/1 policy per task "
                         f"([P, 2] or [L, 2] rows [1, 0]/[0, 1], or [L] of 0/1), got {type(policies).__name__}")
    decisions = []
    for k, policy in enumerate(policies):
        where = f"policy of task {k + 1}"
        try:
            values = torch.as_tensor(policy).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{where}: not a tensor-like 0/1 table ({err})") from None
        rows = values.tolist()
        if values.dim() == 2 and values.shape[1] == 2 and all(r in ([1, 0], [0, 1]) for r in rows):
            execute = [r == [1, 0] for r in rows]
        elif values.dim() == 1 and all(v in (0, 1) for v in rows):
            execute = [v == 1 for v in rows]
        else:
            raise ValueError(f"{where}: expected hard gates, shape [R, 2] with rows [1, 0] (execute) or [0, 1] "
                             f"(skip), or shape [R] of 0/1; got shape {list(values.shape)} with values {rows}")
        if not execute:
            raise ValueError(f"{where}: has no rows")
        if num_blocks is not None:
            if len(execute) > num_blocks:
                raise ValueError(f"{where}: {len(execute)} rows for a backbone of only {num_blocks} blocks")
            execute = [True] * (num_blocks - len(execute)) + execute
        decisions.append(execute)
    lengths = sorted({len(d) for d in decisions})
    if len(lengths) != 1:
        raise ValueError(f"policies have different numbers of rows {lengths}; pass num_blocks to pad them")
    return decisions


def padded_gates(policies: Sequence[PolicyLike], num_blocks: int) -> List[torch.Tensor]:
    """[L, 2] float gates (rows [1, 0] / [0, 1]) for the model from hard policies."""
    gates = []
    for execute in policy_decisions(policies, num_blocks):
        column = torch.tensor(execute, dtype=torch.float32)
        gates.append(torch.stack([column, 1 - column], dim=1))
    return gates


# ---------------------------------------------------------------------------------------------- tree
@dataclass(frozen=True)
class Branch:
    """A run of blocks [start, stop) that the tasks in `tasks` compute together on shared features.

    All of `tasks` agree on every block of the run: those in `executed` are computed, the others
    skipped. The input of block `start` is shared with the sibling branches (and the stem output for
    the root, whose `start` is 0). If the tasks' decisions differ at block `stop` (< L), `children`
    holds one branch per decision group, each starting at `stop`, ordered by their first task; else
    `stop` = L and the branch ends in the tasks' features. Task and block indices are 0-based.
    """

    tasks: Tuple[int, ...]
    start: int
    stop: int
    executed: Tuple[int, ...]
    children: Tuple["Branch", ...] = field(default=())

    @property
    def skipped(self) -> Tuple[int, ...]:
        return tuple(t for t in range(self.start, self.stop) if t not in self.executed)

    def nodes(self) -> List[Tuple[int, Tuple[int, ...], bool]]:
        """(block, tasks sharing it, executed?) for every block of this branch and its descendants, depth first."""
        own = [(t, self.tasks, t in self.executed) for t in range(self.start, self.stop)]
        return own + [node for child in self.children for node in child.nodes()]

    def leaves(self) -> List["Branch"]:
        return [self] if not self.children else [leaf for child in self.children for leaf in child.leaves()]


def execution_tree(policies: Sequence[PolicyLike], num_blocks: Optional[int] = None) -> Branch:
    """The prefix-sharing tree of hard 0/1 policies (see `Branch`); `num_blocks` pads [P, 2] policies to L."""
    decisions = policy_decisions(policies, num_blocks)
    total = len(decisions[0])

    def grow(tasks: Tuple[int, ...], start: int) -> Branch:
        stop = start
        while stop < total and len({decisions[k][stop] for k in tasks}) == 1:
            stop += 1
        executed = tuple(t for t in range(start, stop) if decisions[tasks[0]][t])
        if stop == total:
            return Branch(tasks, start, stop, executed)
        groups: Dict[bool, List[int]] = {}  # first task's decision first, as forward_shared_prefix
        for k in tasks:
            groups.setdefault(decisions[k][stop], []).append(k)
        return Branch(tasks, start, stop, executed, tuple(grow(tuple(g), stop) for g in groups.values()))

    return grow(tuple(range(len(decisions))), 0)


def _block_list(blocks: Sequence[int], block_names: Optional[Sequence[str]]) -> str:
    if not blocks:
        return "-"
    return " ".join(block_names[t] if block_names else str(t) for t in blocks)


def format_execution_tree(tree: Branch, task_names: Optional[Sequence[str]] = None,
                          block_names: Optional[Sequence[str]] = None) -> str:
    """Text rendering, one line per branch:
    `[seg, sn] blocks 0-5: run 0 1 3 5, skip 2 4`, children indented below with tree glyphs."""
    def names(tasks: Sequence[int]) -> str:
        return ", ".join(task_names[k] if task_names else f"task{k + 1}" for k in tasks)

    def describe(branch: Branch) -> str:
        if branch.start == branch.stop:
            return f"[{names(branch.tasks)}] split at block {branch.start}"
        span = (_block_list([branch.start], block_names) if branch.stop - branch.start == 1 else
                f"{_block_list([branch.start], block_names)}-{_block_list([branch.stop - 1], block_names)}")
        return (f"[{names(branch.tasks)}] blocks {span}: run {_block_list(branch.executed, block_names)}, "
                f"skip {_block_list(branch.skipped, block_names)}")

    lines = [f"stem: [{names(tree.tasks)}]"]

    def render(branch: Branch, prefix: str, glyph: str, child_prefix: str) -> None:
        lines.append(prefix + glyph + describe(branch))
        for i, child in enumerate(branch.children):
            last = i == len(branch.children) - 1
            render(child, child_prefix, "└─ " if last else "├─ ", child_prefix + ("   " if last else "│  "))

    render(tree, "", "", "")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- components
@dataclass
class ComponentTable:
    """Per-image cost and parameter counts of each part of a MultiTaskNet at one input size."""

    stem: Cost
    blocks: List[Cost]                 # per flat block index t: the body, run only when t executes
    downsample: Dict[int, Cost]        # block index t -> what runs for t whether or not it executes (the
                                       # projection; MobileNetV2: the always-executed blocks before t)
    heads: List[Cost]                  # per task, all four ASPP branches
    stem_params: Tuple[int, int]       # (parameters, state values incl. BN buffers)
    block_params: List[Tuple[int, int]]
    downsample_params: Dict[int, Tuple[int, int]]
    head_params: List[Tuple[int, int]]
    tail: Cost = Cost()                # always-executed modules after the last block (once per leaf)
    tail_params: Tuple[int, int] = (0, 0)


def _params(modules: Sequence[nn.Module]) -> Tuple[int, int]:
    return (sum(count_parameters(m, include_buffers=False) for m in modules),
            sum(count_parameters(m) for m in modules))


def _add_params(*parts: Tuple[int, int]) -> Tuple[int, int]:
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


def _check_input_hw(input_hw: Sequence[int]) -> Tuple[int, int]:
    if len(input_hw) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in input_hw):
        raise ValueError(f"input_hw must be (height, width) positive ints, got {input_hw!r}")
    return int(input_hw[0]), int(input_hw[1])


def _backbone_components(model: nn.Module) -> Dict[str, Tuple[str, int]]:
    """Module name -> ('block' | 'always', t) for every module the backbone's contract assigns to a block
    (t = L: the tail); the rest of the backbone is the stem."""
    backbone = model.backbone
    names = {id(m): name for name, m in model.named_modules()}
    owner: Dict[str, Tuple[str, int]] = {}
    for kind, modules_of, count in (("block", backbone.body_modules, backbone.num_blocks),
                                    ("always", backbone.always_modules, backbone.num_blocks + 1)):
        for t in range(count):
            for module in modules_of(t):
                for sub in module.modules():
                    owner[names[id(sub)]] = (kind, t)
    return owner


def component_table(model: nn.Module, input_hw: Sequence[int]) -> ComponentTable:
    """Cost of every stem/block/projection/head of `model` (a MultiTaskNet) for one image of `input_hw`.

    Block input shapes do not depend on the policy (a skipped block passes on a same-shaped tensor), so
    one policy-free meta forward measures every component.
    """
    height, width = _check_input_hw(input_hw)
    backbone = model.backbone
    L = backbone.num_blocks
    owner = _backbone_components(model)
    counted = count_conv_flops(model, torch.empty(1, 3, height, width, device="meta"))["by_module"]
    stem, blocks, always = Cost(), [Cost() for _ in range(L)], [Cost() for _ in range(L + 1)]
    heads = [Cost() for _ in range(model.num_tasks)]
    for name, entry in counted.items():
        cost, parts = Cost(entry["flops"], entry["macs"]), name.split(".")
        if name in owner:
            kind, t = owner[name]
            if kind == "block":
                blocks[t] = blocks[t] + cost
            else:
                always[t] = always[t] + cost
        elif parts[0] == "backbone":
            stem = stem + cost
        elif parts[0].startswith("task") and "_fc1_c" in parts[0]:
            k = int(parts[0][len("task"):parts[0].index("_fc1_c")]) - 1
            heads[k] = heads[k] + cost
        else:
            raise ValueError(f"component_table: conv {name!r} is not part of a MultiTaskNet layout")
    block_params = [_params(backbone.body_modules(t)) for t in range(L)]
    always_params = [_params(backbone.always_modules(t)) for t in range(L + 1)]
    total = (count_parameters(backbone, include_buffers=False), count_parameters(backbone))
    assigned = _add_params(*block_params, *always_params)
    with_always = [t for t in range(L) if backbone.always_modules(t)]
    return ComponentTable(
        stem=stem, blocks=blocks, downsample={t: always[t] for t in with_always}, heads=heads,
        stem_params=(total[0] - assigned[0], total[1] - assigned[1]),
        block_params=block_params,
        downsample_params={t: always_params[t] for t in with_always},
        head_params=[_params([getattr(model, f"task{k + 1}_fc1_c{c}") for c in range(4)])
                     for k in range(model.num_tasks)],
        tail=always[L], tail_params=always_params[L],
    )


def tree_backbone_cost(tree: Branch, blocks: Sequence[Cost], downsample: Mapping[int, Cost],
                       tail: Cost = Cost()) -> Cost:
    """Backbone cost (stem excluded) of running the tree: each block once per branch that executes it,
    each projection once per distinct input (siblings share the input of their first block), the tail
    once per leaf."""
    def walk(branch: Branch, is_root: bool) -> Cost:
        total = Cost()
        for t in range(branch.start, branch.stop):
            if t in downsample and (t > branch.start or is_root):
                total = total + downsample[t]
            if t in branch.executed:
                total = total + blocks[t]
        if not branch.children:
            return total + tail
        if branch.stop in downsample:  # the split block's residual is computed once for all children
            total = total + downsample[branch.stop]
        for child in branch.children:
            total = total + walk(child, False)
        return total

    return walk(tree, True)


# ---------------------------------------------------------------------------------------------- policy cost
def _measured_costs(model: nn.Module, gates: List[torch.Tensor], height: int, width: int) -> Dict[str, Any]:
    """Hook counts of the real forward paths on meta inputs (eval mode, restored afterwards)."""
    x = torch.empty(1, 3, height, width, device="meta")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        return {
            "everything": count_conv_flops(model, x, gates)["flops"],
            "tree": count_conv_flops(model, x, gates, skip_unselected=True)["flops"],
            "per_task": [count_conv_flops(model.backbone, x, g, skip_unselected=True)["flops"] for g in gates],
        }
    finally:
        for module, training in modes.items():
            module.training = training


def _entry(cost: Cost, params: Tuple[int, int], **extra: Any) -> Dict[str, Any]:
    return {**cost.as_dict(), "params": params[0], "values": params[1], **extra}


def policy_cost(model: nn.Module, policies: Sequence[PolicyLike], input_hw: Sequence[int],
                task_names: Optional[Sequence[str]] = None, check: bool = True) -> Dict[str, Any]:
    """FLOPs/MACs per image and parameter counts of a MultiTaskNet run with hard 0/1 `policies`.

    policies: one [P, 2] / [L, 2] / [L] hard policy per task ([P, 2] is padded as the model pads it).
    Returns a dict of plain values:
      per_task[k]        this task alone: stem + projections + its blocks + its heads ('blocks': its block indices);
      tree               all tasks, shared prefixes once ('blocks': union of used blocks);
      compute_everything the original MTL2 forward: K full backbone passes + all heads; its 'params'/'values'
                         are the whole network (parameters incl. logits / + BN buffers, docs/original.md §11) and
                         'network_params' excludes the logits;
      single_pass        one shared full backbone pass + all heads (the warm-up forward);
      ratio              tree/everything FLOPs, the fraction saved, tree/network parameters.
    'params' counts parameters, 'values' parameters + buffers (state_dict numbers). With `check`, the
    analytic numbers are compared with hook counts of the real forward paths (on meta tensors) and a
    disagreement raises RuntimeError.
    """
    height, width = _check_input_hw(input_hw)
    num_blocks, num_tasks = model.num_blocks, model.num_tasks
    decisions = policy_decisions(policies, num_blocks)
    if len(decisions) != num_tasks:
        raise ValueError(f"policy_cost: {len(decisions)} policies for a network with {num_tasks} tasks")
    names = list(task_names) if task_names is not None else [f"task{k + 1}" for k in range(num_tasks)]
    if len(names) != num_tasks:
        raise ValueError(f"policy_cost: {len(names)} task names for {num_tasks} tasks")
    table = component_table(model, (height, width))
    tree = execution_tree(decisions)
    projections = sum(table.downsample.values(), Cost()) + table.tail
    projection_params = _add_params(*table.downsample_params.values(), table.tail_params)
    full_backbone = table.stem + projections + sum(table.blocks, Cost())
    all_heads = sum(table.heads, Cost())

    per_task, task_backbones = [], []
    for k, execute in enumerate(decisions):
        used = [t for t in range(num_blocks) if execute[t]]
        backbone = table.stem + projections + sum((table.blocks[t] for t in used), Cost())
        task_backbones.append(backbone)
        params = _add_params(table.stem_params, projection_params, table.head_params[k],
                             *(table.block_params[t] for t in used))
        per_task.append(_entry(backbone + table.heads[k], params, task=names[k], blocks=used))

    tree_blocks = [t for t in range(num_blocks) if any(d[t] for d in decisions)]
    tree_backbone = table.stem + tree_backbone_cost(tree, table.blocks, table.downsample, table.tail)
    tree_params = _add_params(table.stem_params, projection_params, *table.head_params,
                              *(table.block_params[t] for t in tree_blocks))
    everything = full_backbone * num_tasks + all_heads

    if check:
        measured = _measured_costs(model, padded_gates(decisions, num_blocks), height, width)
        expected = {"everything": everything.flops, "tree": (tree_backbone + all_heads).flops,
                    "per_task": [c.flops for c in task_backbones]}
        if measured != expected:
            raise RuntimeError(f"policy_cost: analytic FLOPs {expected} disagree with the counted forward "
                               f"paths {measured}")

    network_params = sum(p.numel() for name, p in model.named_parameters() if not name.endswith("_logits"))
    full_params = count_parameters(model, include_buffers=False)
    return {
        "input_hw": [height, width],
        "tasks": names,
        "num_blocks": num_blocks,
        "per_task": per_task,
        "tree": _entry(tree_backbone + all_heads, tree_params, blocks=tree_blocks),
        "compute_everything": _entry(everything, (full_params, count_parameters(model)),
                                     network_params=network_params),
        "single_pass": (full_backbone + all_heads).as_dict(),
        "ratio": {
            "tree_flops_over_everything": (tree_backbone + all_heads).flops / everything.flops,
            "flops_saved": 1 - (tree_backbone + all_heads).flops / everything.flops,
            "tree_params_over_network": tree_params[0] / network_params,
        },
    }


def format_policy_cost(cost: Mapping[str, Any]) -> str:
    """A small table of GFLOPs, GMACs and parameters (millions) from `policy_cost`'s result."""
    def row(label: str, entry: Mapping[str, Any]) -> str:
        return (f"{label:<22}{entry['flops'] / 1e9:>12.3f}{entry['macs'] / 1e9:>12.3f}"
                f"{entry['params'] / 1e6:>12.3f}{entry['values'] / 1e6:>12.3f}")

    height, width = cost["input_hw"]
    lines = [f"per image at {height}x{width} (conv FLOPs = 2 MACs + bias adds; params in millions, "
             "values = params + BN buffers)",
             f"{'':<22}{'GFLOPs':>12}{'GMACs':>12}{'params M':>12}{'values M':>12}"]
    for entry in cost["per_task"]:
        lines.append(row(f"task {entry['task']}", entry) + f"   blocks {len(entry['blocks'])}/{cost['num_blocks']}")
    lines.append(row("tree (shared prefix)", cost["tree"]) + f"   blocks {len(cost['tree']['blocks'])}/"
                 f"{cost['num_blocks']}")
    lines.append(row("compute-everything", cost["compute_everything"]) + "   (whole network, logits included)")
    ratio = cost["ratio"]
    lines.append(f"tree / compute-everything FLOPs = {ratio['tree_flops_over_everything']:.4f} "
                 f"({100 * ratio['flops_saved']:.1f}% saved); tree / network params = "
                 f"{ratio['tree_params_over_network']:.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- any architecture
def model_size(model: nn.Module, input_hw: Sequence[int], policies: Optional[Sequence[PolicyLike]] = None
               ) -> Dict[str, Any]:
    """The paper's "# Params", total parameters and inference conv GFLOPs per image of any architecture.

    params_ratio: backbone(s) + fusion/attention parameters over one single-task backbone, heads excluded
    (the MTAN paper's way of counting; AdaShare's one gated backbone counts 1). total_params: every parameter
    but the policy logits. flops_g: AdaShare with hard `policies` costs its execution tree (selected blocks,
    shared prefixes once); a baseline (or AdaShare without policies: every block shared) costs one forward.
    """
    height, width = _check_input_hw(input_hw)
    total = sum(p.numel() for name, p in model.named_parameters() if not name.endswith("_logits"))
    if policies is not None and hasattr(model, "num_blocks") and hasattr(model, "policy_logits"):
        flops = policy_cost(model, policies, (height, width), check=False)["tree"]["flops"]
    else:
        flops = count_conv_flops(model, torch.empty(1, 3, height, width, device="meta"))["flops"]
    return {"params_ratio": float(model.params_ratio()), "total_params": int(total),
            "flops_g": float(flops) / 1e9, "input_hw": [height, width]}


def automtl_model_size(model: nn.Module, input_hw: Sequence[int], choices: Optional[Sequence[Any]] = None
                       ) -> Dict[str, Any]:
    """The size of an AutoMTL architecture (docs/automtl.md "Parameter counts") in both conventions.

    `choices`: one [num_convs] option vector per task (0 shared, 1 specific, 2 skip); None = the all-shared
    architecture (the supermodel's plain multi-task network). params_ratio = the paper's mtl conv count over one
    backbone's convs (N * (1 + relative)); `paper` = PaperCount (relative, absolute "Params (M)"), `compact` =
    the exact parameters of the compact model by part; total_params = compact total (heads included); flops_g
    = conv GFLOPs per image of the hard forward (each task runs its own path, heads included).
    """
    from dataclasses import asdict
    from models.automtl import compact_parameter_count, paper_parameter_count
    height, width = _check_input_hw(input_hw)
    if choices is None:
        choices = [torch.zeros(model.num_convs, dtype=torch.int64) for _ in range(model.num_tasks)]
    choices = [torch.as_tensor(c, dtype=torch.int64) for c in choices]
    paper = paper_parameter_count(model, choices)
    compact = compact_parameter_count(model, choices)
    was_training = model.training
    model.eval()
    try:
        flops = count_conv_flops(model, torch.empty(1, 3, height, width, device="meta"), "hard", choices)["flops"]
    finally:
        model.train(was_training)
    return {"params_ratio": float(paper.num_tasks * (1 + paper.relative)), "total_params": int(compact["total"]),
            "flops_g": float(flops) / 1e9, "input_hw": [height, width],
            "paper": asdict(paper), "compact": dict(compact)}
