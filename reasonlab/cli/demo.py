"""`reasonlab demo [--out DIR]`: the CPU R1-Zero demo (see `reasonlab.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.demo import DEMO_PRETRAIN
    from reasonlab.models.pretrain import PACKING

    p = subparsers.add_parser(
        "demo",
        help="pretrain a tiny base model, GRPO it on countdown, report held-out accuracy",
        description=__doc__,
    )
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the base model and of RL")
    p.add_argument(
        "--rl-seed",
        type=int,
        default=None,
        help="seed of the RL run alone (prompt stream, sampling): re-run RL on the cached base",
    )
    p.add_argument("--eval", type=int, default=100, help="held-out problems")
    p.add_argument(
        "--eval-samples", type=int, default=4, help="samples per problem at T=1 (0: greedy only)"
    )
    p.add_argument(
        "--pretrain-steps",
        type=int,
        default=None,
        help=f"base model optimiser steps (default {DEMO_PRETRAIN['steps']})",
    )
    p.add_argument(
        "--pretrain-packing",
        default=None,
        choices=list(PACKING),
        help="base model packing (default bfd: whole attempts, best-fit decreasing; samples: "
        "whole attempts, greedy; shared_prompt: one prompt copy per row, then its attempts)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="RL recipe overrides")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.demo import run_demo

    run_demo(
        args.out,
        overrides=args.overrides,
        pretrain={
            k: v
            for k, v in (("steps", args.pretrain_steps), ("packing", args.pretrain_packing))
            if v is not None
        },
        eval_examples=args.eval,
        eval_samples=args.eval_samples,
        seed=args.seed,
        rl_seed=args.rl_seed,
    )
    return 0
