"""Competition math with a final answer checked by math-verify: MATH, MATH-500, GSM8K, AIME, AMC.

The datasets of SimpleRL-Zoo (Zeng et al., 2025) and of the R1 reports, shipped in
`reasonlab/data/benchmarks/` (see PROVENANCE.md):

| split | rows | gold answer |
|---|---|---|
| `math_train` | 7,500 | last `\\boxed{}` of the solution (Hendrycks et al., 2021) |
| `math500` | 500 | `answer` field (Lightman et al., 2023) |
| `gsm8k_train`, `gsm8k_test` | 7,473, 1,319 | the number after `####` (Cobbe et al., 2021) |
| `aime24` | 30 | `answer` field |
| `amc23` | 40 | `answer` field (a float: `27.0` -> `27`) |

`load(path)` also reads any JSONL file with a `problem` (or `question`) field and an `answer`
(text, number, or GSM8K `#### N` text) or `solution` (with a `\\boxed{}`) field.

Verification (`reasonlab.verify.math`): the answer is extracted from the completion by the
example's extractors in order (`meta["extractors"]`, default: `<answer>` tag, last `\\boxed{}`,
"the answer is"; GSM8K examples add its `#### N` line and the last number, as
lm-evaluation-harness's GSM8K filters do),
then compared with the gold by math-verify, gold first, in a bounded worker (timeout `timeout`
seconds), the answer parsed as open-r1's and TRL's `accuracy_reward` parse a completion but with
math-verify's default LaTeX normalization (`\\frac12` is a half). `format_ok` means the answer
came from a tag or a box, the forms the templates ask for.

One task, not one per dataset: the checker is the same, and what differs by dataset (GSM8K's
last-number fallback) is written into each example when it is loaded, so no code downstream
needs to know which dataset an example came from. (`ERRATA` fills the gold of two MATH train
rows whose solutions end in an empty box.)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from reasonlab.io import DataError, enumerate_jsonl
from reasonlab.records import Example, Message, Verdict
from reasonlab.tasks import register
from reasonlab.tasks.base import Task
from reasonlab.verify import math as mathv

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "benchmarks"


@dataclass(frozen=True)
class Split:
    file: str
    about: str


SPLITS: dict[str, Split] = {
    "math_train": Split("math_train_hendrycks.jsonl", "MATH train (7,500; SimpleRL's RL prompts)"),
    "math500": Split("math500_test.jsonl", "MATH-500 test subset (500)"),
    "gsm8k_train": Split("gsm8k_train_openai.jsonl", "GSM8K train (7,473)"),
    "gsm8k_test": Split("gsm8k_test_openai.jsonl", "GSM8K test (1,319)"),
    "aime24": Split("aime24_test.jsonl", "AIME 2024 (30)"),
    "amc23": Split("amc23_test.jsonl", "AMC 2023 (40)"),
}
ERRATA: dict[str, str] = {
    # MATH train rows whose solution ends in an empty `\boxed{}`; both conclude that no term is
    # prime, choice (A) 0.
    "train/number_theory/7115.json": "0",
    "train/number_theory/7117.json": "0",
}
"""Gold answers for rows of the shipped data that lack one, by `unique_id`."""


@register
class MathTask(Task):
    name = "math"
    difficulty_key = "level"
    description = (
        "competition math (MATH, MATH-500, GSM8K, AIME 2024, AMC 2023); "
        "the final answer is checked by math-verify"
    )
    answer_example = "\\frac{1}{2}"
    splits = tuple(SPLITS)
    default_split = "math_train"

    def __init__(self, timeout: float = mathv.DEFAULT_TIMEOUT):
        self.timeout = timeout  # seconds for one answer check; past it: wrong, detail `timeout`

    # -- data ----------------------------------------------------------------------------------

    def load(self, path_or_split: str | None = None, limit: int | None = None) -> list[Example]:
        """A shipped split by name (`math_train` when None) or a JSONL file by path."""
        name = path_or_split or self.default_split
        if name in SPLITS:
            return read_examples(DATA_DIR / SPLITS[name].file, source=name, limit=limit)
        path = Path(name)
        if not path.is_file():
            raise FileNotFoundError(
                f"task 'math': {name!r} is neither a split nor a file; splits: {', '.join(SPLITS)}"
            )
        return read_examples(path, source=path.stem, limit=limit)

    def question(self, example: Example) -> str:
        if isinstance(example.prompt, str):
            return example.prompt
        users = [m["content"] for m in example.prompt if m.get("role") == "user"]
        return users[-1] if users else ""

    def render(self, example: Example, template: str = "boxed", tokenizer: Any = None) -> str:
        return super().render(example, template, tokenizer)

    def messages(self, example: Example, template: str = "boxed") -> list[Message]:
        return super().messages(example, template)

    # -- checking ------------------------------------------------------------------------------

    def verify(self, text: str, example: Example) -> Verdict:
        return self.verify_batch([text], [example])[0]

    def verify_batch(
        self,
        texts: Sequence[str],
        examples: Sequence[Example],
        workers: int | None = None,
        timeout: float | None = None,
    ) -> list[Verdict]:
        """`[self.verify(t, e) ...]`: answers are extracted here, and the distinct (gold, answer)
        pairs are checked by math-verify on a pool of `workers` processes (all cores)."""
        if len(texts) != len(examples):
            raise ValueError(f"{len(texts)} completions but {len(examples)} examples")
        found = [mathv.extract(text, _extractors(ex)) for text, ex in zip(texts, examples)]
        asked = [i for i, (answer, _) in enumerate(found) if answer is not None]
        checks = mathv.check_many(
            [(self.gold(examples[i]), found[i][0]) for i in asked],
            timeout=self.timeout if timeout is None else timeout,
            workers=workers,
        )
        verdicts = [
            Verdict(False, None, False, f"no answer found ({', '.join(_extractors(ex))})")
            for ex in examples
        ]
        for i, check in zip(asked, checks):
            answer, how = found[i]
            verdicts[i] = Verdict(check.equal, answer, how in mathv.FORMAT_EXTRACTORS, check.detail)
        return verdicts

    def gold(self, example: Example) -> str:
        """The example's gold answer as math-verify's input (raises for an example without one)."""
        if example.answer is None or example.answer == "":
            raise ValueError(f"example {example.id!r} has no gold answer")
        return mathv.gold_from_value(example.answer)

    def extract(self, text: str, example: Example) -> str | None:
        return mathv.extract(text, _extractors(example))[0]

    def equivalent(self, a: str, b: str, example: Example) -> bool:
        """Same answer by math-verify (`a` read as the gold), bounded by `timeout`."""
        return a == b or mathv.check(a, b, timeout=self.timeout).equal


def _extractors(example: Example) -> tuple[str, ...]:
    return tuple(example.meta.get("extractors") or mathv.DEFAULT_EXTRACTORS)


# --------------------------------------------------------------------------------------------
# Reading files


def read_examples(path: Path, source: str, limit: int | None = None) -> list[Example]:
    """The first `limit` (all when None) examples of a JSONL file; a malformed row raises
    `DataError` naming file:line and field."""
    with closing(enumerate_jsonl(path)) as rows:
        return [
            example_from_row(row, f"{path}:{lineno}", source, index=i)
            for i, (lineno, row) in enumerate(islice(rows, limit))
        ]


def example_from_row(row: dict[str, Any], where: str, source: str, index: int) -> Example:
    """One Example from a dataset row (see the module doc for the fields read)."""
    field = "problem" if "problem" in row else "question"
    problem = row.get(field)
    if not isinstance(problem, str) or not problem.strip():
        raise DataError(f"{where}: field {field!r} (the problem text) is missing or empty")
    meta: dict[str, Any] = {"source": source}
    answer = row.get("answer")
    solution = row.get("solution")
    if isinstance(answer, str) and "####" in answer:  # GSM8K: worked solution, then "#### N"
        gold = mathv.gold_from_gsm8k(answer)
        solution = answer
        meta["extractors"] = list(mathv.GSM8K_EXTRACTORS)
        if not gold:
            raise DataError(f"{where}: field 'answer' has no number after '####'")
    elif answer is not None:
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
            raise DataError(f"{where}: field 'answer' must be text or a number, got {answer!r:.60}")
        gold = mathv.gold_from_value(answer)
        if not gold:
            raise DataError(f"{where}: field 'answer' is empty")
    elif isinstance(solution, str):
        gold = mathv.gold_from_solution(solution) or ERRATA.get(row.get("unique_id", ""))
        if not gold:
            raise DataError(f"{where}: field 'solution' has no \\boxed{{...}} answer")
    else:
        raise DataError(
            f"{where}: no gold answer: needs field 'answer', or 'solution' with a \\boxed{{...}}"
        )
    if isinstance(solution, str):
        meta["solution"] = solution
    level = _level(row.get("level"))
    if level is not None:
        meta["level"] = level
    for key, to in (("subject", "subject"), ("type", "subject"), ("unique_id", "unique_id")):
        if isinstance(row.get(key), str):
            meta.setdefault(to, row[key])
    for key, to in (("id", "problem_id"), ("url", "url")):
        if row.get(key) is not None:
            meta[to] = row[key]
    return Example(id=f"math/{source}/{index}", prompt=problem, answer=gold, meta=meta)


def _level(value: Any) -> int | None:
    """MATH difficulty: 'Level 5' or '5' -> 5 ('Level ?' and anything else -> None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        digits = value.removeprefix("Level").strip()
        if digits.isdigit():
            return int(digits)
    return None
