"""The paper's baseline architectures behind one base class and a registry (Multi-Task and Single-Task on any
registry backbone; Cross-Stitch, Sluice, NDDR-CNN and MTAN on the Deeplab-ResNets)."""
from .base import ARCHITECTURES, MultiTaskBaseline, build_baseline, register
from .cross_stitch import CrossStitchNet
from .mtan import MTANNet
from .multi_task import HardSharingNet
from .nddr import NDDRNet
from .single_task import SingleTaskNets
from .sluice import SluiceNet

__all__ = [
    "ARCHITECTURES", "CrossStitchNet", "HardSharingNet", "MTANNet", "MultiTaskBaseline", "NDDRNet",
    "SingleTaskNets", "SluiceNet", "build_baseline", "register",
]
