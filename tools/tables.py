"""Render the paper's tables from test.py result files: Markdown, LaTeX and CSV.

    python tools/tables.py --spec yamls/tables/table3.yml [--spec ...] --out DIR

Each spec (yamls/tables/*.yml) lists the rows (method, the yaml test.py was run with, optional exp_ids).
Writes `<spec name>.md`, `.tex` and `.csv` into DIR and prints the Markdown. Library: reporting/tables.py.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reporting.tables import render_markdown, write_table  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/tables.py', description=__doc__.splitlines()[0])
    parser.add_argument('--spec', required=True, nargs='+', help='table spec yaml(s), e.g. yamls/tables/table3.yml')
    parser.add_argument('--out', required=True, help='folder for <name>.md, <name>.tex and <name>.csv')
    args = parser.parse_args(argv)
    for spec in args.spec:
        table, paths = write_table(spec, args.out)
        print(render_markdown(table))
        print('wrote ' + ', '.join(paths) + '\n')
    return 0


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
