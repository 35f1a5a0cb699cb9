"""Chains of thought written by program, tagged with the behaviours they contain (countdown).

SFT data for the tiny world, built from the simulated solver of `reasonlab.tasks.corpus` (its tries,
slips caught with "Wait,", re-checks "Let me check:" and "Try again."), so that every sample's
behaviours are known by construction. Kinds:

| kind | the thinking | answer |
|---|---|---|
| `short` | one direct worked solution: the try from a solving subgoal, no slips, no check | right |
| `long` | constructed long CoT (journey learning: "O1 Replication Journey", Qin et al. 2024; the constructed long CoT of "Demystifying Long CoT", Yeo et al. 2025): 1-3 failed tries with slips caught at once, "Try again." after each, then the solving try, re-checked | right |
| `all_behaviours` | `long` plus a backward-chaining step from the target before the solving try | right |
| `backtracking_only` | failed tries and "Try again.", then the solving try; no slips, no checks | right |
| `no_behaviours` | the answer's expression evaluated in one line: no subgoal, no check, no retry | right |
| `empty_cot` | the `all_behaviours` thinking of the same problem and seed with every character replaced by a filler of the same length (" . . ."): same length, no content | right |
| `wrong_answers` | failed tries (the first with every slip caught), a backward-chaining step, then a last failed try whose finish is answered | wrong |

The last five are the priming conditions of "Cognitive Behaviors that Enable Self-Improving
Reasoners" (Gandhi et al. 2025: all behaviours, backtracking only, none, empty CoT of equal length,
behaviours with incorrect solutions). Every try sets a subgoal (its first step, "a op b = c."), so
every kind with a try also shows `subgoal_setting`; "backtracking only" means no verification and
no backward chaining.

Behaviour counts (the ground truth of `reasonlab.analysis.behaviours`, as `countdown_attempt_tagged`
counts them): `subgoal_setting` one per try; `backtracking` one per "Try again."; `verification` one
per slip caught and per re-check; `backward_chaining` one per step written from the target
(" Working backwards from 13: 13 - 2 = 11, so 5 and 3 must make 11.").

Problems come from outside the held-out share (`reasonlab.tasks.split.problems`), countdown with
three numbers (the corpus's solver); sample i uses problem i mod the number of problems and a
random generator seeded by (seed, i), so the kinds built with the same seed are about the same
problems in the same order. Each row is prompt/completion in the template's format (r1-zero: the
prompt ends with `<think>`, the completion runs to `</answer>`), plus `kind`, `behaviours` (counts),
`tags`, the answer and whether the task's verifier accepts it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reasonlab.records import Example
from reasonlab.tasks import split
from reasonlab.tasks.corpus import (
    BEHAVIOURS,
    AttemptStyle,
    Partial,
    apply,
    countdown_try,
    finishes,
    partials,
    solves,
)

KINDS = (
    "short",
    "long",
    "all_behaviours",
    "backtracking_only",
    "no_behaviours",
    "empty_cot",
    "wrong_answers",
)
"""The kinds of chain of thought (see the module docstring)."""
TASKS = ("countdown",)
"""Tasks with a CoT generator."""
FILLER = " ."
"""What `empty_cot` repeats in place of the thinking."""

_ANY_VALUE = 10**9  # subgoals may take any whole value (the corpus caps them for the tiny demo)
_CLEAN = AttemptStyle(mistake_rate=0.0, verify_rate=0.0, max_value=_ANY_VALUE)
_CHECKED = AttemptStyle(mistake_rate=0.0, verify_rate=1.0, max_value=_ANY_VALUE)
_SLIPS_CAUGHT = AttemptStyle(mistake_rate=0.2, verify_rate=1.0, max_value=_ANY_VALUE)
_EVERY_SLIP_CAUGHT = AttemptStyle(mistake_rate=1.0, verify_rate=1.0, max_value=_ANY_VALUE)
_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}


@dataclass(frozen=True)
class CoT:
    """One generated chain of thought: the completion after `<think>` and what it contains."""

    text: str
    """From the thinking to `</answer>`."""
    answer: str
    """The expression in the answer tags."""
    counts: dict[str, int]
    """Instances of each of the four behaviours."""

    @property
    def tags(self) -> list[str]:
        """The behaviours present, in `BEHAVIOURS` order."""
        return [b for b in BEHAVIOURS if self.counts.get(b, 0) > 0]


@dataclass(frozen=True)
class _Problem:
    numbers: tuple[int, ...]
    target: int
    solutions: list[Partial]
    wrong: list[Partial]


def _problem(example: Example) -> _Problem:
    numbers, target = tuple(example.meta["numbers"]), int(example.meta["target"])
    if len(numbers) != 3:
        raise ValueError(f"{example.id}: the CoT generator is written for 3 numbers, got {numbers}")
    pool = partials(numbers, _ANY_VALUE)
    return _Problem(
        numbers,
        target,
        [p for p in pool if solves(p, target)],
        [p for p in pool if not solves(p, target)],
    )


def buildable(example: Example) -> bool:
    """Whether every kind can be written for `example`: a solving subgoal and at least four
    failing ones (three failed tries and the last try of `wrong_answers`)."""
    try:
        problem = _problem(example)
    except ValueError:
        return False
    return bool(problem.solutions) and len(problem.wrong) >= 4


def _backward(problem: _Problem, solution: Partial) -> str:
    """A backward-chaining step: the value the solution's subgoal must make, from the target."""
    value, (number,) = solution.value, solution.rest
    assert value is not None
    for op, on_left in finishes(value, number):
        left, right = (value, number) if on_left else (number, value)
        if apply(left, op, right) == problem.target:
            if on_left:  # value op number = target
                step = f"{problem.target} {_INVERSE[op]} {number} = {value}"
            else:  # number op value = target: value = number -/÷ target
                step = f"{number} {op} {problem.target} = {value}"
            return (
                f" Working backwards from {problem.target}: {step}, so {solution.left} and "
                f"{solution.right} must make {value}."
            )
    raise AssertionError(f"{solution} does not reach {problem.target}")


def _tries(
    problem: _Problem,
    failed: Sequence[Partial],
    styles: Sequence[AttemptStyle],
    rng: random.Random,
    counts: dict[str, int],
) -> str:
    """Failed tries, each followed by "Try again." (a backtrack)."""
    parts = []
    for partial, style in zip(failed, styles, strict=True):
        text, _, _ = countdown_try(partial, problem.target, rng, style, counts)
        counts["subgoal_setting"] += 1
        counts["backtracking"] += 1
        parts.append(text + " Try again.")
    return "".join(parts)


def countdown_cot(example: Example, kind: str, rng: random.Random) -> CoT:
    """One chain of thought of `kind` for a 3-number countdown `example` (see the module
    docstring); a ValueError when the problem has no solving subgoal or too few failing ones."""
    if kind not in KINDS:
        raise ValueError(f"unknown CoT kind {kind!r}; valid: {', '.join(KINDS)}")
    problem = _problem(example)
    if not buildable(example):
        raise ValueError(
            f"{example.id}: needs a solving subgoal and 4 failing ones; has "
            f"{len(problem.solutions)} and {len(problem.wrong)}"
        )
    if kind == "empty_cot":
        full = countdown_cot(example, "all_behaviours", rng)
        thinking, tail = full.text.split(" </think>", 1)
        filler = (FILLER * len(thinking))[: len(thinking)]
        return CoT(filler + " </think>" + tail, full.answer, dict.fromkeys(BEHAVIOURS, 0))

    counts = dict.fromkeys(BEHAVIOURS, 0)
    solution = rng.choice(problem.solutions)
    failed = rng.sample(problem.wrong, rng.randint(1, 3))
    if kind == "no_behaviours":
        _, answer, _ = countdown_try(solution, problem.target, rng, _CLEAN, {})
        return CoT(
            f" {answer} = {problem.target}. </think> <answer> {answer} </answer>", answer, counts
        )

    body = ""
    if kind in ("long", "all_behaviours"):
        body = _tries(problem, failed, [_SLIPS_CAUGHT] * len(failed), rng, counts)
    elif kind == "backtracking_only":
        body = _tries(problem, failed, [_CLEAN] * len(failed), rng, counts)
    elif kind == "wrong_answers":
        styles = [_EVERY_SLIP_CAUGHT] + [_SLIPS_CAUGHT] * (len(failed) - 1)
        body = _tries(problem, failed, styles, rng, counts)
    if kind in ("all_behaviours", "wrong_answers"):
        body += _backward(problem, solution)
        counts["backward_chaining"] += 1

    if kind == "wrong_answers":
        last = rng.choice([p for p in problem.wrong if p not in failed])
        text, answer, reached = countdown_try(last, problem.target, rng, _CLEAN, counts)
        assert not reached
    else:
        style = _CHECKED if kind in ("long", "all_behaviours") else _CLEAN
        text, answer, reached = countdown_try(solution, problem.target, rng, style, counts)
        assert reached
    counts["subgoal_setting"] += 1
    return CoT(body + text + f" </think> <answer> {answer} </answer>", answer, counts)


def cot_rows(
    kind: str,
    n: int,
    *,
    task_name: str = "countdown",
    problems: int | None = None,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    held_out_fraction: float = split.HELD_OUT_FRACTION,
    template: str = "r1-zero",
) -> list[dict[str, Any]]:
    """`n` rows of `kind` over `problems` distinct training problems (default: `n`), drawn outside
    the held-out share `held_out_fraction` (see the module docstring). A ValueError names what is
    wrong (kind, task, a problem space too small)."""
    from reasonlab import tasks

    if kind not in KINDS:
        raise ValueError(f"unknown CoT kind {kind!r}; valid: {', '.join(KINDS)}")
    if task_name not in TASKS:
        raise ValueError(f"no CoT generator for task {task_name!r}; valid: {', '.join(TASKS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    from reasonlab.tasks import templates

    if not templates.TEMPLATES[template].uses_tags:
        raise ValueError(
            f"template {template!r} asks for \\boxed answers; the CoTs answer in <answer> tags: "
            "use r1-zero or qwen-instruct"
        )
    task = tasks.get(task_name)
    params = {"num_numbers": 3, **(params or {})}
    wanted = problems or n
    drawn = split.problems(
        task, wanted, seed=seed, held_out=False, fraction=held_out_fraction, **params
    )
    pool = [e for e in drawn if buildable(e)]
    extra = 0
    while len(pool) < wanted:  # a few problems have too few failing subgoals: draw more
        extra = max(2 * extra, 2 * (wanted - len(pool)))
        try:
            drawn = split.problems(
                task,
                wanted + extra,
                seed=seed,
                held_out=False,
                fraction=held_out_fraction,
                **params,
            )
        except ValueError:
            raise ValueError(
                f"only {len(pool)} of {wanted} training problems of {task_name} with {params} "
                f"have a CoT of every kind; ask for fewer problems (--problems) or widen the ranges"
            ) from None
        pool = [e for e in drawn if buildable(e)][:wanted]
    pool = pool[:wanted]
    rows = []
    for i in range(n):
        example = pool[i % len(pool)]
        cot = countdown_cot(example, kind, random.Random(f"{seed}/{i}"))
        verdict = task.verify(cot.text, example)
        rows.append(
            {
                "prompt": task.render(example, template=template),
                "completion": cot.text,
                "task": task.name,
                "kind": kind,
                "example_id": example.id,
                "key": task.key(example),
                "behaviours": dict(cot.counts),
                "tags": cot.tags,
                "answer": cot.answer,
                "correct": verdict.correct,
                "example": example.to_dict(),
            }
        )
    return rows


__all__ = ["CoT", "FILLER", "KINDS", "TASKS", "buildable", "cot_rows", "countdown_cot"]
