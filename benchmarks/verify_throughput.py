"""Verdicts per second of every task's `verify_batch`, against a plain loop, with identical verdicts.

Math: N completions built from MATH train reference solutions, in groups of `--group` per problem
(as GRPO groups and avg@n evaluation sample them): the solution as written, copies whose boxed
answer is rewritten in an equivalent form (`\\dfrac`, `0.5` for `\\frac{1}{2}`, `x = ...`, `27.0`,
`1,000`, spaces, or the answer moved to R1-Zero `<answer>` tags), copies with a wrong answer (an
integer changed, another problem's answer), and copies cut before their box (no answer).

The peer is what one writes with math-verify in a reward function (open-r1's and TRL's
`accuracy_reward`, without their logging): for each completion, in a plain loop in one process,

    gold = parse("\\boxed{" + answer + "}", parsing_timeout=10)
    pred = parse(completion, extraction_config=[LatexExtractionConfig(
               boxed_match_priority=0, try_extract_without_anchor=False)],
               extraction_mode="first_match", parsing_timeout=10)
    correct = verify(gold, pred, timeout_seconds=5)

on the FULL completion text (math-verify finds the answer itself), with its own signal timeouts.
Its LaTeX normalization is math-verify's default, as `MathTask`'s (open-r1 and TRL turn the
repair of malformed operators off, so `\\frac12` is no half there; how many of the verdicts of
`trl.rewards.accuracy_reward` differ is printed when TRL is installed). A second, stronger reference is also timed: the
"same-extraction" loop, which first extracts the answer as `MathTask` does and hands math-verify
only that short string.

Verdicts: `verify_batch` must equal the same-extraction loop on every completion (the fast paths
and caches change no verdict), and the peer on every completion where both read the same answer.
Where they read different ones, the reason is counted and printed, never dropped: the answer in
`<answer>` tags (the R1-Zero format; math-verify reads only a box or a `$...$` after the word
"answer"), several boxes (math-verify joins nearby ones), a "percent" after the box; a
difference on the same answer fails.
Before timing, every side checks `--warmup` completions of other problems (a trainer's steady
state: math-verify's parser warms up as it meets new forms).

The ratios, in the order printed: first the same-extraction loop against `verify_batch` in CPU
seconds (the loop's, one process, over `verify_batch`'s: this process plus its workers, read from
/proc), which is what the fast paths and caches buy, with the extraction and the core count the
same on both sides; then the peer against `verify_batch`, in wall-clock seconds with the run's
workers (what a reward function gains from calling `verify_batch`, parallelism included) next to
the same in CPU seconds (on a machine shared with other jobs, wall time with several workers
measures the neighbours as much as the code). The last line is `ratio: X`, the first of these:
same-extraction loop CPU seconds / `verify_batch` CPU seconds (where the workers' CPU time cannot
be read, wall-clock seconds, and the line before it says so).

Other tasks (`countdown`, `arithmetic`, `knights_knaves`, any registered): examples from
`generate` (or `load`), completions with the reference answer in `<answer>` tags, a perturbed
answer, no tags, and a truncated copy; `verify_batch` against `[task.verify(...)]`.

    python benchmarks/verify_throughput.py                 # 10,000 completions per task
    python benchmarks/verify_throughput.py --n 500         # quick
    python benchmarks/verify_throughput.py --workers 1     # one worker: the single-core speedup
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
import time
from dataclasses import replace

from reasonlab import tasks
from reasonlab.records import Example
from reasonlab.verify import bounded
from reasonlab.verify import math as mathv

# --- math completions -------------------------------------------------------------------------


def _equivalent_forms(answer: str) -> list[str]:
    """Forms of `answer` that math-verify should accept as the same answer."""
    forms = [f" {answer} ", f"x = {answer}"]
    if "\\frac" in answer:
        forms.append(answer.replace("\\frac", "\\dfrac"))
    frac = re.fullmatch(r"\\d?frac\{(-?\d+)\}\{(\d+)\}", answer)
    if frac and int(frac.group(2)) in (2, 4, 5, 8, 10, 20, 25):
        forms.append(str(int(frac.group(1)) / int(frac.group(2))))
    if re.fullmatch(r"-?\d+", answer):
        forms.append(f"{answer}.0")
        if abs(int(answer)) >= 1000:
            forms.append(f"{int(answer):,}")
    return forms


def _wrong_forms(answer: str, other: str, rng: random.Random) -> list[str]:
    forms = [other] if other != answer else []
    if re.fullmatch(r"-?\d+", answer):
        forms.append(str(int(answer) + rng.choice([-2, -1, 1, 3, 10])))
    else:
        forms.append(f"{answer}+1")
    return forms


def _replace_last_box(solution: str, answer: str) -> str:
    at = max(solution.rfind("\\boxed"), solution.rfind("\\fbox"))
    content = mathv.last_boxed(solution, tail=None)
    if at < 0 or content is None:
        return solution
    end = solution.find(content, at) + len(content)
    close = solution.find("}", end)
    return solution[:at] + "\\boxed{" + answer + "}" + solution[close + 1 :]


def math_completions(
    examples: list[Example], n: int, group: int, rng: random.Random
) -> tuple[list[str], list[Example]]:
    texts: list[str] = []
    chosen: list[Example] = []
    problems = rng.sample(examples, min(len(examples), -(-n // group)))
    for ex in problems:
        solution, gold = ex.meta["solution"], ex.answer
        other = rng.choice(problems).answer
        for _ in range(group):
            kind = rng.choices(["reference", "equivalent", "wrong", "cut"], [35, 25, 30, 10])[0]
            if kind == "reference":
                text = solution
            elif kind == "equivalent":
                form = rng.choice(_equivalent_forms(gold))
                if rng.random() < 0.3:
                    cut = solution[: max(solution.rfind("\\boxed"), 0)]
                    text = f"<think>{cut}</think> <answer>{form}</answer>"
                else:
                    text = _replace_last_box(solution, form)
            elif kind == "wrong":
                text = _replace_last_box(solution, rng.choice(_wrong_forms(gold, other, rng)))
            else:
                text = solution[: max(solution.rfind("\\boxed"), 0)]
            texts.append(text)
            chosen.append(ex)
            if len(texts) == n:
                return texts, chosen
    return texts, chosen


def _answer_config() -> list:
    from math_verify import LatexExtractionConfig

    # open-r1's and TRL's accuracy_reward parse a completion so, but with malformed operators
    # left unrepaired; this keeps math-verify's default normalization, as MathTask does
    return [LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False)]


def peer_loop(texts: list[str], examples: list[Example]) -> list[bool | None]:
    """The peer: math-verify's `parse` + `verify` on the full completions (None: gold not
    parsable), as a reward function calls them."""
    from math_verify import parse, verify

    config = _answer_config()
    out: list[bool | None] = []
    for text, ex in zip(texts, examples):
        gold = parse(mathv.boxed(ex.answer), parsing_timeout=10)
        if not gold:
            out.append(None)
            continue
        pred = parse(
            text, extraction_config=config, extraction_mode="first_match", parsing_timeout=10
        )
        out.append(verify(gold, pred, timeout_seconds=5))
    return out


def same_extraction_loop(texts: list[str], examples: list[Example]) -> list[bool]:
    """The stronger reference: `MathTask`'s extraction, then math-verify on the short answer."""
    from math_verify import parse, verify

    config = _answer_config()
    out = []
    for text, ex in zip(texts, examples):
        answer, _ = mathv.extract(text, ex.meta.get("extractors") or mathv.DEFAULT_EXTRACTORS)
        if answer is None:
            out.append(False)
            continue
        gold = parse(mathv.boxed(ex.answer), parsing_timeout=10)
        pred = parse(
            mathv.boxed(answer),
            extraction_config=config,
            extraction_mode="first_match",
            parsing_timeout=10,
        )
        out.append(bool(gold) and bool(pred) and verify(gold, pred, timeout_seconds=5))
    return out


def trl_differences(texts: list[str], examples: list[Example], peer: list, count: int = 500) -> str:
    """How many of the peer's verdicts `trl.rewards.accuracy_reward` changes (TRL imports torch)."""
    try:
        from trl.rewards import accuracy_reward
    except ImportError:
        return "not checked (trl is not installed)"
    rewards = accuracy_reward(
        [[{"role": "assistant", "content": t}] for t in texts[:count]],
        [mathv.boxed(ex.answer) for ex in examples[:count]],
    )
    differ = sum((r is not None and bool(r)) != bool(p) for r, p in zip(rewards, peer))
    return (
        f"{differ} of the first {min(count, len(texts))} differ (it leaves malformed LaTeX such "
        "as `\\frac12` unrepaired)"
    )


def _timed(fn, *args):
    """(fn(*args), seconds it took)."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def bench_math(n: int, group: int, workers: int | None, seed: int, warmup: int) -> float:
    """Times and checks the math sides; returns the headline ratio (see the module docstring)."""
    task = tasks.get("math")
    problems = task.load("math_train")
    random.Random(seed).shuffle(problems)
    held_out = problems[: len(problems) // 5]  # warm-up problems, disjoint from the measured ones
    texts, examples = math_completions(problems[len(held_out) :], n, group, random.Random(seed))
    t0 = time.perf_counter()
    mathv.warm_up(workers)  # start the workers and load math-verify (a trainer keeps them)
    pool_start = time.perf_counter() - t0
    if warmup:  # a trainer's steady state: every side has seen some answers (not these ones)
        warm_texts, warm_examples = math_completions(held_out, warmup, group, random.Random(-1))
        task.verify_batch(warm_texts, warm_examples, workers=workers)
        peer_loop(warm_texts, warm_examples)
        same_extraction_loop(warm_texts, warm_examples)

    pool = bounded.shared_pool(workers)
    cpu0, workers_cpu0 = time.process_time(), pool.worker_cpu_seconds()
    verdicts, ours = _timed(lambda: task.verify_batch(texts, examples, workers=workers))
    cpu1, workers_cpu1 = time.process_time(), pool.worker_cpu_seconds()
    peer, theirs = _timed(peer_loop, texts, examples)
    cpu2 = time.process_time()
    reference, reference_s = _timed(same_extraction_loop, texts, examples)
    reference_cpu, peer_cpu = time.process_time() - cpu2, cpu2 - cpu1
    ours_cpu = cpu1 - cpu0
    workers_cpu = None if None in (workers_cpu0, workers_cpu1) else workers_cpu1 - workers_cpu0
    num_workers = workers or bounded.available_cores()

    correct = [v.correct for v in verdicts]
    timeouts = sum(v.detail == "timeout" for v in verdicts)
    distinct = len({(ex.answer, v.answer) for ex, v in zip(examples, verdicts) if v.answer})
    print(
        f"math: {len(texts)} completions of {len({e.id for e in examples})} problems, "
        f"{distinct} distinct (gold, answer) pairs, {sum(correct)} correct, {timeouts} timeouts"
    )
    count = len(texts)
    if workers_cpu is not None:
        ours_total = ours_cpu + workers_cpu
        headline, headline_unit = reference_cpu / ours_total, "CPU seconds"
        print(
            f"  same extraction, CPU seconds: same-extraction loop {reference_cpu:.2f} (one "
            f"process) / verify_batch {ours_total:.2f} (this process {ours_cpu:.2f}, "
            f"{num_workers} workers {workers_cpu:.2f}) = {headline:.1f}"
        )
    else:
        headline, headline_unit = reference_s / ours, f"wall-clock seconds, {num_workers} workers"
        print(
            f"  same extraction, wall clock (workers' CPU time unreadable): same-extraction "
            f"loop {reference_s:.2f} s / verify_batch {ours:.2f} s = {headline:.1f}"
        )
    peer_line = (
        f"  peer: wall clock with {num_workers} workers {theirs:.2f} s / {ours:.2f} s = "
        f"{theirs / ours:.1f}"
    )
    if workers_cpu is not None:
        peer_line += (
            f"; CPU seconds {peer_cpu:.2f} / {ours_total:.2f} = {peer_cpu / ours_total:.1f}"
        )
    print(peer_line)
    print(f"  verify_batch                {count / ours:8.0f} verdicts/s  ({ours:.2f} s)")
    print(f"  peer (parse + verify loop)  {count / theirs:8.0f} verdicts/s  ({theirs:.2f} s)")
    print(
        f"  same-extraction loop        {count / reference_s:8.0f} verdicts/s  ({reference_s:.2f} s)"
    )
    print(f"  worker start (once): {pool_start:.2f} s")

    unlike_reference = [i for i in range(count) if correct[i] != reference[i]]
    unlike_peer = [i for i in range(count) if correct[i] != bool(peer[i])]
    reasons: dict[str, list[int]] = {}
    for i in unlike_peer:
        reasons.setdefault(why_unlike_peer(texts[i], examples[i], verdicts[i].answer), []).append(i)
    print(
        f"  identical to the same-extraction loop: {not unlike_reference} "
        f"({len(unlike_reference)} of {count} differ)"
    )
    print(f"  identical to the peer: {not unlike_peer} ({len(unlike_peer)} of {count} differ)")
    for reason, where in sorted(reasons.items(), key=lambda item: -len(item[1])):
        print(f"    {len(where):5d}  {reason}")
    for i in unlike_reference + reasons.get(SAME_ANSWER, []):
        print(f"    differs: gold {examples[i].answer!r} answer {verdicts[i].answer!r}", end="")
        print(f" ours {correct[i]} ({verdicts[i].detail}) peer {peer[i]} reference {reference[i]}")
    assert not unlike_reference, "verify_batch and the same-extraction loop disagree"
    assert SAME_ANSWER not in reasons, "verify_batch and the peer disagree on the same answer"
    print(
        f"  trl.rewards.accuracy_reward against the peer: {trl_differences(texts, examples, peer)}"
    )
    print(
        f"ratio below: same-extraction loop / verify_batch in {headline_unit} "
        "(same answers extracted, same verdicts)"
    )
    return headline


SAME_ANSWER = "same answer read, different verdict (a verification difference: fails)"
_PERCENT_AFTER_BOX = re.compile(r"\\boxed\{[^$]*\$?\s*(?:\\?%|percent|pct)", re.IGNORECASE)


def why_unlike_peer(text: str, example: Example, answer: str | None) -> str:
    """Why `MathTask` and the peer disagree on a completion: where each finds the answer.

    The peer's reading is the string math-verify's `parse` keeps of its match (the last item of
    its result); ours is our answer normalized the same way."""
    from latex2sympy2_extended import normalize_latex
    from math_verify import parse

    _, how = mathv.extract(text, example.meta.get("extractors") or mathv.DEFAULT_EXTRACTORS)
    if how == "answer_tag":
        return (
            "answer in <answer> tags (R1-Zero): the peer reads a box or `answer ... $x$` elsewhere"
        )
    if how == "answer_is":
        return "'the answer is x' without $...$: the peer needs a box or $...$ after 'answer'"
    reading = parse(text, extraction_config=_answer_config(), extraction_mode="first_match")
    if not reading or not isinstance(reading[-1], str):
        return "the peer finds no answer"
    if answer is None:
        return "MathTask finds no answer"
    config = replace(_answer_config()[0].normalization_config, boxed="last")
    ours, theirs = normalize_latex(mathv.boxed(answer), config).strip(), reading[-1].strip()
    if theirs != ours:
        if theirs.rstrip(".").rstrip() == ours:
            return "a period inside the box: math-verify keeps it and cannot parse the answer"
        if text.count("\\boxed") > 1:
            return "several boxes: math-verify joins nearby ones into one answer, MathTask takes the last"
        return "the peer reads another answer"
    if _PERCENT_AFTER_BOX.search(text[-300:]):
        return "'percent' after the box: math-verify reads the answer as a percentage"
    return SAME_ANSWER


# --- other tasks ------------------------------------------------------------------------------


def _perturb(answer: str) -> str:
    digits = [i for i, c in enumerate(answer) if c.isdigit()]
    if digits:
        i = digits[-1]
        return answer[:i] + str((int(answer[i]) + 1) % 10) + answer[i + 1 :]
    if "knight" in answer:
        return answer.replace("knight", "knave", 1)
    return answer + " x"


def task_completions(task: tasks.Task, n: int, seed: int) -> tuple[list[str], list[Example]]:
    count = -(-n // 4)
    try:
        examples = task.generate(count, seed=seed)
    except NotImplementedError:
        examples = task.load(limit=count)
    texts, chosen = [], []
    for ex in examples:
        solution = ex.meta.get("solution")
        answer = solution if isinstance(solution, str) else str(ex.answer)
        think = "<think>Let me try a few combinations and check each one.</think>\n"
        for text in (
            f"{think}<answer>{answer}</answer>",
            f"{think}<answer>{_perturb(answer)}</answer>",
            f"{think}The answer is {answer}.",
            f"{think}<answer>{answer[: len(answer) // 2]}",
        ):
            texts.append(text)
            chosen.append(ex)
    return texts[:n], chosen[:n]


def bench_task(name: str, n: int, workers: int | None, seed: int) -> None:
    task = tasks.get(name)
    texts, examples = task_completions(task, n, seed)
    t0 = time.perf_counter()
    verdicts = task.verify_batch(texts, examples, workers=workers)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain = [task.verify(text, ex) for text, ex in zip(texts, examples)]
    theirs = time.perf_counter() - t0
    same = verdicts == plain
    where = "in-process" if task.bounded_by_construction else "worker pool"
    print(
        f"{name}: {len(texts)} completions, {sum(v.correct for v in verdicts)} correct; "
        f"verify_batch ({where}) {len(texts) / ours:.0f}/s, plain verify loop "
        f"{len(texts) / theirs:.0f}/s; identical verdicts: {same}"
    )
    assert same, f"{name}: verify_batch and the verify loop disagree"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="completions per task")
    parser.add_argument("--group", type=int, default=8, help="math completions per problem")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--warmup", type=int, default=1000, help="math completions of other problems, seen first"
    )
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: all)")
    args = parser.parse_args(argv)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    names = [t for t in args.tasks.split(",") if t] or tasks.names()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(
        f"{os.cpu_count()} CPUs, {args.workers or bounded.available_cores()} workers, "
        f"python {sys.version.split()[0]}, load average {load} (before the run)"
    )
    for name in names:
        if name != "math":
            bench_task(name, args.n, args.workers, args.seed)
    if "math" in names:
        ratio = bench_math(args.n, args.group, args.workers, args.seed, args.warmup)
        print(f"ratio: {ratio:.1f}")


if __name__ == "__main__":
    main()
