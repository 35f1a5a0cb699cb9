"""Countdown: combine the given numbers with + - * / to reach a target (TinyZero; "Cognitive Behaviors").

The task TinyZero (Pan et al., 2025, github.com/Jiayi-Pan/TinyZero) used to reproduce R1-Zero, and
Gandhi et al. (2025, "Cognitive Behaviors that Enable Self-Improving Reasoners") studied:

    Using the numbers [19, 36, 55, 7], create an equation that equals 65. You can use basic
    arithmetic operations (+, -, *, /) and each number can only be used once.

Rules, as TinyZero's checker has them and this generator and verifier both apply:
- every given number is used exactly once (the multiset of literals equals the numbers);
- + - * / with parentheses over exact rationals (intermediate fractions and negatives are fine);
- the expression's exact value equals the target (TinyZero compares floats within 1e-5).

Generation draws the count and the numbers uniformly, then tries targets in a random order and
keeps the first one the exhaustive solver below reaches: the target is uniform over the reachable
ones in range (numbers that reach none, among `TARGET_TRIES` tries, are drawn again). Problems
are distinct as (sorted numbers, target); each carries a solution in `meta["solution"]`, an
expression the verifier accepts (only about 16% of random pairs of 4 numbers in 1-100 and a
target in 1-100 are solvable, measured on 300 draws). Presets: `tinyzero` (3-4
numbers in 1-100, target 1-100, the shape of TinyZero's Countdown-Tasks-3to4 data) and `cognitive`
(2-4 numbers in 1-24, target 10-25: a smaller setting for tiny models, chosen by this project).

The solver enumerates every value of every sub-multiset of up to three numbers (memoised across
calls) and, above that, searches goal-first: to reach t from A ∪ B it takes each value a of the
smaller side and asks whether the other side reaches the one b with a ∘ b = t for each operator.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from reasonlab.records import Example, Verdict
from reasonlab.tasks import register
from reasonlab.tasks.base import Param, Task
from reasonlab.verify.arith import MAX_DIGITS, ParseError, evaluate
from reasonlab.verify.tags import final_answer

Value = int | Fraction

PRESETS: dict[str, dict[str, int]] = {
    "tinyzero": dict(
        min_numbers=3, max_numbers=4, min_number=1, max_number=100, min_target=1, max_target=100
    ),
    "cognitive": dict(
        min_numbers=2, max_numbers=4, min_number=1, max_number=24, min_target=10, max_target=25
    ),
}
MAX_NUMBERS = 6
"""Most numbers in one generated problem (the search grows fast beyond)."""
TARGET_TRIES = 200
"""Targets tried for one draw of numbers before the numbers are drawn again."""


# --- the solver -------------------------------------------------------------------------------
# A derivation is ("op", left_key, left_value, right_key, right_value) or None for a given number;
# keys are sorted tuples (sub-multisets), so tables are shared across problems.


def _div(a: Value, b: Value) -> Value:
    """a / b exactly, as an int when whole (ints hash and compare faster than Fractions)."""
    if type(a) is int and type(b) is int:
        return a // b if a % b == 0 else Fraction(a, b)
    q = a / b  # one of them is a Fraction, so this is exact
    return q.numerator if q.denominator == 1 else q


@lru_cache(maxsize=256)
def _splits(key: tuple[int, ...]) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """Each way to cut a multiset in two non-empty parts, once (the part holding key[0] first)."""
    n, seen = len(key), set()
    for mask in range(1, (1 << n) - 1, 2):
        left = tuple(key[i] for i in range(n) if mask >> i & 1)
        right = tuple(key[i] for i in range(n) if not mask >> i & 1)
        seen.add((left, right))
    return tuple(sorted(seen))


@lru_cache(maxsize=8192)
def _table(key: tuple[int, ...]) -> dict[Value, tuple | None]:
    """Every value that uses each number of `key` exactly once, with one derivation each."""
    if len(key) == 1:
        return {key[0]: None}
    out: dict[Value, tuple | None] = {}
    for left, right in _splits(key):
        right_values = _table(right)
        for a in _table(left):
            for b in right_values:
                # a node is built only for a new value: most results repeat
                if (v := a + b) not in out:
                    out[v] = ("+", left, a, right, b)
                if (v := a * b) not in out:
                    out[v] = ("*", left, a, right, b)
                if (v := a - b) not in out:
                    out[v] = ("-", left, a, right, b)
                if (v := b - a) not in out:
                    out[v] = ("-", right, b, left, a)
                if b != 0 and (v := _div(a, b)) not in out:
                    out[v] = ("/", left, a, right, b)
                if a != 0 and (v := _div(b, a)) not in out:
                    out[v] = ("/", right, b, left, a)
    return out


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_Expr = tuple[str, int]  # (text, precedence); a number has precedence 3


def _join(op: str, left: _Expr, right: _Expr) -> _Expr:
    """`left op right` with only the parentheses that precedence and (non-)associativity need."""
    p = _PRECEDENCE[op]
    lt = left[0] if left[1] >= p else f"({left[0]})"
    rt = right[0] if right[1] > p or (right[1] == p and op in "+*") else f"({right[0]})"
    return f"{lt} {op} {rt}", p


def _render(key: tuple[int, ...], value: Value) -> _Expr:
    node = _table(key)[value]
    if node is None:
        return str(value), 3
    op, lk, lv, rk, rv = node
    return _join(op, _render(lk, lv), _render(rk, rv))


_ANY, _ANY_NONZERO = object(), object()


def _partners(a: Value, target: Value) -> Iterator[tuple[str, Any, bool]]:
    """Each (op, b, a_on_left) with `a op b == target` (or `b op a` when not a_on_left)."""
    yield "+", target - a, True
    yield "-", a - target, True
    yield "-", a + target, False
    if a != 0:
        yield "*", _div(target, a), True
        yield "/", target * a, False
        if target != 0:
            yield "/", _div(a, target), True
    elif target == 0:  # 0 * b == 0 for any b; 0 / b == 0 for any b != 0
        yield "*", _ANY, True
        yield "/", _ANY_NONZERO, True


def _reach(key: tuple[int, ...], target: Any, memo: dict) -> _Expr | None:
    """An expression over exactly the numbers of `key` whose value is `target`, else None."""
    if target is _ANY or target is _ANY_NONZERO:  # the sum: nonzero unless every number is 0
        if target is _ANY_NONZERO and sum(key) == 0:
            return None
        return " + ".join(map(str, key)), 1 if len(key) > 1 else 3
    if len(key) <= 3:
        return _render(key, target) if target in _table(key) else None
    if (key, target) in memo:
        return memo[key, target]
    found = None
    for left, right in _splits(key):
        small, big = (left, right) if len(left) <= len(right) else (right, left)
        big_table = _table(big) if len(big) <= 3 else None
        for a in _table(small):
            for op, b, a_on_left in _partners(a, target):
                if big_table is None or b is _ANY or b is _ANY_NONZERO:
                    sub = _reach(big, b, memo)
                else:  # the common case, inlined: a dictionary lookup
                    sub = _render(big, b) if b in big_table else None
                if sub is not None:
                    mine = _render(small, a)
                    found = _join(op, mine, sub) if a_on_left else _join(op, sub, mine)
                    break
            if found:
                break
        if found:
            break
    memo[key, target] = found
    return found


def solve(numbers: Sequence[int], target: int | Fraction) -> str | None:
    """An expression that uses every number exactly once with + - * / and equals `target`
    exactly, or None when there is none. Numbers must be non-negative integers."""
    if not numbers:
        raise ValueError("solve needs at least one number")
    if any(type(x) is not int or x < 0 for x in numbers):
        raise ValueError(f"numbers must be non-negative integers, got {list(numbers)}")
    target = _div(target, 1)
    found = _reach(tuple(sorted(numbers)), target, {})
    return None if found is None else found[0]


# --- the task ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Ranges:
    min_numbers: int
    max_numbers: int
    min_number: int
    max_number: int
    min_target: int
    max_target: int

    @classmethod
    def from_params(cls, p: dict[str, Any]) -> _Ranges:
        preset = p["preset"]
        if preset not in PRESETS:
            raise ValueError(f"unknown countdown preset {preset!r}; valid: {', '.join(PRESETS)}")
        values = dict(PRESETS[preset])
        if p["num_numbers"] is not None:
            values["min_numbers"] = values["max_numbers"] = p["num_numbers"]
        values.update({k: p[k] for k in values if p.get(k) is not None})
        for name, v in values.items():
            if type(v) is not int:
                raise ValueError(f"countdown parameter {name} must be an integer, got {v!r}")
        r = cls(**values)
        if not 2 <= r.min_numbers <= r.max_numbers <= MAX_NUMBERS:
            raise ValueError(
                f"countdown needs 2 <= min_numbers <= max_numbers <= {MAX_NUMBERS}, "
                f"got {r.min_numbers}..{r.max_numbers}"
            )
        if not 0 <= r.min_number <= r.max_number < 10**MAX_DIGITS:
            raise ValueError(
                f"countdown needs 0 <= min_number <= max_number < 10**{MAX_DIGITS}, "
                f"got {r.min_number}..{r.max_number}"
            )
        if r.min_target > r.max_target:
            raise ValueError(
                f"countdown needs min_target <= max_target, got {r.min_target}..{r.max_target}"
            )
        return r


def _numbers_problem(literals: Sequence[int], numbers: Sequence[int]) -> str:
    """'' when `literals` is the multiset `numbers`, else what differs."""
    used, given = Counter(literals), Counter(numbers)
    problems = []
    for x in sorted(used - given):
        problems.append(
            f"uses {x} {used[x]} times, given {given[x]}" if x in given else f"uses {x}, not given"
        )
    problems += [f"does not use {x}" for x in sorted((given - used).elements())]
    return "; ".join(problems)


@lru_cache(maxsize=4096)
def _claim(expression: str) -> tuple[Fraction, tuple[int, ...]] | None:
    """(value, sorted literals) of an answer expression, None when it does not parse."""
    try:
        result = evaluate(expression)
    except ParseError:
        return None
    return result.value, tuple(sorted(result.literals))


@register
class Countdown(Task):
    name = "countdown"
    difficulty_key = "numbers"
    description = (
        "reach a target with + - * / using each given number exactly once (TinyZero, "
        "Cognitive Behaviors); exact rational checking by a safe parser"
    )
    answer_example = "(1 + 2) / 3"
    bounded_by_construction = True  # the safe parser over a capped answer
    params = (
        Param("preset", "tinyzero", f"defaults for the ranges below: {', '.join(PRESETS)}"),
        Param("num_numbers", None, f"numbers per problem (2-{MAX_NUMBERS}); sets min and max"),
        Param("min_numbers", None, "fewest numbers per problem (tinyzero 3, cognitive 2)"),
        Param("max_numbers", None, "most numbers per problem (tinyzero 4, cognitive 4)"),
        Param("min_number", None, "smallest number (tinyzero 1, cognitive 1)"),
        Param("max_number", None, "largest number (tinyzero 100, cognitive 24)"),
        Param("min_target", None, "smallest target (tinyzero 1, cognitive 10)"),
        Param("max_target", None, "largest target (tinyzero 100, cognitive 25)"),
    )

    def generate(self, n: int, seed: int = 0, **params: Any) -> list[Example]:
        """`n` distinct solvable problems; the same seed and params give the same list."""
        ranges = _Ranges.from_params(self.resolve_params(params))
        rng = random.Random(seed)
        targets = range(ranges.min_target, ranges.max_target + 1)
        examples: list[Example] = []
        seen: set[tuple[tuple[int, ...], int]] = set()
        max_draws = 10_000 + 100 * n
        for _ in range(max_draws):
            if len(examples) >= n:
                break
            count = rng.randint(ranges.min_numbers, ranges.max_numbers)
            numbers = [rng.randint(ranges.min_number, ranges.max_number) for _ in range(count)]
            # The first reachable target in a random order is uniform over the reachable ones.
            for target in rng.sample(targets, min(len(targets), TARGET_TRIES)):
                key = (tuple(sorted(numbers)), target)
                if key in seen or (solution := solve(numbers, target)) is None:
                    continue
                seen.add(key)
                meta = {"numbers": numbers, "target": target, "solution": solution}
                example = Example(f"countdown-{seed}-{len(examples)}", "", target, meta)
                example.prompt = self.question(example)
                examples.append(example)
                break
        if len(examples) < n:
            raise ValueError(
                f"countdown made only {len(examples)} of {n} distinct solvable problems from "
                f"{max_draws} draws of numbers with {ranges}; widen the ranges"
            )
        return examples

    def question(self, example: Example) -> str:
        numbers, target = example.meta["numbers"], example.meta["target"]
        return (
            f"Using the numbers {list(numbers)}, create an equation that equals {target}. "
            "You can use basic arithmetic operations (+, -, *, /) and each number can only be "
            "used once."
        )

    def key(self, example: Example) -> str:
        """The sorted numbers and the target: the same problem in any order of its numbers."""
        return json.dumps(
            [sorted(int(x) for x in example.meta["numbers"]), int(example.meta["target"])]
        )

    def ground_truth(self, example: Example) -> dict[str, Any]:
        """TinyZero's `{"target", "numbers"}`, so its countdown reward reads our parquet as is."""
        return {"target": example.meta["target"], "numbers": list(example.meta["numbers"])}

    def verify(self, text: str, example: Example) -> Verdict:
        """Check the final answer (last `<answer>`, else last `\\boxed{}`; see verify.tags).

        An optional final `= TARGET` is stripped ("(3 + 5) * 1 = 8"); any other '=' is refused.
        The expression must parse (verify.arith), use exactly the given numbers, each once, and
        equal the target exactly. `answer` is the expression with whitespace removed; `format_ok`
        means an answer was found and parsed.
        """
        found = final_answer(text)
        if found.text is None:
            return Verdict(False, None, False, found.detail)
        numbers, target = example.meta["numbers"], example.meta["target"]
        expression, equals, stated = found.text.partition("=")
        answer = "".join(expression.split())
        claim_problem = ""
        if equals:
            stated = stated.strip()
            if not (stated.isascii() and stated.isdigit() and len(stated) <= MAX_DIGITS):
                return Verdict(False, answer, False, "'=' is allowed only as a final '= TARGET'")
            if int(stated) != target:
                claim_problem = f"states = {stated}, but the target is {target}"
        try:
            result = evaluate(expression)
        except ParseError as err:
            return Verdict(False, answer, False, str(err))
        problem = _numbers_problem(result.literals, numbers)
        if result.value != target:
            problem = "; ".join(filter(None, [problem, f"equals {result.value}, not {target}"]))
        problem = "; ".join(filter(None, [problem, claim_problem]))
        return Verdict(not problem, answer, True, problem or "ok")

    def equivalent(self, a: str, b: str, example: Example) -> bool:
        """Same answer for maj@k: both expressions use the same numbers and have the same exact
        value (so every correct answer is one group); otherwise string equality."""
        ca, cb = _claim(a), _claim(b)
        if ca is None or cb is None:
            return a == b
        return ca == cb
