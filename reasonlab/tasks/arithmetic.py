"""Arithmetic: small integer expressions such as `12 + 7 * 3`, sized for tiny models.

The warm-up task for models this project trains from scratch on a laptop: short `a op b op c`
problems with + - * under the usual precedence, whose answer is one integer. The generator draws
the operand count, operands and operators uniformly from the params and keeps distinct expressions;
the answer is computed by the same safe parser that checks Countdown answers (verify.arith).

Verification, R1-style: the final answer (last `<answer>`, else last `\\boxed{}`; see verify.tags)
must be exactly one integer (optional sign, ASCII digits, at most `MAX_ANSWER_DIGITS`); it is not
searched for elsewhere in the text. Equal integers are equal answers.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from reasonlab.records import Example, Verdict
from reasonlab.tasks import register
from reasonlab.tasks.base import Param, Task
from reasonlab.verify.arith import MAX_DIGITS, evaluate
from reasonlab.verify.tags import final_answer

OPS = "+-*"
MAX_OPERANDS = 4
MAX_ANSWER_DIGITS = 50
_INTEGER = re.compile(rf"[+-]?[0-9]{{1,{MAX_ANSWER_DIGITS}}}")


def parse_integer(text: str) -> int | None:
    """`text` as an integer when it is exactly one (surrounding spaces aside), else None.

    Bounded: only strings of at most MAX_ANSWER_DIGITS digits reach `int()`."""
    text = text.strip()
    if len(text) > MAX_ANSWER_DIGITS + 1 or not _INTEGER.fullmatch(text):
        return None
    return int(text)


def _check(params: dict[str, Any]) -> tuple[int, int, int, int, str]:
    """(min_operands, max_operands, min_value, max_value, ops), validated."""
    if params["num_operands"] is not None:
        params = {
            **params,
            "min_operands": params["num_operands"],
            "max_operands": params["num_operands"],
        }
    ints = [params[k] for k in ("min_operands", "max_operands", "min_value", "max_value")]
    for name, v in zip(("min_operands", "max_operands", "min_value", "max_value"), ints):
        if type(v) is not int:
            raise ValueError(f"arithmetic parameter {name} must be an integer, got {v!r}")
    lo_n, hi_n, lo, hi = ints
    ops = params["ops"]
    if not 2 <= lo_n <= hi_n <= MAX_OPERANDS:
        raise ValueError(
            f"arithmetic needs 2 <= min_operands <= max_operands <= {MAX_OPERANDS}, got {lo_n}..{hi_n}"
        )
    if not 0 <= lo <= hi < 10**MAX_DIGITS:
        raise ValueError(
            f"arithmetic needs 0 <= min_value <= max_value < 10**{MAX_DIGITS}, got {lo}..{hi}"
        )
    if not isinstance(ops, str) or not ops or set(ops) - set(OPS):
        raise ValueError(f"arithmetic ops must be a non-empty string of {OPS!r}, got {ops!r}")
    return lo_n, hi_n, lo, hi, "".join(sorted(set(ops), key=OPS.index))


@register
class Arithmetic(Task):
    name = "arithmetic"
    difficulty_key = "operands"
    description = "integer expressions like '12 + 7 * 3' for tiny models; the answer is one integer"
    answer_example = "42"
    bounded_by_construction = True  # one integer regex over a capped answer
    params = (
        Param("num_operands", None, f"operands per problem (2-{MAX_OPERANDS}); sets min and max"),
        Param("min_operands", 2, "fewest operands per problem"),
        Param("max_operands", 3, f"most operands per problem (at most {MAX_OPERANDS})"),
        Param("min_value", 0, "smallest operand"),
        Param("max_value", 50, "largest operand"),
        Param("ops", OPS, "operators to draw from, a string over '+-*'"),
    )

    def generate(self, n: int, seed: int = 0, **params: Any) -> list[Example]:
        """`n` distinct expressions; the same seed and params give the same list."""
        lo_n, hi_n, lo, hi, ops = _check(self.resolve_params(params))
        rng = random.Random(seed)
        examples: list[Example] = []
        seen: set[str] = set()
        max_draws = 10_000 + 100 * n
        for _ in range(max_draws):
            if len(examples) >= n:
                break
            operands = [rng.randint(lo, hi) for _ in range(rng.randint(lo_n, hi_n))]
            chosen = [rng.choice(ops) for _ in operands[1:]]
            expression = str(operands[0]) + "".join(
                f" {op} {x}" for op, x in zip(chosen, operands[1:])
            )
            if expression in seen:
                continue
            seen.add(expression)
            answer = int(evaluate(expression).value)  # + - * of integers: always whole
            meta = {"operands": operands, "ops": chosen, "expression": expression}
            example = Example(f"arithmetic-{seed}-{len(examples)}", "", answer, meta)
            example.prompt = self.question(example)
            examples.append(example)
        if len(examples) < n:
            raise ValueError(
                f"arithmetic made only {len(examples)} of {n} distinct problems in {max_draws} "
                "draws; widen the ranges"
            )
        return examples

    def question(self, example: Example) -> str:
        return f"Compute {example.meta['expression']}."

    def key(self, example: Example) -> str:
        """The expression up to commutativity: a sum of signed products, factors and terms sorted
        (`7 * 3 + 12` and `12 + 3 * 7` are one problem)."""
        operands, ops = example.meta["operands"], example.meta["ops"]
        terms: list[tuple[str, list[int]]] = [("+", [int(operands[0])])]
        for op, x in zip(ops, operands[1:]):
            if op == "*":
                terms[-1][1].append(int(x))
            else:
                terms.append((op, [int(x)]))
        return json.dumps(sorted((sign, sorted(factors)) for sign, factors in terms))

    def verify(self, text: str, example: Example) -> Verdict:
        """Correct when the final answer is exactly the integer `example.answer`; `answer` is the
        integer written canonically (no sign for positives, no leading zeros)."""
        found = final_answer(text)
        if found.text is None:
            return Verdict(False, None, False, found.detail)
        value = parse_integer(found.text)
        if value is None:
            shown = found.text if len(found.text) <= 40 else found.text[:37] + "..."
            return Verdict(False, None, False, f"the {found.source} {shown!r} is not one integer")
        gold = int(example.answer)
        detail = "ok" if value == gold else f"{value}, not {gold}"
        return Verdict(value == gold, str(value), True, detail)
