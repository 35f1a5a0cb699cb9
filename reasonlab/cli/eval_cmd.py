"""`reasonlab eval`: sample n completions per example on named benchmarks and report the metrics.

Thin over `reasonlab.eval`: per benchmark, generations go to OUT/<benchmark>.generations.jsonl
(appended batch by batch; a rerun resumes where it stopped, `--rescore` re-scores without a
model), scored samples to OUT/<benchmark>.scored.jsonl, metrics to OUT/results.json and
OUT/results.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter
from reasonlab.io import write_jsonl

EPILOG = """\
metrics: avg@n (R1's pass@1 averaged over n samples), pass@k (unbiased, Chen et al. 2021) and
maj@k (majority vote under the task's answer equivalence, mean over blocks of k samples) for
k = 1, 2, 4, ... <= n; mean/median completion length in tokens; truncation rate (samples that hit
--max-new-tokens); per-group tables (MATH level, K&K people, countdown numbers).

resume: generations are saved per batch of --batch-size examples. Rerunning the same command
continues an interrupted run; rerunning with other sampling settings into the same --out is an
error naming the differing settings (use another --out, or --overwrite to start afresh).

the CPU demo's model: evaluate it on `countdown_demo` (all 154 held-out problems of the demo's
own distribution: 3 numbers in 1-9, targets 10-30). `countdown` is TinyZero's preset (larger
numbers and targets), which the demo model never saw: expect next to nothing there.

example:
  reasonlab eval --model runs/demo/policy --benchmarks countdown_demo --n 8 --temperature 1.0 \\
      --max-new-tokens 128 --out runs/demo/eval
  reasonlab eval --model Qwen2.5-Math-1.5B --benchmarks math500,aime24,amc23 --n 16 \\
      --temperature 0.6 --top-p 0.95 --max-new-tokens 3000 --out runs/eval
"""

COUNTDOWN_HINT = (
    "note: `countdown` is TinyZero's preset (3-4 numbers in 1-100); a model from `reasonlab demo` "
    "or `reasonlab pretrain --task countdown` learned the demo's distribution: evaluate it on "
    "`countdown_demo`"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on benchmarks: avg@n, pass@k, maj@k",
        description="Sample n completions per example on named benchmarks; report avg@n, "
        "pass@k, maj@k, lengths and truncation, per benchmark and per group.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", help="local Hugging Face model folder (not needed with --rescore)")
    p.add_argument(
        "--benchmarks", required=True, help="comma-separated benchmark names (see the docs)"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--n", type=int, default=16, help="samples per example (default: 16)")
    p.add_argument("--temperature", type=float, default=0.6, help="default: 0.6 (R1's)")
    p.add_argument("--top-p", type=float, default=0.95, help="default: 0.95 (R1's)")
    p.add_argument("--top-k", type=int, default=0, help="0: no top-k filtering (default)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        default=1024,
        help="token limit per completion (default: 1024)",
    )
    p.add_argument(
        "--template",
        default=None,
        help="prompt template: r1-zero, qwen-instruct, boxed (default: each benchmark's own)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N examples of each benchmark")
    p.add_argument(
        "--batch-size", type=int, default=8, help="examples per generation batch (default: 8)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--engine", default="hf", help="rollout engine (default: hf)")
    p.add_argument("--dtype", default="auto", help="model dtype: auto, float32, bfloat16, float16")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument(
        "--rescore",
        action="store_true",
        help="score the saved generations again (no model, no generation)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="discard saved generations made with other settings and start afresh",
    )
    p.set_defaults(func=run)


def sampling_settings(args: argparse.Namespace, bench: Any, template: str) -> dict[str, Any]:
    """What makes a set of generations: a change of any of these starts other generations."""
    return {
        "model": str(Path(args.model).resolve()) if args.model else None,
        "benchmark": bench.name,
        "task": bench.task,
        "template": template,
        "n": args.n,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "max_new_tokens": args.max_new_tokens,
        "seed": args.seed,
    }


def sampling_arg_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the sampling options --n, --temperature, --top-p, --max-new-tokens and
    --batch-size (shared by the commands that sample: eval, sample)."""
    problems = []
    if args.n < 1:
        problems.append(f"--n {args.n} (must be >= 1)")
    if args.temperature < 0:
        problems.append(f"--temperature {args.temperature} (must be >= 0)")
    if not 0 < args.top_p <= 1:
        problems.append(f"--top-p {args.top_p} (must be in (0, 1])")
    if args.max_new_tokens < 1:
        problems.append(f"--max-new-tokens {args.max_new_tokens} (must be >= 1)")
    if args.batch_size < 1:
        problems.append(f"--batch-size {args.batch_size} (must be >= 1)")
    return problems


def _check_args(args: argparse.Namespace) -> None:
    problems = sampling_arg_problems(args)
    if args.limit is not None and args.limit < 1:
        problems.append(f"--limit {args.limit} (must be >= 1)")
    if not args.rescore and not args.model:
        problems.append("--model is required (unless --rescore)")
    if problems:
        raise CLIError("; ".join(problems))


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reasonlab.eval import benchmarks, report
    from reasonlab.eval.runner import evaluate, score
    from reasonlab.eval.store import GenerationStore, SettingsMismatch
    from reasonlab.registry import UnknownNameError
    from reasonlab.rollout.base import SamplingParams

    _check_args(args)
    try:
        benches = benchmarks.parse_list(args.benchmarks)
    except (UnknownNameError, ValueError) as err:
        raise CLIError(f"--benchmarks: {err}") from None

    engine = tokenizer = None
    if not args.rescore:
        engine, tokenizer = _load_engine(args)

    results = []
    for bench in benches:
        task = bench.task_instance()
        template = args.template or bench.template
        store = GenerationStore(args.out, bench.name)
        if args.rescore:
            settings = store.read_settings()
            records = list(store.load().values())
            if settings is None or not records:
                raise CLIError(
                    f"--rescore: no saved generations for {bench.name!r} in {args.out} "
                    f"(expected {store.path})"
                )
            print(f"{bench.name}: re-scoring {len(records)} saved examples", file=sys.stderr)
            result = score(
                task, records, benchmark=bench.name, group_by=bench.group_by, settings=settings
            )
        else:
            settings = sampling_settings(args, bench, template)
            try:
                store.open(settings, overwrite=args.overwrite)
            except SettingsMismatch as err:
                raise CLIError(str(err)) from None
            examples = bench.load(limit=args.limit, task=task)
            params = SamplingParams(
                n=args.n,
                temperature=args.temperature,
                top_p=args.top_p,
                top_k=args.top_k,
                max_new_tokens=args.max_new_tokens,
                seed=args.seed,
            )
            with tqdm(total=len(examples), desc=bench.name, unit="example", file=sys.stderr) as bar:

                def progress(done: int, total: int, bar: Any = bar) -> None:
                    bar.update(done - bar.n)

                result = evaluate(
                    engine,
                    task,
                    examples,
                    params,
                    template=template,
                    tokenizer=tokenizer,
                    batch_size=args.batch_size,
                    store=store,
                    benchmark=bench.name,
                    group_by=bench.group_by,
                    settings=settings,
                    progress=progress,
                )
        write_jsonl(Path(args.out) / f"{bench.name}.scored.jsonl", result.rows)
        results.append(result)
        shown = {k: v for k, v in result.metrics.items() if "@" in k}
        print(f"{bench.name}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in shown.items()))
        if bench.name == "countdown" and not any(shown.values()):
            print(COUNTDOWN_HINT, file=sys.stderr)
    report.write_results(args.out, results)
    print(f"wrote {Path(args.out) / report.RESULTS_JSON} and {report.RESULTS_MD}")
    return 0


def _load_engine(args: argparse.Namespace) -> tuple[Any, Any]:

    from reasonlab import models
    from reasonlab.rollout import get_engine

    device = str(models.resolve_device(args.device))
    try:
        model, tokenizer = models.load(args.model, dtype=args.dtype, device=device)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(f"--model: {err}") from None
    try:
        engine = get_engine(args.engine, model=model, tokenizer=tokenizer)
    except (ImportError, ValueError) as err:
        raise CLIError(f"--engine: {err}") from None
    return engine, tokenizer
