"""`reasonlab sample`: rejection sampling, n completions per problem, verified and kept by rule.

Thin over `reasonlab.sft.sample`: the rows go to --out (JSONL, prompt/completion plus the problem,
verdict, reward and settings), the raw generations to <out stem>.generations.jsonl beside it (the
resume), a summary to <out stem>.summary.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter

EPILOG = """\
keep rules (per problem, after the length bounds and dedup of identical completions):
  correct           every verified-correct sample (rejection sampling: R1 stage 3, RFT, STaR)
  shortest-correct  the correct samples, shortest first
  first-correct     the first correct sample
  all               every sample, with its verdict
--k caps the rows per problem.

trust: --split train (the default) draws problems outside the task's held-out share
(--held-out-fraction, by task.key: the share RL runs with task.held_out_fraction and the
held-out benchmarks evaluate on); --split heldout and --benchmark are for evaluation only and
their rows say purpose: eval.

resume: rerunning the same command continues an interrupted run; the output is rebuilt from the
stored generations, so changing only --keep, --k or the length bounds re-filters without sampling.

examples:
  reasonlab sample --model runs/demo/policy --task countdown --n 8 --keep correct --k 2 \\
      --param num_numbers=3 --param max_number=9 --param min_target=10 --param max_target=30 \\
      --problems 500 --max-new-tokens 160 --out data/rs.jsonl
  reasonlab sample --model runs/demo/policy --task countdown --benchmark countdown_demo --n 4 \\
      --keep all --out data/heldout_samples.jsonl
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from reasonlab.sft.sample import KEEP_RULES

    p = subparsers.add_parser(
        "sample",
        help="rejection sampling: sample, verify, keep by rule (SFT data)",
        description="Sample n completions per problem from a model, verify each with the task, "
        "and keep them by rule as SFT rows (prompt, completion, verdict, reward, settings).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", required=True, help="local Hugging Face model folder")
    p.add_argument("--task", required=True, help="task name (see `reasonlab tasks`)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--split",
        choices=("train", "heldout"),
        default="train",
        help="problems outside the held-out share (train) or in it (heldout: evaluation only)",
    )
    where.add_argument("--benchmark", help="a benchmark's problems (evaluation only)")
    p.add_argument(
        "--problems",
        type=int,
        default=None,
        help="how many problems (generated tasks: default 100; data and benchmarks: all)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task generator parameter (repeatable), as in `reasonlab generate`",
    )
    p.add_argument("--data", help="file-backed tasks: a shipped split or a JSONL path to draw from")
    p.add_argument(
        "--held-out-fraction",
        type=float,
        default=None,
        help="share of the problem space held out for evaluation; use the RL run's "
        "task.held_out_fraction (default: 0.2, reasonlab.tasks.split.HELD_OUT_FRACTION)",
    )
    p.add_argument("--problem-seed", type=int, default=0, help="seed of the problem draw")
    p.add_argument("--n", type=int, default=8, help="samples per problem")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling threshold")
    p.add_argument("--top-k", type=int, default=0, help="0: no top-k filtering")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="token limit per completion")
    p.add_argument("--template", default="r1-zero", help="prompt template")
    p.add_argument("--keep", choices=KEEP_RULES, default="correct", help="keep rule")
    p.add_argument("--k", type=int, default=None, help="at most K rows per problem")
    p.add_argument("--min-tokens", type=int, default=0, help="drop shorter completions")
    p.add_argument("--max-tokens", type=int, default=None, help="drop longer completions")
    p.add_argument(
        "--no-dedup", action="store_true", help="keep identical completions of one problem"
    )
    p.add_argument(
        "--reward",
        default="r1",
        help="accuracy scheme for each row's reward: r1, tinyzero, logic_rl, simplerl",
    )
    p.add_argument("--batch-size", type=int, default=8, help="problems per generation batch")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--engine", default="hf", help="rollout engine")
    p.add_argument("--dtype", default="auto", help="model dtype: auto, float32, bfloat16, float16")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--out", required=True, type=Path, help="output JSONL file")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard stored generations made with other settings and start afresh",
    )
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    from reasonlab.cli.eval_cmd import sampling_arg_problems

    problems = sampling_arg_problems(args)
    if args.problems is not None and args.problems < 1:
        problems.append(f"--problems {args.problems} (must be >= 1)")
    if args.benchmark and (args.param or args.data or args.held_out_fraction is not None):
        problems.append(
            "--benchmark takes its problems as they are (no --param/--data/--held-out-fraction)"
        )
    if args.out.suffix != ".jsonl":
        problems.append(f"--out {args.out} (must end in .jsonl)")
    if problems:
        raise CLIError("; ".join(problems))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reasonlab import tasks
    from reasonlab.cli.eval_cmd import _load_engine
    from reasonlab.cli.generate import parse_param
    from reasonlab.eval.store import SettingsMismatch
    from reasonlab.registry import UnknownNameError
    from reasonlab.rollout.base import SamplingParams
    from reasonlab.sft.sample import KeepRule, Sampler, problems_for, purpose_of
    from reasonlab.tasks import split, templates

    _check_args(args)
    params = dict(parse_param(p) for p in args.param)
    source = f"benchmark:{args.benchmark}" if args.benchmark else args.split
    fraction = split.HELD_OUT_FRACTION if args.held_out_fraction is None else args.held_out_fraction
    count = args.problems
    if count is None and not args.benchmark and not args.data:
        count = 100
    try:
        task = tasks.get(args.task)
        templates.TEMPLATES[args.template]
        keep = KeepRule(
            args.keep,
            k=args.k,
            dedup=not args.no_dedup,
            min_tokens=args.min_tokens,
            max_tokens=args.max_tokens,
        )
    except (UnknownNameError, ValueError) as err:
        raise CLIError(str(err)) from None
    try:
        examples = problems_for(
            task,
            source,
            count,
            seed=args.problem_seed,
            params=params,
            held_out_fraction=fraction,
            data=args.data,
        )
    except NotImplementedError as err:  # a file-backed task without --data
        raise CLIError(f"{err} (with --data)") from None
    except (UnknownNameError, ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None

    settings: dict[str, Any] = {
        "model": str(Path(args.model).resolve()),
        "task": task.name,
        "params": params,
        "source": source,
        "data": args.data,
        "held_out_fraction": None if args.benchmark else fraction,
        "problems": len(examples),
        "problem_seed": args.problem_seed,
        "template": args.template,
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
        "batch_size": args.batch_size,
    }
    try:
        sampler = Sampler(
            task,
            args.out,
            keep,
            settings,
            source=source,
            reward=args.reward,
            template=args.template,
        )
    except (UnknownNameError, ValueError) as err:
        raise CLIError(f"--reward: {err}") from None
    sampling = SamplingParams(
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    engine, tokenizer = _load_engine(args)
    with tqdm(total=len(examples), desc="sample", unit="problem", file=sys.stderr) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            summary = sampler.run(
                engine,
                examples,
                sampling,
                tokenizer=tokenizer,
                batch_size=args.batch_size,
                overwrite=args.overwrite,
                progress=progress,
            )
        except SettingsMismatch as err:
            raise CLIError(str(err)) from None
    print(
        f"kept {summary.kept}/{summary.samples} samples ({summary.problems_kept} of "
        f"{summary.problems} problems); pass@{summary.n} {100 * summary.pass_at_n:.1f}, "
        f"avg@{summary.n} {100 * summary.avg_at_n:.1f}"
    )
    if purpose_of(source) == "eval":
        print(f"note: {source} problems are for evaluation only; the rows say purpose: eval")
    print(f"wrote {args.out} and {sampler.summary_path}")
    return 0
