"""Scores of a learned AdaShare policy against the known answer of the sharing benchmark (docs/known_answer.md).

Inputs are per task the execute probabilities p_t[b] = softmax(task{t}_logits[b])[0] of the P gated blocks
(b = 0 bottom ... P-1 top) and, optionally, S sampled architectures d_t^s[b] in {0, 1} (1 = execute), as
re-train.py samples them. Every score has a form from the probabilities and one from the samples:

* decision agreement of a pair (a, b): samples: the fraction of blocks with the same decision,
  (1/P) Σ_b 1[d_a[b] = d_b[b]], mean over samples; probabilities: its expectation for independent samples,
  (1/P) Σ_b (p_a p_b + (1 - p_a)(1 - p_b)). Both are 1 only when both tasks have decided the same way.
* probability agreement of a pair: 1 - (1/P) Σ_b |p_a[b] - p_b[b]| (probabilities only): 1 when the learned
  probabilities are equal, decided or not.
* executed blocks of a task: Σ_b p_t[b] (expected) and Σ_b d_t[b] (samples).
* executed-block centre of a task: where its executed blocks sit, 0 = bottom, 1 = top:
  Σ_b p_t[b] x_b / Σ_b p_t[b] with x_b = (b + 1/2) / P (samples: the mean x_b of the executed blocks;
  undefined when nothing is executed).
* top-k sharing of a pair: over the top k gated blocks T, the share of the blocks either task executes that
  both execute (Jaccard index): samples |A ∩ B| / |A ∪ B| (undefined when both skip all of T), probabilities
  the ratio of the expected counts Σ_T p_a p_b / Σ_T (p_a + p_b - p_a p_b). Why not P(both execute) alone: it
  grows with the number of executed blocks, so a pair that skips its top blocks (sparsity) would look
  unrelated; why not the decision agreement: two tasks that both skip a block agree, yet share nothing.

`known_answer_scores` turns these into the benchmark's checks: the duplicate pair's agreement, the low-level
and unlearnable tasks' executed blocks against the high-level tasks', and the top-k sharing of the unrelated pair
against the duplicate pair. Only numpy: reading checkpoints and sampling are the tool's (tools/known_answer.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

# Tolerances of the checks (docs/known_answer.md): the duplicate pair must agree on at least 90 % of the
# blocks; "clearly fewer" executed blocks means at most 75 % of the high-level tasks' mean; a difference that
# must be negative (centre, sharing) must be at most -0.05, so that an undecided policy (every p near 0.5, all
# differences float noise) passes no check.
DUPLICATE_MIN_AGREEMENT = 0.9
FEWER_BLOCKS_MAX_RATIO = 0.75
MIN_MARGIN = 0.05


# ------------------------------------------------------------------------------------------------ inputs
def execute_probabilities(logits: np.ndarray) -> np.ndarray:
    """[P] softmax(logits)[:, 0] of one task's [P, 2] logits (column 0 = execute)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f'policy logits must be [P, 2] (column 0 = execute), got shape {list(logits.shape)}')
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    return weights[:, 0] / weights.sum(axis=1)


DECIDED_MARGIN = 0.1


def decided_fraction(probabilities: Sequence | np.ndarray, margin: float = DECIDED_MARGIN) -> float:
    """Share of the execute probabilities (any shape) below `margin` or above 1 - `margin`: how far a policy
    has decided (docs/known_answer.md, "The deciding schedule"); 0.5 everywhere gives 0."""
    array = np.asarray(probabilities, dtype=np.float64)
    if array.size == 0:
        raise ValueError('decided_fraction: no probabilities')
    if not 0 < margin < 0.5:
        raise ValueError(f'decided_fraction: margin must lie in (0, 0.5), got {margin}')
    return float(np.mean((array < margin) | (array > 1 - margin)))


def _probabilities(p: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(p, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f'{what}: expected a non-empty vector of execute probabilities, got shape {list(array.shape)}')
    if not np.all((array >= 0) & (array <= 1)):
        raise ValueError(f'{what}: execute probabilities must lie in [0, 1], got {array.tolist()}')
    return array


def _decisions(d: Sequence | np.ndarray, what: str) -> np.ndarray:
    """[S, P] 0/1 execute decisions (a single [P] vector is one sample)."""
    array = np.asarray(d)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f'{what}: expected [S, P] execute decisions, got shape {list(array.shape)}')
    if not np.isin(array, (0, 1)).all():
        found = sorted(set(array.ravel().tolist()))[:6]
        raise ValueError(f'{what}: decisions must be 0 or 1 (1 = execute), got {found}')
    return array.astype(np.float64)


def _same_length(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f'{what}: the two policies have {a.shape[-1]} and {b.shape[-1]} blocks')


def _top(k: int, blocks: int) -> slice:
    if not 1 <= k <= blocks:
        raise ValueError(f'top-k sharing: k must be in [1, {blocks}] (the gated blocks), got {k}')
    return slice(blocks - k, blocks)


# ------------------------------------------------------------------------------------------------ scores
def probability_agreement(p_a, p_b) -> float:
    """1 - mean_b |p_a[b] - p_b[b]|."""
    p_a, p_b = _probabilities(p_a, 'probability agreement'), _probabilities(p_b, 'probability agreement')
    _same_length(p_a, p_b, 'probability agreement')
    return float(1.0 - np.abs(p_a - p_b).mean())


def expected_decision_agreement(p_a, p_b) -> float:
    """mean_b P(same decision) of independent samples: p_a p_b + (1 - p_a)(1 - p_b)."""
    p_a, p_b = _probabilities(p_a, 'decision agreement'), _probabilities(p_b, 'decision agreement')
    _same_length(p_a, p_b, 'decision agreement')
    return float((p_a * p_b + (1 - p_a) * (1 - p_b)).mean())


def decision_agreement(d_a, d_b) -> np.ndarray:
    """[S] per sample, the fraction of blocks where the two tasks decide the same."""
    d_a, d_b = _decisions(d_a, 'decision agreement'), _decisions(d_b, 'decision agreement')
    _same_length(d_a, d_b, 'decision agreement')
    return (d_a == d_b).mean(axis=1)


def expected_executed(p) -> float:
    """Σ_b p[b]: the expected number of executed gated blocks."""
    return float(_probabilities(p, 'executed blocks').sum())


def executed(d) -> np.ndarray:
    """[S] executed gated blocks per sample."""
    return _decisions(d, 'executed blocks').sum(axis=1)


def _positions(blocks: int) -> np.ndarray:
    return (np.arange(blocks) + 0.5) / blocks


def expected_centre(p) -> float:
    """Σ p x / Σ p with x_b = (b + 1/2) / P (0 bottom, 1 top); NaN when nothing is executed."""
    p = _probabilities(p, 'executed-block centre')
    total = p.sum()
    return float((p * _positions(p.size)).sum() / total) if total > 0 else math.nan


def centre(d) -> np.ndarray:
    """[S] mean position x_b of the executed blocks of each sample; NaN where a sample executes none."""
    d = _decisions(d, 'executed-block centre')
    counts = d.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(counts > 0, (d * _positions(d.shape[1])).sum(axis=1) / counts, math.nan)


def expected_top_sharing(p_a, p_b, k: int) -> float:
    """Σ_T p_a p_b / Σ_T (p_a + p_b - p_a p_b) over the top k blocks T; NaN when neither executes any of T."""
    p_a, p_b = _probabilities(p_a, 'top-k sharing'), _probabilities(p_b, 'top-k sharing')
    _same_length(p_a, p_b, 'top-k sharing')
    top = _top(k, p_a.size)
    a, b = p_a[top], p_b[top]
    union = (a + b - a * b).sum()
    return float((a * b).sum() / union) if union > 0 else math.nan


def top_sharing(d_a, d_b, k: int) -> np.ndarray:
    """[S] |A ∩ B| / |A ∪ B| over the top k blocks per sample; NaN where both skip all of them."""
    d_a, d_b = _decisions(d_a, 'top-k sharing'), _decisions(d_b, 'top-k sharing')
    _same_length(d_a, d_b, 'top-k sharing')
    top = _top(k, d_a.shape[1])
    a, b = d_a[:, top], d_b[:, top]
    both, either = (a * b).sum(axis=1), np.maximum(a, b).sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(either > 0, both / either, math.nan)


def default_top_k(blocks: int) -> int:
    """The top half of the gated blocks (rounded up): where AdaShare's tasks are expected to branch."""
    return max(1, math.ceil(blocks / 2))


# ------------------------------------------------------------------------------------------------ relations
@dataclass(frozen=True)
class Relations:
    """The known answer's roles, by task name (the KnownAnswer task set's by default)."""
    duplicate: tuple[str, str] | None = ('seg', 'seg_perm')
    unrelated: tuple[str, str] | None = ('seg', 'texture')
    low_level: tuple[str, ...] = ('blur',)
    unlearnable: tuple[str, ...] = ('noise',)
    high_level: tuple[str, ...] = ('seg', 'seg_perm', 'sn', 'depth')

    def present(self, tasks: Sequence[str]) -> 'Relations':
        """The roles whose tasks are all in `tasks` (a task set may leave relations out)."""
        tasks = set(tasks)

        def pair(value):
            return value if value is not None and set(value) <= tasks else None
        return Relations(pair(self.duplicate), pair(self.unrelated), tuple(t for t in self.low_level if t in tasks),
                         tuple(t for t in self.unlearnable if t in tasks),
                         tuple(t for t in self.high_level if t in tasks))

    def role(self, task: str) -> str:
        """What the known answer says about `task`, in words."""
        roles = []
        if task in self.high_level:
            roles.append('high-level')
        if self.duplicate and task == self.duplicate[1]:
            roles.append(f'duplicate of {self.duplicate[0]}')
        if self.unrelated and task == self.unrelated[1]:
            roles.append(f'unrelated to {self.unrelated[0]}')
        if task in self.low_level:
            roles.append('low-level: fewer, bottom blocks')
        if task in self.unlearnable:
            roles.append('unlearnable: few blocks')
        return ', '.join(roles) or '–'


@dataclass
class Score:
    """One score: `probability` from the execute probabilities, `samples` one value per sampled architecture
    (NaN where undefined), `known` the known answer in words, `holds` the check on the probabilities (None: no
    check on this score, or undefined)."""
    name: str
    subject: str
    known: str
    probability: float | None
    samples: list[float] = field(default_factory=list)
    holds: bool | None = None

    @property
    def sample_mean(self) -> float | None:
        values = [v for v in self.samples if not math.isnan(v)]
        return float(np.mean(values)) if values else None

    @property
    def sample_std(self) -> float | None:
        values = [v for v in self.samples if not math.isnan(v)]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None


@dataclass
class KnownAnswerScores:
    """Every score of one policy: the checks of the known answer, then the per-task blocks."""
    tasks: list[str]
    blocks: int
    top_k: int
    num_samples: int
    checks: list[Score]
    per_task: list[Score]
    relations: Relations

    def as_dict(self) -> dict:
        def row(score: Score) -> dict:
            return {'name': score.name, 'subject': score.subject, 'known': score.known,
                    'probability': score.probability, 'sample_mean': score.sample_mean,
                    'sample_std': score.sample_std, 'holds': score.holds}
        return {'tasks': self.tasks, 'blocks': self.blocks, 'top_k': self.top_k, 'num_samples': self.num_samples,
                'checks': [row(s) for s in self.checks], 'per_task': [row(s) for s in self.per_task]}


def _list(values: np.ndarray | None) -> list[float]:
    return [] if values is None else [float(v) for v in values]


def _mean_of(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def known_answer_scores(tasks: Sequence[str], probabilities: Sequence | np.ndarray,
                        samples: Sequence | np.ndarray | None = None, relations: Relations = Relations(),
                        top_k: int | None = None) -> KnownAnswerScores:
    """All scores of a policy: `probabilities` [K, P] (tasks in `tasks` order), `samples` [S, K, P] 0/1."""
    tasks = list(tasks)
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != len(tasks):
        raise ValueError(f'probabilities: expected [{len(tasks)}, P] for tasks {tasks}, got {list(probs.shape)}')
    blocks = probs.shape[1]
    draws = None
    if samples is not None:
        draws = np.asarray(samples)
        if draws.ndim != 3 or draws.shape[1:] != probs.shape:
            raise ValueError(f'samples: expected [S, {len(tasks)}, {blocks}], got {list(draws.shape)}')
        if draws.shape[0] == 0:
            draws = None
    k = default_top_k(blocks) if top_k is None else int(top_k)
    _top(k, blocks)
    relations = relations.present(tasks)
    index = {task: i for i, task in enumerate(tasks)}

    def p(task: str) -> np.ndarray:
        return probs[index[task]]

    def d(task: str) -> np.ndarray | None:
        return None if draws is None else draws[:, index[task]]

    per_task = []
    executed_p, centre_p, executed_s, centre_s = {}, {}, {}, {}
    for task in tasks:
        executed_p[task], centre_p[task] = expected_executed(p(task)), expected_centre(p(task))
        executed_s[task] = _list(None if draws is None else executed(d(task)))
        centre_s[task] = _list(None if draws is None else centre(d(task)))
        per_task.append(Score('executed blocks', task, relations.role(task), executed_p[task], executed_s[task]))
        per_task.append(Score('executed-block centre', task, relations.role(task), centre_p[task], centre_s[task]))

    checks: list[Score] = []
    high = list(relations.high_level)
    if relations.duplicate is not None:
        a, b = relations.duplicate
        subject = f'{a}, {b}'
        agreement = probability_agreement(p(a), p(b))
        known = f'= 1 (holds if ≥ {DUPLICATE_MIN_AGREEMENT})'
        checks.append(Score('duplicate: probability agreement', subject, known, agreement, [],
                            agreement >= DUPLICATE_MIN_AGREEMENT))
        expected = expected_decision_agreement(p(a), p(b))
        checks.append(Score('duplicate: decision agreement', subject, known, expected, _list(None if draws is None else decision_agreement(d(a), d(b))),
                            expected >= DUPLICATE_MIN_AGREEMENT))
    if high:
        high_p = float(np.mean([executed_p[t] for t in high]))
        high_s = [float(np.mean(v)) for v in zip(*(executed_s[t] for t in high))] if draws is not None else []
        high_centre = _mean_of([centre_p[t] for t in high])  # tasks that execute nothing have no centre
        high_centre_s = [_mean_of(v) for v in zip(*(centre_s[t] for t in high))] if draws is not None else []
        for role, members in (('low-level', relations.low_level), ('unlearnable', relations.unlearnable)):
            for task in members:
                ratio = executed_p[task] / high_p if high_p > 0 else math.nan
                ratio_s = [x / h if h > 0 else math.nan for x, h in zip(executed_s[task], high_s)]
                checks.append(Score(f'{role}: executed blocks ÷ high-level mean', task,
                                    f'< 1 (holds if ≤ {FEWER_BLOCKS_MAX_RATIO})', ratio, ratio_s,
                                    None if math.isnan(ratio) else ratio <= FEWER_BLOCKS_MAX_RATIO))
            if role == 'low-level':
                for task in members:
                    shift = centre_p[task] - high_centre
                    shift_s = [c - h for c, h in zip(centre_s[task], high_centre_s)]
                    checks.append(Score('low-level: executed-block centre − high-level mean', task,
                                        f'< 0 (holds if ≤ −{MIN_MARGIN}: bottom blocks)', shift, shift_s,
                                        None if math.isnan(shift) else shift <= -MIN_MARGIN))
    if relations.duplicate is not None and relations.unrelated is not None:
        pairs = {'duplicate': relations.duplicate, 'unrelated': relations.unrelated}
        sharing_p = {name: expected_top_sharing(p(a), p(b), k) for name, (a, b) in pairs.items()}
        sharing_s = {name: _list(None if draws is None else top_sharing(d(a), d(b), k))
                     for name, (a, b) in pairs.items()}
        for name, (a, b) in pairs.items():
            checks.append(Score(f'{name}: top-{k} sharing', f'{a}, {b}', 'unrelated < duplicate',
                                sharing_p[name], sharing_s[name]))
        gap = sharing_p['unrelated'] - sharing_p['duplicate']
        gap_s = [u - v for u, v in zip(sharing_s['unrelated'], sharing_s['duplicate'])]
        subject = ' − '.join(f'({a}, {b})' for a, b in (relations.unrelated, relations.duplicate))
        checks.append(Score(f'top-{k} sharing: unrelated − duplicate', subject, f'< 0 (holds if ≤ −{MIN_MARGIN})',
                            gap, gap_s, None if math.isnan(gap) else gap <= -MIN_MARGIN))
    return KnownAnswerScores(tasks, blocks, k, 0 if draws is None else draws.shape[0], checks, per_task, relations)


# ------------------------------------------------------------------------------------------------ architectures
# Any method's architecture as operators (docs/known_answer.md, "The comparison"): per task and gated block the
# id of the operator the task runs there, SKIP where it runs none. AdaShare (and Random #1/#2, the "w/o"
# ablations, Multi-Task): executed block b -> operator b, the one copy every executing task shares; Single-Task:
# task t's private copy of block b -> operator b + P (t + 1); AutoMTL: per block its choice, the shared operator
# (b), a task-specific one (b + P (t + 1)) or skip. Two tasks share a block when they run the same operator.
SKIP = -1


def adashare_operators(decisions: Sequence | np.ndarray) -> np.ndarray:
    """[..., K, P] 0/1 execute decisions -> operators: b where executed, SKIP elsewhere."""
    d = np.asarray(decisions)
    blocks = np.broadcast_to(np.arange(d.shape[-1]), d.shape)
    return np.where(d.astype(bool), blocks, SKIP).astype(np.int64)


def private_operators(num_tasks: int, blocks: int) -> np.ndarray:
    """[K, P] every task runs its own copy of every block (Single-Task): operator b + P (t + 1)."""
    return np.arange(blocks)[None, :] + blocks * (np.arange(num_tasks)[:, None] + 1)


def architecture_checks(tasks: Sequence[str], operators: Sequence | np.ndarray, relations: Relations = Relations(),
                        top_k: int | None = None) -> list[Score]:
    """The known answer's checks on architectures `operators` [S, K, P] (one per seed): every Score's
    `samples` holds one value per architecture, `holds` judges their mean; `probability` is None.

    Same definitions as the sampled columns of known_answer_scores, with "both execute" read as "both run the
    same operator": decision agreement = share of blocks with the same operator (both skipping included),
    top-k sharing = |A ∩ B| / |A ∪ B| of the operator sets of the top k blocks. For AdaShare's operators these
    equal known_answer_scores' sampled values."""
    tasks = list(tasks)
    ops = np.asarray(operators, dtype=np.int64)
    if ops.ndim != 3 or ops.shape[1] != len(tasks) or ops.shape[0] == 0:
        raise ValueError(f'operators: expected [S >= 1, {len(tasks)}, P] for tasks {tasks}, got {list(ops.shape)}')
    blocks = ops.shape[2]
    k = default_top_k(blocks) if top_k is None else int(top_k)
    top = _top(k, blocks)
    relations = relations.present(tasks)
    index = {task: i for i, task in enumerate(tasks)}
    run = ops != SKIP

    def ex(task):
        return run[:, index[task]].sum(axis=1).astype(np.float64)

    def ce(task):
        return centre(run[:, index[task]].astype(np.int64))

    def agree(a, b):
        return (ops[:, index[a]] == ops[:, index[b]]).mean(axis=1)

    def share(a, b):
        values = []
        for s in range(ops.shape[0]):
            A = {int(o) for o in ops[s, index[a], top] if o != SKIP}
            B = {int(o) for o in ops[s, index[b], top] if o != SKIP}
            values.append(len(A & B) / len(A | B) if A | B else math.nan)
        return np.asarray(values)

    def score(name, subject, known, values, test):
        values = [float(v) for v in values]
        mean = _mean_of(values)
        return Score(name, subject, known, None, values, None if math.isnan(mean) else bool(test(mean)))

    checks: list[Score] = []
    if relations.duplicate is not None:
        a, b = relations.duplicate
        checks.append(score('duplicate: decision agreement', f'{a}, {b}', f'= 1 (holds if ≥ {DUPLICATE_MIN_AGREEMENT})',
                            agree(a, b), lambda m: m >= DUPLICATE_MIN_AGREEMENT))
    high = list(relations.high_level)
    if high:
        high_ex = np.mean([ex(t) for t in high], axis=0)
        high_ce = [_mean_of(v) for v in zip(*(ce(t) for t in high))]
        for role, members in (('low-level', relations.low_level), ('unlearnable', relations.unlearnable)):
            for task in members:
                with np.errstate(invalid='ignore', divide='ignore'):
                    ratio = np.where(high_ex > 0, ex(task) / np.where(high_ex > 0, high_ex, 1), math.nan)
                checks.append(score(f'{role}: executed blocks ÷ high-level mean', task,
                                    f'< 1 (holds if ≤ {FEWER_BLOCKS_MAX_RATIO})', ratio,
                                    lambda m: m <= FEWER_BLOCKS_MAX_RATIO))
                if role == 'low-level':
                    shift = [c - h for c, h in zip(ce(task), high_ce)]
                    checks.append(score('low-level: executed-block centre − high-level mean', task,
                                        f'< 0 (holds if ≤ −{MIN_MARGIN}: bottom blocks)', shift,
                                        lambda m: m <= -MIN_MARGIN))
    if relations.duplicate is not None and relations.unrelated is not None:
        gap = share(*relations.unrelated) - share(*relations.duplicate)
        subject = ' − '.join(f'({a}, {b})' for a, b in (relations.unrelated, relations.duplicate))
        checks.append(score(f'top-{k} sharing: unrelated − duplicate', subject, f'< 0 (holds if ≤ −{MIN_MARGIN})',
                            gap, lambda m: m <= -MIN_MARGIN))
    return checks
