"""The whole of a paper table on a CPU: every baseline, AdaShare and the five ablations, over several seeds.

    python tools/cpu_table.py                          # yamls/tables/synthetic_table3.yml, 3 seeds, ~30 min on 2 cores
    python tools/cpu_table.py --seeds 5 --out DIR      # more seeds, tables written to DIR
    python tools/cpu_table.py --quick --out /tmp/t     # a few iterations per row (what CI runs)

Reads the rows of a table spec (`yamls/tables/*.yml`: method label + the config test.py uses), generates
the synthetic data if it is missing, then runs, in order, exactly the commands a user would run:
  1. `train_policy.py` for every AdaShare-architecture row that learns a policy (AdaShare, w/o curriculum,
     w/o L_sparsity, w/o L_sharing);
  2. `tools.random_policies` for Random #1 / Random #2, from the AdaShare row's `best` checkpoint;
  3. `re-train.py` and `test.py` for every row and seed (exp_ids 0 .. seeds-1);
  4. `tools.tables` on the spec, into --out.
Each step runs as its own process, --jobs of them side by side (2 by default: on this kind of small model
two one-thread processes do twice the work of one two-thread process), with its output in
`<out>/logs/<step>.log`; a progress bar (or, without a terminal, one line per step) shows the steps done,
the elapsed time and an ETA. Steps whose results exist
are skipped (finished policy learning or retraining, a test JSON newer than its checkpoint), so an
interrupted table continues where it stopped; --force redoes everything. --quick copies every config into
`<out>/configs/` with a few iterations per phase and paths under `<out>/experiments/`: the same pipeline
in about a minute per row, for CI.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import yaml  # noqa: E402

DEFAULT_SPEC = 'yamls/tables/synthetic_table3.yml'
RANDOM_KINDS = {'Random #1': 'random1', 'Random #2': 'random2'}
# Labels of the row whose learned policy the random rows copy the skip counts of.
LEARNED_ROWS = ('AdaShare', 'Full Model')
# --quick: a few iterations of every phase, enough to pass through warm-up, alternation, curriculum and best.
QUICK_TRAIN = {'batch_size': 2, 'total_iters': 26, 'warm_up_iters': 4, 'retrain_total_iters': 4, 'print_freq': 2, 'val_freq': 2,
               'weight_iter_alternate': 2, 'alpha_iter_alternate': 2}


class StepFailed(ValueError):
    """A command of the table failed; the message has its log's tail."""


@dataclass
class Step:
    """One command of the table, the steps it waits for, and whether its result already exists."""
    label: str
    command: list[str]  # arguments of `python`: a script or `-m module`, then its flags
    kind: str = ''  # steps of one kind take about as long: the ETA averages per kind
    after: list[str] = field(default_factory=list)  # labels of the steps that must finish first
    done: Callable[[], bool] = field(default=lambda: False)


def read_spec(path: str) -> dict:
    """The table spec: {'rows': [{'method': str, 'config': path}, ...], ...}, with one-line errors."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{path}: table spec not found; expected e.g. {DEFAULT_SPEC}')
    with open(path) as handle:
        spec = yaml.safe_load(handle)
    rows = spec.get('rows') if isinstance(spec, dict) else None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f'{path}: rows: expected a list of {{method: ..., config: ...}}, got {rows!r}')
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get('method'), str) or not isinstance(row.get('config'), str):
            raise ValueError(f'{path}: rows[{index}] = {row!r}: expected {{method: <label>, config: <yaml path>}}')
    return spec


def _resolve(path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(REPO_ROOT, path)


def quick_total_iters(raw: dict) -> int:
    """QUICK_TRAIN's total_iters, or enough alternation epochs past the "best" threshold for backbones with
    more gated blocks (train_policy.py saves a best only after blocks x curriculum_speed epochs)."""
    from engine.validation import best_threshold_blocks
    epoch = QUICK_TRAIN['weight_iter_alternate'] + QUICK_TRAIN['alpha_iter_alternate']
    needed = QUICK_TRAIN['warm_up_iters'] + (best_threshold_blocks(raw) * int(raw.get('curriculum_speed', 1)) + 1) * epoch
    return max(QUICK_TRAIN['total_iters'], needed)


def quick_copies(spec_path: str, spec: dict, out: str, dataroot: str | None = None) -> str:
    """Copy the spec and every row's config into `<out>/configs` with QUICK_TRAIN; returns the new spec path."""
    config_dir = os.path.join(out, 'configs')
    os.makedirs(config_dir, exist_ok=True)
    rows = []
    for row in spec['rows']:
        with open(_resolve(row['config'])) as handle:
            raw = yaml.safe_load(handle)
        raw['paths'] = {key: os.path.join(out, 'experiments', folder) for key, folder in
                        (('log_dir', 'logs'), ('result_dir', 'results'), ('checkpoint_dir', 'checkpoints'))}
        if dataroot:
            raw['dataload']['dataroot'] = dataroot
        raw['train'].update(QUICK_TRAIN)
        raw['train']['total_iters'] = quick_total_iters(raw)
        raw.setdefault('quirks', {})
        raw['quirks'] = dict(raw['quirks'] or {}, eval_iter=0)
        name = os.path.relpath(_resolve(row['config']), REPO_ROOT).replace(os.sep, '__')
        path = os.path.join(config_dir, name)
        with open(path, 'w') as handle:
            yaml.safe_dump(raw, handle, sort_keys=False)
        rows.append(dict(row, config=path))
    quick_spec = os.path.join(config_dir, os.path.basename(spec_path))
    with open(quick_spec, 'w') as handle:
        yaml.safe_dump(dict(spec, rows=rows), handle, sort_keys=False)
    return quick_spec


def effective_spec(spec: dict, spec_path: str, out: str, seeds: int) -> str:
    """`<out>/<spec name>`: the spec with absolute config paths and exp_ids 0 .. seeds-1 in every row (the
    tables are named after it)."""
    os.makedirs(out, exist_ok=True)
    rows = [dict(row, config=_resolve(row['config']), exp_ids=list(range(seeds))) for row in spec['rows']]
    path = os.path.join(out, os.path.basename(spec_path))
    with open(path, 'w') as handle:
        yaml.safe_dump(dict(spec, rows=rows), handle, sort_keys=False, allow_unicode=True)
    return path


def _checkpoint(opt: dict, label: str) -> str:
    from engine import checkpoint as C
    return C.checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], label)


def _newer(path: str, than: str) -> bool:
    return os.path.isfile(path) and os.path.isfile(than) and os.path.getmtime(path) >= os.path.getmtime(than)


def plan(spec: dict, spec_path: str, seeds: int, gpus: str, out: str, force: bool) -> list[Step]:
    """Every command of the table, in order, with what each waits for."""
    from engine import checkpoint as C
    from engine import resume as T
    from config import load_config
    from evaluation.summary import result_path
    exp_ids = [str(e) for e in range(seeds)]
    rows = [(row['method'], _resolve(row['config']), load_config(_resolve(row['config']), 'test'))
            for row in spec['rows']]
    learned = [r for r in rows if r[0] in LEARNED_ROWS]
    steps: list[Step] = []
    prerequisite: dict[str, list[str]] = {}  # row -> the step its retraining waits for
    for method, config, opt in rows:
        if opt['architecture'] != 'adashare' or method in RANDOM_KINDS:
            continue
        total = int(load_config(config, 'train_policy')['train']['total_iters'])
        label = f'{method}: policy learning'
        steps.append(Step(label, ['train_policy.py', '--config', config, '--gpus', gpus], 'policy',
                          done=lambda o=opt, t=total: T.run_finished(T.resume_state_path(o), t)))
        prerequisite[method] = [label]
    for method, config, opt in rows:
        if method not in RANDOM_KINDS:
            continue
        if not learned:
            raise ValueError(f'{spec_path}: {method} needs a learned policy, but no row is labelled '
                             f'{" or ".join(LEARNED_ROWS)}')
        source = _checkpoint(learned[0][2], 'best')
        policy_iter = str(opt['train']['policy_iter'])
        pickles = [C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, opt['seed'][int(e)])
                   for e in exp_ids]
        label = f'{method}: random policies'
        steps.append(Step(label, ['-m', 'tools.random_policies', '--config', config, '--kind', RANDOM_KINDS[method],
                                  '--source', source, '--exp_ids', *exp_ids], 'random',
                          prerequisite.get(learned[0][0], []),
                          lambda p=pickles, s=source: all(_newer(x, s) for x in p)))
        prerequisite[method] = [label]
    for method, config, opt in rows:
        retrain_total = int(opt['train'].get('retrain_total_iters') or opt['train']['total_iters'])
        policy_iter = str(opt['train']['policy_iter'])
        for e in exp_ids:
            resume = T.resume_state_path(opt, prefix=f'retrain{int(e):03d}_policyIter{policy_iter}_')
            best = _checkpoint(opt, C.retrain_label(int(e), policy_iter, 'best'))
            result = result_path(opt['paths']['result_dir'], opt['exp_name'], int(e))
            flags = ['--config', config, '--gpus', gpus, '--exp_ids', e]
            retrain = f'{method}: retrain exp {e}'
            steps.append(Step(retrain, ['re-train.py', *flags], f'retrain {opt["architecture"]}',
                              prerequisite.get(method, []), lambda r=resume, t=retrain_total: T.run_finished(r, t)))
            steps.append(Step(f'{method}: test exp {e}', ['test.py', *flags], 'test', [retrain],
                              lambda r=result, b=best: _newer(r, b)))
    if force:
        for step in steps:
            step.done = lambda: False
    steps.append(Step('tables', ['-m', 'tools.tables', '--spec', spec_path, '--out', out], 'tables',
                      [step.label for step in steps]))
    return steps


def _slug(label: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in label).strip('_').lower()


def run_steps(steps: Sequence[Step], log_dir: str, jobs: int) -> float:
    """Run every step not yet done as its own process, `jobs` at a time once their prerequisites are
    done, each with its output in a log file; returns the seconds spent. A failure stops the table."""
    from tqdm import tqdm
    os.makedirs(log_dir, exist_ok=True)
    tty = sys.stderr.isatty()
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // jobs)))
    start = time.time()
    bar = tqdm(total=len(steps), disable=not tty, dynamic_ncols=True, unit='step')
    timed: dict[str, list[float]] = {}  # seconds of the steps actually run, per kind, for the ETA
    finished: set[str] = set()
    pending = list(enumerate(steps, start=1))
    running: dict[str, tuple[int, Step, subprocess.Popen, float, str]] = {}

    def report(index: int, step: Step, message: str) -> None:
        bar.update(1)
        bar.set_postfix_str(f'elapsed {_clock(time.time() - start)}')
        line = f'[{index}/{len(steps)}] {step.label}: {message}'
        if tty:
            bar.write(line)
        else:
            print(line, flush=True)

    try:
        while pending or running:
            for index, step in list(pending):
                if len(running) >= jobs:
                    break
                if not all(label in finished for label in step.after):
                    continue
                pending.remove((index, step))
                if step.done():
                    finished.add(step.label)
                    report(index, step, 'already done, skipped')
                    continue
                log_path = os.path.join(log_dir, f'{index:03d}_{_slug(step.label)}.log')
                with open(log_path, 'w') as log:
                    process = subprocess.Popen([sys.executable, *step.command], cwd=REPO_ROOT, env=env,
                                               stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
                running[step.label] = (index, step, process, time.time(), log_path)
                bar.set_description(', '.join(sorted(running)))
            if not running:
                if pending:  # nothing can start: a prerequisite is missing from the plan
                    raise StepFailed(f'steps wait for steps that never ran: {[s.label for _, s in pending]}')
                break
            time.sleep(0.2)
            for label, (index, step, process, began, log_path) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                del running[label]
                if code:
                    with open(log_path) as log:
                        tail = ''.join(log.readlines()[-15:])
                    raise StepFailed(f'step {index}/{len(steps)} "{step.label}" failed (exit {code}); its log '
                                     f'{log_path} ends with:\n{tail}\nfix it and rerun the same command: '
                                     f'finished steps are skipped')
                finished.add(label)
                seconds = time.time() - began
                timed.setdefault(step.kind, []).append(seconds)
                left = [s for _, s in pending] + [r[1] for r in running.values()]
                report(index, step, f'{seconds:.0f} s; elapsed {_clock(time.time() - start)}, '
                                    f'ETA {_clock(_eta(left, timed) / jobs)}')
    finally:
        for _, _, process, _, _ in running.values():
            process.kill()
        bar.close()
    return time.time() - start


def _eta(remaining: Sequence[Step], timed: dict[str, list[float]]) -> float:
    """Seconds left: each remaining step at the mean of its kind so far (of all steps for a new kind)."""
    everything = [t for times in timed.values() for t in times]
    overall = sum(everything) / len(everything)
    return sum(sum(timed[s.kind]) / len(timed[s.kind]) if s.kind in timed else overall for s in remaining)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f'{minutes} min {secs:02d} s'


def ensure_data(spec: dict) -> None:
    """Generate the synthetic data of the first row's config if it is missing (as tools/demo.py does)."""
    from config import load_config
    from tools.demo import ensure_data as demo_ensure_data
    opt = load_config(_resolve(spec['rows'][0]['config']), 'test')
    if os.path.basename(os.path.dirname(opt['dataload']['dataroot'])) != 'synthetic':
        return  # real data: the user's
    with contextlib.redirect_stdout(sys.stderr):
        demo_ensure_data(opt)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/cpu_table.py', description=__doc__.splitlines()[0])
    parser.add_argument('--spec', default=DEFAULT_SPEC, help=f'table spec (default {DEFAULT_SPEC})')
    parser.add_argument('--seeds', type=int, default=3, help='exp_ids 0 .. seeds-1 of every row (default 3)')
    parser.add_argument('--out', default='experiments/cpu_table', help='tables and step logs (default %(default)s)')
    parser.add_argument('--gpus', default='-1', help='-1 = CPU (default), or a CUDA id')
    parser.add_argument('--quick', action='store_true', help='a few iterations per phase (CI)')
    parser.add_argument('--force', action='store_true', help='redo steps whose results exist')
    parser.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                        help='steps run side by side, one CPU thread each on 2 cores (default: 2)')
    parser.add_argument('--dataroot', default=None, help='--quick: use this dataset instead of the configs\' one')
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    if args.jobs < 1:
        parser.error(f'--jobs must be at least 1, got {args.jobs}')
    if args.dataroot and not args.quick:
        parser.error('--dataroot only applies with --quick (otherwise the configs name their data)')
    out = os.path.abspath(args.out)
    spec_path = _resolve(args.spec)
    spec = read_spec(spec_path)
    if args.quick:
        spec_path = quick_copies(spec_path, spec, out, args.dataroot and os.path.abspath(args.dataroot))
        spec = read_spec(spec_path)
    spec_path = effective_spec(spec, spec_path, out, args.seeds)
    spec = read_spec(spec_path)
    ensure_data(spec)
    steps = plan(spec, spec_path, args.seeds, args.gpus, out, args.force)
    print(f'{len(spec["rows"])} rows x {args.seeds} seeds: {len(steps)} steps; logs in {os.path.join(out, "logs")}',
          flush=True)
    seconds = run_steps(steps, os.path.join(out, 'logs'), args.jobs)
    written = sorted(os.path.join(out, name) for name in os.listdir(out)
                     if name.endswith(('.md', '.tex', '.csv')))
    markdown = [p for p in written if p.endswith('.md')]
    if markdown:
        with open(markdown[0]) as handle:
            print(handle.read())
    print(f'done in {_clock(seconds)}; wrote:')
    for path in written:
        print(f'  {path} ({os.path.getsize(path)} bytes)')
    return 0


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
