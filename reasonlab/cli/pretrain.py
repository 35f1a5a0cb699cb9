"""`reasonlab pretrain --task countdown --out DIR`: a tiny base model for the CPU demo.

The CLI of `reasonlab.models.base_model.pretrain_base`: builds the task's synthetic corpus of worked
attempts, a BPE tokenizer and a tiny Llama-architecture model, pretrains it, evaluates it on
held-out problems and saves DIR as a standard Hugging Face folder plus `pretrain.json`. A DIR whose
`pretrain.json` has the same settings hash is reused as it is.

Data parallel under torchrun (`--parallel ddp` or `fsdp`, `reasonlab.parallel`): every process
builds the same corpus, tokenizer and initial weights and trains on its share of each step's
`--batch-size` rows, the global batch (it must split evenly over the processes), so N processes
train the model one process trains with the same settings, and the settings hash does not depend
on N. Rank 0 alone evaluates on the held-out problems and writes DIR and `pretrain.json`:

    torchrun --nproc_per_node 2 -m reasonlab pretrain --out runs/base --parallel ddp --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter
from reasonlab.models.base_model import COUNTDOWN_PARAMS, PretrainSettings, pretrain_base


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.models.pretrain import PACKING

    d = PretrainSettings()
    p = subparsers.add_parser(
        "pretrain",
        help="pretrain a tiny base model on a task's synthetic corpus",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--task", default=d.task, help="task with a corpus (countdown)")
    p.add_argument("--out", required=True, type=Path, help="model folder to write (or reuse)")
    p.add_argument("--size", default=d.size, help="model size: tiny, small, base")
    p.add_argument("--arch", default=d.arch, choices=["llama", "qwen2"], help="architecture")
    p.add_argument(
        "--pre-tokenizer",
        default=d.pre_tokenizer,
        choices=["numbers", "compact"],
        help="numbers: whole numbers as tokens; compact: one digit per token (llama only)",
    )
    p.add_argument("--steps", type=int, default=d.steps, help="optimiser steps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="packed rows per step: the global batch, split evenly over torchrun's processes",
    )
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (AdamW)")
    p.add_argument("--seq-len", type=int, default=d.seq_len, help="tokens per packed row")
    p.add_argument(
        "--packing",
        default=d.packing,
        choices=list(PACKING),
        help="samples: each attempt whole, packed greedily; bfd: each attempt whole, best-fit "
        "decreasing (less padding); shared_prompt: one prompt copy per row, then attempts",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the corpus and the weights")
    p.add_argument("--problems", type=int, default=d.problems, help="distinct training problems")
    p.add_argument("--attempts", type=int, default=d.attempts, help="attempts per problem")
    p.add_argument("--vocab-size", type=int, default=d.vocab_size, help="BPE vocabulary size")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"task generator parameter (default {COUNTDOWN_PARAMS}); VALUE is JSON",
    )
    p.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="corpus AttemptStyle field, e.g. give_up_rate=0.5 mistake_rate=0.05 max_tries=6",
    )
    p.add_argument(
        "--eval",
        type=int,
        default=100,
        help="held-out problems to evaluate, by rank 0 under torchrun (0: none)",
    )
    p.add_argument(
        "--parallel",
        default="none",
        help="data-parallel engine under torchrun: ddp or fsdp (reasonlab.parallel); none: one "
        "process",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--force", action="store_true", help="retrain even if DIR has these settings")
    p.set_defaults(func=run)


def _key_values(items: list[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CLIError(f"--{what} {item!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    params = dict(COUNTDOWN_PARAMS) if args.task == "countdown" else {}
    params.update(_key_values(args.param, "param"))
    settings = PretrainSettings(
        task=args.task,
        params=params,
        problems=args.problems,
        attempts=args.attempts,
        style=_key_values(args.style, "style"),
        vocab_size=args.vocab_size,
        size=args.size,
        arch=args.arch,
        pre_tokenizer=args.pre_tokenizer,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seq_len=args.seq_len,
        packing=args.packing,
        seed=args.seed,
    )
    from reasonlab.models.pretrain import check_data_parallel
    from reasonlab.parallel import Dist

    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun's; checked before joining a group
    try:
        settings.attempt_style()  # validate before anything heavy
        check_data_parallel(
            args.parallel, settings.batch_size, world, fields=("--parallel", "--batch-size")
        )
    except ValueError as err:
        raise CLIError(str(err)) from None
    dist = Dist.from_env()  # one process, or this rank of a torchrun group
    try:
        pretrain_base(
            settings,
            args.out,
            force=args.force,
            eval_examples=args.eval,
            num_threads=args.threads,
            parallel=args.parallel,
            dist=dist,
        )
    except ValueError as err:
        raise CLIError(str(err)) from None
    finally:
        dist.close()
    return 0
