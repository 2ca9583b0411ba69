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
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

DEFAULT_CONFIG = 'yamls/synthetic/known_answer/cpu.yml'
DEFAULT_SAMPLES = 8


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
    args = parser.parse_args(argv)
    return build(args) if args.command == 'build' else score(args)


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
