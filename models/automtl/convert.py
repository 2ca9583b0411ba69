"""Backbone -> supermodel graph with torch.fx (docs/automtl.md "Conversion").

The backbone's ungated forward (every optional argument of `forward` at its default, so a
GatedBackbone runs all its blocks) is traced once. Every `call_module` of an nn.Conv2d becomes a
ConvNode, every nn.BatchNorm2d a TaskBatchNorm, at the same module path, so checkpoint keys read
`<path>.shared.weight`, `<path>.copies.<task>.weight`, `<path>.skips.<task>...`. A second graph
input, `route`, is threaded into each of those calls: it says which option each call computes.
Anything the conversion cannot see or would silently share is refused with AutoMTLConversionError.
"""
from __future__ import annotations

import copy
import inspect
import os
import re
import sys
import traceback
from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from .nodes import ConvNode, TaskBatchNorm

# Leaf modules with parameters that may stay shared (no copies, no policy), as the authors' Linear.
SHARED_PARAMETRIC_MODULES = (nn.Linear,)

# Functional forms of parametrised operators: fx records them as plain calls, so no VCN could hold
# their weights; a backbone using them is refused rather than silently shared.
FUNCTIONAL_PARAMETRIC = {
    F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d,
    torch.conv1d, torch.conv2d, torch.conv3d, torch.conv_transpose1d, torch.conv_transpose2d,
    torch.conv_transpose3d, F.batch_norm, torch.batch_norm, F.linear, F.instance_norm, F.layer_norm,
    F.group_norm, F.embedding,
}

TORCH_DIR = os.path.dirname(torch.__file__)


class AutoMTLConversionError(ValueError):
    """The backbone cannot become an AutoMTL supermodel; the message names the operator or node."""


@dataclass
class ConvertedBackbone:
    """The converted graph and what the policy needs to know about its convs (in graph order)."""

    graph_module: fx.GraphModule
    conv_names: List[str]   # module path of conv l = policy row l
    conv_depths: List[int]  # d_l: convs on the longest path from the input, this one included
    bn_names: List[str]


def convert_backbone(backbone: nn.Module, num_tasks: int) -> ConvertedBackbone:
    """Trace a deep copy of `backbone` (the caller's module is not touched) and build the supermodel graph."""
    if num_tasks < 1:
        raise ValueError(f"convert_backbone: num_tasks must be >= 1, got {num_tasks}")
    module = copy.deepcopy(backbone)
    graph_module = _trace_ungated(module)
    graph = graph_module.graph
    conv_nodes, bn_nodes = _check_graph(graph_module)
    _disable_inplace(graph_module)
    depths = _conv_depths(graph, set(conv_nodes))

    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    with graph.inserting_after(inputs[-1]):
        route = graph.placeholder("route")
    for index, node in enumerate(conv_nodes):
        conv = graph_module.get_submodule(node.target)
        graph_module.add_submodule(node.target, ConvNode(conv, num_tasks, index, depths[node]))
        node.args = (node.args[0], route)
    for node in bn_nodes:
        bn = graph_module.get_submodule(node.target)
        graph_module.add_submodule(node.target, TaskBatchNorm(bn, num_tasks))
        node.args = (node.args[0], route)
    graph.lint()
    graph_module.recompile()
    return ConvertedBackbone(graph_module, [n.target for n in conv_nodes], [depths[n] for n in conv_nodes],
                             [n.target for n in bn_nodes])


# ---------------------------------------------------------------------------------------- tracing
def _trace_ungated(module: nn.Module) -> fx.GraphModule:
    """fx graph of `module.forward(x)` with every other argument fixed at its default."""
    parameters = list(inspect.signature(module.forward).parameters.values())
    if not parameters:
        raise AutoMTLConversionError(f"{type(module).__name__}.forward takes no input")
    missing = [p.name for p in parameters[1:] if p.default is inspect.Parameter.empty]
    if missing:
        raise AutoMTLConversionError(f"{type(module).__name__}.forward: arguments {missing} have no default; the "
                                     f"conversion traces forward(x) with every other argument at its default")
    concrete = {p.name: p.default for p in parameters[1:]}
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    try:
        graph = tracer.trace(module, concrete_args=concrete or None)
    except Exception as err:  # fx reports control flow and other failures with its own types
        raise AutoMTLConversionError(
            f"torch.fx cannot trace {type(module).__name__}.forward ({type(err).__name__}: {err}) at "
            f"{_user_frame(sys.exc_info()[2])}; data-dependent control flow is the usual cause (branch on "
            f"shapes or Python values, not on tensor values)") from err
    _drop_specialised_inputs(graph)
    return fx.GraphModule(tracer.root, graph, class_name=f"AutoMTL{type(module).__name__}")


def _user_frame(tb) -> str:
    """'file:line in function: code' of the innermost traceback frame outside torch."""
    frames = [f for f in traceback.extract_tb(tb) if not f.filename.startswith(TORCH_DIR)]
    if not frames:
        return "an unknown location"
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {f.line}"


def _drop_specialised_inputs(graph: fx.Graph) -> None:
    """Remove the placeholders of the fixed arguments and the asserts fx adds on them: the graph becomes
    forward(x). They may not feed the output (they cannot: fx substituted their values)."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    dependants: Set[fx.Node] = set(placeholders[1:])
    for node in graph.nodes:
        if any(p in dependants for p in node.all_input_nodes):
            if node.op == "output":
                raise AutoMTLConversionError("the traced output depends on a fixed forward argument")
            dependants.add(node)
    for node in reversed(list(graph.nodes)):
        if node in dependants:
            graph.erase_node(node)


# ---------------------------------------------------------------------------------------- checks
def _where(node: fx.Node) -> str:
    """Node name and, when fx recorded it, the backbone source line that created it."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)', node.stack_trace or "")
    frames = [f for f in frames if not f[0].startswith(TORCH_DIR)]
    if not frames:
        return f"node {node.name!r}"
    file, line, function, code = frames[-1]  # the innermost frame outside torch
    return f"node {node.name!r} ({file}:{line} in {function}: {code.strip()})"


def _check_graph(graph_module: fx.GraphModule) -> Tuple[List[fx.Node], List[fx.Node]]:
    """The conv and BN call nodes in graph order; AutoMTLConversionError for what cannot be converted."""
    conv_nodes: List[fx.Node] = []
    bn_nodes: List[fx.Node] = []
    calls: Dict[str, List[fx.Node]] = {}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr":
            raise AutoMTLConversionError(
                f"{_where(node)} reads the tensor {node.target!r} directly (e.g. a functional conv on a module's "
                f"weight); only nn.Conv2d / nn.BatchNorm2d module calls can get per-task copies")
        if node.op == "call_function" and node.target in FUNCTIONAL_PARAMETRIC:
            raise AutoMTLConversionError(
                f"{_where(node)} calls the functional operator {getattr(node.target, '__name__', node.target)}; "
                f"use an nn.Module (nn.Conv2d, nn.BatchNorm2d) so the conversion can copy and route it")
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(node.target)
        if isinstance(module, nn.Conv2d):
            conv_nodes.append(node)
        elif isinstance(module, nn.BatchNorm2d):
            bn_nodes.append(node)
        elif any(True for _ in module.parameters()) and not isinstance(module, SHARED_PARAMETRIC_MODULES):
            raise AutoMTLConversionError(
                f"{_where(node)} calls {node.target!r} ({type(module).__name__}), a module with parameters "
                f"that AutoMTL does not convert (supported: nn.Conv2d, nn.BatchNorm2d; nn.Linear stays shared)")
        else:
            continue
        if node.kwargs or len(node.args) != 1:
            raise AutoMTLConversionError(f"{_where(node)}: {node.target!r} must be called with one input")
        calls.setdefault(node.target, []).append(node)
    for target, nodes in calls.items():
        if len(nodes) > 1:
            # One operator = one policy row and one depth; a module reused at several places has neither.
            raise AutoMTLConversionError(
                f"module {target!r} is called {len(nodes)} times (nodes {[n.name for n in nodes]}); AutoMTL "
                f"gives each conv / BN call its own policy and copies, so use one module per call")
    for node in conv_nodes:
        _check_skip_shape(node.target, graph_module.get_submodule(node.target))
    return conv_nodes, bn_nodes


def _check_skip_shape(name: str, conv: nn.Conv2d) -> None:
    """The skip (1x1, the conv's stride) has the conv's output size only with 'same'-style padding."""
    if conv.padding == "same":
        return
    if conv.padding == "valid" or any(2 * p != d * (k - 1) for p, d, k in
                                      zip(conv.padding, conv.dilation, conv.kernel_size)):
        raise AutoMTLConversionError(
            f"conv {name!r} (kernel {conv.kernel_size}, padding {conv.padding}, dilation {conv.dilation}) changes "
            f"the spatial size beyond its stride, so its skip option (1x1 conv / identity) would not match its "
            f"output; AutoMTL needs padding = dilation * (kernel - 1) / 2")


def _disable_inplace(graph_module: fx.GraphModule) -> None:
    """In-place activations off: an identity skip returns its input itself, which an in-place op after
    it would overwrite while other nodes still read it. Values are unchanged."""
    for node in graph_module.graph.nodes:
        if node.op == "call_module":
            module = graph_module.get_submodule(node.target)
            if getattr(module, "inplace", False) is True:
                module.inplace = False
        elif node.op == "call_function" and node.kwargs.get("inplace") is True:
            node.kwargs = {**node.kwargs, "inplace": False}


def _conv_depths(graph: fx.Graph, convs: Set[fx.Node]) -> Dict[fx.Node, int]:
    """d of every conv node: max over its inputs (input = 0) plus one; other nodes pass the max on."""
    depth: Dict[fx.Node, int] = {}
    for node in graph.nodes:  # fx graphs are in topological order
        d = max((depth[p] for p in node.all_input_nodes), default=0)
        depth[node] = d + 1 if node in convs else d
    return {n: depth[n] for n in convs}
