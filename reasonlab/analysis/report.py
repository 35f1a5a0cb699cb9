"""`write_report(run_dirs, out)`: one self-contained HTML page about one or more runs.

No network and no scripts: plots are inline SVG (matplotlib), styles are inline, so the file opens
in any browser and can be mailed. Several runs share each plot's axes (one line per run). Every
section appears only when some run holds its files (`reasonlab.analysis.runs`), so the page works
for RL, SFT, demo, eval, search, pretrain, pipeline and experiment folders alike:

- runs: kind, path, task, reward scheme, how to rerun, the resolved config (folded);
- tables: the demo's before/after summary, `reasonlab eval` results (avg@n, pass@k, maj@k, per
  group: results.md as the eval wrote it), search results (accuracy and tokens per method and N),
  the held-out evaluations of eval.jsonl per step (RL and SFT: accuracy, format, length, eval loss);
- scaling curves: pass@k and maj@k against k (`reasonlab eval`), accuracy against the budget N
  (`reasonlab search`);
- accuracy: held-out (eval.jsonl: greedy unless `run.eval_temperature`; step 0 is the base model
  when the run evaluated before training) and training responses (sampled), and per difficulty;
- loss (SFT: training and eval loss) and learning rate; reward and each reward component;
  response length (mean, p50, p90) and truncation; KL, entropy, clip fraction, grad norm;
  behaviour rates and reflection words per step;
- the largest behaviour changes ("aha", `reasonlab.analysis.dynamics.aha_moments`) with
  responses from either side;
- sample responses at the first, middle and last logged steps, the detected behaviours
  highlighted in the text (rule-based detectors of `reasonlab.analysis.behaviours`);
- a pipeline folder: its stages in a table (inputs, outputs, summary, seconds; each linked to its
  section), then one section per stage with the sections above for the run that stage wrote;
- an experiment folder: each experiment's verdict, tables and plot (`experiment_section`).
"""

from __future__ import annotations

import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reasonlab.analysis.behaviours import (
    BEHAVIOURS,
    OAT_ZERO_KEYWORDS,
    REFLECTION_WORDS,
    behaviour_spans,
)
from reasonlab.analysis.dynamics import aha_moments, behaviour_series, row_meta, run_detector
from reasonlab.analysis.runs import Run, completion_text, load_run
from reasonlab.io import atomic_write_text

COLOURS = {
    "verification": "#cde8ff",
    "backtracking": "#ffd9c2",
    "subgoal_setting": "#d8f5cf",
    "backward_chaining": "#ecd6ff",
}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1400px;padding:0 16px;color:#222;background:#fff}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right;font-size:.9em}th{background:#f4f4f4}td.l,th.l{text-align:left}
pre{background:#f7f7f7;padding:8px;overflow-x:auto;font-size:.8em}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plot{flex:0 0 auto;width:440px}
.plot svg{width:440px;height:auto}.data summary{font-size:.75em;color:#555}
.data td{font-size:.75em;overflow-wrap:anywhere}
.resp{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;white-space:pre-wrap;
border:1px solid #ddd;padding:6px;margin:6px 0;background:#fcfcfc}
.meta{color:#555;font-size:.85em}.ok{color:#080}.bad{color:#a00}
mark{padding:0 1px;border-radius:2px}.legend span{padding:1px 6px;margin-right:8px}
"""


def write_report(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    names: Sequence[str] | None = None,
    sample_steps: Sequence[int] | None = None,
    samples_per_step: int = 3,
) -> Path:
    """Write the report on `run_dirs` (folders or rollout JSONL files) to `out`; returns it.

    `sample_steps`: the steps whose logged responses are shown (default: the first, middle and
    last logged steps; a step a run did not log is skipped). Raises FileNotFoundError naming a
    path that holds no run files.
    """
    if names is None:  # folder names; parent/folder where two share a name (pipeline/stage/run)
        paths = [Path(p) for p in run_dirs]
        clash = {p.name for p in paths if [q.name for q in paths].count(p.name) > 1}
        names = [f"{p.parent.name}/{p.name}" if p.name in clash else p.name for p in paths]
    runs = [load_run(p, names[i]) for i, p in enumerate(run_dirs)]
    _unique_names(runs)
    atomic_write_text(out, render(runs, sample_steps, samples_per_step))
    return Path(out)


def _unique_names(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for run in runs:
        if run.name in seen:
            seen[run.name] += 1
            run.name = f"{run.name} ({seen[run.name]})"
        else:
            seen[run.name] = 1


def render(
    runs: Sequence[Run], sample_steps: Sequence[int] | None = None, samples_per_step: int = 3
) -> str:
    """The report's HTML text (arguments as in `write_report`)."""
    e = html.escape
    title = "reasonlab report: " + ", ".join(r.name for r in runs)
    body: list[str] = [f"<h1>{e(title)}</h1>"]
    body += _runs_section(runs, 2)
    flat = [run for run in runs if run.kind != "pipeline"]
    body += _sections(flat, sample_steps, samples_per_step, 2, runs_table=False)
    for run in runs:
        if run.kind == "pipeline":
            body += _pipeline_section(run, sample_steps, samples_per_step)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _sections(
    runs: Sequence[Run],
    sample_steps: Sequence[int] | None,
    samples_per_step: int,
    level: int,
    runs_table: bool = True,
) -> list[str]:
    """Every section about `runs` (one plot per quantity, one line per run), headings at `level`."""
    out = _runs_section(runs, level) if runs_table else []
    out += _tables_section(runs, level)
    out += _scaling_section(runs, level)
    out += _experiments_section(runs, level)
    out += _plots_section(runs, level)
    out += _aha_section(runs, level)
    out += _samples_section(runs, sample_steps, samples_per_step, level)
    return out


# -- sections ----------------------------------------------------------------------------------


def _heading(level: int, text: str, anchor: str | None = None) -> str:
    ident = f' id="{html.escape(anchor)}"' if anchor else ""
    return f"<h{level}{ident}>{html.escape(text)}</h{level}>"


def _anchor(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", "-".join(parts)).strip("-")


def _rerun(run: Run) -> str | None:
    """The command that makes such a folder again (into NEW_DIR), from what the folder holds."""
    config = run.path / "config.yaml"
    if run.kind == "demo":
        return f"reasonlab train {run.path / 'rl' / 'config.yaml'} --out NEW_DIR"
    if run.kind in ("rl", "sft") and config.is_file():
        command = "train" if run.kind == "rl" else "sft"
        return f"reasonlab {command} {config} --out NEW_DIR"
    if run.kind == "eval":
        commands = []
        for name, bench in run.eval_results.items():
            s = bench.get("settings") or {}
            keys = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "template", "seed")
            options = [
                f"--{key.replace('_', '-')} {s[key]}"
                for key in (*keys, "limit")
                if s.get(key) is not None
            ]
            commands.append(
                f"reasonlab eval --model {s.get('model', 'MODEL')} --benchmarks {name} "
                + " ".join(options)
                + " --out NEW_DIR"
            )
        return "; ".join(commands) or None
    return None


def _responses_file(run: Run) -> str:
    if run.path.is_file():
        return run.path.name
    if any((folder / "rollouts.jsonl").is_file() for folder in (run.path, run.path / "rl")):
        return "rollouts.jsonl"
    return "*.generations.jsonl"


def _runs_section(runs: Sequence[Run], level: int) -> list[str]:
    e = html.escape
    out = [
        _heading(level, "Runs"),
        "<table>",
        _row(
            ["run", "kind", "folder", "task", "reward scheme", "steps", "files"],
            head=True,
            left=True,
        ),
    ]
    for run in runs:
        files = [
            name
            for name, present in (
                ("config.yaml", bool(run.config)),
                ("metrics.jsonl", bool(run.metrics)),
                ("eval.jsonl", bool(run.evals)),
                (_responses_file(run), bool(run.rollouts)),
                *((name, True) for name in run.json_files),
                *((f"{s.name}/done.json", True) for s in run.stages),
                *((f"{x['experiment']}/results.json", True) for x in run.experiments),
            )
            if present
        ]
        steps = run.metrics[-1]["step"] if run.metrics else "-"
        task = run.task or ", ".join(
            sorted({b.get("task", "?") for b in run.eval_results.values()})
        )
        out.append(
            _row(
                [
                    run.name,
                    run.kind,
                    str(run.path),
                    task or "-",
                    run.reward_scheme or "-",
                    str(steps),
                    ", ".join(files),
                ],
                left=True,
            )
        )
    out.append("</table>")
    for run in runs:
        rerun = _rerun(run)
        if run.config_text:
            out.append(
                f"<details><summary>{e(run.name)}: resolved config (rerun with "
                f"<code>{e(rerun or '')}</code>)</summary><pre>{e(run.config_text)}</pre></details>"
            )
        elif rerun:
            out.append(f'<p class="meta">{e(run.name)}: made by <code>{e(rerun)}</code></p>')
        if "search_results.json" in run.json_files:
            data = run.json_files["search_results.json"]
            settings = {k: v for k, v in data.items() if k not in ("accuracy", "tokens")}
            out.append(
                f"<details><summary>{e(run.name)}: search settings (search_results.json)"
                f"</summary><pre>{e(json.dumps(settings, indent=2))}</pre></details>"
            )
    return out


def _tables_section(runs: Sequence[Run], level: int) -> list[str]:
    e = html.escape
    sub = level + 1
    out: list[str] = []
    for run in runs:
        for name, text in run.markdown.items():
            label = {"summary.md": "demo summary", "results.md": "evaluation results"}[name]
            out.append(_heading(sub, f"{run.name}: {label} ({name})"))
            out.append(markdown_tables(text, sub + 1))
        if "search_results.json" in run.json_files:
            out += _search_tables(run, sub)
        if run.evals:
            out += _heldout_table(run, sub)
        if run.kind == "sft" and "summary.json" in run.json_files:
            data = (run.json_files["summary.json"] or {}).get("data") or {}
            if data:
                cells = ", ".join(f"{k} {v}" for k, v in data.items() if not isinstance(v, dict))
                out.append(f'<p class="meta">{e(run.name)}: training rows: {e(cells)}</p>')
        if "pretrain.json" in run.json_files:
            out.append(
                f"<details><summary>{e(run.name)}: pretrain.json</summary><pre>"
                f"{e(json.dumps(run.json_files['pretrain.json'], indent=2))}</pre></details>"
            )
    return [_heading(level, "Tables"), *out] if out else []


_HELDOUT_COLUMNS = {
    "accuracy": "accuracy",
    "format_rate": "format ok",
    "mean_length": "mean length",
    "truncation_rate": "truncated",
    "eval_loss": "eval loss",
    "examples": "examples",
}


def _heldout_value(row: dict[str, Any], key: str) -> Any:
    """A held-out figure of an eval.jsonl row: RL rows name it plainly, SFT rows `eval/NAME`."""
    return row.get(key, row.get(f"eval/{key}"))


def _heldout_table(run: Run, level: int) -> list[str]:
    """eval.jsonl as a table: one row per evaluation step, with per-difficulty accuracy."""
    groups = sorted(
        {
            k.split("/", 1)[1] if k.startswith("accuracy/") else k.split("/", 2)[2]
            for row in run.evals
            for k in row
            if k.startswith("accuracy/") or k.startswith("eval/accuracy/")
        }
    )
    keys = [k for k in _HELDOUT_COLUMNS if any(_heldout_value(r, k) is not None for r in run.evals)]
    if not keys and not groups:
        return []
    out = [
        _heading(level, f"{run.name}: held-out evaluations (eval.jsonl, {run.eval_decoding})"),
        "<table>",
        _row(
            ["step", *(_HELDOUT_COLUMNS[k] for k in keys), *(f"accuracy {g}" for g in groups)],
            head=True,
        ),
    ]
    for row in run.evals:
        cells = [str(row["step"])]
        cells += [_fmt(_heldout_value(row, k)) for k in keys]
        cells += [_fmt(_heldout_value(row, f"accuracy/{g}")) for g in groups]
        out.append(_row(cells))
    out.append("</table>")
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.4g}"


def _search_tables(run: Run, level: int) -> list[str]:
    """search_results.json: accuracy (%) and mean generated tokens per method and budget N."""
    data = run.json_files["search_results.json"]
    out = [
        _heading(
            level,
            f"{run.name}: search results on {data.get('benchmark', '?')}, "
            f"{data.get('num_examples', '?')} examples (search_results.json)",
        )
    ]
    for key, label, fmt in (
        ("accuracy", "accuracy (%)", lambda v: f"{100 * v:.1f}"),
        ("tokens", "mean generated tokens per example", lambda v: f"{v:.1f}"),
    ):
        table = data.get(key) or {}
        ns = sorted({int(n) for by_n in table.values() for n in by_n})
        if not ns:
            continue
        out.append(f'<p class="meta">{label}</p><table>')
        out.append(_row(["method", *(f"N={n}" for n in ns)], head=True))
        for method, by_n in table.items():
            cells = [fmt(by_n[str(n)]) if str(n) in by_n else "-" for n in ns]
            out.append(_row([method, *cells]))
        out.append("</table>")
    return out


def _scaling_section(runs: Sequence[Run], level: int) -> list[str]:
    """pass@k and maj@k against k (`reasonlab eval`), accuracy against N (`reasonlab search`)."""
    panels = []
    for family in ("pass", "maj"):
        lines = []
        for run in runs:
            for bench, result in run.eval_results.items():
                points = sorted(
                    (int(k.split("@")[1]), v)
                    for k, v in (result.get("metrics") or {}).items()
                    if k.startswith(f"{family}@") and isinstance(v, int | float)
                )
                if points:
                    lines.append((f"{run.name} {bench}", points, "o-"))
        what = "unbiased pass@k" if family == "pass" else "majority vote of k samples"
        panels.append(_plot(f"{family}@k ({what})", "share correct", lines, "k (log2)", log2=True))
    lines = []
    for run in runs:
        data = run.json_files.get("search_results.json") or {}
        for method, by_n in (data.get("accuracy") or {}).items():
            points = sorted((int(n), v) for n, v in by_n.items())
            lines.append((f"{run.name} {method}", points, "o-"))
    panels.append(
        _plot("search: accuracy against the budget", "share correct", lines, "N (log2)", log2=True)
    )
    panels = [p for p in panels if p]
    if not panels:
        return []
    return [_heading(level, "Scaling curves"), '<div class="plots">', *panels, "</div>"]


def _experiments_section(runs: Sequence[Run], level: int) -> list[str]:
    out: list[str] = []
    for run in runs:
        for results in run.experiments:
            name = results["experiment"]
            png = run.path / f"{name}.png"
            if not png.is_file():
                png = run.path / name / f"{name}.png"
            section = experiment_section(results, png)
            out += [_demote(part, level + 1 - 2) for part in section]
    return [_heading(level, "Experiments"), *out] if out else []


def _demote(part: str, by: int) -> str:
    """HTML whose headings are `by` levels lower (h2 -> h3 for by=1)."""
    if by <= 0:
        return part
    return re.sub(
        r"<(/?)h([1-6])\b", lambda m: f"<{m.group(1)}h{min(6, int(m.group(2)) + by)}", part
    )


def _x_label(runs: Sequence[Run]) -> str:
    kinds = {"sft" if run.kind == "sft" else "rl" for run in runs if run.metrics}
    if kinds == {"sft"}:
        return "SFT step (optimizer step)"
    if kinds == {"rl"}:
        return "RL step"
    return "step (each run's own: RL or SFT optimizer steps)"


def _plots_section(runs: Sequence[Run], level: int) -> list[str]:
    xlabel = _x_label(runs)
    panels: list[str] = []
    acc = []
    for run in runs:
        if run.evals:
            acc.append(
                (
                    f"{run.name} held-out ({run.eval_decoding})",
                    [
                        (r["step"], _heldout_value(r, "accuracy"))
                        for r in run.evals
                        if isinstance(_heldout_value(r, "accuracy"), int | float)
                    ],
                    "o-",
                )
            )
        if run.metrics:
            acc.append(
                (f"{run.name} train ({run.train_decoding})", _points(run.metrics, "accuracy"), "--")
            )
    if acc:
        panels.append(
            _plot("accuracy (step 0: the model before training)", "share correct", acc, xlabel)
        )
    by_difficulty = []
    for run in runs:
        for rows, where in ((run.evals, "held-out"), (run.metrics, "train")):
            keys = sorted(
                {k for r in rows for k in r if k.startswith(("accuracy/", "eval/accuracy/"))}
            )
            if where == "train":
                keys = [k for k in keys if not k.startswith("eval/")]
            for key in keys:
                group = key.rsplit("/", 1)[1]
                by_difficulty.append(
                    (
                        f"{run.name} {where} {group}",
                        _points(rows, key),
                        "o-" if where == "held-out" else "--",
                    )
                )
    panels.append(_plot("accuracy by difficulty", "share correct", by_difficulty, xlabel))

    def per_run(key: str, style: str = "-") -> list[tuple[str, list, str]]:
        return [(run.name, _points(run.metrics, key), style) for run in runs if run.metrics]

    loss_lines = []
    for run in runs:
        label = "cross-entropy" if run.kind == "sft" else "policy loss"
        loss_lines.append((f"{run.name} train ({label})", _points(run.metrics, "loss"), "-"))
        loss_lines.append((f"{run.name} eval loss", _points(run.evals, "eval_loss"), "o-"))
    panels.append(_plot("loss", "loss", loss_lines, xlabel))
    panels.append(_plot("learning rate", "lr", per_run("lr"), xlabel))
    reward_lines = []
    for run in runs:
        keys = sorted({k for r in run.metrics for k in r if k.startswith("reward/")})
        for key in keys:
            if key != "reward/std":
                reward_lines.append((f"{run.name} {key}", _points(run.metrics, key), "-"))
    if reward_lines:
        panels.append(_plot("reward (mean and each component)", "reward", reward_lines, xlabel))
    length_lines = []
    for run in runs:
        for key, style in (("length/mean", "-"), ("length/p50", ":"), ("length/p90", "--")):
            length_lines.append((f"{run.name} {key}", _points(run.metrics, key), style))
    panels.append(_plot("response length (train)", "tokens", length_lines, xlabel))
    for key, title, ylabel in (
        ("truncation_rate", "truncated responses", "share"),
        ("kl", "KL to the reference", "KL"),
        ("entropy", "entropy", "nats per token"),
        ("clip_fraction", "clip fraction", "share of tokens"),
        ("grad_norm", "grad norm (before clipping)", "L2 norm"),
    ):
        panels.append(_plot(title, ylabel, per_run(key), xlabel))
    # from metrics.jsonl (every response) or, for runs logged without them, from rollouts.jsonl
    trained = [run for run in runs if run.metrics or run.kind != "eval"]
    series = {run.name: behaviour_series(run) for run in trained}

    def behaviour_points(run: Run, key: str) -> list[tuple[int, float]]:
        return sorted(series[run.name].get(key, {}).items())

    for b in BEHAVIOURS:
        lines = [(run.name, behaviour_points(run, f"behaviour/{b}"), "-") for run in trained]
        panels.append(_plot(f"{b} (rule-based)", "share of responses", lines, xlabel))
    word_lines = []
    for run in trained:
        for key in [f"r1_words/{w}" for w in REFLECTION_WORDS] + [
            f"oat_zero/{k}" for k in OAT_ZERO_KEYWORDS
        ]:
            points = behaviour_points(run, key)
            if any(v for _, v in points):
                word_lines.append((f"{run.name} {key}", points, "-"))
    panels.append(_plot("reflection words, each", "per response", word_lines, xlabel))
    panels = [p for p in panels if p]
    if not panels:
        return []
    return [
        _heading(level, "Training curves"),
        '<p class="meta">One line per run and series. Behaviour and reflection series: over '
        "every response of a step where the trainer logged them (metrics.jsonl), else over the "
        "logged sample (rollouts.jsonl).</p>",
        '<div class="plots">',
        *panels,
        "</div>",
    ]


def _pipeline_section(
    run: Run, sample_steps: Sequence[int] | None, samples_per_step: int
) -> list[str]:
    """A pipeline folder: its stages in a table, each linked to its own section below."""
    e = html.escape
    out = [
        _heading(2, f"Pipeline {run.name}: {len(run.stages)} finished stages", _anchor(run.name)),
        '<p class="meta">In the order the stages finished (their done.json). Each stage\'s '
        "section holds the report of the run folder it wrote.</p>",
        "<table>",
        _row(["stage", "kind", "inputs", "outputs", "summary", "seconds"], head=True, left=True),
    ]
    for stage in run.stages:
        record = stage.record
        summary = ", ".join(
            f"{k} {_fmt(v)}"
            for k, v in (record.get("summary") or {}).items()
            if isinstance(v, int | float | str) and not isinstance(v, bool)
        )
        cells = [
            " ".join(f"{k}: {v}" for k, v in (record.get(part) or {}).items())
            for part in ("inputs", "outputs")
        ]
        link = f'<a href="#{e(_anchor(run.name, stage.name))}">{e(stage.name)}</a>'
        out.append(
            f'<tr><td class="l">{link}</td>'
            + "".join(
                f'<td class="l">{e(c)}</td>'
                for c in (stage.kind, *cells, summary or "-", _fmt(record.get("seconds")))
            )
            + "</tr>"
        )
    out.append("</table>")
    for stage in run.stages:
        title = f"stage {stage.name} ({stage.kind}): {stage.run.path if stage.run else stage.path}"
        out.append(_heading(3, title, _anchor(run.name, stage.name)))
        if stage.run is None:
            out.append(
                f"<pre>{e(json.dumps(stage.record.get('summary') or {}, indent=2, default=str))}"
                "</pre>"
            )
            continue
        out += _sections([stage.run], sample_steps, samples_per_step, 4)
    return out


def _aha_section(runs: Sequence[Run], level: int, top: int = 4) -> list[str]:
    e = html.escape
    out: list[str] = []
    for run in runs:
        if not (run.metrics or run.rollouts) or run.kind == "eval":
            continue
        changes = [a for a in aha_moments(run) if a["series"].startswith(("behaviour/", "r1_"))]
        changes = [a for a in changes if not a["series"].endswith("_per_response")][:top]
        if not changes:
            continue
        out.append(_heading(level + 1, run.name))
        out.append("<table>")
        out.append(_row(["series", "step of change", "before", "after"], head=True))
        for a in changes:
            out.append(
                _row([a["series"], f"{a['step']:.0f}", f"{a['before']:.3f}", f"{a['after']:.3f}"])
            )
        out.append("</table>")
        a = changes[0]
        detector = run_detector(run)
        for label, texts in (("before", a["before_examples"]), ("after", a["after_examples"])):
            for text in texts:
                out.append(
                    f'<div class="meta">{e(a["series"])}, {label} step {a["step"]:.0f}</div>'
                    f'<div class="resp">{highlight(text, detector)}</div>'
                )
    if not out:
        return []
    return [
        _heading(level, "Largest behaviour changes"),
        '<p class="meta">The step that splits each series into two levels best (least '
        "squares); a description of the curve, not a significance test.</p>",
        _legend(),
        *out,
    ]


def _samples_section(
    runs: Sequence[Run], sample_steps: Sequence[int] | None, per_step: int, level: int
) -> list[str]:
    e = html.escape
    out: list[str] = []
    for run in runs:
        steps = sorted({int(r.get("step", 0)) for r in run.rollouts})
        if not steps:
            continue
        stepped = any("step" in r for r in run.rollouts)
        if not stepped:  # responses of an evaluation (or a JSONL file): no training steps
            chosen = steps
        elif sample_steps is None:
            chosen = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        else:
            chosen = sorted(set(sample_steps) & set(steps))
        if not chosen:
            continue
        detector = run_detector(run)
        heading = f"{run.name}: steps {', '.join(map(str, chosen))}" if stepped else run.name
        out.append(_heading(level + 1, heading))
        for step in chosen:
            rows = [r for r in run.rollouts if int(r.get("step", 0)) == step]
            if not stepped:  # an evaluation's n samples per problem: each problem's first first
                ranks: list[int] = []
                counts: dict[Any, int] = {}
                for r in rows:
                    ranks.append(counts.get(r.get("example_id"), 0))
                    counts[r.get("example_id")] = ranks[-1] + 1
                rows = [r for _, r in sorted(zip(ranks, rows, strict=True), key=lambda x: x[0])]
            rows = rows[:per_step]
            for row in rows:
                verdict = row.get("verdict") or {}
                correct = verdict.get("correct")
                mark = (
                    ""
                    if correct is None
                    else f' <span class="{"ok" if correct else "bad"}">'
                    f"{'correct' if correct else 'wrong'}</span>"
                )
                meta = row_meta(row)
                problem = (
                    f"numbers {meta['numbers']}, target {meta['target']}; "
                    if meta and "numbers" in meta and "target" in meta
                    else ""
                )
                where = f"step {step}: " if stepped else ""
                out.append(
                    f'<div class="meta">{where}{e(problem)}reward '
                    f"{row.get('reward', '-')}, {row.get('num_tokens', '-')} tokens, "
                    f"{e(str(row.get('finish_reason', '-')))}{mark}</div>"
                    f'<div class="resp">{highlight(completion_text(row), detector, meta)}</div>'
                )
    if not out:
        return []
    return [_heading(level, "Sample responses"), _legend(), *out]


# -- pieces ------------------------------------------------------------------------------------


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def highlight(text: str, detector: str = "generic", meta: dict[str, Any] | None = None) -> str:
    """`text` as HTML with each detected behaviour instance in a coloured `<mark>`; control
    characters (which HTML does not allow) shown as U+FFFD."""

    def e(part: str) -> str:
        return _CONTROL.sub("\ufffd", html.escape(part))

    pieces, pos = [], 0
    for start, end, behaviour in behaviour_spans(text, detector, meta):
        if start < pos:  # overlaps an earlier mark of another behaviour: left unmarked
            continue
        pieces.append(e(text[pos:start]))
        pieces.append(
            f'<mark style="background:{COLOURS[behaviour]}" title="{behaviour}">'
            f"{e(text[start:end])}</mark>"
        )
        pos = end
    pieces.append(e(text[pos:]))
    return "".join(pieces)


def _legend() -> str:
    spans = "".join(f'<span style="background:{c}">{b}</span>' for b, c in COLOURS.items())
    return f'<p class="legend">{spans}</p>'


def markdown_tables(text: str, heading_level: int = 4) -> str:
    """Markdown pipe tables as HTML tables, `#` headings as headings from `heading_level` down,
    other lines as paragraphs (escaped; `code` spans as <code>)."""
    e = html.escape
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if table:
            out.append("<table>")
            out.append(_row(table[0], head=True))
            out.extend(_row(cells) for cells in table[1:])
            out.append("</table>")
            table.clear()

    def inline(line: str) -> str:
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", e(line))

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [c.strip() for c in stripped[1:-1].split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # skip the |---| rule
                table.append(cells)
            continue
        flush()
        heading = re.match(r"(#{1,6})\s+(.*)", stripped)
        if heading:
            level = min(6, heading_level + len(heading.group(1)) - 1)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif stripped:
            out.append(f"<p>{inline(stripped)}</p>")
    flush()
    return "\n".join(out)


def _row(cells: Sequence[str], head: bool = False, left: bool = False) -> str:
    tag = "th" if head else "td"
    cls = ' class="l"' if left else ""
    return "<tr>" + "".join(f"<{tag}{cls}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"


def _points(rows: Sequence[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    return [
        (r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float) and "step" in r
    ]


def _plot(
    title: str,
    ylabel: str,
    lines: Sequence[tuple[str, list, str]],
    xlabel: str = "RL step",
    log2: bool = False,
) -> str:
    """One small SVG line plot (inline), or "" when no line has a point; `log2`: a base-2 x axis
    with a tick at each x of the data (budgets k, N)."""
    lines = [line for line in lines if line[1]]
    if not lines:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.3))
    for label, points, style in lines:
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, style, label=label, markersize=4)
    if log2:
        ax.set_xscale("log", base=2)
        ticks = sorted({x for _, points, _ in lines for x, _ in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(lines) > 1 or lines[0][0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    rows = "".join(
        _row([label, ", ".join(f"{_fmt(x)}: {_fmt(y)}" for x, y in points)], left=True)
        for label, points, _ in lines
    )
    data = (
        f'<details class="data"><summary>{html.escape(title)}: the plotted values</summary>'
        f"<table>{_row(['line', f'{xlabel}: value, ...'], head=True, left=True)}{rows}</table>"
        "</details>"
    )
    return f'<div class="plot">{svg[svg.index("<svg") :]}{data}</div>'


# -- experiments (`reasonlab experiment`) --------------------------------------------------------


def write_experiments_report(
    out_dir: str | Path, out: str | Path, pending: dict[str, str] | None = None
) -> Path:
    """One page with a section per experiment whose `OUT_DIR/NAME/results.json` exists (the
    verdict, claim and paper, a table of every metric per arm as mean +- std with the per-seed
    values, the effects the verdict reads, the command, and the experiment's PNG inline), then the
    experiments listed in `pending` (name -> why not run). Same style as `write_report`."""
    folder = Path(out_dir)
    results = [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(folder.glob("*/results.json"))
    ]
    body = ["<h1>reasonlab experiments: the seed papers' findings in miniature</h1>"]
    if results:
        body.append("<table>")
        body.append(_row(["experiment", "verdict"], head=True, left=True))
        body += [_row([r["experiment"], r["verdict"]], left=True) for r in results]
        body.append("</table>")
    for r in results:
        body += experiment_section(r, folder / r["experiment"] / f"{r['experiment']}.png")
    if pending:
        body.append("<h2>Not run</h2><table>")
        body.append(_row(["experiment", "why"], head=True, left=True))
        body += [_row([name, why], left=True) for name, why in sorted(pending.items())]
        body.append("</table>")
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>reasonlab experiments</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    atomic_write_text(out, page)
    return Path(out)


def experiment_section(results: dict[str, Any], png: Path | None = None) -> list[str]:
    """The HTML of one experiment's results.json (see `write_experiments_report`)."""
    import base64

    e = html.escape
    ok = results["verdict"].startswith("reproduced")
    quick = " (--quick: mechanics only, not the finding)" if results.get("quick") else ""
    seeds = len(results["seeds"])
    out = [
        f'<h2 id="{e(results["experiment"])}">{e(results["experiment"])}{e(quick)}</h2>',
        f'<p class="{"ok" if ok else "bad"}"><b>{e(results["verdict"])}</b></p>',
        f"<p>Claim: {e(results['claim'])}. Paper: {e(results['paper'])}.</p>",
        f'<p class="meta">{seeds} seed{"s" * (seeds != 1)}; held-out problems: '
        f"{results['held_out']['examples']} (the same for every arm); command: "
        f"<code>{e(results['command'])}</code>; {results['seconds']:.0f} s.</p>",
    ]
    arms = results["arms"]
    out.append("<table>")
    out.append(_row(["metric", *arms], head=True, left=True))
    for key, label in results["metrics"].items():
        cells = []
        for arm in arms.values():
            s = arm["metrics"][key]
            seeds = ", ".join(f"{v:.1f}" for v in s["values"])
            cells.append(f"{s['mean']:.2f} +- {s['std']:.2f} ({seeds})")
        out.append(_row([label, *cells], left=True))
    out.append("</table>")
    out.append("<table>")
    out.append(
        _row(
            ["effect the claim predicts (> 0)", "mean +- std", "per seed", "holds"],
            head=True,
            left=True,
        )
    )
    for effect in results["effects"]:
        out.append(
            _row(
                [
                    f"{effect['label']} ({effect['unit']})" if effect["unit"] else effect["label"],
                    f"{effect['mean']:+.2f} +- {effect['std']:.2f}",
                    ", ".join(f"{v:+.1f}" for v in effect["values"]),
                    "yes" if effect["holds"] else "no",
                ],
                left=True,
            )
        )
    out.append("</table>")
    out.append("<details><summary>arms: how to rerun each</summary><ul>")
    for name, arm in arms.items():
        note = f" ({e(arm['note'])})" if arm.get("note") else ""
        out.append(f"<li>{e(name)}{note}: <code>{e(arm['command'])}</code></li>")
    out.append("</ul></details>")
    if png is not None and png.is_file():
        data = base64.b64encode(png.read_bytes()).decode()
        out.append(
            f'<img alt="{e(results["experiment"])}" style="max-width:100%" '
            f'src="data:image/png;base64,{data}">'
        )
    return out
