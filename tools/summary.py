"""Summarise the test results of several runs (exp_ids / seeds) of one experiment: values, mean ± std, best run.

    python tools/summary.py --config yamls/adashare/nyu_v2_3task_test.yml [--exp_ids 0 1 2]
                            [--single-task single_task_metrics.json] [--json summary.json]

Library: evaluation/summary.py (statistics, Δ_t, result-file discovery).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.summary import format_summary, summarize_experiment  # noqa: E402
from utils.commands import script_path  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    # The usage line names the script as it must be typed from here, not only from the repository root.
    parser = argparse.ArgumentParser(prog=f'python {script_path("tools/summary.py")}',
                                     description=__doc__.splitlines()[0])
    parser.add_argument('--config', required=True, help='the test yaml of the experiment (as for test.py)')
    parser.add_argument('--exp_ids', type=int, nargs='+', default=None,
                        help='runs to summarise (default: every test_metrics_exp*.json of the experiment)')
    parser.add_argument('--single-task', dest='single_task', default=None,
                        help='JSON {task: {metric: value}} of single-task results, for AutoMTL\'s Δ_t')
    parser.add_argument('--json', dest='json_out', default=None, help='also write the summary to this JSON file')
    args = parser.parse_args(argv)
    summary, title = summarize_experiment(args.config, args.exp_ids, args.single_task)
    print(format_summary(summary, title))
    if args.json_out:
        from engine.checkpoint import atomic_write_json
        atomic_write_json(args.json_out, summary)
        print(f'wrote {args.json_out}')
    return 0



if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
