"""Synthetic pretraining corpora: worked, imperfect attempts at a task, for a tiny base model.

R1-Zero works because the base model already samples, now and then, a reasoning trace that ends in
a right answer, and sometimes verifies or backtracks; RL then makes that behaviour more likely
("Cognitive Behaviors", Gandhi et al. 2025: models that show verification and backtracking before
RL improve under it, those that do not, do not). A tiny model trained from scratch has none of
that, so its base corpus supplies it: attempts by a simulated solver that searches, slips, checks
and gives up, at rates chosen here.

Countdown attempt (`countdown_attempt`), one *try* after another. A try sets a subgoal (combine
two of the numbers into a partial result) and then checks every way to finish with the number left,
in the order + - * /, until one reaches the target:

    " 5 + 3 = 8. 8 + 2 = 10 vs 13: no, 8 - 2 = 6 vs 13: no, 8 * 2 = 16 vs 13: no, 8 / 2 = 4 vs
     13: no. Wrong. Try again. 5 * 3 = 15. 15 + 2 = 17 vs 13: no, 15 - 2 = 13 vs 13: yes.
     </think> <answer> (5 * 3) - 2 </answer>"

- the partial is a known solution's with probability `insight_rate`, else a random untried one
  (whole values in [0, max_value]); a finish is `partial op rest` or, for - and /, `rest op partial`
  when only that one is whole and non-negative;
- each step is wrong (off by 1 or 2) with probability `mistake_rate`; a wrong step is caught at once
  ("Wait, 5 + 3 = 8.") with probability `verify_rate`, else the try goes on with the wrong value;
- every finish is compared with the target ("17 vs 12: no"); one that reaches it ends the try
  ("12 vs 12: yes."); with probability `verify_rate` it is then checked ("Let me check: ...") by
  recomputing both steps, and a slip found there turns it into a miss ("Wrong.");
- after a miss the solver gives up with probability `give_up_rate` (answering the try's last
  finish), else backtracks ("Try again."); after `max_tries` tries it answers the last one. A
  share `persistent_rate` of the attempts come from a persistent solver that never gives up
  early: by default the corpus mixes one-try answers (three in four) with persistent searches.

Held-out problems: a corpus is built from `reasonlab.tasks.split.problems(...)` outside the held-out
share of the problem space (a fixed fifth of all problems, chosen by a hash of `task.key`: sorted
numbers and target); evaluations draw from that share, so the base model and RL are measured on
problems neither saw.

So the base model answers right only when it finds a solution and does not stop early: a try
succeeds about one time in five on these problems, so the one-try solver solves ~22% and the
persistent one ~75%; the base model, mostly the first, gives up after a first miss when decoding
greedily. RL with a verifiable reward has persistence (more
tries, longer answers, as in R1-Zero), checking and better subgoals to reinforce; nothing about a
held-out problem's solution is in the corpus (with the default `insight_rate` of 0). Each corpus item is `(prompt, completion)`: the prompt as the task
renders it (ending in `<think>` for r1-zero) and the completion up to `</answer>`; the pretrainer
appends the EOS token.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from reasonlab.records import Example

OPS = ("+", "-", "*", "/")


@dataclass(frozen=True)
class AttemptStyle:
    """How the simulated solver behaves. Rates are probabilities."""

    mistake_rate: float = 0.05
    """Per arithmetic step: the written result is off by 1 or 2."""
    verify_rate: float = 0.5
    """A slip is caught right away ("Wait, ..."), and a reached target is re-checked."""
    give_up_rate: float = 1.0
    """After a failed try: stop and answer with it (else "Try again."), unless persistent."""
    persistent_rate: float = 0.25
    """Share of attempts by a persistent solver, who never gives up before `max_tries`."""
    insight_rate: float = 0.0
    """A try starts from a known solution's partial rather than a random untried one (memorised
    solutions of training problems; nothing a held-out problem can use)."""
    max_tries: int = 5
    """Tries before the solver answers with its last one."""
    max_value: int = 30
    """Largest partial result a try may start from."""

    def __post_init__(self) -> None:
        rates = ("mistake_rate", "verify_rate", "give_up_rate", "persistent_rate", "insight_rate")
        for name in rates:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"AttemptStyle.{name} must be in [0, 1], got {value}")
        if self.max_tries < 1:
            raise ValueError(f"AttemptStyle.max_tries must be >= 1, got {self.max_tries}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def apply(left: int | None, op: str, right: int | None) -> int | None:
    """`left op right` when it is a whole number >= 0, else None."""
    if left is None or right is None:
        return None
    if op == "+":
        return left + right
    if op == "-":
        return left - right if left >= right else None
    if op == "*":
        return left * right
    if right != 0 and left % right == 0:
        return left // right
    return None


@dataclass(frozen=True)
class Partial:
    """A try's subgoal: `left op right` combined first, `rest` (the numbers left) to finish with."""

    left: int
    op: str
    right: int
    rest: tuple[int, ...]

    @property
    def value(self) -> int | None:
        return apply(self.left, self.op, self.right)


def partials(numbers: Sequence[int], max_value: int = 30) -> list[Partial]:
    """Every distinct first step over two of `numbers` with a whole result in [0, max_value]
    (`a + b` and `a * b` once per pair of positions)."""
    out: dict[tuple[int, str, int, tuple[int, ...]], Partial] = {}
    for i, j in itertools.permutations(range(len(numbers)), 2):
        for op in OPS:
            if op in "+*" and i > j:
                continue
            p = Partial(
                numbers[i],
                op,
                numbers[j],
                tuple(n for k, n in enumerate(numbers) if k not in (i, j)),
            )
            if p.value is not None and p.value <= max_value:
                out.setdefault((p.left, p.op, p.right, tuple(sorted(p.rest))), p)
    return [out[k] for k in sorted(out)]


def finishes(value: int, number: int) -> list[tuple[str, bool]]:
    """The ways to combine a partial `value` with `number`, in the order + - * /: `(op,
    partial_left)`, the partial on the left when that is whole and non-negative, else on the right
    when that is; ops that are neither are left out."""
    out = []
    for op in OPS:
        if apply(value, op, number) is not None:
            out.append((op, True))
        elif apply(number, op, value) is not None:
            out.append((op, False))
    return out


def _finish(value: int, op: str, number: int, partial_left: bool) -> tuple[int, str, int]:
    return (value, op, number) if partial_left else (number, op, value)


def solves(p: Partial, target: int) -> bool:
    """Whether the partial `p` (with one number left) can be finished to reach `target`."""
    v = p.value
    return (
        len(p.rest) == 1
        and v is not None
        and any(
            apply(*_finish(v, op, p.rest[0], on_left)) == target
            for op, on_left in finishes(v, p.rest[0])
        )
    )


def countdown_attempt(example: Example, rng: random.Random, style: AttemptStyle) -> str:
    """One simulated attempt at a countdown example: the completion after `<think>`."""
    return _attempt(example, rng, style, None)


BEHAVIOURS = ("verification", "backtracking", "subgoal_setting", "backward_chaining")
"""The four cognitive behaviours of Gandhi et al. 2025 ("Cognitive Behaviors that Enable
Self-Improving Reasoners"), the names `countdown_attempt_tagged` counts under."""


@dataclass(frozen=True)
class TaggedAttempt:
    """A simulated attempt and how many times it wrote each of the four cognitive behaviours.

    What the solver writes, by behaviour (ground truth for the detectors of
    `reasonlab.analysis.behaviours`): `subgoal_setting`, one per try (its partial "a op b = c.");
    `backtracking`, one per "Try again."; `verification`, one per slip caught ("Wait, ...") and per
    re-check of a reached target ("Let me check: ..."); `backward_chaining`, never (the solver works
    forward from the numbers). Comparing each finish with the target ("17 vs 12: no") is the
    search itself, written in every try, and is not counted as verification.
    """

    text: str
    counts: dict[str, int]

    @property
    def tags(self) -> set[str]:
        """The behaviours written at least once."""
        return {name for name, count in self.counts.items() if count > 0}


def countdown_attempt_tagged(
    example: Example, rng: random.Random, style: AttemptStyle
) -> TaggedAttempt:
    """`countdown_attempt` with the behaviours it wrote: the same text for the same `rng` state
    (tagging draws nothing from `rng`)."""
    counts = dict.fromkeys(BEHAVIOURS, 0)
    text = _attempt(example, rng, style, counts)
    return TaggedAttempt(text, counts)


def _attempt(
    example: Example, rng: random.Random, style: AttemptStyle, tags: dict[str, int] | None
) -> str:
    """The body of `countdown_attempt`; counts the behaviours written into `tags` when given."""
    tags = {} if tags is None else tags
    numbers, target = list(example.meta["numbers"]), int(example.meta["target"])
    if len(numbers) != 3:
        raise ValueError(f"{example.id}: the countdown corpus is written for 3 numbers")
    pool = partials(numbers, style.max_value)
    if not pool:
        raise ValueError(
            f"{example.id}: no first step over {numbers} stays whole in [0, {style.max_value}]"
        )
    solutions = [p for p in pool if solves(p, target)]
    untried = list(pool)
    rng.shuffle(untried)
    parts: list[str] = []
    answer = ""
    give_up_rate = 0.0 if rng.random() < style.persistent_rate else style.give_up_rate
    for attempt in range(style.max_tries):
        if solutions and rng.random() < style.insight_rate:
            partial = rng.choice(solutions)
        else:
            partial = untried.pop() if untried else rng.choice(pool)
        text, answer, reached = countdown_try(partial, target, rng, style, tags)
        tags["subgoal_setting"] = tags.get("subgoal_setting", 0) + 1
        parts.append(text)
        if reached or attempt == style.max_tries - 1 or rng.random() < give_up_rate:
            break
        parts.append(" Try again.")
        tags["backtracking"] = tags.get("backtracking", 0) + 1
    return "".join(parts) + f" </think> <answer> {answer} </answer>"


def _step(
    left: int,
    op: str,
    right: int,
    rng: random.Random,
    style: AttemptStyle,
    tags: dict[str, int] | None = None,
) -> tuple[str, int]:
    """`left op right = result` as written, with a slip at `mistake_rate` that is caught at
    `verify_rate`; returns the text and the value written last. `left op right` must be whole."""
    true = apply(left, op, right)
    assert true is not None, (left, op, right)
    slip = max(0, true + rng.choice((-2, -1, 1, 2))) if rng.random() < style.mistake_rate else true
    text = f"{left} {op} {right} = {slip}"
    if slip != true and rng.random() < style.verify_rate:
        if tags is not None:
            tags["verification"] = tags.get("verification", 0) + 1
        return text + f". Wait, {left} {op} {right} = {true}", true
    return text, slip


def countdown_try(
    partial: Partial,
    target: int,
    rng: random.Random,
    style: AttemptStyle,
    tags: dict[str, int] | None = None,
) -> tuple[str, str, bool]:
    """One try from the subgoal `partial`, as the simulated solver writes it: its text, its last
    finish as an expression over the given numbers, and whether the solver (rightly or not)
    believes that finish reached `target`. Counts the verifications it writes into `tags`.
    (Also the building block of the constructed chains of thought, `reasonlab.tasks.cot`.)"""
    first, value = _step(partial.left, partial.op, partial.right, rng, style, tags)
    (number,) = partial.rest
    head = f"({partial.left} {partial.op} {partial.right})"
    pieces: list[str] = []
    written, expression, last = -1, "", ("+", True)
    for op, on_left in finishes(value, number):
        text, written = _step(*_finish(value, op, number, on_left), rng, style, tags)
        # "V vs T: no": the target copied next to each result, so that deciding a hit compares
        # the two tokens just written rather than a result with a number far back in the prompt.
        pieces.append(f"{text} vs {target}: {'yes' if written == target else 'no'}")
        expression = f"{head} {op} {number}" if on_left else f"{number} {op} {head}"
        last = (op, on_left)
        if written == target:
            break
    body = f" {first}. " + ", ".join(pieces) + "."
    if written != target:
        return body + " Wrong.", expression, False
    if rng.random() < style.verify_rate:
        if tags is not None:
            tags["verification"] = tags.get("verification", 0) + 1
        true_partial = partial.value
        assert true_partial is not None
        left, op, right = _finish(true_partial, last[0], number, last[1])
        result = apply(left, op, right)
        check = f"{partial.left} {partial.op} {partial.right} = {true_partial}"
        shown = "no whole number" if result is None else result
        check += (
            f", {left} {op} {right} = {shown} vs {target}: {'yes' if result == target else 'no'}"
        )
        body += f" Let me check: {check}."
        if result != target:
            return body + " Wrong.", expression, False
    return body, expression, True  # right, or a confident wrong answer after an unnoticed slip


def countdown_attempts(
    examples: Sequence[Example],
    style: AttemptStyle | None = None,
    seed: int = 0,
    template: str = "r1-zero",
) -> list[tuple[str, str]]:
    """`(prompt, completion)` per example: the rendered prompt and one simulated attempt."""
    from reasonlab import tasks

    task, style, rng = tasks.get("countdown"), style or AttemptStyle(), random.Random(seed)
    return [
        (task.render(ex, template=template), countdown_attempt(ex, rng, style)) for ex in examples
    ]


__all__ = [
    "AttemptStyle",
    "BEHAVIOURS",
    "Partial",
    "TaggedAttempt",
    "apply",
    "finishes",
    "partials",
    "countdown_attempt",
    "countdown_attempt_tagged",
    "countdown_attempts",
    "countdown_try",
    "solves",
]
