"""`reasonlab cot`: chains of thought written by program, tagged with their behaviours (SFT data).

Thin over `reasonlab.tasks.cot`: prompt/completion JSONL in the template's format, each row with
its kind, behaviour counts and tags; prints the share of each behaviour and of right answers, and
how the rule-based detectors of `reasonlab.analysis.behaviours` score against the tags.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from reasonlab.cli import CLIError, HelpFormatter

EPILOG = """\
kinds:
  short              one direct worked solution
  long               constructed long CoT (journey learning): failed tries with slips caught,
                     "Try again." after each, then the solving try, re-checked
  all_behaviours     long plus a backward-chaining step (the four behaviours; Gandhi et al. 2025)
  backtracking_only  failed tries and "Try again.", no checks, no backward chaining
  no_behaviours      the answer's expression evaluated in one line
  empty_cot          the all_behaviours thinking replaced by " . . ." of the same length
  wrong_answers      all behaviours, then a wrong final answer
The same --seed gives every kind the same problems in the same order. Problems come from outside
the held-out share (--held-out-fraction, by task.key).

example:
  reasonlab cot --task countdown --kind long --n 2000 --problems 500 \\
      --param min_number=1 --param max_number=9 --param min_target=10 --param max_target=30 \\
      --out data/long_cot.jsonl
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.tasks.cot import KINDS, TASKS

    p = subparsers.add_parser(
        "cot",
        help="write tagged chains of thought by program (short, long, priming kinds)",
        description="Write chains of thought by program, each tagged with the behaviours it "
        "contains, as prompt/completion JSONL.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--task", default="countdown", choices=TASKS, help="task")
    p.add_argument("--kind", required=True, choices=KINDS, help="kind of chain of thought")
    p.add_argument("--n", type=int, required=True, help="rows to write")
    p.add_argument(
        "--problems", type=int, default=None, help="distinct problems (default: --n); rows cycle"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task generator parameter (repeatable); 3 numbers always",
    )
    p.add_argument(
        "--held-out-fraction",
        type=float,
        default=None,
        help="share of the problem space held out for evaluation (default: 0.2)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the problems and the texts")
    p.add_argument("--template", default="r1-zero", help="prompt template: r1-zero, qwen-instruct")
    p.add_argument("--out", required=True, type=Path, help="output JSONL file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.analysis import behaviours
    from reasonlab.cli.generate import parse_param
    from reasonlab.io import CannotWrite, write_jsonl
    from reasonlab.registry import UnknownNameError
    from reasonlab.tasks import split
    from reasonlab.tasks.cot import cot_rows

    if args.n < 1:
        raise CLIError(f"--n {args.n} (must be >= 1)")
    if args.problems is not None and args.problems < 1:
        raise CLIError(f"--problems {args.problems} (must be >= 1)")
    params = dict(parse_param(p) for p in args.param)
    fraction = split.HELD_OUT_FRACTION if args.held_out_fraction is None else args.held_out_fraction
    try:
        rows = cot_rows(
            args.kind,
            args.n,
            task_name=args.task,
            problems=args.problems,
            seed=args.seed,
            params=params,
            held_out_fraction=fraction,
            template=args.template,
        )
    except (UnknownNameError, ValueError) as err:
        raise CLIError(str(err)) from None
    try:
        write_jsonl(args.out, rows)
    except CannotWrite as err:
        raise CLIError(str(err)) from None
    detected = [
        behaviours.detect(r["completion"], behaviours.detector_for(r["task"]), r["example"]["meta"])
        for r in rows
    ]
    scores = behaviours.precision_recall(detected, [r["behaviours"] for r in rows])
    right = sum(r["correct"] for r in rows) / len(rows)
    chars = sum(len(r["completion"]) for r in rows) / len(rows)
    problems = len({r["key"] for r in rows})
    print(
        f"wrote {len(rows)} {args.kind} chains of thought over {problems} problems to {args.out}; "
        f"right answers {100 * right:.1f}%, mean completion {chars:.0f} characters"
    )
    print("behaviour           share  detector precision  recall")
    for name, s in scores.items():
        share = s["support"] / len(rows)
        print(f"{name:<18} {share:>6.2f}  {_show(s['precision']):>18}  {_show(s['recall']):>6}")
    return 0


def _show(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"
