"""Training speed options of the config section `speed:` (issue 7).

    speed.amp              null | bf16 | fp16   autocast of the network forwards; GradScaler for fp16
    speed.channels_last    NHWC weights and inputs
    speed.cudnn_benchmark  cuDNN autotuning (gives up bit-reproducibility on GPUs)
    speed.compile          torch.compile of the training forwards

Every default keeps the original float32 numerics bit for bit: with the options off, `autocast` is a
null context, `format_input` returns its argument and `apply_speed_options` returns the network itself.
The env (envs/adashare_env.py) is the only user: it calls `apply_speed_options` once, runs every network
call through `SpeedOptions.autocast` / `format_input`, and owns the GradScaler.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager, Mapping

import torch
from torch import nn

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# Extra torch.compile arguments; the tests use {'backend': 'eager'} (graph capture without code generation).
COMPILE_KWARGS: dict[str, Any] = {}


@dataclass(frozen=True)
class SpeedOptions:
    """The `speed:` section of a validated config (absent keys = the original behaviour)."""
    amp: str | None = None
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, opt: Mapping[str, Any]) -> 'SpeedOptions':
        speed = opt.get('speed') or {}
        amp = speed.get('amp')
        if amp is not None and amp not in AMP_DTYPES:
            raise ValueError(f"speed.amp = {amp!r}: expected null, 'bf16' or 'fp16'")
        return cls(amp=amp, channels_last=bool(speed.get('channels_last', False)),
                   cudnn_benchmark=bool(speed.get('cudnn_benchmark', False)),
                   compile=bool(speed.get('compile', False)))

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES.get(self.amp) if self.amp else None

    def autocast(self, device: torch.device) -> ContextManager:
        """Autocast for a network forward on `device` (bf16 works on CPU too); a null context without amp."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[self.amp])

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler:
        """Loss scaling for fp16 only: float16's narrow exponent range flushes small gradients to zero,
        bfloat16 has float32's range. Disabled, the scaler is a pass-through (`scale(loss)` is `loss`,
        `step(opt)` is `opt.step()`), so the float32 path is unchanged."""
        return torch.amp.GradScaler(device.type, enabled=self.amp == 'fp16')

    def format_input(self, img: torch.Tensor) -> torch.Tensor:
        """Images in the network's memory format (a no-op for the default contiguous NCHW)."""
        return img.contiguous(memory_format=torch.channels_last) if self.channels_last else img


def apply_speed_options(network: nn.Module, options: SpeedOptions, device: torch.device) -> nn.Module:
    """Prepare `network` in place for `options` and return the module to call for training forwards.

    That module is `network` itself or its torch.compile wrapper, which shares every parameter and buffer;
    callers keep saving and loading `network`, so checkpoint keys never get the wrapper's `_orig_mod.`
    prefix. The cuDNN flags are global: call this after seeding (fix_random_seed switches autotuning off).
    """
    if options.channels_last:
        # Only 4-d tensors (conv weights) change layout; values, names and shapes stay.
        network.to(memory_format=torch.channels_last)
    if options.cudnn_benchmark and device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.deterministic = False  # deterministic algorithms would cap the autotuner's choice
    if options.compile:
        return torch.compile(network, **COMPILE_KWARGS)
    return network
