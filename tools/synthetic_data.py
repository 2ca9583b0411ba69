"""Render a synthetic multi-task dataset in an AdaShare on-disk layout (NYU v2, CityScapes, Taskonomy, samples,
and the known-answer sharing benchmark: docs/known_answer.md).

    python tools/synthetic_data.py --layout {nyu_v2,cityscapes,taskonomy,nyu_v2_samples,known_answer} --out DIR
                                   [--num-train N] [--num-test N] [--height H] [--width W] [--seed S]

Library: dataloaders/synthetic/.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import TextIO

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataloaders.synthetic import DEFAULT_SIZES, LAYOUTS, generate_dataset  # noqa: E402
from utils.commands import script_path  # noqa: E402


def show_bar(no_progress: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw the tqdm bar: only on a terminal, as engine.console.Progress does.

    Redirected to a log file, tqdm's carriage-return redraws pile up into one unreadable line; there
    the command prints one plain line when it starts and its closing line instead.
    """
    stream = sys.stderr if stream is None else stream
    return not no_progress and _is_terminal(stream)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without isatty
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python {script_path('tools/synthetic_data.py')}",
                                     description="Render a synthetic multi-task dataset in an AdaShare on-disk layout.")
    parser.add_argument("--layout", required=True, choices=LAYOUTS)
    parser.add_argument("--out", required=True, help="output folder (the dataset's dataroot)")
    parser.add_argument("--num-train", type=int, default=40)
    parser.add_argument("--num-test", type=int, default=10, help="test items (nyu_v2_samples: the number of samples)")
    parser.add_argument("--num-val", type=int, default=None, help="held-out val items (default max(1, num_test // 2))")
    parser.add_argument("--height", type=int, default=None,
                        help="default per layout: " + ", ".join(f"{k} {h}x{w}" for k, (h, w) in DEFAULT_SIZES.items()))
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true",
                        help="hide the progress bar (drawn only when stderr is a terminal; otherwise one plain "
                             "start line)")
    args = parser.parse_args(argv)
    bar = show_bar(args.no_progress)
    if not bar and not args.no_progress:
        print(f"rendering {args.layout} to {args.out} ...", file=sys.stderr, flush=True)
    try:
        stats = generate_dataset(args.layout, args.out, num_train=args.num_train, num_test=args.num_test,
                                 height=args.height, width=args.width, seed=args.seed,
                                 progress=bar, num_val=args.num_val)
    except ValueError as error:
        parser.error(str(error))
    splits = ", ".join(f"{name} {count}" for name, count in stats["splits"].items())
    print(f"wrote {stats['num_images']} {stats['height']}x{stats['width']} {stats['layout']} images ({splits}) to "
          f"{stats['out_dir']} in {stats['seconds']:.2f} s: {stats['images_per_second']:.1f} images/s")
    return 0



if __name__ == "__main__":
    sys.exit(main())
