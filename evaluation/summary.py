"""Summarise the test results of several runs (exp_ids / seeds) of one experiment.

    python tools/summary.py --config yamls/adashare/nyu_v2_3task_test.yml [--exp_ids 0 1 2]
                            [--single-task single_task_metrics.json] [--json summary.json]

Reads the JSON files test.py writes (`<paths.result_dir>/<exp_name>/test_metrics_exp<E:03d>.json`; default:
every such file of the experiment) and prints, per task and metric, every run's value, the mean ± sample
standard deviation (ddof=1) over the runs, the best run by the validation score, optionally the relative
multi-task performance against single-task results (AutoMTL's Δ_t over the paper's metrics of the dataset,
evaluation.metrics.paper_metrics), and each run's policy.
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Mapping, Sequence

from utils.commands import command

RESULT_PATTERN = re.compile(r'test_metrics_exp(\d+)\.json')
# Top-level keys of a test.py JSON that are not task metric tables (only task names hold metrics; these are
# listed so that a reader knows what else a result file carries).
NON_METRIC_KEYS = ('policy', 'val_score', 'architecture', 'model_size', 'run_complete', 'undefined_metrics',
                   'policy_from_unfinished_run')
STD_KIND = 'sample standard deviation (ddof=1) over the runs; none for a single run'
SCORE_FROM_JSON = 'val_score key of the test JSON'
SCORE_COMPUTED = 'score(metrics, reference_metrics) computed from the config'
DELTA_FORMULA = ('Δ_t = (1/|M_t|) Σ_j (−1)^{l_j} (M_j − M_ref,j) / M_ref,j × 100 % (l_j = 1 where lower is better); '
                 'Δ_T = mean of Δ_t over the tasks')
# A metric set for Δ_t: task -> [(result key, lower_is_better), ...].
MetricSets = Mapping[str, Sequence[tuple[str, bool]]]


class SummaryError(ValueError):
    """Bad or inconsistent result files."""


class ZeroReferenceError(SummaryError):
    """A reference metric is 0, so Δ_t (relative to it) is undefined."""


class ResultsNotFoundError(SummaryError, FileNotFoundError):
    """No test result where the config says test.py writes them."""


# ----------------------------------------------------------------------------------------- metric helpers
def lower_is_better(task: str, metric: str) -> bool:
    """Direction of a metric (one definition, in evaluation.metrics)."""
    from evaluation.metrics import lower_is_better as direction
    return direction(task, metric)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metric_tables(result: Mapping[str, Any], where: str) -> dict[str, dict[str, float]]:
    """The `{task: {metric: float}}` part of a test JSON (`policy`, `val_score` and other scalars dropped)."""
    if not isinstance(result, Mapping):
        raise SummaryError(f'{where}: expected a JSON object {{task: {{metric: value}}, ...}}, '
                           f'got {type(result).__name__}')
    from evaluation.metrics import TASKS
    tables: dict[str, dict[str, float]] = {}
    for task, table in result.items():
        if task not in TASKS or not isinstance(table, Mapping):
            continue  # policy, val_score, architecture, model_size, run_complete, ...
        values = {}
        for metric, value in table.items():
            if value is None or (is_number(value) and not math.isfinite(value)):
                continue  # undefined (null in the JSON, with its reason under undefined_metrics)
            if not is_number(value):
                raise SummaryError(f'{where}: {task}.{metric} = {value!r}: expected a number')
            values[str(metric)] = float(value)
        tables[str(task)] = values
    if not tables:
        raise SummaryError(f'{where}: no task metrics found; expected e.g. {{"seg": {{"mIoU": 0.27, ...}}, ...}}')
    return tables


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample std (ddof=1; None for fewer than two values)."""
    if not values:
        return None, None
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _stats(values: Mapping[int, float]) -> dict[str, Any]:
    mean, std = mean_std(list(values.values()))
    return {'values': dict(values), 'n': len(values), 'mean': mean, 'std': std}


# ----------------------------------------------------------------------------------------- Δ_t (AutoMTL)
def delta_metric_sets(tasks: Sequence[str], dataset: str | None = None,
                      metric_sets: MetricSets | None = None) -> dict[str, list[tuple[str, bool]]]:
    """The metrics of each task that enter Δ_t: the paper's for `dataset`, or the explicit `metric_sets`."""
    if metric_sets is not None:
        missing = [t for t in tasks if t not in metric_sets]
        if missing:
            raise SummaryError(f'metric_sets: no metrics given for task(s) {missing}; '
                               f'expected {{task: [(metric, lower_is_better), ...]}} for {list(tasks)}')
        return {t: [(str(m), bool(lower)) for m, lower in metric_sets[t]] for t in tasks}
    if dataset is None:
        raise SummaryError('Δ_t needs the dataset (the paper\'s metrics of each task) or explicit metric_sets')
    from evaluation.metrics import paper_metrics
    try:
        return {t: paper_metrics(dataset, t) for t in tasks}
    except ValueError as err:
        raise SummaryError(str(err)) from err


def format_metric_sets(sets: Mapping[str, Sequence[tuple[str, bool]]]) -> str:
    """`seg: mIoU ↑, Pixel Acc ↑; sn: ...` (↓ = lower is better)."""
    return '; '.join(f'{task}: ' + ', '.join(f'{m} {"↓" if lower else "↑"}' for m, lower in metrics)
                     for task, metrics in sets.items())


def task_delta(metrics: Mapping[str, float], single: Mapping[str, float], task: str,
               metric_set: Sequence[tuple[str, bool]], where: tuple[str, str] = ('results', 'reference')) -> float:
    """Δ_t in %: mean over `metric_set` of (−1)^l · (M − M_ref) / M_ref · 100; a metric missing is an error."""
    if not metric_set:
        raise SummaryError(f'Δ_t of {task!r}: empty metric set')
    terms = []
    for metric, lower in metric_set:
        for side, table in zip(where, (metrics, single)):
            if metric not in table:
                raise SummaryError(f'{side}: {task}.{metric} missing; Δ_t of {task!r} needs '
                                   f'{[m for m, _ in metric_set]} (has {sorted(table)})')
        reference = single[metric]
        if reference == 0:
            raise ZeroReferenceError(f'{where[1]}: {task}.{metric} = 0: Δ_t divides by it')
        sign = -1.0 if lower else 1.0
        terms.append(sign * (metrics[metric] - reference) / reference * 100.0)
    return math.fsum(terms) / len(terms)


def multitask_delta(metrics: Mapping[str, Mapping[str, float]], single: Mapping[str, Mapping[str, float]],
                    dataset: str | None = None, *, metric_sets: MetricSets | None = None,
                    where: tuple[str, str] = ('results', 'reference')) -> dict[str, float]:
    """`{task: Δ_t}` for every task in both, plus `'all'` (Δ_T, the mean over those tasks).

    The metrics are the paper's for `dataset` (evaluation.metrics.paper_metrics), or `metric_sets` when given.
    Both sides may be whole test.py JSONs: only their task tables are read.
    """
    metrics, single = metric_tables(metrics, where[0]), metric_tables(single, where[1])
    tasks = [task for task in metrics if task in single]
    if not tasks:
        raise SummaryError(f'{where[1]} has none of the tasks {sorted(metrics)} (it has {sorted(single)})')
    sets = delta_metric_sets(tasks, dataset, metric_sets)
    deltas = {task: task_delta(metrics[task], single[task], task, sets[task], where) for task in tasks}
    deltas['all'] = math.fsum(deltas.values()) / len(deltas)
    return deltas


# ----------------------------------------------------------------------------------------- policies
def _policy_strings(policy: Any, task_names: Sequence[str], where: str) -> dict[str, str]:
    """`{task: 'XX.X…'}` from test.py's `{task{t}_policy: [[exec, skip], ...]}` (X = execute, . = skip)."""
    if not isinstance(policy, Mapping):
        raise SummaryError(f'{where}: policy must be an object {{"task1_policy": [[1, 0], ...]}}, '
                           f'got {type(policy).__name__}')
    strings = {}
    for index, (key, rows) in enumerate(sorted(policy.items(), key=lambda kv: _task_index(kv[0], where))):
        if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 2 and all(map(is_number, r))
                                                 and sorted(float(x) for x in r) == [0.0, 1.0] for r in rows):
            raise SummaryError(f'{where}: policy.{key} must be a list of [1, 0] (execute) or [0, 1] (skip) rows')
        name = task_names[index] if len(task_names) == len(policy) else key.replace('_policy', '')
        strings[name] = ''.join('X' if float(row[0]) == 1.0 else '.' for row in rows)
    return strings


def _task_index(key: str, where: str) -> int:
    match = re.fullmatch(r'task(\d+)_policy', str(key))
    if not match:
        raise SummaryError(f'{where}: policy key {key!r}: expected task<t>_policy (t = 1, 2, ...)')
    return int(match.group(1))


# ----------------------------------------------------------------------------------------- summary
def summarize(results: Mapping[int, Mapping[str, Any]], single_task: Mapping[str, Any] | None = None, *,
              seeds: Mapping[int, int] | Sequence[int] | None = None,
              reference: Mapping[str, Mapping[str, float]] | None = None,
              tasks: Sequence[str] | None = None,
              sources: Mapping[int, str] | None = None,
              dataset: str | None = None, metric_sets: MetricSets | None = None,
              single_source: str = 'single-task reference') -> dict[str, Any]:
    """Per-metric values, mean ± sample std, best exp_id by validation score, Δ_t and policies of several runs.

    results: exp_id -> test.py JSON dict. single_task: the same nested metric format (or None).
    seeds: exp_id -> seed (a mapping, or the config's seed list indexed by exp_id). reference: the score's
    reference metrics, used for runs whose JSON has no `val_score`. tasks: task order (else first seen).
    sources: exp_id -> file name, only used in error messages and kept in the summary.
    dataset / metric_sets: the metrics of Δ_t (the paper's for the dataset, or an explicit set); one is
    needed with single_task. single_source: the reference's name in error messages.
    """
    if not results:
        raise SummaryError('no results to summarise')
    exp_ids = sorted(int(e) for e in results)
    where = {e: (sources or {}).get(e, f'exp_id {e}') for e in exp_ids}
    tables = {e: metric_tables(results[e], where[e]) for e in exp_ids}

    order = list(tasks or [])
    for e in exp_ids:
        order += [t for t in tables[e] if t not in order]
    order = [t for t in order if any(t in tables[e] for e in exp_ids)]
    metrics: dict[str, dict[str, dict[str, Any]]] = {}
    for task in order:
        names: list[str] = []
        for e in exp_ids:
            names += [m for m in tables[e].get(task, {}) if m not in names]
        metrics[task] = {m: dict(_stats({e: tables[e][task][m] for e in exp_ids if m in tables[e].get(task, {})}),
                                 lower_is_better=lower_is_better(task, m)) for m in names}

    summary: dict[str, Any] = {
        'exp_ids': exp_ids,
        'seeds': {e: _seed(seeds, e) for e in exp_ids},
        'std': STD_KIND,
        'tasks': order,
        'metrics': metrics,
        'score': _scores(results, tables, exp_ids, reference, where),
        'policy': _policies(results, exp_ids, order, where),
        # runs whose retraining stopped early (test.py writes "run_complete": false)
        'incomplete': [e for e in exp_ids if results[e].get('run_complete') is False],
    }
    if sources:
        summary['files'] = {e: sources[e] for e in exp_ids if e in sources}
    if single_task is not None:
        summary['delta'] = _deltas(tables, exp_ids, metric_tables(single_task, single_source), where,
                                   single_source, dataset, metric_sets)
    return summary


def _seed(seeds: Mapping[int, int] | Sequence[int] | None, exp_id: int) -> int | None:
    if seeds is None:
        return None
    if isinstance(seeds, Mapping):
        return seeds.get(exp_id)
    return int(seeds[exp_id]) if 0 <= exp_id < len(seeds) else None


def _scores(results: Mapping[int, Mapping[str, Any]], tables: Mapping[int, dict], exp_ids: list[int],
            reference: Mapping[str, Mapping[str, float]] | None, where: Mapping[int, str]) -> dict[str, Any]:
    """Each run's validation score (its `val_score`, else computed from `reference`) and the best exp_id."""
    values: dict[int, float] = {}
    source: dict[int, str] = {}
    for e in exp_ids:
        value = results[e].get('val_score')
        if value is not None:
            if not is_number(value):
                raise SummaryError(f'{where[e]}: val_score = {value!r}: expected a number')
            values[e], source[e] = float(value), SCORE_FROM_JSON
        elif reference is not None:
            from evaluation.metrics import score
            values[e], source[e] = float(score(tables[e], reference)), SCORE_COMPUTED
    ranked = [e for e in exp_ids if e in values and not math.isnan(values[e])]
    best = max(ranked, key=lambda e: values[e]) if ranked else None  # ties: the lowest exp_id
    kinds = set(source.values())
    return dict(_stats(values), source=source, best_exp_id=best,
                source_kind=kinds.pop() if len(kinds) == 1 else ('mixed' if kinds else None),
                missing=[e for e in exp_ids if e not in values])


def _policies(results: Mapping[int, Mapping[str, Any]], exp_ids: list[int], tasks: list[str],
              where: Mapping[int, str]) -> dict[int, dict[str, Any]]:
    out = {}
    for e in exp_ids:
        if results[e].get('policy') is None:
            continue
        strings = _policy_strings(results[e]['policy'], tasks, where[e])
        executed = {t: s.count('X') for t, s in strings.items()}
        out[e] = {'strings': strings, 'executed': executed, 'blocks': {t: len(s) for t, s in strings.items()},
                  'executed_total': sum(executed.values()), 'blocks_total': sum(len(s) for s in strings.values())}
    return out


def _deltas(tables: Mapping[int, dict], exp_ids: list[int], single: dict[str, dict[str, float]],
            where: Mapping[int, str], single_source: str, dataset: str | None,
            metric_sets: MetricSets | None) -> dict[str, Any]:
    per_exp = {e: multitask_delta(tables[e], single, dataset, metric_sets=metric_sets,
                                  where=(where[e], single_source)) for e in exp_ids}
    keys: list[str] = []
    for e in exp_ids:
        keys += [k for k in per_exp[e] if k not in keys and k != 'all']
    keys.append('all')
    sets = delta_metric_sets(keys[:-1], dataset, metric_sets)
    all_tasks = [t for e in exp_ids for t in tables[e]]
    return {
        'per_exp': per_exp,
        # Δ_t is linear in the metrics, so the mean of the per-run Δ_t equals Δ_t of the mean metrics.
        'mean': {k: _stats({e: per_exp[e][k] for e in exp_ids if k in per_exp[e]}) for k in keys},
        'metrics_used': {task: [m for m, _ in metrics] for task, metrics in sets.items()},
        'metric_set': {task: [[m, lower] for m, lower in metrics] for task, metrics in sets.items()},
        'metric_set_source': ('explicit metric_sets' if metric_sets is not None
                              else f'the paper\'s metrics of {dataset}'),
        'tasks_without_reference': sorted({t for t in all_tasks if t not in single}, key=all_tasks.index),
        'single_task': single,
    }


# ----------------------------------------------------------------------------------------- text output
def _num(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return '-'
    return f'{value:+.{digits}f}' if signed else f'{value:.{digits}f}'


def _mean_pm(stats: Mapping[str, Any], digits: int = 4, signed: bool = False) -> str:
    text = _num(stats['mean'], digits, signed)
    return text if stats['std'] is None else f'{text} ± {_num(stats["std"], digits)}'


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ['  '.join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def _run_label(summary: Mapping[str, Any], e: int) -> str:
    seed = summary['seeds'].get(e)
    mark = ' †' if e in summary.get('incomplete', ()) else ''
    return f'exp{e}' + (f' (seed {seed})' if seed is not None else '') + mark


def format_summary(summary: Mapping[str, Any], title: str | None = None) -> str:
    """The summary of `summarize` as plain-text tables."""
    exp_ids = summary['exp_ids']
    runs = [_run_label(summary, e) for e in exp_ids]
    out = [title] if title else []
    out.append(f'{len(exp_ids)} run(s): ' + ', '.join(runs))
    out.append(f'mean ± std: std = {summary["std"]}')
    if summary.get('incomplete'):
        out.append('† a run whose result file says "run_complete": false (its retraining stopped early)')

    rows = [['task', 'metric', *runs, 'mean ± std']]
    for task, table in summary['metrics'].items():
        for metric, stats in table.items():
            arrow = ' (lower better)' if stats['lower_is_better'] else ''
            rows.append([task, metric + arrow, *(_num(stats['values'].get(e)) for e in exp_ids), _mean_pm(stats)])
    score = summary['score']
    rows.append(['score', 'validation score', *(_num(score['values'].get(e)) for e in exp_ids), _mean_pm(score)])
    out += [''] + _table(rows)

    if score['best_exp_id'] is not None:
        best = score['best_exp_id']
        groups: dict[str, list[str]] = {}
        for e, source in score['source'].items():
            groups.setdefault(source, []).append(f'exp{e}')
        used = '; '.join(f'{", ".join(runs)}: {source}' for source, runs in groups.items()) \
            if len(groups) > 1 else next(iter(groups))
        out.append(f'best run by validation score: {_run_label(summary, best)}, score {score["values"][best]:.4f} '
                   f'(score from: {used})')
    else:
        out.append('best run: unknown (no val_score in the JSON files and no reference metrics for this setup)')
    if score['missing'] and score['best_exp_id'] is not None:
        out.append('no validation score for: ' + ', '.join(f'exp{e}' for e in score['missing']))

    if 'delta' in summary:
        delta = summary['delta']
        out += ['', 'Relative multi-task performance vs single-task (AutoMTL Δ_t in %, positive = better than '
                    'single-task; Δ = mean over tasks)',
                f'{DELTA_FORMULA}',
                f'metrics in Δ_t ({delta["metric_set_source"]}): '
                + format_metric_sets(delta['metric_set'])]
        rows = [['task', 'metrics', *runs, 'mean ± std']]
        for key, stats in delta['mean'].items():
            label = 'Δ' if key == 'all' else key
            used = 'all tasks' if key == 'all' else ', '.join(delta['metrics_used'][key])
            rows.append([label, used, *(_num(delta['per_exp'][e].get(key), 2, True) for e in exp_ids),
                         _mean_pm(stats, 2, True)])
        out += _table(rows)
        if delta['tasks_without_reference']:
            out.append('no single-task reference (not in Δ): ' + ', '.join(delta['tasks_without_reference']))

    if summary['policy']:
        out += ['', 'Policies (X = execute the block, . = skip it)']
        for e, policy in summary['policy'].items():
            out.append(f'{_run_label(summary, e)}: executed {policy["executed_total"]}/{policy["blocks_total"]} '
                       f'blocks over all tasks')
            width = max(len(t) for t in policy['strings'])
            for task, text in policy['strings'].items():
                out.append(f'  {task.ljust(width)}: {text}  {policy["executed"][task]}/{policy["blocks"][task]}')
    return '\n'.join(out)


# ----------------------------------------------------------------------------------------- files
def read_json(path: str, what: str = 'result file') -> Any:
    """A JSON file, or a SummaryError naming the file when it is not valid JSON."""
    try:
        with open(path, encoding='utf-8') as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise SummaryError(f'{path}: malformed {what}, not valid JSON ({err})') from err
    except UnicodeDecodeError as err:
        raise SummaryError(f'{path}: malformed {what}, not UTF-8 text ({err})') from err


def result_path(result_dir: str, exp_name: str, exp_id: int) -> str:
    """Where test.py writes the metrics of `exp_id`."""
    return os.path.join(result_dir, exp_name, f'test_metrics_exp{exp_id:03d}.json')


def _test_command(config: str, exp_id: int | str) -> str:
    """The test.py command of one exp_id, runnable from the current directory (not only from the root)."""
    return command('test.py', '--config', config, '--gpus', -1, '--exp_ids', exp_id)


def find_results(result_dir: str, exp_name: str, exp_ids: Sequence[int] | None, config: str) -> dict[int, str]:
    """exp_id -> result file: the given exp_ids (all must exist) or every test_metrics_exp*.json there."""
    directory = os.path.join(result_dir, exp_name)
    if exp_ids:
        paths = {e: result_path(result_dir, exp_name, e) for e in exp_ids}
        missing = [e for e in paths if not os.path.isfile(paths[e])]
        if missing:
            lines = [f'missing test results for exp_ids {missing}; looked for:']
            lines += [f'  {paths[e]}' for e in missing]
            lines += ['test.py writes them:'] + [f'  {_test_command(config, e)}' for e in missing]
            raise ResultsNotFoundError('\n'.join(lines))
        return paths
    found = {}
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            match = RESULT_PATTERN.fullmatch(name)
            if match:
                found.setdefault(int(match.group(1)), []).append(os.path.join(directory, name))
    clashes = {e: p for e, p in found.items() if len(p) > 1}
    if clashes:
        raise SummaryError(f'several result files for the same exp_id: {clashes}')
    if not found:
        raise ResultsNotFoundError(
            f'no test results found; looked for {os.path.join(directory, "test_metrics_exp*.json")} '
            f'(result_dir = {result_dir}, exp_name = {exp_name})\n'
            f'test.py writes them, one per exp_id E:\n  {_test_command(config, "E")}')
    return {e: found[e][0] for e in sorted(found)}


def score_reference(opt: dict) -> dict | None:
    """The score's reference metrics for this config, or None when there is no table for it."""
    from evaluation.metrics import reference_for
    try:
        return reference_for(opt)
    except ValueError:
        return None


def summarize_experiment(config: str, exp_ids: Sequence[int] | None = None,
                         single_task: str | None = None) -> tuple[dict[str, Any], str]:
    """Load the test results of one experiment (config as for test.py); returns (summary, title)."""
    from config import check_exp_ids, load_config
    opt = load_config(config, 'test')
    if exp_ids:
        exp_ids = check_exp_ids(opt, list(exp_ids), config)
    result_dir, exp_name = opt['paths']['result_dir'], opt['exp_name']
    paths = find_results(result_dir, exp_name, exp_ids, config)
    results = {e: read_json(path) for e, path in paths.items()}
    single = None
    if single_task is not None:
        if not os.path.isfile(single_task):
            raise FileNotFoundError(f'--single-task {single_task}: no such file (expected a JSON '
                                    f'{{task: {{metric: value}}}} of the single-task results)')
        single = read_json(single_task, 'single-task reference')
        metric_tables(single, single_task)  # errors name the file
    summary = summarize(results, single, seeds=list(opt['seed']), reference=score_reference(opt),
                        tasks=opt['tasks'], sources=paths, dataset=opt['dataload']['dataset'],
                        single_source=single_task or 'single-task reference')
    summary['experiment'] = exp_name
    summary['result_dir'] = os.path.join(result_dir, exp_name)
    if single_task is not None:
        summary['single_task_file'] = os.path.abspath(single_task)
    return summary, f'Experiment {exp_name} ({os.path.join(result_dir, exp_name)})'
