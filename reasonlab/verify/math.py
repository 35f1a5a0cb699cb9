"""Math answers: extraction from model text and gold solutions, equivalence by math-verify, bounded.

Extraction uses named extractors, as lm-evaluation-harness filters do; a task lists which to try,
in order (`extract(text, names)`):

- `answer_tag`: the last `<answer>...</answer>` (R1-Zero / TinyZero format); a `\\boxed{}` inside
  it is unwrapped.
- `boxed`: the content of the last `\\boxed{...}` or `\\fbox{...}` (Hendrycks MATH
  `last_boxed_only_string`, with escaped braces skipped; `reasonlab.verify.tags.last_box`, the box
  finder every task shares), found as math-verify finds it: from the first `\\boxed{` to the last
  `}` (`boxed_answer`).
- `answer_is`: "the answer is X" / "final answer: X" (Minerva, lm-eval `minerva_math`).
- `gsm8k_marker`: the number after the last `####` (GSM8K's format, lm-eval `strict-match`).
- `last_number`: the last number in the text, thousands separators removed (GSM8K,
  lm-eval `flexible-extract`).

Every extractor looks only at the last `TAIL_CHARS` characters, scans them once, refuses brace
nesting deeper than `tags.MAX_BRACE_DEPTH`, and drops answers longer than `MAX_ANSWER_CHARS`: the cost
of extraction is bounded whatever the model wrote.

Gold answers come from a solution's last `\\boxed{}` (MATH), a GSM8K `#### N` line, or a plain
answer field (AMC's `27.0` becomes `27`): `gold_from_solution`, `gold_from_gsm8k`,
`gold_from_value`.

Equivalence is math-verify's (huggingface/Math-Verify), GOLD FIRST (math-verify is not
symmetric: an assignment `x = 3` in the prediction is reduced to its value, intervals and
equations are read from the gold's side). The answer is read the way open-r1's and TRL's
`accuracy_reward` read a completion (LaTeX only, `\\boxed{}` first, no match without an anchor,
the first match only), with math-verify's default LaTeX normalization, which repairs `\\frac12`
and `\\sqrt2` (theirs turn that repair off, so `\\frac12` is not a half there):

    verify(parse("\\boxed{gold}"),
           parse("\\boxed{answer}", [LatexExtractionConfig(boxed_match_priority=0,
                 try_extract_without_anchor=False)], extraction_mode="first_match"))

Its signal-based timeouts are switched off (they only work in the main thread) and the whole
parse + verify runs in a `reasonlab.verify.bounded` worker instead, under a per-call timeout and a
memory limit. `benchmarks/verify_throughput.py` compares the verdicts with that `parse` +
`verify` on whole completions: they differ only where the answer is read from another place
(`<answer>` tags, several boxes), never for the same answer.

Speed, without changing any verdict (each shortcut says why in its docstring and is compared with
math-verify in tests/test_math_verify.py; the benchmark checks identity on 10,000 completions):
- `check_many` decides each distinct (gold, answer) pair once, and keeps settled verdicts across
  calls (`VERDICT_CACHE`);
- two plain integers are compared without math-verify (`fast_verdict`);
- in a worker, an answer whose normalized string equals the gold's is equal without parsing
  (`same_normalized_string`: math-verify's own string comparison), parses and normalizations are
  cached, a gold's pairs are sent together (sorted, in consecutive chunks), latex2sympy parses
  faster, to the same result (`use_fast_latex_parsing`: ANTLR's two-stage SLL/LL parsing, number
  literals built directly), and an equation is solved by sympy once, not once per answer
  (`use_solve_cache`: the `\\tan \\theta = 2\\theta` of MATH takes sympy 1.4 s to give up on);
  golds that are relations go out first (`_schedule_key`), so that a slow one does not hold up
  the end of a batch;
- a worker checks one pair of each kind when it starts (`WARM_UP_PAIRS`), so that loading code and
  filling parser tables is not paid inside the first batch.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, NamedTuple

from reasonlab.verify import bounded
from reasonlab.verify.tags import last_answer_tag, last_box

TAIL_CHARS = 8192
"""Extractors read only this many characters at the end of a completion."""
MAX_ANSWER_CHARS = 512
"""An extracted answer longer than this is dropped (no competition answer is near it)."""
DEFAULT_TIMEOUT = 5.0
"""Seconds for one parse + verify (math-verify's own defaults are 5 s per step)."""
CACHE_SIZE = 65536
"""(gold, answer) verdicts kept across batches (`VERDICT_CACHE`)."""

DEFAULT_EXTRACTORS = ("answer_tag", "boxed", "answer_is")
"""What a math completion is searched for, in order."""
GSM8K_EXTRACTORS = ("answer_tag", "boxed", "gsm8k_marker", "answer_is", "last_number")
"""The same for GSM8K, whose reference solutions end in `#### N` (lm-eval's GSM8K filters)."""
FORMAT_EXTRACTORS = frozenset({"answer_tag", "boxed"})
"""Extractors that find the answer in a form the prompts ask for (tags or a box)."""


# --------------------------------------------------------------------------------------------
# Extraction (pure, bounded by construction)


def _tail(text: str, tail: int | None) -> str:
    return text if tail is None or len(text) <= tail else text[-tail:]


def _clean(answer: str | None) -> str | None:
    """Strip what surrounds an answer but is not part of it: spaces, `$`, `\\(`, a final period."""
    if answer is None:
        return None
    s = answer.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
            s = s[len(left) : len(s) - len(right)].strip()
            break
    s = s.rstrip(".").strip()
    if not s or len(s) > MAX_ANSWER_CHARS:
        return None
    return s


def last_boxed(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """The content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), cleaned, else None."""
    return _clean(last_box(_tail(text, tail)))


def boxed_answer(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """The `boxed` extractor: the box math-verify reads in a completion, cleaned as `last_boxed`.

    math-verify finds a box from the first literal `\\boxed{` (brace included) to the text's last
    `}`, and takes the last `\\boxed` / `\\fbox` in that span. So a completion whose only box is
    `\\boxed {5}`, `\\boxed 5` or `\\fbox{5}` has no boxed answer, for it, for open-r1's and
    TRL's `accuracy_reward`, or here. Unlike math-verify, a final period inside the box is dropped
    (`\\boxed{104.}` is 104). Gold solutions keep MATH's looser `last_boxed`."""
    s = _tail(text, tail)
    if "\\boxed{" not in s:
        return None
    return _clean(last_box(s[: s.rfind("}") + 1]))


def answer_tag(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """The content of the last `<answer>...</answer>` (a box inside it is unwrapped), else None."""
    s = _tail(text, tail)
    span = last_answer_tag(s)
    if span is None:
        return None
    content = s[span[0] : span[1]]
    if "\\boxed" in content or "\\fbox" in content:
        return last_boxed(content, tail=None)
    return _clean(content)


_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is\b\s*:?|:)\s*", re.IGNORECASE)
_UNTIL_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n")


def answer_is(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """X in the last "the answer is X" / "final answer: X" (to the end of the sentence)."""
    s = _tail(text, tail)
    match = None
    for match in _ANSWER_IS.finditer(s):  # noqa: B007 (the last match is wanted)
        pass
    if match is None:
        return None
    rest = s[match.end() : match.end() + 4 * MAX_ANSWER_CHARS]
    line = rest.split("\n", 1)[0]
    if "\\boxed" in line or "\\fbox" in line:
        return last_boxed(line, tail=None)
    if line.startswith("$"):
        close = line.find("$", 1)
        return _clean(line[1:close]) if close > 0 else None
    end = _UNTIL_SENTENCE_END.search(line)
    return _clean(line[: end.start()] if end else line)


_NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def last_number(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """The last number (`-1,234.5` becomes `-1234.5`), else None."""
    match = None
    for match in _NUMBER.finditer(_tail(text, tail)):  # noqa: B007 (the last match is wanted)
        pass
    return _clean(match.group().replace(",", "")) if match else None


def gsm8k_marker(text: str, tail: int | None = TAIL_CHARS) -> str | None:
    """The number after the last `####` (GSM8K's answer line; lm-eval's `strict-match`)."""
    s = _tail(text, tail)
    at = s.rfind("####")
    if at < 0:
        return None
    match = _NUMBER.match(s[at + 4 : at + 4 + MAX_ANSWER_CHARS].lstrip(" $"))
    return _clean(match.group().replace(",", "")) if match else None


EXTRACTORS = {
    "answer_tag": answer_tag,
    "boxed": boxed_answer,
    "answer_is": answer_is,
    "gsm8k_marker": gsm8k_marker,
    "last_number": last_number,
}


def extract(
    text: str, extractors: Sequence[str] = DEFAULT_EXTRACTORS
) -> tuple[str | None, str | None]:
    """(answer, name of the extractor that found it), trying `extractors` in order; (None, None)
    when none finds an answer. Unknown extractor names raise ValueError listing the valid ones."""
    if not isinstance(text, str):
        return None, None
    for name in extractors:
        fn = EXTRACTORS.get(name)
        if fn is None:
            raise ValueError(f"unknown extractor {name!r}; valid: {', '.join(EXTRACTORS)}")
        answer = fn(text)
        if answer is not None:
            return answer, name
    return None, None


# --------------------------------------------------------------------------------------------
# Gold answers


def gold_from_solution(solution: str) -> str | None:
    """The last `\\boxed{}` of a (trusted, whole) reference solution, as MATH defines its answer."""
    return last_boxed(solution, tail=None)


def gold_from_gsm8k(answer: str) -> str | None:
    """The number after GSM8K's final `#### ` (thousands separators removed)."""
    if "####" not in answer:
        return None
    value = answer.rsplit("####", 1)[1].strip().replace(",", "")
    return canonical_gold(value) if value else None


def gold_from_value(value: Any) -> str:
    """A plain answer field as a gold string: `27.0` -> `27`, `'025'` -> `25`, text stripped."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return canonical_gold(str(value))


_INTEGER_TEXT = re.compile(r"[-+]?\d+")


def canonical_gold(gold: str) -> str:
    """Integers without sign or leading zeros (`025` -> `25`, AIME style), other text stripped.
    math-verify reads both forms as the same Integer, so verdicts do not change."""
    gold = gold.strip()
    if _INTEGER_TEXT.fullmatch(gold) and len(gold) <= 100:
        return str(int(gold))
    return gold


# --------------------------------------------------------------------------------------------
# Equivalence


class Equivalence(NamedTuple):
    equal: bool
    detail: str
    """`ok`, `wrong answer`, `gold not parsable`, `answer not parsable`, `timeout`, `error: ...`"""


def boxed(answer: str) -> str:
    """How an answer is handed to math-verify's `parse`: its boxed match comes first."""
    return "\\boxed{" + answer + "}"


@lru_cache(maxsize=1)
def answer_extraction_config() -> tuple:
    """math-verify's extraction config for a model's answer: open-r1's and TRL's for a completion
    (LaTeX only, `\\boxed{}` first, no match without an anchor), with math-verify's default
    normalization (malformed `\\frac12` repaired, units removed)."""
    from math_verify import LatexExtractionConfig

    return (LatexExtractionConfig(boxed_match_priority=0, try_extract_without_anchor=False),)


@lru_cache(maxsize=4096)
def _parse_gold(gold: str) -> list:
    import math_verify

    return math_verify.parse(boxed(gold), parsing_timeout=None)


@lru_cache(maxsize=16384)
def _parse_answer(answer: str) -> list:
    import math_verify

    return math_verify.parse(
        boxed(answer),
        extraction_config=answer_extraction_config(),
        extraction_mode="first_match",
        parsing_timeout=None,
    )


@lru_cache(maxsize=1)
def _boxed_normalizations() -> tuple[Any, Any]:
    """How math-verify normalizes the boxed match of the gold, and of the answer."""
    from dataclasses import replace

    from math_verify import LatexExtractionConfig

    gold = LatexExtractionConfig().normalization_config
    pred = answer_extraction_config()[0].normalization_config
    return replace(gold, boxed="last"), replace(pred, boxed="last")


def same_normalized_string(gold: str, pred: str) -> bool:
    """Whether math-verify says "equal" by its string comparison alone, without parsing.

    Why this is its verdict: for `\\boxed{A}` with no other `\\boxed` and no word "answer" in A,
    the plain boxed match (the whole string) is the only match of either extraction config (the
    `$...\\boxed{}...$` patterns need an opening delimiter before a `\\boxed`, and every other
    pattern of a higher priority needs the word "answer"). `parse` then returns its parsed value
    (if any) followed by the match's normalized string (`fallback_mode="first_match"`), normalized
    with the config's `normalization_config` and `boxed="last"`. `verify` is true if any (gold, pred)
    pair compares equal, and two strings compare equal when, stripped, they are equal and not
    empty. So equal normalized strings mean `verify` is true, whatever sympy makes of them.
    """
    if "\\boxed" in gold or "\\boxed" in pred:
        return False
    if "answer" in gold.lower() or "answer" in pred.lower():
        return False
    normalized = _normalized(gold, 0)
    return bool(normalized) and normalized == _normalized(pred, 1)


@lru_cache(maxsize=16384)
def _normalized(answer: str, side: int) -> str:
    """`normalize_latex` of the boxed answer as math-verify normalizes the gold's (`side` 0) or
    the answer's (1) boxed match, stripped (cached: a gold meets many answers)."""
    from latex2sympy2_extended import normalize_latex

    return normalize_latex(boxed(answer), _boxed_normalizations()[side]).strip()


def math_verify_equal(gold: str, pred: str) -> Equivalence:
    """math-verify's verdict, unbounded: call it through `check` / `check_many` (or in a worker).

    `verify(parse(boxed(gold)), parse(boxed(pred), answer_extraction_config()))`: the gold parsed
    with math-verify's defaults (as TRL parses its `solution` column), the answer as open-r1 and
    TRL parse a completion, with the default normalization; equal normalized strings
    need no parse (`same_normalized_string`). Parses are cached per process; math-verify's own
    timeouts are off (the caller bounds the call).
    """
    import math_verify

    if same_normalized_string(gold, pred):
        return Equivalence(True, "ok")
    gold_parsed = _parse_gold(gold)
    if not gold_parsed:
        return Equivalence(False, "gold not parsable")
    pred_parsed = _parse_answer(pred)
    if not pred_parsed:
        return Equivalence(False, "answer not parsable")
    return _verdict(math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _verdict(equal: bool) -> Equivalence:
    return Equivalence(True, "ok") if equal else Equivalence(False, "wrong answer")


_PLAIN_INTEGER = re.compile(r"0|-?[1-9]\d{0,11}")


def fast_verdict(gold: str, pred: str) -> Equivalence | None:
    """math-verify's verdict where it is known without running it, else None.

    Two plain integers (`0` or `-?[1-9][0-9]{0,11}`, no sign `+`, no leading zero): `parse`
    yields `[Integer(n), "n"]` on both sides (the boxed match is the only one, its normalization
    leaves such a string as it is, latex2sympy reads it as an Integer), and `verify` is true iff
    some (gold, pred) pair of those compares equal: the Integers are equal iff the numbers are
    (no Float is involved, so no rounding to 6 places; no `%`, so no percentage rule), and the
    strings iff the digits are, which for canonical integers is the same thing. Checked against
    math-verify in tests/test_math_verify.py.
    """
    if _PLAIN_INTEGER.fullmatch(gold) and _PLAIN_INTEGER.fullmatch(pred):
        return _verdict(gold == pred)
    return None


class _VerdictCache:
    """The settled verdicts of recent (gold, answer) pairs, least recently used dropped first.

    Only verdicts that depend on nothing but the two strings are kept (not timeouts or errors,
    which depend on the machine's load). Thread-safe."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple[str, str], Equivalence] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Equivalence | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: Equivalence) -> None:
        if value.detail == "timeout" or value.detail.startswith("error"):
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


VERDICT_CACHE = _VerdictCache(CACHE_SIZE)
"""Verdicts kept across calls of `check_many` (a GRPO run sees the same problems every epoch)."""


def check(gold: str, pred: str, timeout: float = DEFAULT_TIMEOUT) -> Equivalence:
    """Whether `pred` is the same answer as `gold` (math-verify, gold first), bounded in time."""
    return check_many([(gold, pred)], timeout=timeout)[0]


def check_many(
    pairs: Sequence[tuple[str, str]], timeout: float = DEFAULT_TIMEOUT, workers: int | None = None
) -> list[Equivalence]:
    """`[check(gold, pred) for gold, pred in pairs]`, on a pool of `workers` processes (all
    cores by default).

    Each distinct pair is decided once: by `fast_verdict`, by `VERDICT_CACHE`, or by
    `math_verify_equal` in a worker. The pairs sent to workers are sorted by gold, so a gold's
    pairs go out together in one chunk and its parse (and sympy's work on it) is reused there;
    golds that are relations go first (`_schedule_key`).
    """
    where: dict[tuple[str, str], list[int]] = {}
    for i, pair in enumerate(pairs):
        where.setdefault((pair[0], pair[1]), []).append(i)
    decided: dict[tuple[str, str], Equivalence] = {}
    slow: list[tuple[str, str]] = []
    for key in where:
        known = fast_verdict(*key) or VERDICT_CACHE.get(key)
        if known is None:
            slow.append(key)
        else:
            decided[key] = known
    slow.sort(key=_schedule_key)
    for key, outcome in zip(
        slow, bounded.run_many(math_verify_equal, slow, timeout=timeout, workers=workers)
    ):
        if outcome.ok:
            decided[key] = outcome.value
            VERDICT_CACHE.put(key, outcome.value)
        elif outcome.status == bounded.TIMEOUT:
            decided[key] = Equivalence(False, "timeout")
        else:
            decided[key] = Equivalence(False, f"error: {outcome.detail}")
    results: list[Equivalence] = [None] * len(pairs)  # type: ignore[list-item]
    for key, indices in where.items():
        for i in indices:
            results[i] = decided[key]
    return results


_RELATION = re.compile(r"=|<|>|\\[lg]eq?\b|\\neq?\b")


def _schedule_key(pair: tuple[str, str]) -> tuple[bool, str, str]:
    """The order pairs are sent to workers in: golds with a relation (`=`, `<`, `\\le`, ...)
    first, then by gold and answer.

    A relation is where math-verify may call sympy's `solve`, by far its slowest step (seconds
    for some golds): sent first, such a pair's worker has time to catch up while the others take
    the rest, as in longest-processing-time-first scheduling (Graham, 1969)."""
    return (_RELATION.search(pair[0]) is None, pair[0], pair[1])


def warm_up(workers: int | None = None) -> None:
    """Start the shared pool's workers and load math-verify in each now (a trainer or evaluator
    calls this once; otherwise the first batch pays about a second for it)."""
    pool = bounded.shared_pool(workers)
    pool.starmap(math_verify_equal, [("0", "1")] * pool.size, timeout=60.0, chunksize=1)


# --------------------------------------------------------------------------------------------
# Faster parsing and solving in workers

_NUMBER_LITERAL = re.compile(r"[0-9]{1,4000}(?:\.[0-9]{1,4000})?")


def use_fast_latex_parsing(enable: bool = True) -> bool:
    """Speed up latex2sympy (math-verify's LaTeX parser) without changing what it returns, by two
    changes to its `_Latex2Sympy` converter; `enable=False` undoes them. Returns whether they are
    in place.

    1. Two-stage ANTLR parsing (Parr, The Definitive ANTLR 4 Reference, 13.7): predict in SLL mode
       first, and in full LL only when SLL reports a syntax error. ANTLR documents that in SLL
       mode "the parser will either return a correct parse tree (i.e. the same parse tree that
       would be returned with the LL prediction mode), or it will report a syntax error"
       (`PredictionMode.SLL`). latex2sympy's error listeners raise on every syntax error and its
       start rule `math` ends in EOF, so an SLL parse that returns is the LL parse; one that
       raises is redone in LL by a fresh lexer and parser (only the parse: the conversion to
       sympy runs once). Full LL prediction is most of the parsing time; SLL is about 4x faster
       on MATH answers, and about 3% of them need the second stage.
    2. Number literals straight to sympy: latex2sympy turns a number token into
       `sympy.Number(text)`, which runs sympy's string parser (`parse_expr`, with an
       `exec("from sympy import *")` per call, ~0.3 ms); that parser's `auto_number` step makes
       `Integer(text)` of digits and `Float(text)` of digits with a decimal point, so those two
       forms are built directly (after the same comma removal and leading-zero stripping).

    tests/test_math_verify.py compares parses with and without on MATH answers and number forms.
    Done only inside bounded workers (this module's import there calls it): a user's own process
    keeps math-verify as it is. If latex2sympy's internals are not where expected, nothing is
    changed.
    """
    try:
        import sympy
        from antlr4.atn.PredictionMode import PredictionMode
        from latex2sympy2_extended.latex2sympy2 import _Latex2Sympy
    except ImportError:
        return False
    originals = getattr(_Latex2Sympy, "reasonlab_originals", None)
    if not enable:
        if originals is not None:
            for name, method in originals.items():
                setattr(_Latex2Sympy, name, method)
            del _Latex2Sympy.reasonlab_originals
        return False
    if originals is not None:
        return True
    create_parser = getattr(_Latex2Sympy, "create_parser", None)
    parse_number = getattr(_Latex2Sympy, "parse_number", None)
    if create_parser is None or parse_number is None:
        return False

    def two_stage_create_parser(self: Any, latex_str: str) -> Any:
        parser = create_parser(self, latex_str)
        start_rule = parser.math  # the generated method of the start rule, bound to this parser

        def math() -> Any:
            parser._interp.predictionMode = PredictionMode.SLL
            try:
                return start_rule()
            except Exception:
                return create_parser(self, latex_str).math()  # a fresh parser predicts in LL

        parser.math = math
        return parser

    def literal_parse_number(self: Any, text: str) -> Any:
        number = text.replace(",", "")
        if not _NUMBER_LITERAL.fullmatch(number):
            return parse_number(self, text)
        if "." in number:
            return sympy.Float(number)
        return sympy.Integer(number.lstrip("0") or "0")

    _Latex2Sympy.reasonlab_originals = {
        "create_parser": create_parser,
        "parse_number": parse_number,
    }
    _Latex2Sympy.create_parser = two_stage_create_parser
    _Latex2Sympy.parse_number = literal_parse_number
    return True


SOLVE_CACHE_SIZE = 256
"""Outcomes of sympy's `solve` a worker keeps (`use_solve_cache`)."""


def use_solve_cache(enable: bool = True, size: int = SOLVE_CACHE_SIZE) -> bool:
    """Make math-verify's grader remember what sympy's `solve` did for an equation, so that the
    equation is solved once per worker, not once per answer it is compared with; `enable=False`
    undoes it. Returns whether the cache is in place.

    Why: math-verify compares two relations (`sympy_compare_relational`) by solving both,
    `solve(gold, gold.free_symbols)` first, once per (gold, answer) pair. For some golds that one
    call takes seconds and ends in an exception (`\\tan \\theta = 2\\theta`: 1.4 s, then sympy's
    "multiple generators ... No algorithms are implemented"), and every answer written as a relation
    pays it again. Now each distinct call is made once per worker and its outcome, the returned
    value (a copy of its lists and dicts) or the exception it raised, is given back to every later
    call with the same arguments.

    Why the verdicts do not change: `solve` is a function of its arguments (sympy expressions are
    immutable values; its own caches hold results of pure functions). The key is the `srepr` of the
    equation and of the set of unknowns in its iteration order, so two calls share an outcome only
    if sympy cannot tell their arguments apart, Float precisions and symbol assumptions included.
    Calls with keyword flags or other argument shapes go straight to `solve`. (What can differ is
    only what depends on the clock anyway: a pair that would run out of time solving its gold
    again gets the kept outcome instead.) Exceptions that
    depend on the state of the process rather than on the arguments (`RecursionError`, which
    depends on the stack depth of the call, and `MemoryError`) are not kept, nor anything that is
    not an `Exception`. Done only inside bounded workers, as `use_fast_latex_parsing`.
    """
    try:
        import sympy
        from math_verify import grader
    except ImportError:
        return False
    current = getattr(grader, "solve", None)
    if not enable:
        if isinstance(current, _CachedSolve):
            grader.solve = current.solve
        return False
    if isinstance(current, _CachedSolve):
        return True
    if current is not sympy.solve:  # math-verify's internals moved: leave them alone
        return False
    grader.solve = _CachedSolve(current, size)
    return True


class _CachedSolve:
    """sympy's `solve` with its outcomes kept, least recently used dropped first
    (`use_solve_cache`)."""

    def __init__(self, solve: Any, size: int):
        self.solve = solve
        self.size = size
        self.outcomes: OrderedDict[tuple[str, str], tuple[bool, Any]] = OrderedDict()

    def __call__(self, f: Any, *symbols: Any, **flags: Any) -> Any:
        from sympy import srepr

        if flags or len(symbols) != 1:
            return self.solve(f, *symbols, **flags)
        try:
            key = (srepr(f), srepr(symbols[0]))
        except Exception:
            return self.solve(f, *symbols)
        known = self.outcomes.get(key)
        if known is None:
            try:
                value = self.solve(f, *symbols)
            except (RecursionError, MemoryError):
                raise
            except Exception as exc:
                # kept without the frames (and expressions) of the failed call; still raised here
                exc.__traceback__ = exc.__context__ = exc.__cause__ = None
                self._keep(key, (False, exc))
                raise
            self._keep(key, (True, _copy_solution(value)))
            return value
        self.outcomes.move_to_end(key)
        returned, value = known
        if not returned:
            raise value.with_traceback(None)
        return _copy_solution(value)

    def _keep(self, key: tuple[str, str], outcome: tuple[bool, Any]) -> None:
        self.outcomes[key] = outcome
        while len(self.outcomes) > self.size:
            self.outcomes.popitem(last=False)


def _copy_solution(value: Any) -> Any:
    """A copy of `solve`'s result down to its lists and dicts (the sympy objects are immutable)."""
    if isinstance(value, list):
        return [_copy_solution(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return value


WARM_UP_PAIRS = (
    ("\\frac{1}{3}", "0.3333"),
    ("(1,2)", "[1,2]"),
    ("x^2 = 4", "x = 2"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}"),
    ("\\{1,2\\}", "\\{2, 3\\}"),
    ("x^2+1", "(x+1)^2"),
    ("30^\\circ", "\\frac{\\pi}{6}"),
    ("\\sin x", "\\cos x"),
    ("x < 3", "(-\\infty, 3)"),
    ("\\text{(A)}", "A"),
    ("y = 2x+1", "y = 2x+3"),
    ("3 + 4i", "4 + 3i"),
)
"""Answer pairs a worker checks when it starts, one of each kind math-verify handles (numbers,
intervals, equations, matrices, sets, polynomials, degrees, trigonometry, text, complex numbers):
the first use of each kind loads code and fills parser tables (~0.3 s in all), which would
otherwise be paid inside the first batch's timeouts."""


if bounded.in_worker():
    # Unpickling `math_verify_equal` imports this module in a worker before the call's clock
    # starts: load math-verify and its LaTeX grammar now, and check one pair of each kind (the
    # first parse of a kind takes up to ~0.1 s); silence its "timeout is disabled" warning (we
    # bound the call ourselves).
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    use_fast_latex_parsing()
    use_solve_cache()
    for _gold, _pred in WARM_UP_PAIRS:
        math_verify_equal(_gold, _pred)
