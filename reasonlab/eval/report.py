"""results.json and results.md of an evaluation folder.

results.json: {"benchmarks": {name: EvalResult.to_dict()}}; writing merges into an existing file,
so benchmarks evaluated by separate commands into one folder end up in one table (each entry
carries the settings it was made with). results.md: one row per benchmark (examples, avg@n, pass@k,
maj@k, lengths, truncation, format), then one table per benchmark with a group breakdown.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasonlab.eval.runner import EvalResult
from reasonlab.io import atomic_write_text

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
_AT = re.compile(r"^(avg|pass|maj)@(\d+)")


def write_results(out_dir: str | os.PathLike, results: Sequence[EvalResult]) -> dict[str, Any]:
    """Merge `results` into out_dir/results.json and rewrite out_dir/results.md; returns the JSON."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_JSON
    data: dict[str, Any] = {"benchmarks": {}}
    if path.is_file():
        data = json.loads(path.read_text())
        data.setdefault("benchmarks", {})
    for r in results:
        data["benchmarks"][r.benchmark] = r.to_dict()
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    atomic_write_text(out / RESULTS_MD, markdown(data))
    return data


def _metric_order(key: str) -> tuple[int, int, str]:
    m = _AT.match(key)
    if m:
        return ({"avg": 0, "pass": 1, "maj": 2}[m.group(1)], int(m.group(2)), key)
    return (3, 0, key)


_SHOWN_TAIL = ["mean_length", "median_length", "truncation_rate", "format_rate"]
_LABELS = {
    "num_examples": "examples",
    "mean_length": "mean len",
    "median_length": "median len",
    "truncation_rate": "truncated",
    "format_rate": "format ok",
}


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "num_examples":
        return str(int(value))
    if key.endswith("_length"):
        return f"{value:.1f}"
    return f"{100 * value:.1f}"


def _table(rows: list[tuple[str, dict[str, Any]]], first: str) -> list[str]:
    keys = sorted({k for _, m in rows for k in m if _AT.match(k)}, key=_metric_order)
    keys = ["num_examples"] + keys + [k for k in _SHOWN_TAIL if any(k in m for _, m in rows)]
    head = [first] + [_LABELS.get(k, k) for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, m in rows:
        lines.append("| " + " | ".join([name] + [_cell(k, m.get(k)) for k in keys]) + " |")
    return lines


def markdown(data: dict[str, Any]) -> str:
    """The tables of results.md from the results.json content."""
    benches = data.get("benchmarks", {})
    lines = [
        "# Evaluation results",
        "",
        "Percentages; lengths in completion tokens. avg@n: pass@1 averaged over n samples; "
        "pass@k: unbiased estimator; maj@k: majority vote over blocks of k samples.",
        "",
    ]
    lines += _table([(name, b["metrics"]) for name, b in benches.items()], "benchmark")
    for name, b in benches.items():
        s = b.get("settings", {})
        settings = ", ".join(f"{k}={v}" for k, v in s.items() if k != "benchmark")
        lines += ["", f"## {name}", "", f"task `{b['task']}`; {settings}"]
        if b.get("groups"):
            lines += ["", f"By `{b['group_by']}`:", ""]
            lines += _table(list(b["groups"].items()), b["group_by"])
    return "\n".join(lines) + "\n"
