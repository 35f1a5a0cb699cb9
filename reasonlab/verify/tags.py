"""Finding the final answer in a completion, bounded in time and memory.

The rule the tasks share: the content of the LAST `<answer>...</answer>` pair (the R1-Zero template,
as TinyZero and Logic-RL read it), else the content of the LAST `\\boxed{...}` (the Qwen2.5-Math /
SimpleRL convention, so a task rendered with the `boxed` template can be checked too).

The box is found once for every task (`last_box`, also behind `reasonlab.verify.math`'s
extractors): the last `\\boxed{...}` or `\\fbox{...}` (or `\\boxed 5`), its braces matched as
Hendrycks MATH's `last_boxed_only_string` matches them, with escaped braces (`\\{`) skipped.

Cost: two `str.rfind` scans of the text (linear, in C: about a millisecond for a megabyte) and one
forward brace match over at most `max_chars` characters, refusing nesting deeper than
`MAX_BRACE_DEPTH`. An answer longer than `max_chars` is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_ANSWER_CHARS = 2000
"""Longest answer accepted, in characters (an 8-person Knights & Knaves answer is ~200)."""
MAX_BRACE_DEPTH = 64
"""Deeper `{` nesting in a box is refused rather than scanned."""

OPEN, CLOSE, BOXED, FBOX = "<answer>", "</answer>", "\\boxed", "\\fbox"


@dataclass(frozen=True)
class FinalAnswer:
    text: str | None
    """The answer's content, stripped; None when there is none (see `detail`)."""
    source: str = ""
    """Where it was found: 'answer tag' or 'boxed'."""
    detail: str = ""
    """Why there is no answer, when `text` is None."""


def last_answer_tag(text: str) -> tuple[int, int] | None:
    """The (start, end) of the content of the last complete `<answer>...</answer>` pair."""
    end = text.rfind(CLOSE)
    if end < 0:
        return None
    start = text.rfind(OPEN, 0, end)
    return None if start < 0 else (start + len(OPEN), end)


def braced(text: str, start: int, max_chars: int | None = None) -> str | None:
    """The text inside the braces opening at `text[start]`, or None: unbalanced, nested deeper
    than `MAX_BRACE_DEPTH`, or not closed within `max_chars` characters (None: no limit).

    One forward scan; a backslash escapes the next character, so `\\{` and `\\}` do not count.
    """
    depth = 0
    i = start
    n = len(text) if max_chars is None else min(len(text), start + max_chars + 2)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
            if depth > MAX_BRACE_DEPTH:
                return None
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
        i += 1
    return None


_BARE_BOX_END = re.compile(r"[$\s]")


def last_box(text: str, max_chars: int | None = None) -> str | None:
    """The raw content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`, up to the next
    space or `$`), else None; a box whose braces do not close within `max_chars` is None."""
    start = max(text.rfind(BOXED), text.rfind(FBOX))
    if start < 0:
        return None
    i = start + (len(BOXED) if text.startswith(BOXED, start) else len(FBOX))
    if text.startswith(" ", i) and not text[i:].lstrip(" ").startswith("{"):  # "\boxed 5$"
        return _BARE_BOX_END.split(text[i:].lstrip(" "), maxsplit=1)[0]
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    return braced(text, i, max_chars)


def final_answer(text: str, max_chars: int = MAX_ANSWER_CHARS) -> FinalAnswer:
    """The completion's final answer: the last `<answer>` tag's content, else the last box's."""
    if not isinstance(text, str):
        return FinalAnswer(None, detail=f"completion is a {type(text).__name__}, not text")
    span = last_answer_tag(text)
    if span is not None:
        content, source = text[span[0] : span[1]], "answer tag"
    else:
        content, source = last_box(text, max_chars), "boxed"
    if content is None:
        return FinalAnswer(None, detail="no <answer> tag or \\boxed{}")
    if len(content) > max_chars:
        return FinalAnswer(
            None,
            source,
            f"the {source} is {len(content)} characters, over the limit of {max_chars}",
        )
    return FinalAnswer(content.strip(), source)
