"""Phase 3 of AdaShare: evaluate retrained checkpoints on the whole test split (or a samples folder).

    python test.py --config yamls/adashare/nyu_v2_3task_test.yml --gpus 0 --exp_ids 0 1 2

For each exp_id: loads `retrain%03d_policyIter%s_best_model.pth.tar` (strictly) and, for AdaShare,
`policyIter<it>_rs<seed>.pickle`; evaluates with batch size 1 (the original protocol), prints the metrics
and writes them as JSON to `<paths.result_dir>/<exp_name>/test_metrics_exp<E:03d>.json`, with the
architecture, its size (# Params, parameters, GFLOPs at the evaluation size) and the validation score.
"""
from __future__ import annotations

import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from envs import AdaShareEnv  # noqa: E402
from evaluation.metrics import reference_for  # noqa: E402
from utils.commands import command  # noqa: E402
from engine import checkpoint as C  # noqa: E402
from engine import resume as R  # noqa: E402
from engine.data import build_split, make_loader  # noqa: E402
from engine.policy_source import unfinished_source  # noqa: E402
from engine.run import make_dirs, preflight  # noqa: E402
from engine.threads import apply_cpu_threads  # noqa: E402
from engine.cli import parse_args, run_main  # noqa: E402
from config import check_exp_ids, format_options, load_config  # noqa: E402
from engine.console import closing_summary, format_metrics  # noqa: E402
from engine.device import resolve_device  # noqa: E402
from deploy.export import eval_size  # noqa: E402
from deploy.flops import model_size  # noqa: E402
from engine.logging import RunLogger  # noqa: E402
from evaluation.metrics import score  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    opt = load_config(args.config, 'test')
    exp_ids = check_exp_ids(opt, args.exp_ids, args.config)
    started = time.time()
    device = resolve_device(args.gpus)
    threads_note = apply_cpu_threads(opt, device)
    if threads_note:
        print(threads_note)
    testset = build_split(opt, 'test')
    loader = make_loader(opt, testset, False, None, batch_size=1)
    # Before anything is written (docs/reliability.md): the data, and every checkpoint and policy it reads.
    preflight(opt, {'test': testset}, 'test', None, checkpoints=_needed_files(opt, exp_ids, args.config))
    make_dirs(opt, None)
    RunLogger(opt['paths']['log_dir'], opt['exp_name']).write_options(format_options(opt))
    env = AdaShareEnv(opt, device, None, is_train=False,
                      seg_class_weights=getattr(testset, 'class_weights', None))
    written = [os.path.join(opt['paths']['log_dir'], opt['exp_name'], 'opt.txt')]
    bests = []
    for exp_id in exp_ids:
        written.append(evaluate_one(opt, env, loader, exp_id))
        bests.append(_best_line(opt, exp_id, written[-1]))
    print(closing_summary(f'test.py {opt["exp_name"]}, exp_ids {exp_ids}', time.time() - started, bests, written))
    return 0


def _checkpoint_hint(opt: dict, exp_id: int, config: str) -> str:
    """How to get the retrained checkpoint of `exp_id`: retrain it, or place the released files."""
    train_config = config[:-len('_test.yml')] + '.yml' if config.endswith('_test.yml') else config
    return (f"re-train.py writes it: {command('re-train.py', '--config', train_config, '--exp_ids', exp_id)}\n"
            "or place the released checkpoint files there: see docs/released.md")


def _needed_files(opt: dict, exp_ids: list[int], config: str) -> list[tuple[list[str], str]]:
    """The files test.py reads per exp_id: its best retrained checkpoint and, for AdaShare, its policy."""
    policy_iter = str(opt['train']['policy_iter'])
    folder = (opt['paths']['checkpoint_dir'], opt['exp_name'])
    needed = []
    for exp_id in exp_ids:
        hint = _checkpoint_hint(opt, exp_id, config)
        needed.append(([C.checkpoint_path(*folder, C.retrain_label(exp_id, policy_iter, 'best'))], hint))
        if opt.get('architecture', 'adashare') == 'adashare':
            needed.append(([C.policy_path(*folder, policy_iter, int(opt['seed'][exp_id]))], hint))
    return needed


def _best_line(opt: dict, exp_id: int, result_path: str) -> str:
    """`exp_id E (seed S): checkpoint iteration I, test score X` for the closing summary."""
    import json
    with open(result_path, encoding='utf-8') as handle:
        value = json.load(handle).get('val_score')
    label = C.retrain_label(exp_id, str(opt['train']['policy_iter']), 'best')
    iteration = R.checkpoint_iteration(C.checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], label))
    score = 'n/a' if value is None else f'{value:.4f}'
    return f'exp_id {exp_id} (seed {opt["seed"][exp_id]}): checkpoint {label} at iteration {iteration}, test score {score}'


def finite_metrics(metrics: dict) -> tuple[dict, dict]:
    """Metrics with NaN/inf replaced by None (strict JSON), and `{task/metric: reason}` for each of them."""
    clean: dict = {}
    undefined: dict = {}
    for task, table in metrics.items():
        clean[task] = {}
        for name, value in table.items():
            if isinstance(value, (int, float)) and not math.isfinite(value):
                clean[task][name] = None
                undefined[f'{task}/{name}'] = (f'{value} over the split: no valid pixel, or non-finite predictions; '
                                               f'check the {task} labels of the test split')
            else:
                clean[task][name] = value
    return clean, undefined


def retraining_complete(opt: dict, exp_id: int) -> bool | None:
    """Whether the retraining of `exp_id` ran all its iterations (from its resume state or completion
    record; None when neither exists, as for a released checkpoint). A resume state that cannot be read
    is an unfinished run (it cannot even be resumed), never an unknown one."""
    prefix = f'retrain{exp_id:03d}_policyIter{opt["train"]["policy_iter"]}_'
    path = R.resume_state_path(opt, prefix=prefix)
    progress = R.run_progress(path, 'retrain_total_iters')
    if progress is None:
        if os.path.exists(path):
            print(f'warning: exp_id {exp_id}: the retraining\'s resume state {path} cannot be read (truncated or '
                  f'corrupt), so the run is unfinished; its result is marked "run_complete": false')
            return False
        return None
    if progress[0] < progress[1]:
        print(f'warning: exp_id {exp_id}: the retraining is unfinished (iteration {progress[0]} of {progress[1]}, '
              f'{path}); its result is marked "run_complete": false')
        return False
    return True


def evaluate_one(opt: dict, env: AdaShareEnv, loader, exp_id: int) -> str:
    """Evaluate the best retrained checkpoint of `exp_id`; returns the path of its result JSON."""
    policy_iter = str(opt['train']['policy_iter'])
    seed = int(opt['seed'][exp_id])
    label = C.retrain_label(exp_id, policy_iter, 'best')
    env.load_label(label, strict=True, hint=_checkpoint_hint(opt, exp_id, opt.get('_source', '<yaml>')))
    result: dict = {}
    policies = None
    if env.has_policy:
        policy_file = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
        policies = C.load_policy(policy_file, hint=_checkpoint_hint(opt, exp_id, opt.get('_source', '<yaml>')))
        env.set_fixed_policy(policies)
        print(f'exp_id {exp_id}, policy (seed {seed}):\n' + C.format_policy_table(policies, env.tasks))
    else:
        print(f'exp_id {exp_id} (seed {seed}): {env.architecture} baseline')

    metrics = env.validate(loader, 'eval_fixed', eval_iter=-1)
    print(f'exp_id {exp_id} test metrics: {format_metrics(metrics)}')
    metrics, undefined = finite_metrics(metrics)
    result.update(metrics)
    if undefined:
        result['undefined_metrics'] = undefined
        print('warning: undefined metrics (written as null): ' + '; '.join(f'{k}: {v}' for k, v in undefined.items()))
    if policies is not None:
        result['policy'] = {f'task{t + 1}_policy': pol.tolist() for t, pol in enumerate(policies)}
    result['architecture'] = env.architecture
    result['model_size'] = model_size(env.network, eval_size(opt), policies)
    try:
        value = score(metrics, reference_for(opt)) if not undefined else float('nan')
        result['val_score'] = value if math.isfinite(value) else None
    except ValueError:
        pass  # no reference table for this dataset/task combination
    complete = retraining_complete(opt, exp_id)
    unfinished = unfinished_source(policy_file) if policies is not None else None
    if unfinished is not None:
        # Sampled from an unfinished policy-learning run (re-train.py --allow_unfinished): not a final result.
        done, total = (unfinished.get('run_iteration') or ['?', '?'])
        print(f'warning: exp_id {exp_id}: its policy was sampled from an unfinished policy-learning run '
              f'(iteration {done} of {total}); its result is marked "run_complete": false')
        result['policy_from_unfinished_run'] = unfinished
        complete = False
    if complete is not None:
        result['run_complete'] = complete
    out = os.path.join(opt['paths']['result_dir'], opt['exp_name'], f'test_metrics_exp{exp_id:03d}.json')
    C.atomic_write_json(out, result)
    print(f'wrote {out}')
    return out


if __name__ == '__main__':
    run_main(main)
