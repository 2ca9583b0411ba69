"""Environments: the network, its optimisers, losses, policy and checkpoints for each phase."""
from envs.adashare_env import AdaShareEnv, TrainState

__all__ = ['AdaShareEnv', 'TrainState']
