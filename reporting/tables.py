"""The paper's tables (Tables 1-6 and 8) rendered from test.py result files: Markdown, LaTeX and CSV.

A table spec (yamls/tables/*.yml) lists the rows: a method label and the yaml test.py was run with.
Each row is shown twice: the paper's protocol (the run with the best validation score among the seeds)
and the mean ± std over the seeds. The columns are the paper's metrics of the dataset and tasks
(evaluation.metrics.paper_metrics, in the paper's units), # Params, and Δ_t per task and Δ_T against the
spec's reference row. The published numbers (reporting/data/paper_tables.json) are printed next to ours.
Statistics, Δ_t and result-file discovery are evaluation.summary's. Command line: tools/tables.py.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import yaml

from evaluation import summary as S
from evaluation.metrics import paper_metrics
from utils.paths import REPO_ROOT
from utils.tasks import TASK_SPECS

PAPER_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'paper_tables.json')
# The AutoMTL paper's tables (ids 'automtl-<n>', its own numbering), kept apart from the AdaShare paper's.
AUTOMTL_PAPER_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'automtl_paper_tables.json')
DASH = '–'
# How many seeds a row expects when its spec names no exp_ids and no result exists (the paper's 8).
DEFAULT_SEEDS = 8
SPEC_KEYS = ('title', 'paper_table', 'reference', 'rows')
ROW_KEYS = ('method', 'config', 'exp_ids')

# (task, result key) -> (column label, scale to the paper's unit, decimals shown for our runs).
COLUMN_STYLE: dict[tuple[str, str], tuple[str, float, int]] = {
    ('seg', 'mIoU'): ('mIoU', 100.0, 2), ('seg', 'Pixel Acc'): ('Pixel Acc', 100.0, 2),
    ('sn', 'Angle Mean'): ('Mean', 1.0, 2), ('sn', 'Angle Median'): ('Median', 1.0, 2),
    ('sn', 'Angle 11.25'): ('11.25°', 1.0, 2), ('sn', 'Angle 22.5'): ('22.5°', 1.0, 2),
    ('sn', 'Angle 30'): ('30°', 1.0, 2),
    ('depth', 'abs_err'): ('Abs', 1.0, 4), ('depth', 'rel_err'): ('Rel', 1.0, 4),
    ('depth', 'sigma_1.25'): ('1.25', 1.0, 2), ('depth', 'sigma_1.25^2'): ('1.25²', 1.0, 2),
    ('depth', 'sigma_1.25^3'): ('1.25³', 1.0, 2),
}
# Tiny-Taskonomy's columns are one value per task, labelled by the task (Table 4); the titles of every task are
# the registry's (utils/tasks.py).
TASK_TITLES = {name: spec.title for name, spec in TASK_SPECS.items()}
UNITS = ('Units: mIoU and Pixel Acc in %; normal Mean/Median in degrees and 11.25°/22.5°/30° in % of pixels '
         'within; depth Abs/Rel as the result files, 1.25ⁿ in % within δ; Tiny-Taskonomy: the test loss of each '
         'task, SN the cosine similarity. # Params: backbone parameters relative to one single-task backbone.')


class TableError(ValueError):
    """A spec, config or result file that cannot make a table; the message is one line naming it."""


@dataclass(frozen=True)
class Column:
    """One metric column: result key, direction and presentation."""
    task: str
    key: str
    lower: bool
    label: str
    scale: float
    decimals: int

    @property
    def header(self) -> str:
        return f'{self.label} {"↓" if self.lower else "↑"}'


def table_columns(dataset: str, tasks: Sequence[str]) -> list[Column]:
    """The paper's columns for this dataset and tasks (evaluation.metrics.paper_metrics, one definition)."""
    columns = []
    for task in tasks:
        for key, lower in paper_metrics(dataset, task):
            if dataset == 'Taskonomy':
                label, scale, decimals = TASK_TITLES[task], 1.0, 4
            elif (task, key) in COLUMN_STYLE:
                label, scale, decimals = COLUMN_STYLE[(task, key)]
            else:  # a task beyond the paper's (utils/tasks.py): its kind's style, labelled with the task
                label, scale, decimals = _kind_style(task, key)
            columns.append(Column(task, key, lower, label, scale, decimals))
    return columns


def _kind_style(task: str, key: str) -> tuple[str, float, int]:
    """Column style of a non-paper task: the style of its kind's metric (an L1 `err` with 4 decimals)."""
    spec = TASK_SPECS[task]
    if (spec.kind, key) in COLUMN_STYLE:
        label, scale, decimals = COLUMN_STYLE[(spec.kind, key)]
        return f'{spec.title} {label}', scale, decimals
    return spec.title, 1.0, 4


# ----------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class RowSpec:
    method: str
    config: str  # as written in the spec (shown in commands, which run from the repository root)
    exp_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class TableSpec:
    name: str  # output file stem: the spec file name
    title: str
    paper_table: int | None
    reference: str | None
    rows: tuple[RowSpec, ...]
    path: str


def load_spec(path: str) -> TableSpec:
    """Read and check a table spec yaml (a relative path may also be relative to the repository root)."""
    path = resolve(path)
    if not os.path.isfile(path):
        raise TableError(f'{path}: no such table spec')
    with open(path, encoding='utf-8') as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as err:
            raise TableError(f'{path}: not valid YAML ({str(err).splitlines()[0]})') from err
    if not isinstance(data, Mapping):
        raise TableError(f'{path}: expected a mapping with keys {list(SPEC_KEYS)}')
    unknown = [k for k in data if k not in SPEC_KEYS]
    if unknown:
        raise TableError(f'{path}: unknown key(s) {unknown}; expected {list(SPEC_KEYS)}')
    rows = data.get('rows')
    if not isinstance(rows, list) or not rows:
        raise TableError(f'{path}: rows: expected a non-empty list of {{method, config, exp_ids}}')
    specs = [_row_spec(row, f'{path}: rows[{i}]') for i, row in enumerate(rows)]
    methods = [r.method for r in specs]
    duplicated = sorted({m for m in methods if methods.count(m) > 1})
    if duplicated:
        raise TableError(f'{path}: rows: method(s) {duplicated} listed twice')
    reference = data.get('reference')
    if reference is not None and reference not in methods:
        raise TableError(f'{path}: reference = {reference!r}: expected one of the rows\' methods {methods}')
    paper_table = data.get('paper_table')
    known = [t['table'] for t in all_paper_tables()]
    if paper_table is not None and paper_table not in known:
        raise TableError(f'{path}: paper_table = {paper_table!r}: expected null or one of {known}')
    title = data.get('title') or os.path.splitext(os.path.basename(path))[0]
    return TableSpec(os.path.splitext(os.path.basename(path))[0], str(title), paper_table, reference,
                     tuple(specs), path)


def _row_spec(row: Any, where: str) -> RowSpec:
    if not isinstance(row, Mapping) or not isinstance(row.get('method'), str) or not isinstance(row.get('config'), str):
        raise TableError(f'{where}: expected {{method: <label>, config: <yaml path>, exp_ids: [..] (optional)}}, '
                         f'got {row!r}')
    unknown = [k for k in row if k not in ROW_KEYS]
    if unknown:
        raise TableError(f'{where}: unknown key(s) {unknown}; expected {list(ROW_KEYS)}')
    exp_ids = row.get('exp_ids')
    if exp_ids is not None and (not isinstance(exp_ids, list) or not exp_ids
                                or not all(isinstance(e, int) and not isinstance(e, bool) and e >= 0
                                           for e in exp_ids)):
        raise TableError(f'{where}: exp_ids = {exp_ids!r}: expected a non-empty list of integers >= 0')
    return RowSpec(row['method'], row['config'], None if exp_ids is None else tuple(exp_ids))


def resolve(path: str) -> str:
    """A spec's config path: absolute, relative to the current folder, else to the repository root."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(REPO_ROOT, path)


# ----------------------------------------------------------------------------------------- paper data
def load_paper_tables(path: str = PAPER_DATA) -> list[dict[str, Any]]:
    """The published tables (every row tagged with its table number)."""
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)['tables']


def all_paper_tables() -> list[dict[str, Any]]:
    """The AdaShare paper's tables (numbers), then the AutoMTL paper's (ids 'automtl-<n>')."""
    return load_paper_tables(PAPER_DATA) + load_paper_tables(AUTOMTL_PAPER_DATA)


def paper_table(number: int | str, path: str | None = None) -> dict[str, Any]:
    """A published table by its number (AdaShare paper) or id ('automtl-1', AutoMTL paper)."""
    for table in (load_paper_tables(path) if path is not None else all_paper_tables()):
        if table['table'] == number:
            return table
    raise TableError(f'{path or PAPER_DATA}: no paper table {number}')


# ----------------------------------------------------------------------------------------- rows
@dataclass
class Row:
    """One method's runs: the loaded JSONs, their summary (evaluation.summary) and what is missing."""
    spec: RowSpec
    opt: dict | None = None
    results: dict[int, dict] = field(default_factory=dict)
    files: dict[int, str] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    problem: str | None = None  # why the row has no config (file not written yet)
    summary: dict | None = None

    @property
    def best(self) -> int | None:
        if not self.summary:
            return None
        best = self.summary['score']['best_exp_id']
        return best if best is not None else min(self.results)  # no score at all: the first run

    def incomplete(self, exp_ids: Sequence[int]) -> list[int]:
        return [e for e in exp_ids if self.results[e].get('run_complete') is False]


def load_row(spec: RowSpec) -> Row:
    """Read a row's config and result files; what is absent is recorded, never an error."""
    from config import ConfigFileNotFoundError, load_config
    row = Row(spec)
    path = resolve(spec.config)
    try:
        row.opt = load_config(path, 'test')
    except ConfigFileNotFoundError:
        row.problem = f'config {spec.config} not found'
        return row
    except ValueError as err:
        raise TableError(f'{spec.config}: {str(err).splitlines()[0]}') from err
    result_dir, exp_name = row.opt['paths']['result_dir'], row.opt['exp_name']
    if spec.exp_ids is not None:
        expected = list(spec.exp_ids)
        found = {e: S.result_path(result_dir, exp_name, e) for e in expected}
        found = {e: p for e, p in found.items() if os.path.isfile(p)}
    else:
        try:
            found = S.find_results(result_dir, exp_name, None, spec.config)
        except S.ResultsNotFoundError:
            found = {}
        expected = sorted(found) or list(range(min(DEFAULT_SEEDS, len(row.opt['seed']))))
    row.missing = [e for e in expected if e not in found]
    row.files = dict(sorted(found.items()))
    row.results = {e: S.read_json(p) for e, p in row.files.items()}
    return row


def check_setting(rows: Sequence[Row], paper: Mapping[str, Any] | None) -> tuple[str, list[str]]:
    """The table's dataset and tasks; a config or JSON of another setting is a TableError naming it."""
    loaded = [r for r in rows if r.opt is not None]
    if paper is not None:
        dataset, tasks, origin = paper['dataset'], list(paper['tasks']), f'paper Table {paper["table"]}'
    elif loaded:
        first = loaded[0]
        dataset, tasks = first.opt['dataload']['dataset'], list(first.opt['tasks'])
        origin = f'the first row ({first.spec.config})'
    else:
        raise TableError('no row has a config: cannot tell the dataset and tasks of the table')
    for row in loaded:
        got = (row.opt['dataload']['dataset'], list(row.opt['tasks']))
        if got != (dataset, tasks):
            raise TableError(f'{row.spec.config}: dataset {got[0]}, tasks {got[1]}; expected dataset {dataset}, '
                             f'tasks {tasks} as {origin}')
        architecture = row.opt.get('architecture', 'adashare')
        for e, result in row.results.items():
            where = row.files[e]
            json_tasks = list(S.metric_tables(result, where))
            if sorted(json_tasks) != sorted(tasks):
                raise TableError(f'{where}: tasks {json_tasks}; expected {tasks} of {row.spec.config} '
                                 f'(a result of another setting?)')
            if result.get('architecture', architecture) != architecture:
                raise TableError(f'{where}: architecture {result["architecture"]!r}; expected {architecture!r} '
                                 f'of {row.spec.config}')
    return dataset, tasks


def summarize_row(row: Row, dataset: str, tasks: Sequence[str]) -> None:
    """Fill `row.summary` with evaluation.summary's statistics and best run by validation score."""
    if not row.results:
        return
    row.summary = S.summarize(row.results, None, seeds=list(row.opt['seed']), reference=S.score_reference(row.opt),
                              tasks=tasks, sources=row.files)
    for e, result in row.results.items():  # a paper metric absent from a JSON: say which, in which file
        tables = S.metric_tables(result, row.files[e])
        for task in tasks:
            for key, _ in paper_metrics(dataset, task):
                if key not in tables.get(task, {}):
                    raise TableError(f'{row.files[e]}: {task}.{key} missing; the paper\'s columns need it')


# ----------------------------------------------------------------------------------------- values
@dataclass
class Cell:
    """One table value: the number shown (None = absent), its ± part, and rank marks."""
    value: float | None
    std: float | None = None
    decimals: int = 2
    mark: str | None = None  # 'best' or 'second'

    def text(self) -> str:
        if self.value is None:
            return DASH
        shown = _fixed(self.value, self.decimals)
        return shown if self.std is None else f'{shown} ± {_fixed(self.std, self.decimals)}'

    @property
    def rounded(self) -> float | None:
        return None if self.value is None else round(self.value, self.decimals)


def _fixed(value: float, decimals: int) -> str:
    """`value` with `decimals` digits, never "-0.00" (a float residue of an exact zero)."""
    shown = f'{value:.{decimals}f}'
    return shown[1:] if shown.startswith('-') and float(shown) == 0 else shown


@dataclass
class Line:
    """One row of a rendered block."""
    method: str
    run: str
    cells: list[Cell]
    note: str = ''
    complete: bool | None = None  # None: no run (a missing row, or a published one)


def _params(result: Mapping[str, Any]) -> float | None:
    size = result.get('model_size')
    value = size.get('params_ratio') if isinstance(size, Mapping) else None
    return float(value) if S.is_number(value) else None


def _tables(row: Row, e: int) -> dict[str, dict[str, float]]:
    return S.metric_tables(row.results[e], row.files[e])


def _mean_tables(row: Row) -> dict[str, dict[str, float]]:
    return {t: {k: stats['mean'] for k, stats in metrics.items()} for t, metrics in row.summary['metrics'].items()}


def _delta(tables: Mapping[str, Mapping[str, float]], reference: Mapping[str, Mapping[str, float]], dataset: str,
           where: tuple[str, str], undefined: list[str]) -> dict[str, float] | None:
    """Δ_t of one result, or None (the reason added to `undefined`) where a reference metric is 0."""
    try:
        return S.multitask_delta(tables, reference, dataset, where=where)
    except S.ZeroReferenceError as err:
        undefined.append(str(err))
        return None


def best_block(rows: Sequence[Row], columns: Sequence[Column], reference: Row | None, dataset: str,
               tasks: Sequence[str], undefined: list[str] | None = None) -> list[Line]:
    """The paper's protocol: each row's run with the best validation score."""
    lines = []
    ref_best = reference.best if reference is not None else None
    for row in rows:
        e = row.best
        if e is None:
            lines.append(Line(row.spec.method, DASH, _empty(columns, tasks)))
            continue
        tables = _tables(row, e)
        cells = [Cell(_params(row.results[e]), decimals=2)]
        cells += [Cell(tables[c.task][c.key] * c.scale, decimals=c.decimals) for c in columns]
        delta = None
        if ref_best is not None:
            delta = _delta(tables, _tables(reference, ref_best), dataset, (row.files[e], reference.files[ref_best]),
                           undefined if undefined is not None else [])
        if delta is not None:
            cells += [Cell(delta[t], decimals=2) for t in [*tasks, 'all']]
        else:
            cells += [Cell(None) for _ in [*tasks, 'all']]
        incomplete = bool(row.incomplete([e]))
        lines.append(Line(row.spec.method, f'exp{e}', cells, '†' if incomplete else '', not incomplete))
    return lines


def mean_block(rows: Sequence[Row], columns: Sequence[Column], reference: Row | None, dataset: str,
               tasks: Sequence[str], undefined: list[str] | None = None) -> list[Line]:
    """Mean ± sample std over the seeds; Δ_t of each seed against the reference's mean, then mean ± std."""
    lines = []
    ref_mean = _mean_tables(reference) if reference is not None and reference.summary else None
    for row in rows:
        if not row.summary:
            lines.append(Line(row.spec.method, '0', _empty(columns, tasks)))
            continue
        metrics = row.summary['metrics']
        params = [p for p in (_params(r) for r in row.results.values()) if p is not None]
        cells = [Cell(S.mean_std(params)[0] if params else None, decimals=2)]
        for c in columns:
            mean, std = metrics[c.task][c.key]['mean'], metrics[c.task][c.key]['std']
            cells.append(Cell(mean * c.scale, None if std is None else std * c.scale, c.decimals))
        deltas = None
        if ref_mean is not None:
            problems = undefined if undefined is not None else []
            deltas = {e: _delta(_tables(row, e), ref_mean, dataset, (row.files[e], f'{reference.spec.method} mean'),
                                problems) for e in row.results}
            deltas = None if any(d is None for d in deltas.values()) else deltas
        if deltas is not None:
            for key in [*tasks, 'all']:
                mean, std = S.mean_std([d[key] for d in deltas.values()])
                cells.append(Cell(mean, std, 2))
        else:
            cells += [Cell(None) for _ in [*tasks, 'all']]
        incomplete = bool(row.incomplete(list(row.results)))
        lines.append(Line(row.spec.method, str(len(row.results)), cells, '†' if incomplete else '', not incomplete))
    return lines


def paper_block(paper: Mapping[str, Any], columns: Sequence[Column], tasks: Sequence[str]) -> list[Line]:
    """The published rows, Δ_t computed against the published reference row of the same setting."""
    reference = paper['delta_reference']
    ref_table = paper_table(reference['table'])
    ref_row = next(r for r in ref_table['rows'] if r['method'] == reference['method'])
    ref_tables = _paper_tables(ref_table, ref_row)
    dataset = paper['dataset']
    lines = []
    for row in paper['rows']:
        delta = S.multitask_delta(_paper_tables(paper, row), ref_tables, dataset,
                                  where=(f'paper Table {paper["table"]}', f'paper Table {reference["table"]}'))
        cells = [Cell(row['params'], decimals=_decimals(row['params']))]
        cells += [Cell(v, decimals=d) for v, d in zip(row['values'], paper['decimals'])]
        cells += [Cell(delta[t], decimals=2) for t in [*tasks, 'all']]
        lines.append(Line(row['method'], '', cells))
    return lines


def _paper_tables(paper: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    tables: dict[str, dict[str, float]] = {}
    for (task, key), value in zip(paper['columns'], row['values']):
        tables.setdefault(task, {})[key] = float(value)
    return tables


def _decimals(value: float | None) -> int:
    if value is None or float(value).is_integer():
        return 0
    return len(repr(float(value)).split('.')[1])


def _empty(columns: Sequence[Column], tasks: Sequence[str]) -> list[Cell]:
    return [Cell(None) for _ in range(1 + len(columns) + len(tasks) + 1)]


def mark_ranks(lines: Sequence[Line], lower: Sequence[bool]) -> None:
    """Bold the best and underline the second-best shown value of each column (ties share the mark)."""
    for i, is_lower in enumerate(lower):
        values = sorted({c.rounded for c in (line.cells[i] for line in lines) if c.rounded is not None},
                        reverse=not is_lower)
        for line in lines:
            cell = line.cells[i]
            if cell.rounded is None or len(values) < 2:
                continue  # a single distinct value ranks nothing
            if cell.rounded == values[0]:
                cell.mark = 'best'
            elif cell.rounded == values[1]:
                cell.mark = 'second'


# ----------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class Block:
    """One titled block of rows; `run_header` '' = no run column; `section` names it in the CSV."""
    title: str
    run_header: str
    lines: list[Line]
    section: str


@dataclass
class Table:
    """Everything a renderer needs: a paper table (the renderers also take a `PlainTable`)."""
    spec: TableSpec
    dataset: str
    tasks: list[str]
    columns: list[Column]
    best: list[Line]
    mean: list[Line]
    paper: list[Line] | None
    paper_data: dict | None
    notes: list[str]
    missing: list[str]

    @property
    def headers(self) -> list[str]:
        deltas = [f'Δ_{t} ↑' for t in self.tasks] + ['Δ_T ↑']
        return ['# Params ↓', *(c.header for c in self.columns), *deltas]

    @property
    def lower(self) -> list[bool]:
        return _lower(self.columns, self.tasks)

    @property
    def title(self) -> str:
        return self.spec.title

    generator = 'python tools/tables.py'
    row_header = 'Method'
    csv_run_name = 'run'
    csv_std_start = 1  # no ± column for # Params

    def blocks(self) -> list[Block]:
        return _blocks(self)

    def csv_names(self) -> list[str]:
        return ['# Params', *(f'{c.task}.{c.key}' for c in self.columns), *(f'delta_{t}' for t in self.tasks),
                'delta_T']


@dataclass
class PlainTable:
    """A table of other numbers in the paper tables' renderers (markdown, LaTeX, CSV): a title, the value
    headers shared by every block, the blocks and notes. Each value column has a CSV name."""
    title: str
    headers: list[str]
    csv_value_names: list[str]
    block_list: list[Block]
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    generator: str = 'python tools/tables.py'
    row_header: str = 'Method'
    csv_run_name: str = 'run'
    csv_std_start = 0

    def blocks(self) -> list[Block]:
        return list(self.block_list)

    def csv_names(self) -> list[str]:
        return list(self.csv_value_names)


def _lower(columns: Sequence[Column], tasks: Sequence[str]) -> list[bool]:
    """Direction of every value column: # Params (lower), the metrics, the Δ columns (higher)."""
    return [True, *(c.lower for c in columns), *([False] * (len(tasks) + 1))]


def build_table(spec: TableSpec) -> Table:
    """Load every row of `spec` and compute both blocks, the paper block, the notes and the missing runs."""
    rows = [load_row(r) for r in spec.rows]
    paper = paper_table(spec.paper_table) if spec.paper_table is not None else None
    dataset, tasks = check_setting(rows, paper)
    for row in rows:
        summarize_row(row, dataset, tasks)
    columns = table_columns(dataset, tasks)
    reference = next((r for r in rows if r.spec.method == spec.reference), None)
    usable_reference = reference if reference is not None and reference.summary else None
    undefined: list[str] = []
    best = best_block(rows, columns, usable_reference, dataset, tasks, undefined)
    mean = mean_block(rows, columns, usable_reference, dataset, tasks, undefined)
    lower = _lower(columns, tasks)
    mark_ranks(best, lower)
    mark_ranks(mean, lower)
    paper_lines = paper_block(paper, columns, tasks) if paper is not None else None
    sets = {t: paper_metrics(dataset, t) for t in tasks}
    notes = [
        f'{S.DELTA_FORMULA}; the reference is the {spec.reference} row of the same block.' if spec.reference
        else 'No reference row: no Δ_t.',
        f'Metrics in Δ_t and the columns (the paper\'s for {dataset}): {S.format_metric_sets(sets)}.',
        'Best of seeds: each row\'s run with the best validation score (the paper\'s protocol); its Δ_t is against '
        'the reference\'s best run. Mean ± std: sample std (ddof=1) over the seeds; Δ_t of each seed against the '
        'reference\'s mean.',
        'Bold: best, underlined: second best per column, over our rows (not the paper\'s).',
        UNITS,
    ]
    if paper is not None:
        ref = paper['delta_reference']
        notes.append(f'Published: paper Table {paper["table"]} as printed; its Δ_t (not published) is computed here '
                     f'against the {ref["method"]} row of paper Table {ref["table"]}.')
    if spec.reference and usable_reference is None:
        notes.append(f'The reference row {spec.reference} has no result yet: Δ_t is shown as {DASH}.')
    if undefined:
        notes.append(f'Δ_t is shown as {DASH} where a reference metric is 0 (it divides by it): '
                     + '; '.join(sorted(set(undefined))) + '.')
    if any(line.note for line in best + mean):
        notes.append('† a run whose result file says "run_complete": false.')
    return Table(spec, dataset, tasks, columns, best, mean, paper_lines, paper, notes, missing_runs(rows))


# ----------------------------------------------------------------------------------------- missing runs
def _exp_list(exp_ids: Sequence[int]) -> str:
    return ' '.join(str(e) for e in exp_ids)


def _kind(row: Row) -> str:
    """'random1' / 'random2' for the random-policy ablations, 'adashare' (learns a policy) or 'baseline'."""
    stem = os.path.splitext(os.path.basename(row.spec.config))[0]
    if stem in ('random1', 'random2'):
        return stem
    return 'adashare' if row.opt.get('architecture', 'adashare') == 'adashare' else 'baseline'


def _policy_checkpoint(opt: Mapping[str, Any]) -> str:
    from engine.checkpoint import checkpoint_path
    return checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], str(opt['train']['policy_iter']))


def _retrained(opt: Mapping[str, Any], exp_id: int) -> bool:
    from engine.checkpoint import checkpoint_path, retrain_label
    label = retrain_label(exp_id, str(opt['train']['policy_iter']), 'best')
    return os.path.isfile(checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], label))


def shown_path(path: str) -> str:
    """A path as printed: relative to the repository root when inside it (commands run from there)."""
    relative = os.path.relpath(path, REPO_ROOT)
    return path if relative.startswith('..') else relative


def missing_runs(rows: Sequence[Row]) -> list[str]:
    """One entry per row with missing runs: what is missing and the commands (from the repository root)."""
    base = next((r for r in rows if r.opt is not None and _kind(r) == 'adashare'
                 and r.spec.method in ('AdaShare', 'Full Model')), None)
    out = []
    listed: set[str] = set()  # a policy learning shared by several rows (random ablations) is listed once

    def once(command: str) -> str:
        if command in listed:
            return f'# listed above: {command}'
        listed.add(command)
        return command
    for row in rows:
        if row.problem:
            out.append(f'{row.spec.method}: {row.problem} (no runs)')
            continue
        if not row.missing:
            continue
        config, ids = row.spec.config, _exp_list(row.missing)
        folder = os.path.join(row.opt['paths']['result_dir'], row.opt['exp_name'])
        lines = [f'{row.spec.method}: exp_ids {ids} missing (test_metrics_exp<E>.json in {shown_path(folder)})']
        kind = _kind(row)
        if kind == 'adashare' and not os.path.isfile(_policy_checkpoint(row.opt)):
            lines.append(once(f'python train_policy.py --config {config} --gpus 0'))
        elif kind in ('random1', 'random2'):
            source = (shown_path(_policy_checkpoint(base.opt)) if base
                      else '<the AdaShare policy checkpoint of this setting>')
            if base and not os.path.isfile(_policy_checkpoint(base.opt)):
                lines.append(once(f'python train_policy.py --config {base.spec.config} --gpus 0'))
            lines.append(f'python tools/random_policies.py --config {config} --kind {kind} --source {source} '
                         f'--exp_ids {ids}')
        to_train = [e for e in row.missing if not _retrained(row.opt, e)]
        if to_train:
            lines.append(f'python re-train.py --config {config} --gpus 0 --exp_ids {_exp_list(to_train)}')
        lines.append(f'python test.py --config {config} --gpus 0 --exp_ids {ids}')
        out.append('\n'.join(lines))
    return out


# ----------------------------------------------------------------------------------------- rendering
def _blocks(table: Table) -> list[Block]:
    """The blocks of a paper table: best of seeds, mean ± std, and the published numbers."""
    blocks = [Block('Our runs: best of the seeds by validation score (the paper\'s protocol)', 'Run', table.best,
                    'best_of_seeds'),
              Block('Our runs: mean ± std over the seeds', 'Runs', table.mean, 'mean_std')]
    if table.paper is not None:
        blocks.append(Block(f'Published: paper Table {table.paper_data["table"]}', '', table.paper, 'paper'))
    return blocks


def _md_cell(cell: Cell) -> str:
    text = cell.text()
    return f'**{text}**' if cell.mark == 'best' else f'<u>{text}</u>' if cell.mark == 'second' else text


def render_markdown(table: Table | PlainTable) -> str:
    out = [f'# {table.title}', '']
    for title, run_header, lines, _ in ((b.title, b.run_header, b.lines, b.section) for b in table.blocks()):
        headers = [table.row_header, *([run_header] if run_header else []), *table.headers]
        out += [f'## {title}', '', '| ' + ' | '.join(headers) + ' |',
                '|' + '|'.join(['---'] + ['---:'] * (len(headers) - 1)) + '|']
        for line in lines:
            cells = [line.method + (f' {line.note}' if line.note else ''), *([line.run] if run_header else []),
                     *(_md_cell(c) for c in line.cells)]
            out.append('| ' + ' | '.join(cells) + ' |')
        out.append('')
    out += [f'- {note}' for note in table.notes]
    if table.missing:
        out += ['', '## Missing runs (commands run from the repository root)', '']
        for entry in table.missing:
            head, *commands = entry.split('\n')
            out.append(f'- {head}')
            if commands:
                out += ['', '  ```bash', *(f'  {c}' for c in commands), '  ```', '']
    return '\n'.join(out).rstrip() + '\n'


LATEX_SYMBOLS = {'↑': r'$\uparrow$', '↓': r'$\downarrow$', '±': r'$\pm$', '°': r'$^\circ$', '²': r'$^2$',
                 '³': r'$^3$', 'ⁿ': r'$^n$', '–': '--', '†': r'$^\dagger$', 'Δ_T': r'$\Delta_T$', 'Δ_t': r'$\Delta_t$',
                 'Δ': r'$\Delta$', 'δ': r'$\delta$', '−': '$-$', '×': r'$\times$', 'Σ': r'$\Sigma$'}


def latex_escape(text: str) -> str:
    """Plain text to LaTeX: special characters escaped, arrows and the like as math."""
    out = []
    i = 0
    while i < len(text):
        for symbol in sorted(LATEX_SYMBOLS, key=len, reverse=True):
            if text.startswith(symbol, i):
                out.append(LATEX_SYMBOLS[symbol])
                i += len(symbol)
                break
        else:
            char = text[i]
            out.append({'%': r'\%', '#': r'\#', '_': r'\_', '&': r'\&', '$': r'\$', '{': r'\{', '}': r'\}',
                        '^': r'\^{}', '~': r'\~{}', '\\': r'\textbackslash{}'}.get(char, char))
            i += 1
    return ''.join(out)


def _latex_header(header: str) -> str:
    if header.startswith('Δ_'):
        name, arrow = header[2:].split(' ')
        return f'$\\Delta_{{\\mathrm{{{name}}}}}$ {latex_escape(arrow)}'
    return latex_escape(header)


def _tex_cell(cell: Cell) -> str:
    text = latex_escape(cell.text())
    return f'\\textbf{{{text}}}' if cell.mark == 'best' else f'\\underline{{{text}}}' if cell.mark == 'second' \
        else text


LATEX_DELTA = (r'$\Delta_t = \frac{1}{|M_t|} \sum_j (-1)^{l_j} (M_{t,j} - M_{\mathrm{ref},j}) / M_{\mathrm{ref},j} '
               r'\times 100\,\%$ ($l_j = 1$ where lower is better); $\Delta_T$ = mean of $\Delta_t$ over the tasks')


def _latex_note(note: str) -> str:
    """A note in LaTeX; the Δ_t formula as math."""
    if note.startswith(S.DELTA_FORMULA):
        return LATEX_DELTA + latex_escape(note[len(S.DELTA_FORMULA):])
    return latex_escape(note)


def render_latex(table: Table | PlainTable) -> str:
    out = [f'% {latex_escape(table.title)} (generated by {table.generator}; needs \\usepackage{{booktabs}})']
    for title, run_header, lines, _ in ((b.title, b.run_header, b.lines, b.section) for b in table.blocks()):
        headers = [table.row_header, *([run_header] if run_header else []), *table.headers]
        out += ['', f'% {title}', f'\\textbf{{{latex_escape(title)}}}\\\\[2pt]',
                '\\begin{tabular}{l' + ('c' if run_header else '') + 'r' * len(table.headers) + '}', '\\toprule',
                ' & '.join(_latex_header(h) for h in headers) + ' \\\\', '\\midrule']
        for line in lines:
            cells = [latex_escape(line.method + (f' {line.note}' if line.note else '')),
                     *([latex_escape(line.run)] if run_header else []), *(_tex_cell(c) for c in line.cells)]
            out.append(' & '.join(cells) + ' \\\\')
        out += ['\\bottomrule', '\\end{tabular}', '\\par\\medskip']
    out += ['', '{\\footnotesize']
    out += [_latex_note(note) + '\\\\' for note in table.notes]
    out.append('}')
    return '\n'.join(out) + '\n'


def render_csv(table: Table | PlainTable) -> str:
    """Every block as rows (section, method, run, value columns, then the ± columns), unrounded numbers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    names = table.csv_names()
    start = table.csv_std_start
    writer.writerow(['section', table.row_header.lower(), table.csv_run_name, 'run_complete', *names,
                     *(f'{n} std' for n in names[start:])])
    for block in table.blocks():
        for line in block.lines:
            values = ['' if c.value is None else repr(c.value) for c in line.cells]
            stds = ['' if c.std is None else repr(c.std) for c in line.cells[start:]]
            complete = '' if line.complete is None else str(line.complete).lower()
            run = '' if line.run == DASH else line.run
            writer.writerow([block.section, line.method, run, complete, *values, *stds])
    return buffer.getvalue()


def write_table(spec_path: str, out_dir: str) -> tuple[Table, list[str]]:
    """Build the table of a spec and write `<name>.md`, `.tex` and `.csv` into out_dir; returns the paths."""
    table = build_table(load_spec(spec_path))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for ext, text in (('md', render_markdown(table)), ('tex', render_latex(table)), ('csv', render_csv(table))):
        path = os.path.join(out_dir, f'{table.spec.name}.{ext}')
        with open(path, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
        paths.append(path)
    return table, paths
