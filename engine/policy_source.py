"""Where a retraining's architecture comes from (docs/reliability.md): the policy pickle of its seed, or a
fresh sample from the policy-learning checkpoint, with a source record that says which checkpoint,
iteration and logits it was drawn from and whether that run had finished."""
from __future__ import annotations

import os

import torch

from engine import checkpoint as C
from engine.resume import resume_state_path, run_progress
from models import policy as P


def unfinished_source(policy_path: str) -> dict | None:
    """`{'run_iteration': [done, total]}` when the pickle's source record says the policy-learning run it was
    sampled from was unfinished (re-train.py --allow_unfinished), else None."""
    record = C.load_policy_source(policy_path) if os.path.exists(policy_path) else None
    if record is None or record.get('run_complete') is not False:
        return None
    return {'run_iteration': record.get('run_iteration'), 'checkpoint': record.get('checkpoint')}


def source_record(env, opt: dict, policy_iter: str) -> dict | None:
    """Label, iteration, logits hash and completeness of the policy-learning checkpoint, None if it is absent."""
    path = env.checkpoint_file(policy_iter)
    if not os.path.exists(path):
        return None
    state = C.load_checkpoint(path)
    progress = run_progress(resume_state_path(opt), 'total_iters', int(opt['train']['total_iters']))
    return {'checkpoint': os.path.basename(path), 'label': policy_iter, 'iteration': int(state.get('iter', 0)),
            'logits_sha256': C.logits_digest(state['mtl-net']),
            'run_complete': None if progress is None else progress[0] >= progress[1],
            'run_iteration': None if progress is None else list(progress)}


def refuse_unfinished(source: dict, opt: dict, allow: bool) -> None:
    """A policy-learning run whose resume state shows it unfinished is refused unless --allow_unfinished."""
    if source.get('run_complete') is not False:
        return
    done, total = source['run_iteration']
    message = (f'{resume_state_path(opt)}: the policy-learning run is unfinished (iteration {done} of {total}), '
               f'so its {source["checkpoint"]} is not final')
    if not allow:
        raise ValueError(f'{message}; finish it (python train_policy.py --config {opt.get("_source", "<yaml>")}) '
                         f'or pass --allow_unfinished')
    print(f'warning: {message} (--allow_unfinished)')


def obtain_policy(env, opt: dict, seed: int, dist, allow_unfinished: bool = False) -> list[torch.Tensor]:
    """Load `policyIter<it>_rs<seed>.pickle`, or sample it from the policy-learning checkpoint (docs/original.md §4.5).

    A pickle whose source record (`.source.json`) no longer matches the checkpoint is re-sampled; a pickle
    without a record (tools.random_policies, older versions) is used as it is (docs/reliability.md).
    """
    policy_iter = str(opt['train']['policy_iter'])
    path = C.policy_path(opt['paths']['checkpoint_dir'], opt['exp_name'], policy_iter, seed)
    recorded = C.load_policy_source(path) if os.path.exists(path) else None
    if os.path.exists(path) and recorded is None:
        return _loaded_policy(path, env, dist)
    source = source_record(env, opt, policy_iter)
    if recorded is not None:
        if source is None:
            print(f'note: {env.checkpoint_file(policy_iter)} is gone; using {path} as it is')
            return _loaded_policy(path, env, dist)
        refuse_unfinished(source, opt, allow_unfinished)
        if (recorded.get('logits_sha256'), recorded.get('iteration')) == (source['logits_sha256'], source['iteration']):
            return _loaded_policy(path, env, dist)
        print(f're-sampling the policy (seed {seed}): {source["checkpoint"]} changed since {os.path.basename(path)} '
              f'was sampled (iteration {recorded.get("iteration")} → {source["iteration"]}, logits '
              f'{str(recorded.get("logits_sha256"))[:12]} → {source["logits_sha256"][:12]})')
    elif source is not None:
        refuse_unfinished(source, opt, allow_unfinished)
    env.load_label(policy_iter, hint=policy_hint(env.opt, policy_iter))
    probs = env.execute_probabilities()
    policies = P.sample_policy_numpy([lg.detach() for lg in env.policy_logits()])
    if dist.is_main:
        C.save_policy(path, policies, env.tasks, source=source)
        print(f'sampled policy (seed {seed}) from {env.checkpoint_file(policy_iter)}, saved {path}:\n'
              + C.format_policy_table(policies, env.tasks, probabilities=probs))
    return policies


def _loaded_policy(path: str, env, dist) -> list[torch.Tensor]:
    """Load a saved policy pickle and print its table (once: the caller prints no second copy)."""
    policies = C.load_policy(path)
    if dist.is_main:
        print(f'loaded policy {path}:\n' + C.format_policy_table(policies, env.tasks))
    return policies


def policy_hint(opt: dict, policy_iter: str) -> str:
    """How to get the policy-learning checkpoint: a finished run without `best` needs policy_iter: latest."""
    latest = C.checkpoint_path(opt['paths']['checkpoint_dir'], opt['exp_name'], 'latest')
    if policy_iter == 'best' and os.path.exists(latest):
        return ('policy learning wrote no best (its score counts only after the "best" threshold); set '
                'train.policy_iter: latest, or run train_policy.py longer')
    return f'policy learning writes it: python train_policy.py --config {opt.get("_source", "<yaml>")}'
