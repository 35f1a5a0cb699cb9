"""Behaviours over training: per-step rates, and the step where a rate changed most ("aha").

`step_metrics` is what the RL trainer logs each step into metrics.jsonl (rule-based, over every
response sampled in the step, not only the ones rollouts.jsonl keeps): the behaviour rates and
per-word reflection counts of `reasonlab.analysis.behaviours.summarize`, plus length quantiles.

`change_point` finds the single step that best splits a series into two constant levels (least
squares: the split minimising the summed squared deviation of each side from its own mean, the
one-change case of binary segmentation / CUSUM). `aha_moments` runs it on every behaviour and
reflection series of a run and keeps the sampled responses on each side of the change, so the
report can show what the change looked like in text. A change found this way is a description of
the series, not a test: on a flat noisy series it still returns the largest split.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from reasonlab.analysis.behaviours import detector_for, summarize
from reasonlab.analysis.runs import Run, completion_text

SERIES_PREFIXES = ("behaviour/", "r1_words/", "oat_zero/")
"""Keys of metrics.jsonl that `step_metrics` writes and `aha_moments` scans."""

_COUNTDOWN_PROMPT = re.compile(r"numbers \[([\d,\s]+)\].*?equals (\d+)", re.DOTALL)


def step_metrics(
    texts: Sequence[str],
    task: str | None = None,
    lengths: Sequence[int] | None = None,
    metas: Sequence[Mapping[str, Any] | None] | None = None,
) -> dict[str, float]:
    """Behaviour rates of one RL step's responses, flat keys for metrics.jsonl.

    `task` picks the detector (`countdown`, else generic); `metas` are the examples' `meta` (the
    countdown target turns on the step-from-target rule); `lengths` (tokens) add
    `length/p50`, `length/p90`.
    """
    out = summarize(texts, detector_for(task), metas)
    if lengths is not None and len(lengths):
        out["length/p50"] = float(np.percentile(lengths, 50))
        out["length/p90"] = float(np.percentile(lengths, 90))
    return out


def change_point(steps: Sequence[float], values: Sequence[float]) -> dict[str, float] | None:
    """The step where a series changes level most: the split into `values[:k]`, `values[k:]`
    (1 <= k < n) minimising the total squared deviation from the two means.

    Returns {step (the first step after the change), before, after (the two means), change
    (after - before)}, or None for fewer than 3 points or a constant series.
    """
    y = np.asarray(values, dtype=np.float64)  # [n]
    n = len(y)
    if n < 3 or np.allclose(y, y[0]):
        return None
    csum, csq = np.cumsum(y), np.cumsum(y * y)
    best_k, best_cost = 1, float("inf")
    for k in range(1, n):
        left_n, right_n = k, n - k
        left_sum, right_sum = csum[k - 1], csum[-1] - csum[k - 1]
        left_sq, right_sq = csq[k - 1], csq[-1] - csq[k - 1]
        cost = (left_sq - left_sum**2 / left_n) + (right_sq - right_sum**2 / right_n)
        if cost < best_cost - 1e-12:
            best_k, best_cost = k, cost
    before, after = float(y[:best_k].mean()), float(y[best_k:].mean())
    return {
        "step": float(steps[best_k]),
        "before": before,
        "after": after,
        "change": after - before,
    }


def countdown_meta(prompt: Any) -> dict[str, Any] | None:
    """`numbers` and `target` read back from a rendered countdown prompt ("Using the numbers
    [3, 5, 2], create an equation that equals 13"), or None when the prompt is not one."""
    match = _COUNTDOWN_PROMPT.search(prompt if isinstance(prompt, str) else str(prompt))
    if not match:
        return None
    numbers = [int(x) for x in match.group(1).replace(",", " ").split()]
    return {"numbers": numbers, "target": int(match.group(2))}


def row_meta(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The example `meta` of a response row: its own (eval generation files), else read back
    from a countdown prompt (`countdown_meta`)."""
    meta = row.get("meta")
    return dict(meta) if isinstance(meta, Mapping) else countdown_meta(row.get("prompt", ""))


def behaviour_series(run: Run) -> dict[str, dict[int, float]]:
    """Per key (`behaviour/...`, `r1_words/...`, `oat_zero/...`) the value at each step: from
    metrics.jsonl when the trainer logged them (every response of the step), else computed from
    rollouts.jsonl (the logged sample only)."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    for row in run.metrics:
        for key, value in row.items():
            if key.startswith(SERIES_PREFIXES) and isinstance(value, int | float):
                series[key][int(row["step"])] = float(value)
    if series:
        return dict(series)
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in run.rollouts:
        by_step[int(row.get("step", 0))].append(row)
    detector = run_detector(run)
    for step, rows in sorted(by_step.items()):
        metas = [row_meta(r) for r in rows]
        summary = summarize([completion_text(r) for r in rows], detector, metas)
        for key, value in summary.items():
            series[key][step] = value
    return dict(series)


def run_detector(run: Run) -> str:
    """The behaviour detector for a run's responses: by its task (config.yaml), else `countdown`
    when its responses are to countdown problems (a bare JSONL file has no config to say)."""
    return detector_for(run.task or _guess_task(run))


def _guess_task(run: Run) -> str | None:
    rows = run.rollouts[:20]
    if rows and all(row_meta(r) and "target" in row_meta(r) for r in rows):
        return "countdown"
    return None


def aha_moments(run: Run, min_change: float = 0.0, examples: int = 2) -> list[dict[str, Any]]:
    """The change point of every behaviour and reflection series of `run`, largest |change|
    first, each with up to `examples` logged responses from the step before and the step of the
    change (`before_examples`, `after_examples`). Series of fewer than 3 steps are skipped."""
    out: list[dict[str, Any]] = []
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in run.rollouts:
        by_step[int(row.get("step", 0))].append(row)
    for key, points in behaviour_series(run).items():
        steps = sorted(points)
        found = change_point(steps, [points[s] for s in steps])
        if found is None or abs(found["change"]) <= min_change:
            continue
        step = int(found["step"])
        previous = max((s for s in by_step if s < step), default=None)
        out.append(
            {
                "series": key,
                **found,
                "before_examples": [
                    completion_text(r) for r in by_step.get(previous, [])[:examples]
                ],
                "after_examples": [completion_text(r) for r in by_step.get(step, [])[:examples]],
            }
        )
    out.sort(key=lambda r: -abs(r["change"]))
    return out
