"""Loss weighting methods, one per module, behind `Weighting` and the registry (docs/weighting.md)."""
from .base import (WEIGHTINGS, Arg, Weighting, WeightingContext, argument_problems, build_weighting, lambda_sum,
                   register_weighting, resolved_arguments)
from . import equal, uw, dwa, famo, gradnorm, pcgrad, cagrad, nash_mtl, imtl  # noqa: F401,E401 (registration)
from .gradients import combined_backward

__all__ = ['WEIGHTINGS', 'Arg', 'Weighting', 'WeightingContext', 'argument_problems', 'build_weighting',
           'combined_backward', 'lambda_sum', 'register_weighting', 'resolved_arguments']
