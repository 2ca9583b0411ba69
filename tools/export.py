"""Export a retrained checkpoint and its policy as a compact inference model (skipped blocks dropped).

    python tools/export.py --config yamls/adashare/nyu_v2_3task_test.yml --exp_ids 0 [--out FILE] [--gpus -1]

Library: deploy/export.py (CompactMultiTaskNet, export_compact, load_compact).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

# Runnable as a file from any folder, as the training scripts are.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.export import export_experiment  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python tools/export.py", description="Export a retrained checkpoint + policy as a compact inference model")
    parser.add_argument("--config", required=True, help="YAML config (as for test.py / re-train.py)")
    parser.add_argument("--exp_ids", type=int, nargs="+", default=[0], help="indices into the config's seed list")
    parser.add_argument("--gpus", type=int, nargs="+", default=[0],
                        help="device for the output check; -1 = CPU (no CUDA also falls back to the CPU)")
    parser.add_argument("--out", help="output file (one exp_id only); default "
                                      "<checkpoint_dir>/<exp_name>/retrain%%03d_policyIter<it>_compact.pth")
    parser.add_argument("--input_hw", type=int, nargs=2, metavar=("H", "W"),
                        help="image size for the FLOPs count (default: the config's evaluation size)")
    parser.add_argument("--no_verify", action="store_true", help="skip the compact-vs-full output check")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    from config import check_exp_ids, load_config  # local: keeps `import deploy.export` light
    from engine.device import resolve_device
    args = parse_args(argv)
    opt = load_config(args.config, "test")
    exp_ids = check_exp_ids(opt, args.exp_ids, args.config)
    if args.out and len(exp_ids) > 1:
        raise ValueError(f"--out names one file but --exp_ids has {len(exp_ids)} entries {exp_ids}; "
                         "drop --out to use the default name per experiment")
    if args.input_hw and min(args.input_hw) < 1:
        raise ValueError(f"--input_hw must be two positive ints, got {args.input_hw}")
    device = resolve_device(args.gpus)
    for exp_id in exp_ids:
        export_experiment(opt, exp_id, args.out, tuple(args.input_hw) if args.input_hw else None, device,
                          verify=not args.no_verify)
    return 0



if __name__ == "__main__":
    from engine.cli import run_main
    run_main(main)
