"""The known-answer benchmark's report (docs/known_answer.md): the scores of evaluation/sharing_scores.py as a
table in the paper tables' renderers (markdown, LaTeX, CSV), and the policies drawn side by side."""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from evaluation.sharing_scores import KnownAnswerScores, Score
from reporting.plots import plot_policy
from reporting.tables import Block, Cell, Line, PlainTable

HEADERS = ['From probabilities', 'From sampled architectures']
CSV_NAMES = ['from_probabilities', 'from_samples']
GENERATOR = 'python tools/known_answer.py score'


def _value(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _line(score: Score, decimals: int) -> Line:
    verdict = '' if score.holds is None else ('— holds' if score.holds else '— fails')
    cells = [Cell(_value(score.probability), decimals=decimals),
             Cell(score.sample_mean, score.sample_std, decimals=decimals)]
    return Line(f'{score.name} ({score.subject})', score.known, cells, note=verdict)


def scores_table(scores: KnownAnswerScores, title: str, source: str = '') -> PlainTable:
    """The checks block and the per-task block; the notes say how each number is defined."""
    checks = [_line(s, 3) for s in scores.checks]
    per_task = [_line(s, 2 if s.name == 'executed blocks' else 3) for s in scores.per_task]
    samples = (f'{scores.num_samples} architectures sampled as re-train.py does (one per seed)'
               if scores.num_samples else 'no sampled architectures')
    notes = [
        f'{source}P = {scores.blocks} gated blocks (0 = bottom), top-k sharing over the top k = {scores.top_k}; '
        f'{samples}; sampled columns: mean ± std (ddof 1) over the samples.',
        'Decision agreement: fraction of blocks with the same decision (probabilities: its expectation '
        'mean_b [p_a p_b + (1 − p_a)(1 − p_b)]); probability agreement: 1 − mean_b |p_a − p_b|.',
        'Executed blocks: Σ_b p_b (samples: Σ_b d_b); centre: Σ_b p_b x_b / Σ_b p_b with x_b = (b + 1/2) / P, '
        '0 = bottom, 1 = top.',
        'Top-k sharing: over the top k blocks, Σ p_a p_b / Σ (p_a + p_b − p_a p_b) '
        '(samples: |A ∩ B| / |A ∪ B|).',
        '"holds" / "fails": the check on the probabilities column (docs/known_answer.md).',
    ]
    return PlainTable(title, HEADERS, CSV_NAMES,
                      [Block('Known answer: checks', 'Known answer', checks, 'checks'),
                       Block('Per task', 'Known answer', per_task, 'per_task')],
                      notes=notes, generator=GENERATOR, row_header='Score',
                      csv_run_name='known_answer')


def plot_policies(scores: KnownAnswerScores, probabilities: np.ndarray, path: str,
                  sample: Sequence[Any] | None = None, title: str | None = None) -> str:
    """The tasks' execute probabilities one row per task, block by block (and one sampled architecture),
    each task labelled with its role in the known answer."""
    labels = [f'{task} ({scores.relations.role(task)})' if scores.relations.role(task) != '–' else task
              for task in scores.tasks]
    policies = None if sample is None else [np.stack([np.asarray(row), 1 - np.asarray(row)], axis=1)
                                            for row in sample]
    return plot_policy(list(probabilities), labels, path, policies=policies, title=title)
