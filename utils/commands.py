"""How to name a command of this repository so that it runs from where the user stands.

A suggestion such as `python test.py --config X` works only from the repository root: from any other
folder `test.py` is not there. `script_path` / `command` give the path as the user must type it from
the current directory. This module imports none of our packages (any module may use it).
"""
from __future__ import annotations

import os
import shlex

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def script_path(script: str, cwd: str | None = None) -> str:
    """`script` (relative to the repository root, e.g. `test.py`, `tools/summary.py`) as typed from `cwd`.

    From the root or a folder above it: the relative path (`test.py`, `main/test.py`), which is short
    and correct. From anywhere else, the absolute path: a `../..` chain is correct too but hard to read.
    """
    target = os.path.join(REPO_ROOT, script)
    here = os.path.abspath(cwd if cwd is not None else os.getcwd())
    try:
        relative = os.path.relpath(target, here)
    except ValueError:  # another drive on Windows: no relative path exists
        return target
    return target if relative == os.pardir or relative.startswith(os.pardir + os.sep) else relative


def command(script: str, *args: object, cwd: str | None = None) -> str:
    """`python <script as typed from cwd> <args>`, each part shell-quoted where it needs it."""
    parts = [script_path(script, cwd), *(str(a) for a in args)]
    # A placeholder such as E or <yaml> is kept readable; real values with spaces get quotes.
    return "python " + " ".join(p if _is_placeholder(p) else shlex.quote(p) for p in parts)


def _is_placeholder(part: str) -> bool:
    return part.startswith("<") and part.endswith(">")
