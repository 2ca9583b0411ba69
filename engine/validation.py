"""Model selection during a run: the validation split, the score against the reference metrics, the
"best" threshold, and a watch that says so when no validation ever gave a finite score."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass


from config import backbone_blocks


# Blocks as the original's train.py counts them for the "best" threshold (docs/original.md §1.1: ResNet34 -> 18,
# sic); every other backbone (and quirks.true_block_count) uses its real count of gated blocks.
_BEST_THRESHOLD_BLOCKS = {'ResNet10': 4, 'ResNet18': 8, 'ResNet34': 18, 'ResNet101': 33}


def best_threshold_blocks(opt: dict) -> int:
    """`num_blocks` of the "best" threshold; quirks.true_block_count uses the real count."""
    if (opt.get('quirks') or {}).get('true_block_count', False) or opt['backbone'] not in _BEST_THRESHOLD_BLOCKS:
        return backbone_blocks(opt['backbone'])
    return _BEST_THRESHOLD_BLOCKS[opt['backbone']]


def validation_split(opt: dict) -> str:
    """The split used for model selection: the original's test/test_small, or quirks.val_split."""
    chosen = (opt.get('quirks') or {}).get('val_split')
    if chosen:
        return chosen
    return 'test_small' if opt['dataload']['dataset'] == 'Taskonomy' else 'test'


def eval_iter(opt: dict) -> int:
    value = (opt.get('quirks') or {}).get('eval_iter', 10)
    return 10 if value is None else int(value)


class NoFiniteValidationError(ValueError):
    """Every validation of a run gave a NaN/inf score."""


@dataclass
class ValidationWatch:
    """Counts validations and those with a finite score, so a run that never had one can say so."""
    split: str
    refer: dict
    count: int = 0
    finite: int = 0
    example: str = ''

    def add(self, metrics: dict) -> float:
        """Record one validation; returns its score."""
        from evaluation.metrics import score
        value = score(metrics, self.refer) if metrics else math.nan
        if metrics:
            self.count += 1
            if math.isfinite(value):
                self.finite += 1
            elif not self.example:
                bad = [f'{t}/{k} = {v}' for t, m in metrics.items() for k, v in m.items()
                       if not math.isfinite(float(v))]
                self.example = bad[0] if bad else f'score = {value}'
        return value

    def check(self, what: str) -> None:
        """Raise when this process validated and never got a finite score."""
        if self.count and not self.finite:
            raise NoFiniteValidationError(
                f'{what}: none of the {self.count} validation(s) gave a finite score ({self.example}), so no best '
                f'was saved; check the labels of split \'{self.split}\' (non-finite or all-invalid values) and the '
                f'loss lines in loss.txt')


def report_policy_best(env, opt: dict, first_best_iter: int) -> None:
    """Say so when policy learning ended without a `best` checkpoint (re-train.py defaults to policy_iter: best)."""
    path = env.checkpoint_file('best')
    if os.path.exists(path):
        return
    print(f'note: no policy `best` was written ({path}): the validation score counts from iteration '
          f'{first_best_iter} on and the run ended at iteration {env.state.current_iter}. For re-train.py set '
          f'train.policy_iter: latest, or run longer (train.total_iters).')


@dataclass
class LoopConfig:
    """Iteration counts of the policy-learning loop, with the loader-length defaults filled in."""
    total_iters: int
    warm_up_iters: int
    weight_iter_alternate: int
    alpha_iter_alternate: int
    print_freq: int
    val_freq: int


def losses_to_float(losses: dict) -> dict:
    """Detached loss tensors to floats (one host sync, only when logging)."""
    return {k: {kk: float(vv) for kk, vv in v.items()} for k, v in losses.items()}


def loss_line(tag: str, values: dict) -> str:
    return f'[{tag}] ' + ' '.join(f"{k}={v['total']:.4f}" for k, v in values.items())
