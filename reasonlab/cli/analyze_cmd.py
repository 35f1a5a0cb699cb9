"""`reasonlab analyze RUN_DIR|FILE.jsonl [--judge MODEL_DIR]`: reasoning behaviours of a run.

Reads the run's files only (see `reasonlab.analysis`): per step, the share of responses showing
each cognitive behaviour (verification, backtracking, subgoal setting, backward chaining; rule-based
detectors) and each reflection word per response (R1's words, oat-zero's keywords), from
metrics.jsonl when the trainer logged them (every response), else from rollouts.jsonl (the logged
sample); the step where each series changes most ("aha"); with --judge, an LLM judge's counts of
the four behaviours over the logged responses (Cognitive Behaviors' four questions, cached in
OUT_DIR/judge_cache.jsonl) and its agreement with the rules. Prints markdown tables and writes
JSON (RUN_DIR/analysis.json, or FILE.analysis.json, or --json).

example:
  reasonlab analyze runs/demo/rl
  reasonlab analyze runs/demo/rl --judge /models/Qwen2.5-7B-Instruct --device cuda
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reasonlab.cli import CLIError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analyze",
        help="behaviour rates, reflection words and 'aha' change points of a run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("path", type=Path, metavar="RUN_DIR|FILE.jsonl")
    p.add_argument("--judge", type=Path, metavar="MODEL_DIR", help="local HF model as LLM judge")
    p.add_argument("--device", default="cpu", help="device of the judge model (default: cpu)")
    p.add_argument(
        "--judge-batch-size", type=int, default=16, help="judge prompts per generate call"
    )
    p.add_argument("--json", type=Path, metavar="OUT", help="where to write the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reasonlab.analysis.analyze import analyze, format_tables
    from reasonlab.analysis.runs import load_run
    from reasonlab.io import DataError, atomic_write_text

    try:
        run_files = load_run(args.path)
    except (FileNotFoundError, DataError) as err:
        raise CLIError(str(err)) from None
    if run_files.kind == "pipeline":
        runs = [str(s.run.path) for s in run_files.stages if s.run is not None and s.run.rollouts]
        raise CLIError(
            f"{args.path} is a pipeline folder: analyze one of its stages' runs "
            f"({', '.join(runs) or 'none holds responses'}), or see them all with "
            f"`reasonlab report {args.path}`"
        )
    if run_files.kind == "experiment":
        raise CLIError(
            f"{args.path} is an experiment folder: analyze one of its arms' runs (results.json: "
            f"arms.NAME.runs), or see its results with `reasonlab report {args.path}`"
        )
    folder = args.path if args.path.is_dir() else args.path.parent
    judge = None
    if args.judge is not None:
        from reasonlab.analysis.judge import load_judge

        try:
            judge = load_judge(
                args.judge,
                cache=folder / "judge_cache.jsonl",
                device=args.device,
                batch_size=args.judge_batch_size,
            )
        except (FileNotFoundError, ValueError, OSError) as err:
            raise CLIError(f"--judge {args.judge}: {err}") from None
    result = analyze(run_files, judge)
    print(format_tables(result))
    out = args.json or (
        args.path / "analysis.json"
        if args.path.is_dir()
        else args.path.with_suffix(".analysis.json")
    )
    atomic_write_text(out, json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0
