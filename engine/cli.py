"""The three flags every script takes (docs/original.md §2), and one clear message instead of a traceback wall."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(description: str, argv: Sequence[str] | None = None, script: str = '') -> argparse.Namespace:
    """`--config PATH`, `--gpus INT...` (default [0]; -1 = CPU), `--exp_ids INT...` (default [0]), and the
    resume flags (docs/reliability.md). `script='train_policy'` refuses --exp_ids, which it would ignore."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--config', required=True, help='YAML config file (e.g. yamls/adashare/nyu_v2_3task.yml)')
    parser.add_argument('--gpus', type=int, nargs='+', default=[0],
                        help='CUDA device ids; -1 runs on the CPU (no CUDA also falls back to the CPU)')
    parser.add_argument('--exp_ids', type=int, nargs='+', default=None,
                        help='indices into the config\'s seed list (re-train.py, test.py; default 0)')
    parser.add_argument('--fresh', action='store_true',
                        help='ignore an interrupted run\'s resume state and start over (train_policy.py, re-train.py)')
    parser.add_argument('--resume_with_changes', action='store_true',
                        help='resume an interrupted run although its config changed, applying every new value '
                             '(the change is recorded in opt.txt and loss.txt)')
    parser.add_argument('--allow_unfinished', action='store_true',
                        help='re-train.py: sample the policy from a policy-learning run that has not finished')
    args = parser.parse_args(argv)
    if args.exp_ids is not None and script == 'train_policy':
        parser.error('--exp_ids is for re-train.py and test.py; train_policy.py learns one policy with seed[0]')
    if args.exp_ids is None:
        args.exp_ids = [0]
    return args


def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's main(); user errors print one line (set ADASHARE_DEBUG=1 for the traceback)."""
    try:
        code = main()
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - user errors become one line, bugs keep their traceback
        if not _is_user_error(err) or os.environ.get('ADASHARE_DEBUG'):
            raise
        print(f'error: {err}', file=sys.stderr)
        print('(set ADASHARE_DEBUG=1 to see the traceback)', file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


_OUR_PACKAGES = ('config.', 'dataloaders.', 'deploy.', 'engine.', 'envs.', 'evaluation.', 'models.', 'reporting.',
                 'tools.', 'utils.')


def _is_user_error(err: BaseException) -> bool:
    """Errors about the user's input: bad config, missing files, bad devices, corrupt checkpoints."""
    if isinstance(err, (FileNotFoundError, NotADirectoryError, PermissionError)):
        return True
    module = type(err).__module__ or ''
    return isinstance(err, ValueError) or module.startswith(_OUR_PACKAGES)
