"""`reasonlab generate`: write a task's generated examples as JSONL or veRL/TinyZero parquet.

JSONL: one `Example.to_dict()` per line (id, prompt = the question, answer, meta) plus `text`,
the prompt rendered with `--template`, ready for a model.

veRL (`--format verl`, the default for a `.parquet` path): the columns TinyZero's and Logic-RL's
data preprocessing write and veRL's RL trainer reads:

    data_source   the task name
    prompt        [{"role": "user", "content": <rendered prompt>}]
    ability       the task's ability ("math", "logic")
    reward_model  {"style": "rule", "ground_truth": task.ground_truth(example)}
    extra_info    {"split": --split, "index": i}

The file is written to a temporary file beside the target and renamed: a failure leaves no
partial file.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter
from reasonlab.io import CannotWrite, atomic_path, write_jsonl

FORMATS = ("jsonl", "verl")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)([eE][+-]?[0-9]+)?")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="write a task's generated examples (JSONL or veRL parquet)",
        description="Generate examples of a task and write them as JSONL or veRL/TinyZero parquet.",
        epilog="example:\n  reasonlab generate countdown --n 1000 --seed 0 --out train.parquet "
        "--format verl \\\n      --param preset=tinyzero --param num_numbers=4",
        formatter_class=HelpFormatter,
    )
    p.add_argument("task", help="task name (see `reasonlab tasks`)")
    p.add_argument("--n", type=int, default=100, help="number of examples (default: 100)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    p.add_argument("--out", type=Path, required=True, help="file to write")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a generator parameter (repeatable); numbers are read as numbers",
    )
    p.add_argument(
        "--template",
        default="r1-zero",
        help="prompt template for the rendered prompt (default: r1-zero)",
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="jsonl, or verl parquet (default: verl for a .parquet path, else jsonl)",
    )
    p.add_argument(
        "--split", default="train", help="split name written in veRL's extra_info (default: train)"
    )
    p.set_defaults(func=run)


def parse_param(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` -> (key, value), the value an int or float when it reads as one."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise CLIError(f"--param {text!r} is not KEY=VALUE")
    if _INT.fullmatch(value):
        return key, int(value)
    if _FLOAT.fullmatch(value):
        return key, float(value)
    return key, value


def verl_row(task: Any, example: Any, prompt: str, split: str, index: int) -> dict[str, Any]:
    return {
        "data_source": task.name,
        "prompt": [{"role": "user", "content": prompt}],
        "ability": task.ability,
        "reward_model": {"style": "rule", "ground_truth": task.ground_truth(example)},
        "extra_info": {"split": split, "index": index},
    }


def run(args: argparse.Namespace) -> int:
    from reasonlab import tasks
    from reasonlab.registry import UnknownNameError
    from reasonlab.tasks import templates

    if args.n < 1:
        raise CLIError(f"--n must be at least 1, got {args.n}")
    params = dict(parse_param(p) for p in args.param)
    try:
        task = tasks.get(args.task)
        templates.TEMPLATES[args.template]
    except UnknownNameError as err:
        raise CLIError(str(err)) from None
    try:
        examples = task.generate(args.n, seed=args.seed, **params)
    except (ValueError, NotImplementedError) as err:
        raise CLIError(str(err)) from None
    prompts = [task.render(ex, template=args.template) for ex in examples]
    fmt = args.format or ("verl" if args.out.suffix == ".parquet" else "jsonl")

    try:
        if fmt == "verl":
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = [
                verl_row(task, ex, p, args.split, i)
                for i, (ex, p) in enumerate(zip(examples, prompts))
            ]
            table = pa.Table.from_pylist(rows)
            with atomic_path(args.out) as tmp:
                pq.write_table(table, tmp)
        else:
            write_jsonl(args.out, ({**ex.to_dict(), "text": p} for ex, p in zip(examples, prompts)))
    except CannotWrite as err:
        raise CLIError(str(err)) from None
    print(f"wrote {len(examples)} {task.name} examples to {args.out} ({fmt})")
    return 0
