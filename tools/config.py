"""Validate a config and print its options, or print / update the configuration reference (docs/config.md).

    python tools/config.py yamls/x.yml --script re-train    # validate a file, print the options
    python tools/config.py --markdown                       # the configuration reference
    python tools/config.py --update-reference               # rewrite it in docs/config.md from the schema

Library: config/ (the schema, loading, validation).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config import (REPO_ROOT, SCRIPTS, ConfigError, format_options, load_config,  # noqa: E402
                          readme_with_reference, schema_markdown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/config.py', description=__doc__.splitlines()[0])
    parser.add_argument('config', nargs='?', help='a YAML file to validate; prints its options')
    parser.add_argument('--script', choices=SCRIPTS, default='train_policy', help='validate for this script')
    parser.add_argument('--markdown', action='store_true', help='print the configuration reference')
    parser.add_argument('--update-reference', '--update-readme', dest='update_readme', action='store_true',
                        help='rewrite the configuration reference in docs/config.md from the schema')
    args = parser.parse_args(argv)
    if args.update_readme:
        path = os.path.join(REPO_ROOT, 'docs', 'config.md')
        with open(path, encoding='utf-8') as f:
            text = f.read()
        new_text = readme_with_reference(text)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(new_text)
        print(f'updated the configuration reference in {path}')
        return 0
    if args.markdown:
        sys.stdout.write(schema_markdown())
        return 0
    if not args.config:
        parser.error('give a config file or --markdown')
    try:
        sys.stdout.write(format_options(load_config(args.config, args.script)))
    except ConfigError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0



if __name__ == '__main__':
    sys.exit(main())
