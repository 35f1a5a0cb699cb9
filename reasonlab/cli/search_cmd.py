"""`reasonlab search`: accuracy against the generation budget N for inference-time scaling methods.

Thin over `reasonlab.search`: writes OUT/search_results.json (accuracy and mean generated tokens
per method and N, with the settings), OUT/search_rows.jsonl (one row per example, method and N)
and OUT/scaling.png (accuracy against N).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reasonlab.cli import CLIError, HelpFormatter
from reasonlab.io import atomic_write_text, write_jsonl

EPILOG = """\
methods: majority (self-consistency), best_of_n (highest outcome score), weighted_bon (sum of
scores per equivalent answer), beam (PRM beam search over steps split at blank lines), dvts
(diverse verifier tree search: N / M independent subtrees).

PRM (--prm): `checker` scores a step 1 when all its "a op b = c" arithmetic is right, else 0
(exact; for countdown and arithmetic), or a local Hugging Face PRM folder: Math-Shepherd style
(a causal LM with the step tag "ки") or Qwen2.5-Math-PRM style (--prm-kind qwen,
--trust-remote-code for the original model's own code).

example:
  reasonlab search --model runs/demo/policy --benchmark countdown_demo \\
      --methods majority,best_of_n,weighted_bon,beam,dvts --n 1,2,4,8,16 --prm checker \\
      --limit 50 --out runs/demo/search
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search",
        help="inference-time scaling: voting, best-of-N, PRM beam search, DVTS",
        description="Accuracy against the generation budget N for inference-time scaling "
        "methods on one benchmark; saves results JSON and a plot.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", required=True, help="local Hugging Face model folder")
    p.add_argument("--benchmark", required=True, help="benchmark name (see `reasonlab eval`)")
    p.add_argument(
        "--methods",
        default="majority,best_of_n,weighted_bon,beam,dvts",
        help="comma-separated methods (default: all five)",
    )
    p.add_argument("--n", default="1,2,4,8,16", help="budgets N, comma-separated (default: 1..16)")
    p.add_argument("--prm", default="checker", help="checker, or a local PRM folder")
    p.add_argument(
        "--prm-kind", default="auto", help="auto, math-shepherd or qwen (for a PRM folder)"
    )
    p.add_argument("--trust-remote-code", action="store_true", help="let a PRM folder run its code")
    p.add_argument(
        "--aggregation", default="last", help="step scores -> solution score: last, min, prod"
    )
    p.add_argument("--outcome", default="prm", help="best-of-N scorer: prm or verifier")
    p.add_argument(
        "--final-selection",
        default="weighted_bon",
        help="answer of a tree search among its solutions: weighted_bon, best_of_n, majority",
    )
    p.add_argument("--beam-width", type=int, default=4, help="M (default: 4)")
    p.add_argument("--num-iterations", type=int, default=40, help="most steps (default: 40)")
    p.add_argument("--lookahead", type=int, default=0, help="greedy steps before scoring")
    p.add_argument("--temperature", type=float, default=0.8, help="default: 0.8 (HF blog's)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument(
        "--max-new-tokens", type=int, default=512, help="tokens per sampled solution (default: 512)"
    )
    p.add_argument(
        "--max-step-tokens",
        type=int,
        default=None,
        help="tokens per step (default: max-new-tokens)",
    )
    p.add_argument(
        "--step-delimiter",
        default="\n\n",
        help="text that ends a step (default: a blank line, as in search-and-learn); e.g. '. ' "
        "for one-paragraph countdown attempts",
    )
    p.add_argument("--template", default=None, help="prompt template (default: the benchmark's)")
    p.add_argument("--limit", type=int, default=None, help="first N examples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=4, help="examples per sampling call")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=run)


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CLIError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not values or any(v < 1 for v in values):
        raise CLIError(f"{flag} {text!r}: expected integers >= 1")
    return values


def run(args: argparse.Namespace) -> int:

    from reasonlab import models
    from reasonlab.eval import benchmarks
    from reasonlab.registry import UnknownNameError
    from reasonlab.rollout import get_engine
    from reasonlab.search import ScalingConfig, TreeSearchConfig, load_prm, plot_scaling
    from reasonlab.search.runner import run_scaling

    try:
        bench = benchmarks.get(args.benchmark)
    except UnknownNameError as err:
        raise CLIError(f"--benchmark: {err}") from None
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit {args.limit}: must be >= 1")
    try:
        config = ScalingConfig(
            methods=[m.strip() for m in args.methods.split(",") if m.strip()],
            ns=_ints(args.n, "--n"),
            tree=TreeSearchConfig(
                beam_width=args.beam_width,
                num_iterations=args.num_iterations,
                lookahead=args.lookahead,
                aggregation=args.aggregation,
                temperature=args.temperature,
                top_p=args.top_p,
                max_step_tokens=args.max_step_tokens or args.max_new_tokens,
                delimiter=args.step_delimiter.replace("\\n", "\n").replace("\\t", "\t"),
            ),
            max_new_tokens=args.max_new_tokens,
            outcome=args.outcome,
            final_selection=args.final_selection,
            template=args.template or bench.template,
            seed=args.seed,
            batch_size=args.batch_size,
        )
    except ValueError as err:
        raise CLIError(str(err)) from None

    device = str(models.resolve_device(args.device))
    try:
        prm = load_prm(
            args.prm,
            kind=args.prm_kind,
            dtype=args.dtype,
            device=device,
            trust_remote_code=args.trust_remote_code,
        )
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(f"--prm: {err}") from None
    try:
        model, tokenizer = models.load(args.model, dtype=args.dtype, device=device)
    except (FileNotFoundError, ValueError) as err:
        raise CLIError(f"--model: {err}") from None
    engine = get_engine("hf", model=model, tokenizer=tokenizer)
    task = bench.task_instance()
    examples = bench.load(limit=args.limit, task=task)

    result = run_scaling(
        engine,
        task,
        examples,
        prm,
        config,
        tokenizer=tokenizer,
        benchmark=bench.name,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = result.to_dict()
    data["model"] = str(Path(args.model).resolve())
    data["prm"] = args.prm
    atomic_write_text(out / "search_results.json", json.dumps(data, indent=2) + "\n")
    write_jsonl(out / "search_rows.jsonl", result.rows)
    plot_scaling(result, str(out / "scaling.png"))
    for method, by_n in result.accuracy.items():
        cells = ", ".join(f"N={n}: {100 * v:.1f}" for n, v in sorted(by_n.items()))
        print(f"{method}: {cells}")
    print(f"wrote {out / 'search_results.json'} and {out / 'scaling.png'}")
    return 0
