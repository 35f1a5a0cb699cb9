"""Reasoning behaviours counted in text.

`REFLECTION_WORDS` are the words whose frequency the DeepSeek-R1 paper tracks across RL steps to
show the "aha moment" (DeepSeek-AI 2025, Fig. on reflective words): wait, mistake, however, but,
retry, error, verify, wrong, evaluate, check.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

from reasonlab.io import read_jsonl

REFLECTION_WORDS = (
    "wait",
    "mistake",
    "however",
    "but",
    "retry",
    "error",
    "verify",
    "wrong",
    "evaluate",
    "check",
)
_WORD = re.compile(r"[a-z]+")


def count_words(text: str, words: Iterable[str] = REFLECTION_WORDS) -> Counter[str]:
    """How often each word occurs in `text` as a whole word, case-insensitive."""
    wanted = set(words)
    return Counter(w for w in _WORD.findall(text.lower()) if w in wanted)


def reflection_per_step(
    rollouts_path: str | Path, words: Iterable[str] = REFLECTION_WORDS
) -> dict[int, dict[str, float]]:
    """Per RL step, the mean count per completion of each reflection word (and their `total`).

    Reads a run's rollouts.jsonl (rows with `step` and `completion`).
    """
    words = tuple(words)
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    n_rows: Counter[int] = Counter()
    for row in read_jsonl(rollouts_path, ("step",), drop_partial_last_line=True):
        step = int(row["step"])
        counts[step].update(count_words(row.get("completion", ""), words))
        n_rows[step] += 1
    out: dict[int, dict[str, float]] = {}
    for step in sorted(n_rows):
        per = {w: counts[step][w] / n_rows[step] for w in words}
        per["total"] = sum(per.values())
        out[step] = per
    return out
