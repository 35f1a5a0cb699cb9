"""The Task contract: how to get examples, render a prompt and verify a completion."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from reasonlab.records import Example, Message, Verdict
from reasonlab.tasks import templates
from reasonlab.verify import bounded

DEFAULT_VERIFY_TIMEOUT = 10.0
"""Seconds one `verify` may take inside `verify_batch` before it counts as wrong."""


def verify_all(
    task: Any, texts: Sequence[str], examples: Sequence[Example], workers: int | None = None
) -> list[Verdict]:
    """One verdict per (text, example) pair: the task's batch verifier when it has one (bounded,
    in worker processes), else `task.verify` in a loop."""
    if len(texts) != len(examples):
        raise ValueError(f"{len(texts)} completions but {len(examples)} examples")
    batch = getattr(task, "verify_batch", None)
    if callable(batch):
        return list(batch(list(texts), list(examples), workers=workers))
    return [task.verify(text, ex) for text, ex in zip(texts, examples)]


def normalize_text(text: str) -> str:
    """Whitespace collapsed and case folded: the default problem key (`Task.key`)."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class Param:
    """A generator parameter, for `reasonlab tasks` and validation."""

    name: str
    default: Any
    help: str


class Task(ABC):
    """A family of problems whose answers a program can check.

    Subclasses set `name`, `description`, `answer_example` (shown in the prompt's format hint) and
    implement `question` and `verify`; generator tasks implement `generate`, file-backed ones `load`.
    `verify` must never raise on model text and must be bounded in time and memory.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    answer_example: ClassVar[str] = "..."
    params: ClassVar[tuple[Param, ...]] = ()
    """Generator parameters (with defaults) accepted by `generate`."""
    splits: ClassVar[tuple[str, ...]] = ()
    """Named shipped datasets accepted by `load` (empty for pure generators)."""
    difficulty_key: ClassVar[str | None] = None
    """The `Example.meta` key that measures a problem's difficulty (a list value: its length), for
    accuracy by difficulty during training and evaluation; None when the task has none."""
    bounded_by_construction: ClassVar[bool] = False
    """`verify` is fast and bounded without a worker (a safe parser over capped input, no sympy):
    `verify_batch` then runs in this process, which is faster than shipping the work out."""
    ability: ClassVar[str] = "math"
    """The `ability` column of veRL/TinyZero parquet data ('math', 'logic')."""

    def generate(self, n: int, seed: int = 0, **params: Any) -> list[Example]:
        raise NotImplementedError(
            f"task {self.name!r} has no generator; load one of its splits: {', '.join(self.splits)}"
        )

    def load(self, path_or_split: str | None = None, limit: int | None = None) -> list[Example]:
        raise NotImplementedError(f"task {self.name!r} has no shipped data; use generate()")

    @abstractmethod
    def question(self, example: Example) -> str:
        """The problem statement put to the model (without format instructions)."""

    @abstractmethod
    def verify(self, text: str, example: Example) -> Verdict:
        """Check one completion. Never raises on model text."""

    def verify_batch(
        self,
        texts: Sequence[str],
        examples: Sequence[Example],
        workers: int | None = None,
        timeout: float = DEFAULT_VERIFY_TIMEOUT,
    ) -> list[Verdict]:
        """`[self.verify(t, e) for t, e in zip(texts, examples)]`, each bounded by `timeout` seconds
        in a worker process (a pool of `workers`, all cores by default; the task and examples are
        pickled to it). A check that times out or fails is wrong, with detail `timeout` or
        `error: ...`. Tasks with `bounded_by_construction` run in this process instead."""
        if len(texts) != len(examples):
            raise ValueError(f"{len(texts)} completions but {len(examples)} examples")
        if self.bounded_by_construction:
            return [self.verify(text, ex) for text, ex in zip(texts, examples)]
        outcomes = bounded.run_many(
            self.verify, list(zip(texts, examples)), timeout=timeout, workers=workers
        )
        return [
            out.value
            if out.ok
            else Verdict(False, detail="timeout" if out.status == bounded.TIMEOUT else out.detail)
            for out in outcomes
        ]

    def key(self, example: Example) -> str:
        """The problem's canonical identity: two examples with the same key are the same problem,
        however their text is ordered, worded or named. Every split and exclusion (held-out sets,
        the training stream, pretraining corpora, benchmarks) compares keys, never ids or prompt
        text. Default: the question with whitespace collapsed and case folded; tasks with
        structure override it (countdown: sorted numbers and target; knights_knaves: the puzzle up
        to names and order of people; arithmetic: the expression up to commutativity)."""
        return normalize_text(self.question(example))

    def extract(self, text: str, example: Example) -> str | None:
        """The answer a completion gives, normalised so that equal strings mean equal answers
        (for majority voting); by default what `verify` extracts."""
        return self.verify(text, example).answer

    def equivalent(self, a: str, b: str, example: Example) -> bool:
        """Whether two extracted answers are the same answer (for maj@k grouping)."""
        return a == b

    def render(self, example: Example, template: str = "r1-zero", tokenizer: Any = None) -> str:
        return templates.render(self.question(example), self.answer_example, template, tokenizer)

    def messages(self, example: Example, template: str = "qwen-instruct") -> list[Message]:
        return templates.messages(self.question(example), self.answer_example, template)

    def example_from_columns(self, index: int, columns: dict[str, Any]) -> Example:
        """Rebuild the i-th Example from TRL-style dataset columns (see `rewards.from_task`).

        Accepts an `example` column of Example objects or dicts, else the columns of
        `Example.to_dict()` (id, answer, meta), else `answer` plus any other columns as meta.
        """
        if "example" in columns:
            ex = columns["example"][index]
            return ex if isinstance(ex, Example) else Example.from_dict(ex)
        if "answer" not in columns:
            raise KeyError(
                f"task {self.name!r} needs an 'answer' (or 'example') column to verify; "
                f"got columns: {', '.join(sorted(columns)) or 'none'}"
            )
        meta_col = columns.get("meta")
        meta = dict(meta_col[index]) if meta_col is not None else {}
        for key, col in columns.items():
            if key not in ("id", "answer", "meta", "prompt", "prompts", "completion_ids"):
                try:
                    meta.setdefault(key, col[index])
                except (TypeError, IndexError, KeyError):
                    pass
        ids = columns.get("id")
        prompts = columns.get("prompt") or columns.get("prompts")
        return Example(
            id=str(ids[index]) if ids is not None else str(index),
            prompt=prompts[index] if prompts is not None else "",
            answer=columns["answer"][index],
            meta=meta,
        )

    def ground_truth(self, example: Example) -> Any:
        """What a veRL/TinyZero rule reward receives as `reward_model.ground_truth`."""
        return example.answer

    def resolve_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """`params` over the declared defaults; an undeclared name is a ValueError listing the
        valid ones."""
        valid = {p.name: p.default for p in self.params}
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(
                f"task {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid parameters: {', '.join(valid) or 'none'}"
            )
        return {**valid, **params}

    def describe(self) -> str:
        lines = [f"{self.name}: {self.description}"]
        for p in self.params:
            lines.append(f"    {p.name} (default {p.default!r}): {p.help}")
        if self.splits:
            lines.append(f"    splits: {', '.join(self.splits)}")
        return "\n".join(lines)
