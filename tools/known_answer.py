"""The known-answer sharing benchmark (docs/known_answer.md): build its data, score a learned policy.

    python tools/known_answer.py build [--config yamls/synthetic/known_answer/cpu.yml] [--num-train 40]
                                       [--num-test 10] [--num-val N] [--seed 0]
    python tools/known_answer.py score [--config yamls/synthetic/known_answer/cpu.yml] [--label best]
                                       [--samples 8] [--top-k K] [--out DIR]
    python tools/known_answer.py score --checkpoint RUN/best_model.pth.tar [--tasks seg seg_perm ...]

`build` renders the KnownAnswer dataset at the config's dataload.dataroot and evaluation size. `score` reads the
policy logits of a train_policy.py checkpoint (the config's train.policy_iter label unless --label), samples
architectures as re-train.py does (seeds seed[0..samples-1]), prints the scores table and writes
known_answer_scores.{md,tex,csv,json} and known_answer_policy.png into --out (default
<result_dir>/<exp_name>/known_answer). Libraries: dataloaders/synthetic/known_answer.py,
evaluation/sharing_scores.py, reporting/known_answer.py.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import numpy as np  # noqa: E402

DEFAULT_CONFIG = 'yamls/synthetic/known_answer/cpu.yml'
DEFAULT_SAMPLES = 8
DEFAULT_SPEC = 'yamls/tables/synthetic_known_answer.yml'
DEFAULT_OUT = 'experiments/known_answer_compare'
# The AutoMTL row (docs/known_answer.md, "The comparison"): added to the table when the config registry knows
# `architecture: automtl` and its config exists (not shipped yet: the Multi-Task baseline's with that one key
# switched and its own exp_name). How its choices
# map to operators: evaluation/sharing_scores.py (SKIP, shared b, task-specific b + P (t + 1)).
AUTOMTL_ROW = {'method': 'AutoMTL', 'config': 'yamls/synthetic/known_answer/baselines/automtl.yml'}
# Rows whose architectures come from the AdaShare network's policy pickles (learned, random or w/o).
POLICY_ARCHITECTURES = ('adashare',)


def _load(config: str) -> dict:
    from config import load_config
    opt = load_config(config, 'test')
    dataset = opt['dataload']['dataset']
    if dataset != 'KnownAnswer':
        raise ValueError(f"{config}: dataload.dataset = {dataset!r}; expected 'KnownAnswer' (the benchmark's dataset)")
    return opt


def build(args: argparse.Namespace) -> int:
    from dataloaders.synthetic import generate_dataset
    opt = _load(args.config)
    dataload = opt['dataload']
    height, width = dataload.get('eval_h'), dataload.get('eval_w')
    stats = generate_dataset('known_answer', dataload['dataroot'], num_train=args.num_train, num_test=args.num_test,
                             height=height, width=width, seed=args.seed, progress=not args.no_progress,
                             num_val=args.num_val)
    splits = ', '.join(f'{name} {count}' for name, count in stats['splits'].items())
    print(f"wrote {stats['num_images']} {stats['height']}x{stats['width']} known-answer items ({splits}) to "
          f"{stats['out_dir']} in {stats['seconds']:.1f} s")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected an integer >= 0, got {text}')
    return value


def score(args: argparse.Namespace) -> int:
    from engine.checkpoint import checkpoint_path, load_checkpoint
    from evaluation.sharing_scores import execute_probabilities, known_answer_scores
    from models.policy import sample_policy_numpy
    from reporting.known_answer import plot_policies, scores_table
    from reporting.plots import checkpoint_tasks
    from reporting.tables import render_csv, render_latex, render_markdown

    if args.checkpoint:
        path, seeds = args.checkpoint, list(range(args.samples))
        tasks = args.tasks or checkpoint_tasks(path)
        out = args.out or os.path.join(os.path.dirname(os.path.abspath(path)), 'known_answer')
        run = os.path.basename(os.path.dirname(os.path.abspath(path)))
    else:
        opt = _load(args.config)
        label = args.label or str(opt['train']['policy_iter'])
        path = checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], label)
        tasks, seeds = list(opt['tasks']), list(opt['seed'])[:args.samples]
        if args.samples > len(opt['seed']):
            raise ValueError(f"--samples {args.samples}: the config {args.config} has only {len(opt['seed'])} seeds "
                             f"(re-train.py samples one architecture per seed)")
        out = args.out or os.path.join(opt['paths']['result_dir'], opt['exp_name'], 'known_answer')
        run = opt['exp_name']
    checkpoint = load_checkpoint(path, hint='policy learning writes it: python train_policy.py --config <yaml>')
    network = checkpoint['mtl-net']
    keys = [f'task{t + 1}_logits' for t in range(len(tasks))]
    missing = [k for k in keys if k not in network]
    if missing:
        raise ValueError(f'{path}: no policy logits {missing} for tasks {tasks} (a policy-learning checkpoint holds '
                         f'task1_logits..taskK_logits)')
    logits = [network[k].float().cpu() for k in keys]
    probabilities = np.stack([execute_probabilities(lg.numpy()) for lg in logits])
    # The architectures re-train.py trains: one per seed, drawn by the same sampler from the same logits.
    samples = np.stack([[policy[:, 0].numpy() for policy in sample_policy_numpy(logits, np.random.RandomState(s))]
                        for s in seeds]) if seeds else None
    scores = known_answer_scores(tasks, probabilities, samples, top_k=args.top_k)
    iteration = checkpoint.get('iter')
    title = f'Known-answer sharing scores: {run}, {os.path.basename(path)} (iteration {iteration})'
    table = scores_table(scores, title, source=f'Checkpoint {path}; seeds {seeds}. ')

    os.makedirs(out, exist_ok=True)
    written = []
    for ext, text in (('md', render_markdown(table)), ('tex', render_latex(table)), ('csv', render_csv(table)),
                      ('json', json.dumps({'checkpoint': path, 'iteration': iteration, 'seeds': seeds,
                                           **scores.as_dict()}, indent=1) + '\n')):
        target = os.path.join(out, f'known_answer_scores.{ext}')
        with open(target, 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
        written.append(target)
    written.append(plot_policies(scores, probabilities, os.path.join(out, 'known_answer_policy.png'),
                                 sample=None if samples is None else samples[0],
                                 title=f'{run}: execute probabilities' + (f' and the seed-{seeds[0]} architecture'
                                                                          if seeds else '')))
    print(render_markdown(table))
    print('wrote ' + ', '.join(written))
    return 0


def _logits(path: str) -> tuple[dict, list[np.ndarray]]:
    from engine.checkpoint import load_checkpoint
    checkpoint = load_checkpoint(path, hint='policy learning writes it: python train_policy.py --config <yaml>')
    network = checkpoint['mtl-net']
    keys = sorted((k for k in network if k.startswith('task') and k.endswith('_logits')),
                  key=lambda k: int(k[4:-len('_logits')]))
    if not keys:
        raise ValueError(f'{path}: no policy logits (task1_logits ...): not a policy-learning checkpoint')
    return checkpoint, [network[k].float().cpu().numpy() for k in keys]


def decided(args: argparse.Namespace) -> int:
    """Per checkpoint: the share of decided execute probabilities (p < margin or p > 1 - margin)."""
    from evaluation.sharing_scores import decided_fraction, execute_probabilities
    for path in args.checkpoints:
        checkpoint, logits = _logits(path)
        probs = np.stack([execute_probabilities(lg) for lg in logits])
        gap = np.abs(np.stack([lg[:, 0] - lg[:, 1] for lg in logits]))
        print(f'{path}: iteration {checkpoint.get("iter")}, decided {decided_fraction(probs, args.margin):.3f} '
              f'of {probs.size} execute probabilities (p < {args.margin:g} or p > {1 - args.margin:g}); '
              f'|logit gap| min {gap.min():.2f} median {np.median(gap):.2f} max {gap.max():.2f}')
        for t, row in enumerate(probs):
            print(f'  task{t + 1}: ' + ' '.join(f'{v:.3f}' for v in row))
    return 0


def _with_optional_rows(spec: dict) -> dict:
    """The spec plus the AutoMTL row when `architecture: automtl` is registered and its comparison config
    exists (docs/known_answer.md: the AutoMTL row joins with that config; it is not shipped yet)."""
    from config import ARCHITECTURES
    methods = [row['method'] for row in spec['rows']]
    if 'automtl' not in ARCHITECTURES or AUTOMTL_ROW['method'] in methods:
        return spec
    if not os.path.isfile(os.path.join(REPO_ROOT, AUTOMTL_ROW['config'])):
        print(f'note: no AutoMTL row: its comparison config {AUTOMTL_ROW["config"]} is not there (copy '
              f'yamls/synthetic/known_answer/baselines/multi_task.yml with architecture: automtl and its own exp_name)')
        return spec
    return dict(spec, rows=list(spec['rows']) + [dict(AUTOMTL_ROW)])


def row_operators(opt: dict, exp_id: int) -> np.ndarray | None:
    """[K, P] operators of one row's architecture for seed exp_id (evaluation/sharing_scores.py), or None
    where no mapping exists yet (a baseline with fusion modules; AutoMTL until its branch adds one here)."""
    from engine import checkpoint as C
    from evaluation.sharing_scores import adashare_operators, private_operators
    from config.schema import backbone_blocks
    architecture = opt.get('architecture', 'adashare') or 'adashare'
    tasks = list(opt['tasks'])
    blocks = backbone_blocks(opt['backbone']) - int(opt.get('skip_layer') or 0)
    if architecture in POLICY_ARCHITECTURES:
        path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], str(opt['train']['policy_iter']),
                             opt['seed'][exp_id])
        policy = C.load_policy(path, hint='re-train.py (or tools/random_policies.py) writes it')
        return adashare_operators(np.stack([p[:, 0].numpy() for p in policy]))
    if architecture == 'multi_task':
        return adashare_operators(np.ones((len(tasks), blocks), dtype=np.int64))
    if architecture == 'single_task':
        return private_operators(len(tasks), blocks)
    return None


def comparison_table(spec: dict, seeds: int, top_k: int | None = None):
    """The known answer's checks for every row of the comparison: mean ± std over the seeds' architectures
    (the ones retrained and tested), how many seeds pass, and for learned policies the decided share."""
    from config import load_config
    from engine.checkpoint import checkpoint_path
    from evaluation.sharing_scores import architecture_checks, decided_fraction, execute_probabilities
    from reporting.tables import Block, Cell, Line, PlainTable
    lines, headers, missing, row_notes = [], None, [], []
    for row in spec['rows']:
        opt = load_config(row['config'], 'test')
        tasks = list(opt['tasks'])
        try:
            ops = [row_operators(opt, e) for e in range(seeds)]
        except (OSError, ValueError) as err:
            missing.append(f"{row['method']}: {str(err).splitlines()[0]}")
            continue
        if any(o is None for o in ops):
            missing.append(f"{row['method']}: no operator mapping for architecture {opt.get('architecture')!r}")
            continue
        checks = architecture_checks(tasks, np.stack(ops), top_k=top_k)
        if headers is None:
            headers = [f'{c.name} ({c.subject})' for c in checks] + ['decided (policy)']
        cells = [Cell(c.sample_mean, c.sample_std, decimals=3) for c in checks]
        decided = None
        learned = (opt.get('architecture') or 'adashare') == 'adashare' and row['method'] not in ('Random #1', 'Random #2')
        if learned:
            path = checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], str(opt['train']['policy_iter']))
            if os.path.isfile(path):
                _, logits = _logits(path)
                decided = decided_fraction(np.stack([execute_probabilities(lg) for lg in logits]))
        cells.append(Cell(decided, decimals=3))
        held = [c.holds for c in checks if c.holds is not None]
        seeds_ok = [sum(1 for v in c.samples if _passes(c, v)) for c in checks]
        note = f"{sum(held)}/{len(held)} checks hold on the mean; per check, seeds passing: " + \
            ', '.join(f'{n}/{seeds}' for n in seeds_ok)
        lines.append(Line(row['method'], f'{seeds} seeds', cells))
        row_notes.append(f"{row['method']}: {note}")  # a table note: Line.note is a short mark such as †
    headers = headers or ['(no row could be scored)']
    notes = [f'Per row, the architectures retrained and tested for exp_ids 0..{seeds - 1} (AdaShare and its '
             f'"w/o" ablations: the policies re-train.py sampled; Random #1/#2: their random policies; Multi-Task: '
             f'every block shared; Single-Task: every task its own copy); mean ± std (ddof 1) over the seeds.',
             'Architectures as operators (docs/known_answer.md): two tasks share a block when they run the same '
             'operator; decision agreement = share of blocks with the same operator (both skipping included); '
             'top-k sharing = Jaccard index of the operator sets of the top k blocks.',
             '"decided (policy)": the share of the learned execute probabilities below 0.1 or above 0.9 in the '
             'policy checkpoint the architectures were sampled from.'] + row_notes
    return PlainTable('Known-answer checks of every method\'s architectures', headers,
                      [_csv_name(h) for h in headers], [Block('Checks', 'Seeds', lines, 'checks')],
                      notes=notes, missing=missing, generator='python tools/known_answer.py compare',
                      row_header='Method', csv_run_name='seeds')


def _csv_name(header: str) -> str:
    return ''.join(c if c.isalnum() else '_' for c in header).strip('_').lower()


def _passes(check, value: float) -> bool:
    import math
    from evaluation.sharing_scores import DUPLICATE_MIN_AGREEMENT, FEWER_BLOCKS_MAX_RATIO, MIN_MARGIN
    if math.isnan(value):
        return False
    if check.name.startswith('duplicate'):
        return value >= DUPLICATE_MIN_AGREEMENT
    if 'executed blocks' in check.name:
        return value <= FEWER_BLOCKS_MAX_RATIO
    return value <= -MIN_MARGIN


def compare(args: argparse.Namespace) -> int:
    """Every method on the known-answer task set (tools/cpu_table.py's pipeline), then the checks table."""
    import time
    from config import load_config
    from reporting.tables import render_csv, render_latex, render_markdown
    from tools import cpu_table as T
    started = time.time()
    out = os.path.abspath(args.out)
    spec_path = T._resolve(args.spec)
    spec = _with_optional_rows(T.read_spec(spec_path))
    os.makedirs(out, exist_ok=True)
    full_spec = os.path.join(out, os.path.basename(spec_path))
    import yaml
    with open(full_spec, 'w') as handle:
        yaml.safe_dump(dict(spec, rows=[dict(r, config=T._resolve(r['config'])) for r in spec['rows']]), handle,
                       sort_keys=False, allow_unicode=True)
    spec_path = full_spec
    if args.quick:
        spec_path = T.quick_copies(spec_path, spec, out, args.dataroot and os.path.abspath(args.dataroot))
        spec = T.read_spec(spec_path)
    spec_path = T.effective_spec(spec, spec_path, out, args.seeds)
    spec = T.read_spec(spec_path)
    first = load_config(spec['rows'][0]['config'], 'test')
    root = first['dataload']['dataroot']
    if not os.path.isfile(os.path.join(root, 'known_answer.json')):
        build(argparse.Namespace(config=spec['rows'][0]['config'], num_train=40, num_test=10, num_val=None, seed=0,
                                 no_progress=True))
    steps = T.plan(spec, spec_path, args.seeds, args.gpus, out, args.force)
    print(f'{len(spec["rows"])} rows x {args.seeds} seeds: {len(steps)} steps; logs in {os.path.join(out, "logs")}',
          flush=True)
    T.run_steps(steps, os.path.join(out, 'logs'), args.jobs)
    table = comparison_table(spec, args.seeds, args.top_k)
    stem = os.path.join(out, 'known_answer_checks')
    for ext, text in (('md', render_markdown(table)), ('tex', render_latex(table)), ('csv', render_csv(table))):
        with open(f'{stem}.{ext}', 'w', encoding='utf-8', newline='') as handle:
            handle.write(text)
    learned = next((r for r in spec['rows'] if r['method'] == 'AdaShare'), None)
    if learned is not None:  # the scores table and the policy figure of AdaShare's learned policy
        score(argparse.Namespace(checkpoint=None, config=learned['config'], label=None, samples=args.seeds,
                                 top_k=args.top_k, out=os.path.join(out, 'adashare_scores'), tasks=None))
    name = os.path.splitext(os.path.basename(spec_path))[0]
    metrics = os.path.join(out, f'{name}.md')
    if os.path.isfile(metrics):
        with open(metrics, encoding='utf-8') as handle:
            print(handle.read())
    print(render_markdown(table))
    print(f'done in {T._clock(time.time() - started)}; wrote {stem}.{{md,tex,csv}}, {metrics} and '
          f'{os.path.join(out, "adashare_scores")}')
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/known_answer.py', description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest='command', required=True)
    p_build = commands.add_parser('build', help="render the KnownAnswer dataset at the config's dataroot")
    p_build.add_argument('--config', default=DEFAULT_CONFIG, help=f'a KnownAnswer config (default {DEFAULT_CONFIG})')
    p_build.add_argument('--num-train', type=int, default=40)
    p_build.add_argument('--num-test', type=int, default=10)
    p_build.add_argument('--num-val', type=int, default=None, help='held-out val items (default max(1, num_test // 2))')
    p_build.add_argument('--seed', type=int, default=0)
    p_build.add_argument('--no-progress', action='store_true')
    p_score = commands.add_parser('score', help='score a learned policy against the known answer')
    p_score.add_argument('--config', default=DEFAULT_CONFIG, help=f'a KnownAnswer config (default {DEFAULT_CONFIG})')
    p_score.add_argument('--label', default=None, help='checkpoint label (default: the config\'s train.policy_iter)')
    p_score.add_argument('--checkpoint', default=None, help='a checkpoint file instead of --config/--label')
    p_score.add_argument('--tasks', nargs='+', default=None, help='with --checkpoint: the task names in order '
                         '(default: from the run record beside it)')
    p_score.add_argument('--samples', type=_positive, default=DEFAULT_SAMPLES,
                         help=f'sampled architectures, one per seed (default {DEFAULT_SAMPLES}; 0 = none)')
    p_score.add_argument('--top-k', type=int, default=None, help='top blocks of the sharing score (default: half)')
    p_score.add_argument('--out', default=None, help='output folder (default <result_dir>/<exp_name>/known_answer)')
    p_decided = commands.add_parser('decided', help='the share of decided execute probabilities of checkpoints')
    p_decided.add_argument('checkpoints', nargs='+', help='policy-learning checkpoints (any config)')
    p_decided.add_argument('--margin', type=float, default=0.1, help='decided: p < margin or p > 1 - margin')
    p_compare = commands.add_parser('compare', help='every method on the known-answer task set, then the checks')
    p_compare.add_argument('--spec', default=DEFAULT_SPEC, help=f'table spec (default {DEFAULT_SPEC})')
    p_compare.add_argument('--seeds', type=int, default=3, help='exp_ids 0 .. seeds-1 of every row (default 3)')
    p_compare.add_argument('--out', default=DEFAULT_OUT, help='tables, scores and step logs (default %(default)s)')
    p_compare.add_argument('--gpus', default='-1', help='-1 = CPU (default), or a CUDA id')
    p_compare.add_argument('--quick', action='store_true', help='a few iterations per phase (tests, CI)')
    p_compare.add_argument('--force', action='store_true', help='redo steps whose results exist')
    p_compare.add_argument('--jobs', type=int, default=min(2, os.cpu_count() or 1),
                           help='steps run side by side (default: 2)')
    p_compare.add_argument('--dataroot', default=None, help='--quick: use this dataset instead of the configs\' one')
    p_compare.add_argument('--top-k', type=int, default=None, help='top blocks of the sharing score (default: half)')
    args = parser.parse_args(argv)
    if args.command == 'compare' and args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    return {'build': build, 'score': score, 'decided': decided, 'compare': compare}[args.command](args)


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
