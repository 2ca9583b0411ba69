"""Environments: the network, its optimisers, losses, policy and checkpoints for each phase.

`env_class(opt)` is the method registry of the scripts: `architecture:` -> the env class that provides the
method's network, policy-learning loop and schedule, policy files, sampling and size report (adashare and
the paper baselines: AdaShareEnv; automtl: AutoMTLEnv). Nothing downstream branches on the method's name.
"""
from envs.adashare_env import AdaShareEnv, TrainState
from envs.automtl_env import AutoMTLEnv, AutoMTLState

# Architectures with an env of their own; every other value (adashare, the baselines) is AdaShareEnv's.
METHOD_ENVS = {'automtl': AutoMTLEnv}


def env_class(opt: dict) -> type:
    """The env class of a config's `architecture:`."""
    return METHOD_ENVS.get(opt.get('architecture', 'adashare') or 'adashare', AdaShareEnv)


__all__ = ['AdaShareEnv', 'AutoMTLEnv', 'AutoMTLState', 'METHOD_ENVS', 'TrainState', 'env_class']
