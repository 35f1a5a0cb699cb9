"""A check of a benchmark's checker on real data: its own reference solutions, read as if a model
had written them, must be (close to) all correct, and (close to) all wrong against shuffled golds.

    check = check_references(task, examples)
    check.own_accuracy, check.shuffled_accuracy, check.failures, check.shuffled_hits

- The reference output of an example is its dataset's worked solution (`meta["solution"]`: MATH and
  AIME solutions end in a `\\boxed{}`, GSM8K's in "#### N"); a dataset with no solutions (AMC 2023)
  gets `\\boxed{gold}` so that at least the reading of its gold answers is exercised.
- Shuffled: solution i is checked against the gold of example pi(i), pi a derangement drawn with a
  fixed seed (one random cycle through all examples, so no solution meets its own gold). A hit there
  is a false positive of the checker unless the two golds are the same answer (GSM8K has many small
  integers); `same_gold` tells which, by checking `\\boxed{gold i}` against example pi(i).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass

from reasonlab.records import Example, Verdict
from reasonlab.tasks.base import Task, verify_all


def reference_output(example: Example) -> str:
    """The example's reference solution as a model output (see the module docstring)."""
    solution = example.meta.get("solution")
    if isinstance(solution, str) and solution.strip():
        return solution
    return f"The answer is $\\boxed{{{example.answer}}}$."


def derangement(n: int, seed: int = 0) -> list[int]:
    """A permutation with no fixed point (for n >= 2): one random cycle through 0..n-1."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    target = [0] * n
    for k, i in enumerate(order):
        target[i] = order[(k + 1) % n]
    return target


@dataclass
class ReferenceCheck:
    examples: list[Example]
    own: list[Verdict]
    """Verdict of each reference solution against its own gold."""
    partner: list[int]
    """pi(i): whose gold solution i is checked against in the shuffled check."""
    shuffled: list[Verdict]
    same_gold: list[bool]
    """Whether gold i and gold pi(i) are the same answer (a hit there is no false positive)."""

    @property
    def own_accuracy(self) -> float:
        return sum(v.correct for v in self.own) / len(self.own)

    @property
    def shuffled_accuracy(self) -> float:
        return sum(v.correct for v in self.shuffled) / len(self.shuffled)

    @property
    def failures(self) -> list[tuple[Example, Verdict]]:
        """Reference solutions judged wrong against their own gold."""
        return [(e, v) for e, v in zip(self.examples, self.own) if not v.correct]

    @property
    def shuffled_hits(self) -> list[tuple[Example, Example, bool]]:
        """(example, the one whose gold it matched, whether their golds are the same answer)."""
        return [
            (self.examples[i], self.examples[self.partner[i]], self.same_gold[i])
            for i, v in enumerate(self.shuffled)
            if v.correct
        ]


def check_references(task: Task, examples: Sequence[Example], seed: int = 0) -> ReferenceCheck:
    """Verify every reference solution against its own gold and against a shuffled gold."""
    examples = list(examples)
    if len(examples) < 2:
        raise ValueError("check_references needs at least two examples")
    texts = [reference_output(e) for e in examples]
    own = verify_all(task, texts, examples)
    partner = derangement(len(examples), seed)
    # the partner's gold, read with this example's own extractors (GSM8K's "#### N" fallback)
    others = [dataclasses.replace(e, answer=examples[j].answer) for e, j in zip(examples, partner)]
    shuffled = verify_all(task, texts, others)
    gold_texts = [f"\\boxed{{{e.answer}}}" for e in examples]
    same = verify_all(task, gold_texts, others)
    return ReferenceCheck(examples, own, partner, shuffled, [v.correct for v in same])
