"""Export a retrained network with its fixed policy as a compact inference model.

    python tools/export.py --config yamls/adashare/nyu_v2_3task_test.yml --exp_ids 0 [--out FILE] [--gpus -1]

(The command line is tools/export.py; this module is the library.)
Reads `<checkpoint_dir>/<exp_name>/retrain%03d_policyIter%s_best_model.pth.tar` (strictly) and the policy
pickle `policyIter<it>_rs<seed:04d>.pickle` (seed = seed[exp_id]) and writes a file with only what inference
needs: the stem, the blocks some task executes, the downsample projections (they always run: a skipped
block 0 of a segment still applies its projection), any always-executed modules of the backbone and the
heads; no policy logits, no unused blocks. Any registry backbone (docs/backbones.md).
Written atomically; `torch.load(path, weights_only=True)` reads it as a plain dict:

    {'format': 'adashare-compact', 'version': 1, 'backbone': 'ResNet34', 'tasks': [...],
     'tasks_num_class': [...], 'head_channels': int, 'skip_layer': int, 'num_blocks': L,
     'policies': [int64 [P, 2] per task], 'kept_blocks': [flat block indices],
     'kept_block_names': ['s.b', ...], 'state': {key: tensor}, 'meta': {...}}

The state keys are those of the full network (`backbone.blocks.1.0.conv1.weight`, `task1_fc1_c0.conv1.bias`, ...).
`load_compact(path)` rebuilds a `CompactMultiTaskNet` whose `forward(img)` returns the K task outputs,
running only the selected blocks and computing shared block prefixes once; in eval mode its outputs equal
the full network's with the same policy. The command prints parameters and conv FLOPs/MACs per task,
for the execution tree and for the compute-everything network, and the file size.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from models import BACKBONES, DeeplabResNetBackbone, build_model, count_parameters
from models.backbones import find_family
from models.mtl_net import ASPP_RATES, MultiTaskNet
from engine import checkpoint as C
from deploy.flops import (Branch, execution_tree, format_execution_tree, format_policy_cost, padded_gates,
                         policy_cost, policy_decisions)

COMPACT_FORMAT = "adashare-compact"
COMPACT_VERSION = 1
# Original evaluation sizes per dataset (docs/original.md §0.8), used when dataload.eval_h/eval_w are null.
DEFAULT_EVAL_HW = {"NYU_v2": (480, 640), "CityScapes": (256, 512), "Taskonomy": (256, 256)}
CITYSCAPES_SMALL_RES_HW = (128, 256)
VERIFY_HW = (64, 64)  # small random input for the export's equality check (cheap even for ResNet-34)


class CompactFileError(C.CheckpointError):
    """A compact model file that is not one, or does not match its own description."""


# ---------------------------------------------------------------------------------------------- the module
class CompactMultiTaskNet(nn.Module):
    """Inference network for one fixed policy: only the blocks some task executes, shared prefixes once.

    Module names (and hence state_dict keys) are the full network's; absent blocks are simply not there.
    `forward(img)` returns the K raw task outputs at 1/8 resolution, as `MultiTaskNet.forward(img, gates)`.
    """

    def __init__(self, network: MultiTaskNet, policies: Sequence[Any], tasks: Optional[Sequence[str]] = None) -> None:
        """Take the used modules of `network` (shared, not copied) for hard 0/1 `policies` ([P, 2] per task)."""
        super().__init__()
        if not isinstance(network, MultiTaskNet):
            raise ValueError(f"CompactMultiTaskNet needs a models.MultiTaskNet, got {type(network).__name__}")
        full = network.backbone
        self.decisions = policy_decisions(policies, full.num_blocks)
        if len(self.decisions) != network.num_tasks:
            raise ValueError(f"{len(self.decisions)} policies for a network with {network.num_tasks} tasks")
        self.tasks = list(tasks) if tasks is not None else [f"task{k + 1}" for k in range(network.num_tasks)]
        if len(self.tasks) != network.num_tasks:
            raise ValueError(f"{len(self.tasks)} task names for a network with {network.num_tasks} tasks")
        self.policies = [torch.as_tensor(p).detach().cpu().to(torch.int64) for p in policies]
        self.tasks_num_class = list(network.tasks_num_class)
        self.backbone_name = backbone_name(network)
        self.head_channels = network.task1_fc1_c0.conv1.out_channels
        self.skip_layer = network.skip_layer
        self.block_names = full.block_names
        self.kept_blocks = [t for t in range(full.num_blocks) if any(d[t] for d in self.decisions)]
        self.tree: Branch = execution_tree(self.decisions)
        # The backbone without the bodies of the blocks no task executes; everything else is shared.
        self.backbone = full.without_blocks([t for t in range(full.num_blocks) if t not in self.kept_blocks])
        self._gates = padded_gates(self.decisions, full.num_blocks)  # hard, CPU: only read as decisions
        for k in range(network.num_tasks):
            for c in range(len(ASPP_RATES)):
                name = f"task{k + 1}_fc1_c{c}"
                setattr(self, name, getattr(network, name))

    @property
    def num_tasks(self) -> int:
        return len(self.decisions)

    def features(self, img: torch.Tensor) -> List[torch.Tensor]:
        """Backbone features of each task (1/8 resolution): selected blocks only, shared prefixes once."""
        return self.backbone.forward_shared_prefix(img, self._gates)

    def forward(self, img: torch.Tensor) -> List[torch.Tensor]:
        outputs = []
        for k, feature in enumerate(self.features(img)):
            branches = [getattr(self, f"task{k + 1}_fc1_c{c}") for c in range(len(ASPP_RATES))]
            out = branches[0](feature)
            for branch in branches[1:]:  # same summation order as MultiTaskNet.task_output
                out = out + branch(feature)
            outputs.append(out)
        return outputs


# ---------------------------------------------------------------------------------------------- helpers
def backbone_name(network: MultiTaskNet) -> str:
    """The registry name of a network's backbone: recorded by models.build_model, or found for a
    Deeplab-ResNet from its block type and blocks per segment."""
    if network.backbone_name:
        return network.backbone_name
    backbone = network.backbone
    if isinstance(backbone, DeeplabResNetBackbone):
        block_type = type(backbone.blocks[0][0])
        for name, (block, layers) in BACKBONES.items():
            if block is block_type and tuple(layers) == tuple(backbone.layers):
                return name
    raise ValueError(f"backbone {type(backbone).__name__} was not built from a registry name (models.build_model); "
                     f"known Deeplab-ResNets: {sorted(BACKBONES)}")


def compact_state(network: MultiTaskNet, kept_blocks: Sequence[int]) -> Dict[str, torch.Tensor]:
    """The full state_dict without policy logits and without the blocks no task executes (CPU tensors)."""
    full = network.backbone
    dropped = full.without_blocks([t for t in range(full.num_blocks) if t not in set(kept_blocks)])
    kept = {f"backbone.{key}" for key in dropped.state_dict()}
    return {key: value.detach().cpu() for key, value in network.state_dict().items()
            if key in kept or not (key.startswith("backbone.") or (key.endswith("_logits") and "." not in key))}


def _check_plain(value: Any, where: str) -> None:
    """Only values that torch.load(weights_only=True) reads: tensors, numbers, strings, lists, dicts."""
    if isinstance(value, (bool, int, float, str, type(None), torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise ValueError(f"{where}: key {key!r} must be a str or int")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where} is a {type(value).__name__}; compact files hold only tensors and plain Python "
                     "values (str, int, float, bool, None, list, dict) so that they load with weights_only=True")


def export_compact(network: MultiTaskNet, policies: Sequence[Any], path: str,
                   meta: Optional[Mapping[str, Any]] = None, tasks: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Write the compact model of `network` with hard `policies` ([P, 2] per task) to `path` atomically.

    `meta` (plain values only) is stored as is under 'meta'; `tasks` names the tasks (default
    meta['tasks'] or task1..taskK). Returns the written dict.
    """
    meta = dict(meta or {})
    _check_plain(meta, "meta")
    if tasks is None and isinstance(meta.get("tasks"), (list, tuple)):
        tasks = list(meta["tasks"])
    compact = CompactMultiTaskNet(network, policies, tasks)
    names = network.backbone.block_names
    payload = {
        "format": COMPACT_FORMAT,
        "version": COMPACT_VERSION,
        "backbone": compact.backbone_name,
        "tasks": list(compact.tasks),
        "tasks_num_class": list(compact.tasks_num_class),
        "head_channels": int(compact.head_channels),
        "skip_layer": int(compact.skip_layer),
        "num_blocks": int(network.num_blocks),
        "policies": [p.clone() for p in compact.policies],
        "kept_blocks": list(compact.kept_blocks),
        "kept_block_names": [names[t] for t in compact.kept_blocks],
        "state": compact_state(network, compact.kept_blocks),
        "meta": meta,
    }
    C.atomic_save(payload, path)
    return payload


_REQUIRED = {"format": str, "version": int, "backbone": str, "tasks": list, "tasks_num_class": list,
             "head_channels": int, "skip_layer": int, "num_blocks": int, "policies": list,
             "kept_blocks": list, "state": dict}


def load_compact(path: str, map_location: str | torch.device = "cpu") -> CompactMultiTaskNet:
    """Rebuild the CompactMultiTaskNet of a file written by export_compact (eval mode, weights_only load)."""
    if not os.path.isfile(path):
        raise C.CheckpointNotFoundError(path, hint="python tools/export.py --config <yaml> --exp_ids <E>",
                                        what="compact model file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # damaged file or refused object: one clear line
        raise CompactFileError(f"{path} is not a readable compact model file ({type(err).__name__}: "
                               f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''})") from None
    if not isinstance(payload, dict) or payload.get("format") != COMPACT_FORMAT:
        found = sorted(map(str, payload)) if isinstance(payload, dict) else type(payload).__name__
        raise CompactFileError(f"{path} is not a compact model file: expected a dict with format "
                               f"{COMPACT_FORMAT!r}, found {found}")
    for key, kind in _REQUIRED.items():
        if not isinstance(payload.get(key), kind):
            raise CompactFileError(f"{path}: key {key!r} must be a {kind.__name__}, got "
                                   f"{type(payload.get(key)).__name__}")
    if payload["version"] != COMPACT_VERSION:
        raise CompactFileError(f"{path}: compact format version {payload['version']}, this code reads "
                               f"version {COMPACT_VERSION}")
    try:
        find_family(payload["backbone"])
    except ValueError as err:
        raise CompactFileError(f"{path}: {err}") from None
    # Build on the meta device (no random init), keep the used modules, then give them real storage.
    with torch.device("meta"):
        network = build_model(payload["backbone"], payload["tasks_num_class"], skip_layer=payload["skip_layer"],
                              head_channels=payload["head_channels"])
    try:
        compact = CompactMultiTaskNet(network, payload["policies"], payload["tasks"])
    except ValueError as err:
        raise CompactFileError(f"{path}: {err}") from None
    if compact.kept_blocks != list(payload["kept_blocks"]):
        raise CompactFileError(f"{path}: kept_blocks {payload['kept_blocks']} do not match the blocks its policies "
                               f"use {compact.kept_blocks}")
    compact.to_empty(device=map_location)
    C.load_state_strict(compact, payload["state"], source=path)
    return compact.eval()


def file_size_text(path: str) -> str:
    size = os.path.getsize(path)
    return f"{size:,} bytes ({size / 2 ** 20:.2f} MiB)"


# ---------------------------------------------------------------------------------------------- command
def eval_size(opt: Mapping[str, Any]) -> Tuple[int, int]:
    """dataload.eval_h/eval_w, or the dataset's original evaluation size."""
    dataload = opt.get("dataload", {}) or {}
    if dataload.get("eval_h") and dataload.get("eval_w"):
        return int(dataload["eval_h"]), int(dataload["eval_w"])
    dataset = dataload.get("dataset")
    if dataset == "CityScapes" and dataload.get("small_res"):
        return CITYSCAPES_SMALL_RES_HW
    if dataset not in DEFAULT_EVAL_HW:
        raise ValueError(f"no default evaluation size for dataset {dataset!r}; pass --input_hw H W")
    return DEFAULT_EVAL_HW[dataset]


def load_retrained(opt: Mapping[str, Any], exp_id: int) -> Tuple[MultiTaskNet, List[torch.Tensor], Dict[str, Any]]:
    """The retrained network (strictly loaded, CPU, eval mode), its policies, and where they came from."""
    seed = int(opt["seed"][exp_id])
    policy_iter = str(opt["train"]["policy_iter"])
    checkpoint_dir, exp_name = opt["paths"]["checkpoint_dir"], opt["exp_name"]
    label = C.retrain_label(exp_id, policy_iter, "best")
    ckpt_file = C.checkpoint_path(checkpoint_dir, exp_name, label)
    checkpoint = C.load_checkpoint(ckpt_file, hint=f"python re-train.py --config <yaml> --exp_ids {exp_id}")
    with torch.device("meta"):  # no random init: every value comes from the checkpoint
        network = build_model(opt["backbone"], list(opt["tasks_num_class"]), skip_layer=opt.get("skip_layer", 0) or 0,
                              head_channels=opt.get("head_channels", 1024) or 1024)
    network.to_empty(device="cpu")
    C.load_state_strict(network, checkpoint[C.NETWORK_KEY], source=ckpt_file)
    policy_file = C.policy_path(checkpoint_dir, exp_name, policy_iter, seed)
    policies = C.load_policy(policy_file, hint=f"re-train.py samples and saves it: python re-train.py --config "
                                               f"<yaml> --exp_ids {exp_id}",
                             num_tasks=network.num_tasks, num_rows=network.num_policy_rows)
    source = {"exp_name": exp_name, "exp_id": exp_id, "seed": seed, "policy_iter": policy_iter,
              "checkpoint": ckpt_file, "policy_file": policy_file, "iter": int(checkpoint.get("iter", 0))}
    return network.eval(), policies, source


def verify_outputs(network: MultiTaskNet, compact: CompactMultiTaskNet, policies: Sequence[Any],
                   device: torch.device, input_hw: Tuple[int, int] = VERIFY_HW, seed: int = 0) -> float:
    """Largest |compact - full| / max(1, |full|max) over the task outputs on one random image, eval mode."""
    generator = torch.Generator().manual_seed(seed)
    img = (torch.randn(1, 3, *input_hw, generator=generator) * 60).to(device)
    network, compact = network.to(device).eval(), compact.to(device).eval()
    gates = [g.to(device) for g in padded_gates(policies, network.num_blocks)]
    with torch.no_grad():
        full = network(img, gates)  # compute-every-block path
        small = compact(img)
    return max(float((a - b).abs().max()) / max(1.0, float(a.abs().max())) for a, b in zip(full, small))


def export_experiment(opt: Mapping[str, Any], exp_id: int, out: Optional[str], input_hw: Optional[Tuple[int, int]],
                      device: torch.device, verify: bool = True) -> str:
    """Export one --exp_ids entry; prints the tree, costs, file sizes; returns the written path."""
    network, policies, source = load_retrained(opt, exp_id)
    tasks = list(opt["tasks"])
    input_hw = tuple(input_hw) if input_hw else eval_size(opt)
    print(f"exp {exp_id}: {source['checkpoint']}\npolicy (seed {source['seed']}): {source['policy_file']}")
    print(C.format_policy_table(policies, tasks))
    tree = execution_tree(policies, network.num_blocks)
    print(format_execution_tree(tree, tasks, network.backbone.block_names))
    cost = policy_cost(network, policies, input_hw, tasks)
    print(format_policy_cost(cost))
    path = out or os.path.join(opt["paths"]["checkpoint_dir"], opt["exp_name"],
                               C.retrain_label(exp_id, source["policy_iter"], "compact") + ".pth")
    meta = {**source, "tasks": tasks, "input_hw": list(input_hw),
            "cost": {"per_task": [{k: e[k] for k in ("task", "flops", "macs", "params")} for e in cost["per_task"]],
                     "tree": {k: cost["tree"][k] for k in ("flops", "macs", "params")},
                     "compute_everything": {k: cost["compute_everything"][k] for k in ("flops", "macs", "params")}}}
    payload = export_compact(network, policies, path, meta, tasks)
    kept = len(payload["kept_blocks"])
    compact = load_compact(path)
    print(f"kept blocks {kept}/{network.num_blocks}: {' '.join(payload['kept_block_names'])}")
    print(f"compact: {path}: {file_size_text(path)}, {count_parameters(compact):,} values "
          f"(full checkpoint {file_size_text(source['checkpoint'])}, network {count_parameters(network):,} values)")
    if verify:
        diff = verify_outputs(network, compact, policies, device)
        print(f"check on a random {VERIFY_HW[0]}x{VERIFY_HW[1]} image ({device}): max |compact - full| "
              f"(relative) = {diff:.2e}")
        if diff > 1e-5:
            raise RuntimeError(f"{path}: compact outputs differ from the full network by {diff:.2e} (> 1e-5)")
    return path
