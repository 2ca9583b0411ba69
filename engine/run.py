"""The run folder: start-up checks before anything is written, the folder's locks, its directories."""
from __future__ import annotations

import os
from typing import Sequence

from torch.utils.data import Dataset

from engine.device import DistContext


def make_dirs(opt: dict, dist: DistContext | None) -> None:
    """`<paths.*>/<exp_name>/` for every paths entry, as the original's create_path (main rank only)."""
    if dist is not None and not dist.is_main:
        return
    for path in opt['paths'].values():
        os.makedirs(os.path.join(path, opt['exp_name']), exist_ok=True)


def preflight(opt: dict, datasets: dict[str, Dataset], eval_split: str, dist: DistContext | None,
              checkpoints: Sequence[tuple[Sequence[str], str]] = ()) -> None:
    """Start-up checks before anything is written: output folders, split files, evaluation size and the
    checkpoint files the run will read (`checkpoints`: (any of these paths, how to get it)) (main rank)."""
    if dist is not None and not dist.is_main:
        return
    from engine import preflight as F
    F.check_writable(opt['paths'], opt['exp_name'])
    note = F.check_split_files(datasets.values())
    F.check_eval_item(datasets[eval_split], eval_split)
    F.check_checkpoints(checkpoints)
    found = f', {len(checkpoints)} checkpoint file(s) found' if checkpoints else ''
    print(f'start-up checks passed: {note}{found}')


def claim_folder(opt: dict, dist: DistContext | None, names: list[str], command: str) -> list:
    """Lock the experiment folder for this run (main rank), then delete temp files of interrupted saves."""
    if dist is not None and not dist.is_main:
        return []
    from engine.checkpoint import remove_stale_temp_files
    from engine.run_lock import RunLock
    folder = os.path.join(opt['paths']['checkpoint_dir'], opt['exp_name'])
    locks = [RunLock(folder, name, command).acquire() for name in names]
    _HELD_LOCKS.extend(locks)
    removed = remove_stale_temp_files([os.path.join(p, opt['exp_name']) for p in opt['paths'].values()])
    if removed:
        print(f'removed {len(removed)} leftover temp file(s) of interrupted saves: '
              + ', '.join(os.path.basename(p) for p in removed))
    return locks


_HELD_LOCKS: list = []


def release_folder() -> None:
    """Release the locks claim_folder took (also done at interpreter exit)."""
    while _HELD_LOCKS:
        _HELD_LOCKS.pop().release()


class RunSession:
    """The bookkeeping one run shares with every other run of the three scripts (docs/layout.md).

    A run is policy learning (train_policy.py) or the retraining of one exp_id (re-train.py). The
    session knows where the run's resume state lives, resumes it (refusing or recording a changed
    config), writes opt.txt with the run's history, notes starts and resumes in loss.txt, and ends
    every iteration (`latest`, the resume state, the completion record). The phase itself (what one
    iteration computes) is the caller's.
    """

    def __init__(self, opt: dict, env, logger, *, script: str, resume_path: str, total: int, total_key: str,
                 what: str, noun: str = 'run', tag: str = '', extra: dict | None = None):
        from config import recorded_config
        from engine.resume import RunRecord
        self.opt, self.env, self.logger = opt, env, logger
        self.script, self.resume_path, self.total, self.total_key, self.what = script, resume_path, total, total_key, what
        self.noun = noun  # 'resuming the interrupted <noun>': run, retraining
        self.tag = tag  # prefix of this run's loss.txt notes ('retrain003 '), empty for policy learning
        self.extra = dict(extra or {})
        self.record = RunRecord({**recorded_config(opt), **self.extra}, [])
        self.resumed = False

    @property
    def folder(self) -> str:
        return os.path.join(self.opt['paths']['checkpoint_dir'], self.opt['exp_name'])

    def finished_message(self, fresh: bool) -> str | None:
        """The line to print when this run already finished (nothing to do), else None."""
        if not self.opt['train']['auto_resume'] or fresh:
            return None
        from engine.resume import complete_message
        return complete_message(self.resume_path, self.total, self.what, self.total_key, self.folder)

    def start(self, loaders: dict, *, fresh: bool, accept_changes: bool, dist: DistContext | None) -> None:
        """Resume from the resume state when there is one (and auto_resume, not --fresh), then open the log:
        opt.txt with the run's history, a start/resume note in loss.txt."""
        from engine.resume import forget_completion, options_text, resume_checked
        payload = None
        if self.opt['train']['auto_resume'] and not fresh:
            payload, self.record = resume_checked(self.env, self.resume_path, loaders, self.opt, self.script,
                                                  accept_changes, extra=self.extra)
        self.resumed = payload is not None
        make_dirs(self.opt, dist)
        self.logger.write_options(options_text(self.opt, self.record))
        is_main = dist is None or dist.is_main
        iteration = self.env.state.current_iter
        if self.resumed:
            if is_main:
                print(f'resuming the interrupted {self.noun} from {self.resume_path} at iteration {iteration} '
                      f'(use --fresh to start over)')
            self.logger.note(f'{self.tag}resumed at iteration {iteration}')
            history = self.record.history
            if history and history[-1].startswith(f'# changed at iteration {iteration} '):
                self.logger.note(self.tag + history[-1].lstrip('# '))
        else:
            self.logger.note(f'{self.tag}{"fresh start" if fresh else "start"}')
            if is_main:
                forget_completion(self.resume_path)

    def end_iteration(self, loaders: dict, latest_label: str, latest_due: bool) -> None:
        """`latest` and the resume state when due, the completion record after the last iteration."""
        from engine.resume import finish_iteration
        finish_iteration(self.env, latest_label, self.opt['train'].get('latest_freq'), self.total, latest_due,
                         self.resume_path, loaders, self.record)
