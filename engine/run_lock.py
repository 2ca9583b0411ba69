"""One run per experiment folder: a lock file naming its holder (pid, host, start time).

A second run of the same role on the same folder refuses with one line; a lock left by a process
that is gone (killed, crashed) is taken over with a notice. See docs/reliability.md.
"""
from __future__ import annotations

import atexit
import datetime
import errno
import json
import os
import socket


class RunLockedError(RuntimeError):
    """Another live run holds the experiment folder."""


def _alive(pid: int) -> bool:
    """True if a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read(path: str) -> dict:
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}  # half-written or damaged: treated as a lock of unknown holder


def _age(path: str) -> float:
    try:
        return datetime.datetime.now().timestamp() - os.path.getmtime(path)
    except OSError:
        return 0.0


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
            f"{', ' + holder['command'] if holder.get('command') else ''}")


class RunLock:
    """`<folder>/<name>.lock`, created exclusively; released on release() or at interpreter exit."""

    def __init__(self, folder: str, name: str, command: str = ''):
        self.path = os.path.join(folder, f'{name}.lock')
        self.command = command
        self.held = False

    def acquire(self) -> 'RunLock':
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        record = {'pid': os.getpid(), 'host': socket.gethostname(),
                  'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                  'command': self.command}
        for _ in range(2):  # second try after taking over a stale lock
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except OSError as err:
                if err.errno != errno.EEXIST:
                    raise
                holder = _read(self.path)
                if not self._stale(holder, _age(self.path)):
                    raise RunLockedError(f'{self.path}: another run holds this experiment folder '
                                         f'({_describe(holder)}); wait for it to finish, or use another exp_name')
                print(f'notice: taking over the lock {self.path} of a run that is gone ({_describe(holder)})')
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                json.dump(record, f)
            self.held = True
            atexit.register(self.release)
            return self
        raise RunLockedError(f'{self.path}: could not take the lock (another run took it at the same time)')

    @staticmethod
    def _stale(holder: dict, age: float = 0.0) -> bool:
        """A lock of this host whose process is gone (a lock of another host is never judged stale)."""
        pid = holder.get('pid')
        if not holder:  # empty or damaged: stale unless its writer may still be writing it
            return age > 5.0
        if not isinstance(pid, int) or holder.get('host') != socket.gethostname():
            return False
        return not _alive(pid)

    def release(self) -> None:
        if self.held:
            self.held = False
            if _read(self.path).get('pid') == os.getpid():
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass

    def __enter__(self) -> 'RunLock':
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
