"""Run logs under `<log_dir>/<exp_name>/`: `opt.txt`, `loss.txt` (appended) and tensorboardX events
(docs/original.md §6).

Only the main rank logs: on other ranks `RunLogger(..., enabled=False)` writes nothing at all.
Tensors are converted with `.item()` here, so callers pay the device sync only when they log.
"""
from __future__ import annotations

import numbers
import os
from typing import Any, Mapping

import torch

from engine.checkpoint import atomic_write_text


def _as_float(value: Any, tag: str) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"cannot log {tag}: a tensor of shape {list(value.shape)} is not a scalar")
        return float(value.detach().item())
    if isinstance(value, numbers.Real) or hasattr(value, "item"):  # python and numpy numbers
        return float(value)
    raise ValueError(f"cannot log {tag}: {type(value).__name__} {value!r} is not a number")


def flatten_scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """`{'seg': {'total': t}}` -> `{'seg/total': float}` (any depth, insertion order kept)."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        tag = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_scalars(value, tag))
        elif value is not None:
            flat[tag] = _as_float(value, tag)
    return flat


def _format_line(iteration: int, kind: str, scalars: Mapping[str, float]) -> str:
    items = "  ".join(f"{tag} {value:.6g}" for tag, value in scalars.items())
    return f"iter {iteration:>7d} | {kind:<8s} | {items}\n"


class RunLogger:
    """Writes the text logs and tensorboard scalars of one experiment (nothing when disabled)."""

    def __init__(self, log_dir: str, exp_name: str, enabled: bool = True):
        self.directory = os.path.join(log_dir, exp_name)
        self.enabled = enabled
        self._writer: Any = None
        self._tensorboard_failed = False

    @property
    def loss_file(self) -> str:
        return os.path.join(self.directory, "loss.txt")

    @property
    def options_file(self) -> str:
        return os.path.join(self.directory, "opt.txt")

    def _tensorboard(self) -> Any:
        """The SummaryWriter, created on first use (so a disabled or text-only logger never makes one)."""
        if self._writer is None and not self._tensorboard_failed:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                self._tensorboard_failed = True
                print("tensorboardX is not installed: logging to loss.txt only", flush=True)
                return None
            os.makedirs(self.directory, exist_ok=True)
            self._writer = SummaryWriter(logdir=self.directory)
        return self._writer

    def _append(self, line: str) -> None:
        os.makedirs(self.directory, exist_ok=True)
        with open(self.loss_file, "a", encoding="utf-8") as f:
            f.write(line)

    def note(self, text: str) -> None:
        """A dated `# ...` line in loss.txt (run start, resume, config change); parse_loss_txt skips it."""
        if self.enabled:
            import datetime
            stamp = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            self._append(f"# {stamp} {text}\n")

    def write_options(self, text: str) -> None:
        """Write `opt.txt` (atomically) with the rendered options.

        The dated `# changed at iteration N ...` lines already in the file are kept (after the options,
        before the new ones): policy learning and each retraining write the same opt.txt, and a later
        command must not erase the history of an earlier one (docs/reliability.md)."""
        if not self.enabled:
            return
        kept: list[str] = []
        if os.path.isfile(self.options_file):
            with open(self.options_file, encoding="utf-8") as handle:
                new_lines = set(text.splitlines())
                kept = [line for line in handle.read().splitlines()
                        if line.startswith("# changed at iteration ") and line not in new_lines]
        if kept:
            options = [line for line in text.splitlines() if not line.startswith("# ")]
            history = [line for line in text.splitlines() if line.startswith("# ")]
            text = "\n".join(options + kept + history) + "\n"
        atomic_write_text(self.options_file, text)

    def log_scalars(self, tag_prefix: str, values: Mapping[str, Any], iteration: int) -> None:
        """Tensorboard scalars `<tag_prefix>/<key>[/<subkey>]` (no text line)."""
        if not self.enabled:
            return
        writer = self._tensorboard()
        if writer is not None:
            for tag, value in flatten_scalars(values, tag_prefix).items():
                writer.add_scalar(tag, value, iteration)

    def log_losses(self, iteration: int, losses: Mapping[str, Any], phase: str) -> None:
        """One line in `loss.txt` and tensorboard scalars tagged `key/subkey`, as the original's print_loss."""
        if not self.enabled:
            return
        scalars = flatten_scalars(losses)
        self._append(_format_line(iteration, phase, scalars))
        writer = self._tensorboard()
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(tag, value, iteration)

    def log_metrics(self, iteration: int, metrics: Mapping[str, Any], split: str) -> None:
        """Validation metrics: a `loss.txt` line and scalars tagged `<split>/<task>/<metric>`."""
        if not self.enabled:
            return
        scalars = flatten_scalars(metrics)
        self._append(_format_line(iteration, split, scalars))
        writer = self._tensorboard()
        if writer is not None:
            for tag, value in scalars.items():
                writer.add_scalar(f"{split}/{tag}", value, iteration)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
