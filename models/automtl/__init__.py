"""AutoMTL (Zhang, Liu, Guan, NeurIPS 2022): operator-level sharing search on any fx-traceable backbone
(docs/automtl.md). Per task and per conv one of: 0 shared operator, 1 task-specific copy, 2 skip."""
from .compact import CompactAutoMTLNet, export_compact
from .convert import AutoMTLConversionError, ConvertedBackbone, convert_backbone
from .counting import PaperCount, compact_parameter_count, paper_parameter_count
from .nodes import ConvNode, TaskBatchNorm, make_skip, needs_projection
from .options import HARD, MODES, NUM_OPTIONS, OPTION_NAMES, PRETRAIN, SHARED, SKIP, SOFT, SPECIFIC, Route
from .policy import (choices_from_one_hot, gumbel_softmax_weights, hard_choices, init_policy_logits, is_policy_step,
                     one_hot, policy_steps_before, sample_choices, softmax_weights, temperature)
from .regulariser import CODE_SCALE, PAPER_SCALE, depth_weights, policy_regulariser
from .supermodel import AutoMTLNet

__all__ = [
    "AutoMTLConversionError", "AutoMTLNet", "CODE_SCALE", "CompactAutoMTLNet", "ConvNode", "ConvertedBackbone",
    "HARD", "MODES", "NUM_OPTIONS", "OPTION_NAMES", "PAPER_SCALE", "PRETRAIN", "PaperCount", "Route", "SHARED",
    "SKIP", "SOFT", "SPECIFIC", "TaskBatchNorm", "build_automtl", "choices_from_one_hot", "compact_parameter_count",
    "convert_backbone", "depth_weights", "export_compact", "gumbel_softmax_weights", "hard_choices",
    "init_policy_logits", "is_policy_step", "make_skip", "needs_projection", "one_hot", "paper_parameter_count",
    "policy_regulariser", "policy_steps_before", "sample_choices", "softmax_weights", "temperature",
]


def build_automtl(backbone: str, tasks_num_class, head_channels: int = 1024) -> AutoMTLNet:
    """The supermodel of a registry backbone name (models.backbones), freshly initialised."""
    from ..backbones import build_backbone
    return AutoMTLNet(build_backbone(backbone), list(tasks_num_class), head_channels=head_channels,
                      backbone_name=backbone)
