"""Running a run: what train_policy.py, re-train.py and test.py share.

Devices and ranks (device), seeding, checkpoint and policy files (checkpoint), the run folder's lock
(run_lock), start-up checks (preflight), data loaders, resume states and run records, logs and the
console, and the phases' loops. The env (envs/) computes a step; this package runs many of them.
"""
