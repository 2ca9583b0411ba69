"""Write the Random #1 / Random #2 ablation policies of a config, matched to a learned policy.

    python tools/random_policies.py --config yamls/ablations/nyu_v2_3task/random1.yml --kind random1 \\
        --source experiments/checkpoints/NYU_v2_3Task_pretrain/best_model.pth.tar [--exp_ids 0 1 2 3 4 5 6 7]

For each `--exp_ids` entry (default: the first 8 seeds, or all if fewer) this writes
`<checkpoint_dir>/<exp_name>/policyIter<policy_iter>_rs<seed:04d>.pickle` (and its `.txt` table) of the
ablation config. `re-train.py --config <same yaml> --exp_ids ...` then loads these pickles instead of
sampling, and `test.py` evaluates them, exactly as for AdaShare's own sampled policies.

The learned policy whose skip counts are matched (`--source`):
* a policy pickle (`policyIter<it>_rs<seed>.pickle` of the base experiment): that one policy, for every seed;
* a policy-learning checkpoint (`<label>_model.pth.tar` of the base experiment): for each seed, the policy
  the base experiment's re-train.py samples for that same seed (numpy legacy RNG seeded with the seed, then
  `models.policy.sample_policy_numpy`), i.e. exactly the pickle the base's re-train.py writes for it. Each
  random policy is thus count-matched to AdaShare's architecture of the same seed. Deterministic.
The random placement uses `np.random.default_rng(seed)` (models.random_policy), never a global RNG.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models import policy as P  # noqa: E402
from models.random_policy import KINDS, random_policies, skip_counts  # noqa: E402
from engine import checkpoint as C  # noqa: E402
from engine.cli import run_main  # noqa: E402
from config import backbone_blocks, check_exp_ids, load_config, resolve_path  # noqa: E402

DEFAULT_RUNS = 8  # the paper retrains 8 policies per row and reports the best


class RandomPolicyError(ValueError):
    """A source or config the command cannot use."""


def policy_rows(opt: dict) -> int:
    """P = the backbone's block count minus skip_layer: rows of each task policy."""
    return backbone_blocks(opt['backbone']) - int(opt.get('skip_layer', 0) or 0)


def source_kind(path: str) -> str:
    """'pickle' for `*.pickle`, 'checkpoint' for `*.pth.tar` / `*.pth` / `*.tar`."""
    if path.endswith('.pickle'):
        return 'pickle'
    if path.endswith(('.pth.tar', '.pth', '.tar')):
        return 'checkpoint'
    raise RandomPolicyError(f'--source {path}: expected a policy pickle (policyIter<it>_rs<seed>.pickle) or a '
                            f'policy-learning checkpoint (<label>_model.pth.tar)')


def resolve_source(path: str) -> str:
    """The source as given, else relative to the repository root (as config paths are); refuses a missing one."""
    for candidate in (os.path.abspath(path), resolve_path(path)):
        if os.path.isfile(candidate):
            return candidate
    base_exp = os.path.basename(os.path.dirname(os.path.abspath(path))) or '<base exp_name>'
    writer = (f'python train_policy.py --config <yaml with exp_name: {base_exp}>' if source_kind(path) == 'checkpoint'
              else f'python re-train.py --config <yaml with exp_name: {base_exp}> --exp_ids <i>')
    raise RandomPolicyError(f'--source {path} does not exist; it is written by: {writer}')


def checkpoint_logits(path: str, num_tasks: int, num_rows: int) -> list[torch.Tensor]:
    """The `task<t>_logits` [P, 2] of a policy-learning checkpoint, checked against the config."""
    state = C.load_checkpoint(path)[C.NETWORK_KEY]
    found = sorted(k for k in state if k.startswith('task') and k.endswith('_logits'))
    expected = [f'task{t + 1}_logits' for t in range(num_tasks)]
    if found != sorted(expected):
        raise RandomPolicyError(f'{path} holds policy logits {found or "none"} but the config has {num_tasks} '
                                f'task(s) (expected {", ".join(expected)})')
    logits = [state[key].detach().float().cpu() for key in expected]
    if any(tuple(lg.shape) != (num_rows, 2) for lg in logits):
        raise RandomPolicyError(f'{path} has policy logits of shape {list(logits[0].shape)} but the config gates '
                                f'[{num_rows}, 2] (backbone / skip_layer differ)')
    return logits


def sampled_policy(logits: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """The policy re-train.py samples for `seed`: its global np.random.seed(seed) draws, from a private RandomState."""
    return P.sample_policy_numpy(logits, rng=np.random.RandomState(seed))


def _counts_line(policies: Sequence[torch.Tensor]) -> str:
    counts = skip_counts(policies)
    return f'skipped blocks per task {counts}, total {sum(counts)}'


def _differs(path: str, policies: Sequence[torch.Tensor]) -> bool:
    """True if `path` already holds another policy (its retraining, if any, is then stale)."""
    if not os.path.isfile(path):
        return False
    try:
        old = C.load_policy(path)
    except C.PolicyFileError:
        return True
    return len(old) != len(policies) or not all(torch.equal(a, b) for a, b in zip(old, policies))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/random_policies.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', required=True, help='the ablation yaml (its exp_name receives the pickles)')
    parser.add_argument('--kind', required=True, choices=KINDS,
                        help='random1: same total skip count; random2: same skip count per task')
    parser.add_argument('--source', required=True,
                        help='learned policy: a policy pickle or a policy-learning checkpoint (*_model.pth.tar)')
    parser.add_argument('--exp_ids', type=int, nargs='+', default=None,
                        help=f'indices into the config\'s seed list (default: 0..{DEFAULT_RUNS - 1})')
    args = parser.parse_args(argv)

    opt = load_config(args.config, 're-train')
    exp_ids = args.exp_ids if args.exp_ids is not None else list(range(min(DEFAULT_RUNS, len(opt['seed']))))
    check_exp_ids(opt, exp_ids, args.config)
    tasks, num_rows = list(opt['tasks']), policy_rows(opt)
    source = resolve_source(args.source)
    policy_iter = str(opt['train']['policy_iter'])
    targets = {exp_id: C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter,
                                     int(opt['seed'][exp_id])) for exp_id in exp_ids}
    if source in {os.path.abspath(p) for p in targets.values()}:
        raise RandomPolicyError(f'--source {source} is one of the files this command writes for {args.config}; '
                                f'point --source at the base experiment\'s checkpoint or pickle')

    logits = None
    if source_kind(source) == 'pickle':
        fixed = C.load_policy(source, num_tasks=len(tasks), num_rows=num_rows)
        print(f'learned policy from {source} ({_counts_line(fixed)}):\n' + C.format_policy_table(fixed, tasks))
    else:
        logits = checkpoint_logits(source, len(tasks), num_rows)
        probs = [P.execute_probabilities(lg) for lg in logits]
        print(f'learned execute probabilities of {source}; the learned policy of each seed is sampled from them '
              f'as re-train.py does:\n' + C.format_policy_table(None, tasks, probabilities=probs))

    for exp_id in exp_ids:
        seed = int(opt['seed'][exp_id])
        learned = fixed if logits is None else sampled_policy(logits, seed)
        policies = random_policies(args.kind, learned, seed)
        path = targets[exp_id]
        replaced = _differs(path, policies)
        C.save_policy(path, policies, tasks)
        if logits is not None:
            print(f'\nexp_id {exp_id}, seed {seed}: learned policy ({_counts_line(learned)}):\n'
                  + C.format_policy_table(learned, tasks))
        print(f'\nexp_id {exp_id}, seed {seed}: {args.kind} policy ({_counts_line(policies)}), wrote {path}'
              + (' (replaced a different policy: retrain that seed again)' if replaced else '') + ':\n'
              + C.format_policy_table(policies, tasks))
    print(f'\nnext: python re-train.py --config {args.config} --exp_ids {" ".join(map(str, exp_ids))}')
    return 0


if __name__ == '__main__':
    run_main(main)
