"""The main job on the embedded synthetic default: policy learning -> retraining -> evaluation.

    python tools/demo.py                 # CPU when there is no GPU; about 3 minutes on 2 cores

Generates the synthetic NYU-v2-layout data if it is missing, then runs exactly the commands a user
would run (printed as it goes), and ends with the learned policy, the sampled architectures, the
test metrics, figures, and where every file is.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

DEFAULT_CONFIG = 'yamls/synthetic/nyu_v2_3task.yml'


def run(command: list[str]) -> None:
    """Run one step as its own process, exactly as a user would type it."""
    print('\n$ ' + ' '.join(command), flush=True)
    result = subprocess.run([sys.executable] + command, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(f'step failed (exit code {result.returncode}): {" ".join(command)}')


def ensure_data(opt: dict) -> None:
    """Generate the synthetic dataset named by the config if its json index is missing."""
    root = opt['dataload']['dataroot']
    if os.path.exists(os.path.join(root, 'nyu_v2_3task.json')):
        print(f'synthetic data found in {root}')
        return
    height = opt['dataload'].get('eval_h') or 96
    width = opt['dataload'].get('eval_w') or 128
    run(['tools/synthetic_data.py', '--layout', 'nyu_v2', '--out', os.path.relpath(root, REPO_ROOT),
         '--num-train', '40', '--num-test', '10', '--height', str(height), '--width', str(width), '--seed', '0'])


def make_figures(opt: dict, exp_ids: list[int], figure_dir: str) -> list[str]:
    """Policy, task correlation, training curves and a prediction panel, as PNG and to TensorBoard."""
    import torch
    from tensorboardX import SummaryWriter

    from envs import AdaShareEnv
    from engine import checkpoint as C
    from reporting import plots
    from engine import data as T

    ckpt_dir = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    log_dir = os.path.join(opt['paths']['log_dir'], opt['exp_name'])
    policy_iter = str(opt['train']['policy_iter'])
    policies = {f'exp{e}_seed{opt["seed"][e]}': C.load_policy(
        C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, opt['seed'][e]))
        for e in exp_ids}
    writer = SummaryWriter(log_dir)
    paths = plots.write_run_figures(os.path.join(ckpt_dir, f'{policy_iter}_model.pth.tar'), opt['tasks'],
                                    figure_dir, writer=writer, policies=policies,
                                    loss_txt=os.path.join(log_dir, 'loss.txt'))
    # Prediction panel of the first retrained model on two test images.
    env = AdaShareEnv(opt, torch.device('cpu'), is_train=False)
    env.load_label(C.retrain_label(exp_ids[0], policy_iter, 'best'), strict=True)
    env.set_fixed_policy(next(iter(policies.values())))
    loader = T.make_loader(opt, T.build_split(opt, 'test'), False, None, batch_size=2)
    batch = next(iter(loader))
    env.eval()
    env.set_inputs(batch)
    with torch.no_grad():
        outputs = env.forward('eval_fixed')
    panel = os.path.join(figure_dir, 'predictions.png')
    plots.plot_prediction_panel(env.batch, outputs, opt['tasks'], panel, index=[0, 1],
                                decode_normals=bool(opt['quirks'].get('decode_normals')), writer=writer)
    writer.close()
    return paths + [panel]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python tools/demo.py', description=__doc__.splitlines()[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--gpus', default='-1', help="'-1' = CPU (default), or a CUDA id such as 0")
    parser.add_argument('--exp_ids', type=int, nargs='+', default=[0, 1])
    args = parser.parse_args(argv)

    from config import load_config
    opt = load_config(os.path.join(REPO_ROOT, args.config) if not os.path.isabs(args.config) else args.config,
                      're-train')
    ensure_data(opt)
    common = ['--config', args.config, '--gpus', args.gpus]
    exp_ids = [str(e) for e in args.exp_ids]
    run(['train_policy.py', *common])
    run(['re-train.py', *common, '--exp_ids', *exp_ids])
    run(['test.py', *common, '--exp_ids', *exp_ids])
    run(['tools/summary.py', '--config', args.config, '--exp_ids', *exp_ids])

    figure_dir = os.path.join(opt['paths']['result_dir'], opt['exp_name'], 'figures')
    figures = make_figures(opt, args.exp_ids, figure_dir)
    _print_report(opt, args.exp_ids, figures)
    return 0


def _print_report(opt: dict, exp_ids: list[int], figures: list[str]) -> None:
    from engine import checkpoint as C
    from reporting import plots

    ckpt_dir = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    policy_iter = str(opt['train']['policy_iter'])
    state = C.load_checkpoint(os.path.join(ckpt_dir, f'{policy_iter}_model.pth.tar'))
    probs = plots.checkpoint_execute_probabilities(state, opt['tasks'])
    print('\n' + '=' * 78)
    print(f'Learned policy ({policy_iter} checkpoint, iteration {state["iter"]}): execute probabilities')
    print(C.format_policy_table(None, opt['tasks'], probabilities=probs))
    for exp_id in exp_ids:
        seed = opt['seed'][exp_id]
        policy = C.load_policy(C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed))
        print(f'\nSampled architecture exp_id {exp_id} (seed {seed}):')
        print(C.format_policy_table(policy, opt['tasks']))
    for path in sorted(glob.glob(os.path.join(opt['paths']['result_dir'], opt['exp_name'], 'test_metrics_exp*.json'))):
        with open(path) as f:
            result = json.load(f)
        print(f'\nTest metrics {os.path.basename(path)} (validation score {result.get("val_score", float("nan")):.4f}):')
        for task in opt['tasks']:
            print(f'  {task:6s} ' + ', '.join(f'{k} {v:.4f}' for k, v in result[task].items()))
    print('\nFiles:')
    print(f'  checkpoints and policies  {ckpt_dir}')
    print(f'  logs, TensorBoard         {os.path.join(opt["paths"]["log_dir"], opt["exp_name"])}'
          f'  (tensorboard --logdir {opt["paths"]["log_dir"]})')
    for path in sorted(glob.glob(os.path.join(opt['paths']['result_dir'], opt['exp_name'], '*.json'))):
        print(f'  test metrics              {path}')
    for path in figures:
        print(f'  figure                    {path}')


if __name__ == '__main__':
    from engine.cli import run_main
    run_main(main)
