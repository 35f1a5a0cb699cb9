"""Reasoning behaviours counted in text: reflection vocabularies and the four cognitive behaviours.

Reflection vocabularies, counted word by word (a fixed template phrase such as the countdown
corpus's "Wrong." is not emergent reflection, so a total alone would mislead):

- `REFLECTION_WORDS`: the words whose frequency the DeepSeek-R1 paper tracks across RL steps to
  show the "aha moment" (DeepSeek-AI 2025): wait, mistake, however, but, retry, error, verify,
  wrong, evaluate, check; counted as whole words, case-insensitive.
- `OAT_ZERO_KEYWORDS`: the self-reflection keywords of oat-zero ("There May Not be Aha Moment in
  R1-Zero-like Training", Liu et al. 2025; `analysis/eval_self_reflect.py`, its widest set):
  recheck, rethink, reevaluate, reevaluation, re-evaluate, re-examine, check again, try again;
  counted as substrings of the lower-cased text, as oat-zero counts them.

The four cognitive behaviours of Gandhi et al. 2025 ("Cognitive Behaviors that Enable
Self-Improving Reasoners, or, Four Habits of Highly Effective STaRs"): verification, backtracking,
subgoal setting, backward chaining. Rule-based detectors (`detect`) count them, each a list of
regular expressions whose matches are the instances (`behaviour_spans` gives their positions, for
highlighting):

- `countdown`: the traces of `reasonlab.tasks.corpus.countdown_attempt`, whose structure is known:
  a subgoal is a step "a op b = c." that is not compared with the target ("c vs T") nor
  retracted ("... Wait,"); verification is a re-check "Let me check" or a caught slip "Wait,";
  backtracking is "Try again"; backward chaining is a step that starts from the target ("T - b =")
  or says it works backwards. Precision and recall against the corpus's own tags are in
  docs/analysis.md (`countdown_attempt_tagged` is the ground truth).
- `generic`: phrase patterns for free text (math, K&K, chat models), e.g. "let me verify",
  "try a different approach", "first, ... then", "working backwards". No ground truth for free
  text here: heuristics, to read next to the LLM judge (`reasonlab.analysis.judge`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

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
OAT_ZERO_KEYWORDS = (
    "recheck",
    "rethink",
    "reevaluate",
    "reevaluation",
    "re-evaluate",
    "re-examine",
    "check again",
    "try again",
)
BEHAVIOURS = ("verification", "backtracking", "subgoal_setting", "backward_chaining")
"""The four cognitive behaviours (Gandhi et al. 2025), in the paper's order."""

_WORD = re.compile(r"[a-z]+")
_STEP = r"\d+ [-+*/] \d+ = -?\d+"

_PATTERNS: dict[str, dict[str, tuple[str, ...]]] = {
    "countdown": {
        "verification": (r"\bLet me check\b", r"\bWait,"),
        "backtracking": (r"\bTry again\b",),
        # a step ended by "." (not "vs T", not "," inside a check) and not retracted by "Wait,"
        "subgoal_setting": (rf"(?<![\d.])\b{_STEP}\.(?! Wait,)",),
        # a step from the target that is not a finish compared with it ("T - b = c vs T") nor
        # a slip retracted by "Wait," (a finish whose partial equals the target);
        # "{target}" is filled in per example, and the rule is off without one or when the target
        # is one of the numbers (then a subgoal may start from it)
        "backward_chaining": (
            r"(?i:\bwork(?:ing)? backwards?\b)",  # also a sentence's first word
            r"(?<![\d.])\b{target} [-+*/] \d+ = -?\d+\b(?! vs)(?!\. Wait,)",
        ),
    },
    "generic": {
        "verification": (
            r"\blet(?:'s| me| us)? (?:check|verify|double[- ]check)\b",
            r"\bdouble[- ]check",
            r"\bre-?check",
            r"\bcheck(?:ing)? (?:again|our|my|the answer|this)\b",
            r"\bverif(?:y|ies|ying|ication)\b",
            r"\bplug(?:ging)? (?:it|this|that|these|them)? ?(?:back )?in",
            r"\bsubstitut(?:e|ing) back\b",
        ),
        "backtracking": (
            r"\btry(?:ing)? again\b",
            r"\blet(?:'s| me| us) try\b",
            r"\btry (?:a |an )?(?:different|another|other)\b",
            r"\b(?:a |another )?different (?:approach|way|method|combination|sequence)\b",
            r"\balternatively\b",
            r"\b(?:that|this) (?:doesn't|does not|won't|will not) work\b",
            r"\bstart over\b",
            r"\bgo(?:ing)? back\b",
            r"\bbacktrack",
        ),
        "subgoal_setting": (
            r"\b(?:first|second|third|next|finally),",
            r"\bstep \d+\b",
            r"\bsub-?goals?\b",
            r"\bwe (?:need|want) to (?:find|get|compute|determine)\b",
            r"\bbreak (?:it|this|the problem) down\b",
            r"\bto (?:get|reach) (?:close to )?\d+,",
        ),
        "backward_chaining": (
            r"\bwork(?:ing)? backwards?\b",
            r"\bfrom the (?:target|goal|answer|end)\b",
            r"\bstart(?:ing)? (?:from|with) the (?:target|goal|answer|end)\b",
            r"\bsince the (?:target|goal) is\b",
        ),
    },
}
DETECTORS = tuple(_PATTERNS)
"""Names of the rule-based detector families: `countdown` (corpus traces) and `generic`."""


def count_words(text: str, words: Iterable[str] = REFLECTION_WORDS) -> Counter[str]:
    """How often each word occurs in `text` as a whole word, case-insensitive."""
    wanted = set(words)
    return Counter(w for w in _WORD.findall(text.lower()) if w in wanted)


def count_keywords(text: str, keywords: Iterable[str] = OAT_ZERO_KEYWORDS) -> Counter[str]:
    """How often each keyword occurs in the lower-cased `text` as a substring (oat-zero's count:
    "recheck" also counts inside "rechecked")."""
    lower = text.lower()
    return Counter({k: lower.count(k) for k in keywords if k in lower})


def detector_for(task: str | None) -> str:
    """The detector family for a task name: `countdown` for countdown, `generic` otherwise."""
    return "countdown" if task == "countdown" else "generic"


def _target(meta: Mapping[str, Any] | None) -> Any:
    """The countdown target of an example's `meta`, or None when the step-from-target rule cannot
    tell backward chaining from a subgoal (no target, or the target is one of the numbers)."""
    if not meta or "target" not in meta:
        return None
    if meta["target"] in (meta.get("numbers") or ()):
        return None
    return meta["target"]


@functools.lru_cache(maxsize=1024)
def _compiled(detector: str, target: Any = None) -> dict[str, list[re.Pattern[str]]]:
    if detector not in _PATTERNS:
        raise ValueError(f"unknown behaviour detector {detector!r}; valid: {', '.join(DETECTORS)}")
    flags = 0 if detector == "countdown" else re.IGNORECASE
    out: dict[str, list[re.Pattern[str]]] = {}
    for behaviour, patterns in _PATTERNS[detector].items():
        out[behaviour] = [
            re.compile(p.replace("{target}", re.escape(str(target))), flags)
            for p in patterns
            if "{target}" not in p or target is not None
        ]
    return out


def behaviour_spans(
    text: str, detector: str = "generic", meta: Mapping[str, Any] | None = None
) -> list[tuple[int, int, str]]:
    """Every detected instance as `(start, end, behaviour)`, sorted by start; overlapping matches
    of one behaviour are counted once. `meta` (the example's: countdown `numbers` and `target`)
    enables the step-from-target rule."""
    spans: list[tuple[int, int, str]] = []
    for behaviour, patterns in _compiled(detector, _target(meta)).items():
        found = sorted((m.start(), m.end()) for p in patterns for m in p.finditer(text))
        last_end = -1
        for start, end in found:
            if start >= last_end:
                spans.append((start, end, behaviour))
                last_end = end
    return sorted(spans)


def detect(
    text: str, detector: str = "generic", meta: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Instances of each of the four behaviours in `text` (see the module docstring)."""
    counts = dict.fromkeys(BEHAVIOURS, 0)
    for _, _, behaviour in behaviour_spans(text, detector, meta):
        counts[behaviour] += 1
    return counts


def response_profile(
    text: str, detector: str = "generic", meta: Mapping[str, Any] | None = None
) -> dict[str, dict[str, int]]:
    """One response, counted: `behaviours` (four), `r1_words` and `oat_zero` (per word)."""
    r1 = count_words(text)
    oat = count_keywords(text)
    return {
        "behaviours": detect(text, detector, meta),
        "r1_words": {w: r1[w] for w in REFLECTION_WORDS},
        "oat_zero": {k: oat[k] for k in OAT_ZERO_KEYWORDS},
    }


def summarize(
    texts: Sequence[str],
    detector: str = "generic",
    metas: Sequence[Mapping[str, Any] | None] | None = None,
) -> dict[str, float]:
    """Rates over a set of responses, flat keys as logged in metrics.jsonl:

    `behaviour/{name}` share of responses with at least one instance of the behaviour,
    `behaviour/{name}_per_response` mean instances, `r1_words/{word}` and `oat_zero/{keyword}`
    mean count per response (every word, zeros included, so the columns stay the same).
    """
    if metas is not None and len(metas) != len(texts):
        raise ValueError(f"summarize: {len(metas)} metas for {len(texts)} texts")
    n = max(1, len(texts))
    present: Counter[str] = Counter()
    total: Counter[str] = Counter()
    r1: Counter[str] = Counter()
    oat: Counter[str] = Counter()
    for i, text in enumerate(texts):
        counts = detect(text, detector, None if metas is None else metas[i])
        total.update(counts)
        present.update(b for b, c in counts.items() if c > 0)
        r1.update(count_words(text))
        oat.update(count_keywords(text))
    out: dict[str, float] = {}
    for b in BEHAVIOURS:
        out[f"behaviour/{b}"] = present[b] / n
        out[f"behaviour/{b}_per_response"] = total[b] / n
    out.update({f"r1_words/{w}": r1[w] / n for w in REFLECTION_WORDS})
    out.update({f"oat_zero/{k}": oat[k] / n for k in OAT_ZERO_KEYWORDS})
    return out


def reflection_per_step(
    rollouts_path: str | Path, words: Iterable[str] = REFLECTION_WORDS
) -> dict[int, dict[str, float]]:
    """Per RL step, the mean count per completion of each reflection word.

    Reads a run's rollouts.jsonl (rows with `step` and `completion`). Words are whole words
    (`count_words`); no total: each word is its own series.
    """
    words = tuple(words)
    counts: dict[int, Counter[str]] = defaultdict(Counter)
    n_rows: Counter[int] = Counter()
    for row in read_jsonl(rollouts_path, ("step",), drop_partial_last_line=True):
        step = int(row["step"])
        counts[step].update(count_words(row.get("completion", ""), words))
        n_rows[step] += 1
    return {step: {w: counts[step][w] / n_rows[step] for w in words} for step in sorted(n_rows)}


def precision_recall(
    predicted: Sequence[Mapping[str, int]], truth: Sequence[Mapping[str, int]]
) -> dict[str, dict[str, float]]:
    """Per behaviour, response-level precision and recall of "the response shows it" (count > 0),
    with the counts behind them (`tp`, `fp`, `fn`, `support` = responses that show it) and
    `count_exact`, the share of responses whose instance count matches exactly. Precision or
    recall is NaN where its denominator is 0."""
    if len(predicted) != len(truth):
        raise ValueError(f"precision_recall: {len(predicted)} predictions for {len(truth)} truths")
    out: dict[str, dict[str, float]] = {}
    for b in BEHAVIOURS:
        tp = fp = fn = exact = 0
        for p, t in zip(predicted, truth, strict=True):
            hit, real = p.get(b, 0) > 0, t.get(b, 0) > 0
            tp += hit and real
            fp += hit and not real
            fn += real and not hit
            exact += p.get(b, 0) == t.get(b, 0)
        out[b] = {
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan"),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "support": tp + fn,
            "count_exact": exact / max(1, len(truth)),
        }
    return out
