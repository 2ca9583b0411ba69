"""What the scripts print: one metrics formatter, progress with ETA, and the closing summary."""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Iterable, Mapping, Sequence, TextIO

from tqdm import tqdm


def format_value(value: Any) -> str:
    """A metric value with 4 decimals; None and non-numbers as they are."""
    if isinstance(value, bool) or value is None:
        return str(value)
    try:
        return f'{float(value):.4f}'
    except (TypeError, ValueError):
        return str(value)


def format_metrics(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """`seg: mIoU 0.1234, Pixel Acc 0.5678; sn: ...`: the one metrics line of every script."""
    return '; '.join(f'{task}: ' + ', '.join(f'{name} {format_value(v)}' for name, v in table.items())
                     for task, table in metrics.items())


def format_bytes(size: int) -> str:
    """1023 B, 1.5 KiB, 23.4 MiB, 1.20 GiB."""
    if size < 1024:
        return f'{size} B'
    for unit, scale in (('KiB', 2 ** 10), ('MiB', 2 ** 20), ('GiB', 2 ** 30)):
        if size < 1024 * scale or unit == 'GiB':
            return f'{size / scale:.1f} {unit}' if unit != 'GiB' else f'{size / scale:.2f} GiB'
    return f'{size} B'  # unreachable; keeps type checkers calm


def format_duration(seconds: float) -> str:
    """4.2 s, 2 min 50 s, 1 h 05 min; `?` when unknown."""
    if not math.isfinite(seconds) or seconds < 0:
        return '?'
    if seconds < 60:
        return f'{seconds:.1f} s'
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f'{minutes} min {secs:02d} s'
    hours, minutes = divmod(minutes, 60)
    return f'{hours} h {minutes:02d} min'


class Progress:
    """A tqdm bar (it/s, ETA) when stderr is a terminal; otherwise a plain progress line now and then.

    The plain line ("iteration i/N, s/iter, ETA, phase") goes to stderr every `every` iterations (about
    20 lines a run) or after `max_quiet_s` seconds, whichever comes first, and after the last iteration,
    so logs of batch jobs show how far a run is.
    """

    def __init__(self, total: int, initial: int = 0, label: str = '', enabled: bool = True,
                 stream: TextIO | None = None, every: int | None = None, max_quiet_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.terminal = enabled and self.stream.isatty()
        self.total, self.n, self.label, self.phase = int(total), int(initial), label, ''
        self.every = every or max(1, (self.total - self.n) // 20)
        self.max_quiet_s, self.clock = max_quiet_s, clock
        self._first_n, self._start = self.n, clock()
        self._last_line_n, self._last_line_t = self.n, self._start
        self.bar = tqdm(total=self.total, initial=self.n, desc=label, dynamic_ncols=True, file=self.stream,
                        disable=not self.terminal)

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.bar.set_description(f'{self.label} {phase}'.strip())

    def update(self, count: int = 1) -> None:
        self.n += count
        self.bar.update(count)
        if not self.enabled or self.terminal:
            return
        now = self.clock()
        if (self.n - self._last_line_n >= self.every or now - self._last_line_t >= self.max_quiet_s
                or self.n >= self.total):
            self._last_line_n, self._last_line_t = self.n, now
            print(self.line(now), file=self.stream, flush=True)

    def seconds_per_iteration(self, now: float | None = None) -> float:
        done = self.n - self._first_n
        return ((self.clock() if now is None else now) - self._start) / done if done > 0 else math.nan

    def line(self, now: float | None = None) -> str:
        """`[retrain exp 0] iteration 40/200 (20 %), 0.52 s/iter, ETA 1 min 23 s, phase weights`."""
        per = self.seconds_per_iteration(now)
        percent = 100.0 * self.n / self.total if self.total else 100.0
        head = f'[{self.label}] ' if self.label else ''
        return (f'{head}iteration {self.n}/{self.total} ({percent:.0f} %), {per:.2f} s/iter, '
                f'ETA {format_duration(per * (self.total - self.n))}, phase {self.phase or "-"}')

    def write(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if self.terminal:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        self.bar.close()


def files_written(folders: Iterable[str], since: float) -> list[str]:
    """Files under `folders` modified at or after `since` (a time.time()), sorted; temp files and run locks left out."""
    found = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for root, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(root, name)
                if '.tmp' in name or name.endswith('.lock') or not os.path.isfile(path):
                    continue
                if os.path.getmtime(path) >= since - 1.0:  # coarse file-system clocks
                    found.append(path)
    return sorted(set(found))


def closing_summary(title: str, elapsed_s: float, best: Sequence[str], files: Sequence[str]) -> str:
    """The last lines of a script: elapsed time, best iteration and score, every file written with its size."""
    lines = [f'== {title}: finished in {format_duration(elapsed_s)}']
    lines += [f'best: {line}' for line in best] or ['best: none']
    if files:
        sizes = [(os.path.getsize(p), p) for p in files if os.path.isfile(p)]
        lines.append(f'files written ({len(sizes)}, {format_bytes(sum(s for s, _ in sizes))} in all):')
        lines += [f'  {format_bytes(size):>10}  {path}' for size, path in sizes]
    else:
        lines.append('files written: none')
    return '\n'.join(lines)
