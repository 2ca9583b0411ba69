"""Seeding and RNG state capture.

`fix_random_seed` is the original's (python `random`, numpy, torch, deterministic cuDNN).
`get_rng_state` / `set_rng_state` store every generator as tensors (int64 / float64 / uint8), so the
states fit in a checkpoint that loads with `torch.load(..., weights_only=True)`.
"""
from __future__ import annotations

import random

import numpy as np
import torch

PYTHON_STATE_LEN = 625  # Mersenne Twister: 624 words + position
NUMPY_KEY_LEN = 624


def fix_random_seed(seed: int) -> None:
    """Seed python `random`, numpy's global RNG and torch (CPU and every GPU); make cuDNN deterministic."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2 ** 32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict[str, torch.Tensor]:
    """Every global RNG state as a flat dict of tensors (python, numpy legacy, torch CPU, torch CUDA)."""
    version, words, gauss_next = random.getstate()
    python_state = torch.tensor([version, *words, gauss_next is not None], dtype=torch.int64)
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    if kind != "MT19937":
        raise RuntimeError(f"unexpected numpy global RNG {kind!r}")
    state = {
        "python_state": python_state,
        "python_gauss": torch.tensor([gauss_next or 0.0], dtype=torch.float64),
        "numpy_keys": torch.from_numpy(keys.astype(np.int64)),
        "numpy_meta": torch.tensor([pos, has_gauss], dtype=torch.int64),
        "numpy_gauss": torch.tensor([cached_gaussian], dtype=torch.float64),
        "torch_cpu": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # Only when CUDA is already in use: querying it would otherwise create a context on every GPU.
        state["torch_cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    """Restore the generators saved by `get_rng_state` (CUDA states only where both sides have them)."""
    required = ("python_state", "python_gauss", "numpy_keys", "numpy_meta", "numpy_gauss", "torch_cpu")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"RNG state lacks {missing}; it has {sorted(state)} (was it written by get_rng_state?)")
    python_state = [int(v) for v in state["python_state"].tolist()]
    if len(python_state) != PYTHON_STATE_LEN + 2:
        raise ValueError(f"python RNG state has {len(python_state)} entries, expected {PYTHON_STATE_LEN + 2}")
    version, words, has_gauss = python_state[0], tuple(python_state[1:-1]), python_state[-1]
    gauss_next = float(state["python_gauss"][0]) if has_gauss else None
    random.setstate((version, words, gauss_next))

    keys = state["numpy_keys"].cpu().numpy()
    if keys.shape != (NUMPY_KEY_LEN,):
        raise ValueError(f"numpy RNG keys have shape {list(keys.shape)}, expected [{NUMPY_KEY_LEN}]")
    pos, has_gauss_np = (int(v) for v in state["numpy_meta"].tolist())
    np.random.set_state(("MT19937", keys.astype(np.uint32), pos, has_gauss_np, float(state["numpy_gauss"][0])))

    torch.set_rng_state(state["torch_cpu"].cpu().to(torch.uint8))
    if "torch_cuda" in state and torch.cuda.is_available():
        saved = state["torch_cuda"].cpu().to(torch.uint8)
        for index in range(min(saved.shape[0], torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[index], device=index)
