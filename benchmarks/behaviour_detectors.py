"""Precision and recall of the behaviour detectors against the countdown corpus's own tags.

    python benchmarks/behaviour_detectors.py [--n 500] [--seed 0] [--judge MODEL_DIR]

Draws `--n` countdown problems (the demo's parameters), writes one simulated attempt at each with
`reasonlab.tasks.corpus.countdown_attempt_tagged` (which records the behaviours it wrote: the
ground truth) for each of two solver styles: the demo corpus's (`DEMO_PRETRAIN` style) and a
noisy one (more slips, checks and persistence, so every rule is exercised). Scores, per behaviour
and response ("shows it at least once"), the `countdown` detector, the `generic` one (free-text
patterns, on the same traces) and, with `--judge`, an LLM judge
(`reasonlab.analysis.judge`, on the first 100 attempts of each style). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import math
import random

from reasonlab import tasks
from reasonlab.analysis.behaviours import BEHAVIOURS, detect, precision_recall
from reasonlab.tasks import corpus

PARAMS = dict(num_numbers=3, min_number=1, max_number=9, min_target=10, max_target=30)
STYLES = {
    "demo corpus (mistake_rate 0.03)": corpus.AttemptStyle(mistake_rate=0.03),
    "noisy (mistakes 0.2, persistent 0.6)": corpus.AttemptStyle(
        mistake_rate=0.2, verify_rate=0.5, persistent_rate=0.6
    ),
}


def _fmt(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.3f}"


def table(title: str, scores: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"{title} ({n} responses)",
        "",
        "| behaviour | responses showing it | precision | recall | exact count | false pos. |",
        "|---|---|---|---|---|---|",
    ]
    for b in BEHAVIOURS:
        s = scores[b]
        lines.append(
            f"| {b} | {s['support']} | {_fmt(s['precision'])} | {_fmt(s['recall'])} "
            f"| {s['count_exact']:.3f} | {s['fp']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--judge", help="local HF model folder to score as an LLM judge")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    task = tasks.get("countdown")
    examples = task.generate(args.n, seed=args.seed, **PARAMS)
    judge = None
    if args.judge:
        from reasonlab.analysis.judge import load_judge

        judge = load_judge(args.judge, device=args.device)
    for name, style in STYLES.items():
        rng = random.Random(args.seed)
        attempts = [corpus.countdown_attempt_tagged(ex, rng, style) for ex in examples]
        truth = [a.counts for a in attempts]
        for detector in ("countdown", "generic"):
            predicted = [
                detect(a.text, detector, ex.meta) for a, ex in zip(attempts, examples, strict=True)
            ]
            scores = precision_recall(predicted, truth)
            print(table(f"{name}, `{detector}` detector", scores, len(truth)) + "\n")
        if judge is not None:
            k = min(100, len(attempts))
            labels = judge.label([a.text for a in attempts[:k]], [ex.meta for ex in examples[:k]])
            predicted = [{b: v or 0 for b, v in row.items()} for row in labels]
            unparsed = sum(v is None for row in labels for v in row.values())
            scores = precision_recall(predicted, truth[:k])
            print(table(f"{name}, judge {args.judge} ({unparsed} unparsed)", scores, k) + "\n")


if __name__ == "__main__":
    main()
