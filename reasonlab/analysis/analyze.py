"""`analyze(run)`: a run's behaviours as tables and JSON (what `reasonlab analyze` prints).

Per step: responses analysed, the share showing each cognitive behaviour (rule-based), and each
R1 reflection word and oat-zero keyword per response; the change points ("aha") of those series;
with a judge (`reasonlab.analysis.judge`), the judged rates over the logged responses and their
agreement with the rule-based detector, behaviour by behaviour.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from reasonlab.analysis.behaviours import (
    BEHAVIOURS,
    OAT_ZERO_KEYWORDS,
    REFLECTION_WORDS,
    detect,
)
from reasonlab.analysis.dynamics import aha_moments, behaviour_series, row_meta, run_detector
from reasonlab.analysis.runs import Run, completion_text


def analyze(run: Run, judge: Any = None) -> dict[str, Any]:
    """{run, task, source, steps: {step: {key: value}}, aha: [...], judge: {...} (with a
    judge)}. `source` says whether the per-step series come from metrics.jsonl (every response)
    or rollouts.jsonl (the logged sample)."""
    series = behaviour_series(run)
    steps: dict[int, dict[str, float]] = defaultdict(dict)
    for key, points in series.items():
        for step, value in points.items():
            steps[step][key] = value
    from_metrics = any(k.startswith("behaviour/") for row in run.metrics for k in row)
    out: dict[str, Any] = {
        "run": str(run.path),
        "task": run.task,
        "source": "metrics.jsonl (every response)" if from_metrics else "rollouts (logged sample)",
        "steps": {str(s): steps[s] for s in sorted(steps)},
        "aha": aha_moments(run),
    }
    if judge is not None:
        out["judge"] = judge_agreement(run, judge)
    return out


def judge_agreement(run: Run, judge: Any) -> dict[str, Any]:
    """Judge the logged responses; per behaviour the judged rate, the rule-based rate, their
    agreement (share of responses where both say present or both absent, among those the judge
    answered) and how many answers had no `<count>`."""
    rows = run.rollouts
    texts = [completion_text(r) for r in rows]
    metas = [row_meta(r) for r in rows]
    detector = run_detector(run)
    judged = judge.label(texts, metas)
    ruled = [detect(t, detector, m) for t, m in zip(texts, metas, strict=True)]
    out: dict[str, Any] = {"responses": len(rows), "model": judge.model_name}
    for b in BEHAVIOURS:
        pairs = [(j[b], r[b]) for j, r in zip(judged, ruled, strict=True) if j[b] is not None]
        n = max(1, len(pairs))
        out[b] = {
            "judge_rate": sum(j > 0 for j, _ in pairs) / n,
            "rule_rate": sum(r > 0 for _, r in pairs) / n,
            "agreement": sum((j > 0) == (r > 0) for j, r in pairs) / n,
            "unparsed": sum(j[b] is None for j in judged),
        }
    return out


def format_tables(result: dict[str, Any]) -> str:
    """The analysis as markdown tables: behaviours per step, reflection words per step (only the
    words that occur), change points, judge agreement."""
    lines = [f"# {result['run']} (task {result['task'] or '?'}; {result['source']})", ""]
    steps = result["steps"]
    if not steps:
        return "\n".join([*lines, "no responses to analyse"])
    lines += [
        "| step | " + " | ".join(BEHAVIOURS) + " |",
        "|---" * (len(BEHAVIOURS) + 1) + "|",
    ]
    for step, row in steps.items():
        cells = [f"{row.get(f'behaviour/{b}', float('nan')):.2f}" for b in BEHAVIOURS]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    words = [f"r1_words/{w}" for w in REFLECTION_WORDS] + [
        f"oat_zero/{k}" for k in OAT_ZERO_KEYWORDS
    ]
    present = [w for w in words if any(row.get(w, 0) for row in steps.values())]
    lines += ["", "Reflection words per response (only those that occur):", ""]
    if present:
        lines += ["| step | " + " | ".join(present) + " |", "|---" * (len(present) + 1) + "|"]
        for step, row in steps.items():
            lines.append(
                f"| {step} | " + " | ".join(f"{row.get(w, 0):.2f}" for w in present) + " |"
            )
    else:
        lines.append("none")
    lines += ["", "Largest changes (step where the series changes level most):", ""]
    lines += ["| series | step | before | after |", "|---|---|---|---|"]
    for aha in result["aha"][:8]:
        lines.append(
            f"| {aha['series']} | {aha['step']:.0f} | {aha['before']:.3f} | {aha['after']:.3f} |"
        )
    if "judge" in result:
        j = result["judge"]
        lines += ["", f"LLM judge {j['model']} on {j['responses']} logged responses:", ""]
        lines += ["| behaviour | judge | rules | agreement | unparsed |", "|---|---|---|---|---|"]
        for b in BEHAVIOURS:
            r = j[b]
            lines.append(
                f"| {b} | {r['judge_rate']:.2f} | {r['rule_rate']:.2f} | {r['agreement']:.2f} "
                f"| {r['unparsed']} |"
            )
    return "\n".join(lines)
