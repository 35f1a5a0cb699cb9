"""`write_report(run_dirs, out)`: one self-contained HTML page about one or more runs.

No network and no scripts: plots are inline SVG (matplotlib), styles are inline, so the file opens
in any browser and can be mailed. Several runs share each plot's axes (one line per run). Every
section appears only when some run holds its files (`reasonlab.analysis.runs`), so the page works
for RL, demo, eval, search and pretrain folders alike:

- runs: path, task, reward scheme, how to rerun, the resolved config (folded);
- tables: the demo's before/after summary, `reasonlab eval` results, search results;
- accuracy: held-out (eval.jsonl: greedy unless `run.eval_temperature`; step 0 is the base model
  when the run evaluated before training) and training responses (sampled);
- reward and each reward component; response length (mean, p50, p90) and truncation; KL,
  entropy, clip fraction, grad norm; behaviour rates and reflection words per step;
- the largest behaviour changes ("aha", `reasonlab.analysis.dynamics.aha_moments`) with
  responses from either side;
- sample responses at the first, middle and last logged steps, the detected behaviours
  highlighted in the text (rule-based detectors of `reasonlab.analysis.behaviours`).
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
.plots{display:flex;flex-wrap:wrap;gap:8px}.plot{flex:0 0 auto}.plot svg{width:440px;height:auto}
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
    runs = [load_run(p, None if names is None else names[i]) for i, p in enumerate(run_dirs)]
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
    body += _runs_section(runs)
    body += _tables_section(runs)
    body += _plots_section(runs)
    body += _aha_section(runs)
    body += _samples_section(runs, sample_steps, samples_per_step)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# -- sections ----------------------------------------------------------------------------------


def _runs_section(runs: Sequence[Run]) -> list[str]:
    e = html.escape
    out = [
        "<h2>Runs</h2>",
        "<table>",
        _row(["run", "folder", "task", "reward scheme", "steps", "files"], head=True, left=True),
    ]
    for run in runs:
        files = [
            name
            for name, present in (
                ("config.yaml", bool(run.config)),
                ("metrics.jsonl", bool(run.metrics)),
                ("eval.jsonl", bool(run.evals)),
                ("rollouts.jsonl", bool(run.rollouts)),
                *((name, True) for name in run.json_files),
            )
            if present
        ]
        steps = run.metrics[-1]["step"] if run.metrics else "-"
        out.append(
            _row(
                [
                    run.name,
                    str(run.path),
                    run.task or "-",
                    run.reward_scheme or "-",
                    str(steps),
                    ", ".join(files),
                ],
                left=True,
            )
        )
    out.append("</table>")
    for run in runs:
        if run.config_text:
            config = run.path / "config.yaml" if (run.path / "config.yaml").is_file() else None
            rerun = (
                f"reasonlab train {config} --out NEW_DIR"
                if config
                else f"reasonlab train {run.path}/rl/config.yaml --out NEW_DIR"
            )
            out.append(
                f"<details><summary>{e(run.name)}: resolved config (rerun with "
                f"<code>{e(rerun)}</code>)</summary><pre>{e(run.config_text)}</pre></details>"
            )
    return out


def _tables_section(runs: Sequence[Run]) -> list[str]:
    e = html.escape
    out: list[str] = []
    for run in runs:
        for name, text in run.markdown.items():
            label = {"summary.md": "demo summary", "results.md": "evaluation results"}[name]
            out.append(f"<h3>{e(run.name)}: {label} ({name})</h3>")
            out.append(markdown_tables(text))
        for name in ("search_results.json", "pretrain.json"):
            if name in run.json_files:
                out.append(
                    f"<details><summary>{e(run.name)}: {name}</summary><pre>"
                    f"{e(json.dumps(run.json_files[name], indent=2))}</pre></details>"
                )
    return ["<h2>Tables</h2>", *out] if out else []


def _plots_section(runs: Sequence[Run]) -> list[str]:
    panels: list[str] = []
    acc = []
    for run in runs:
        if run.evals:
            acc.append(
                (
                    f"{run.name} held-out ({run.eval_decoding})",
                    [(r["step"], r["accuracy"]) for r in run.evals if "accuracy" in r],
                    "o-",
                )
            )
        if run.metrics:
            acc.append(
                (f"{run.name} train ({run.train_decoding})", _points(run.metrics, "accuracy"), "--")
            )
    if acc:
        panels.append(_plot("accuracy (step 0: the base model)", "share correct", acc))

    def per_run(key: str, style: str = "-") -> list[tuple[str, list, str]]:
        return [(run.name, _points(run.metrics, key), style) for run in runs if run.metrics]

    reward_lines = []
    for run in runs:
        keys = sorted({k for r in run.metrics for k in r if k.startswith("reward/")})
        for key in keys:
            if key != "reward/std":
                reward_lines.append((f"{run.name} {key}", _points(run.metrics, key), "-"))
    if reward_lines:
        panels.append(_plot("reward (mean and each component)", "reward", reward_lines))
    length_lines = []
    for run in runs:
        for key, style in (("length/mean", "-"), ("length/p50", ":"), ("length/p90", "--")):
            length_lines.append((f"{run.name} {key}", _points(run.metrics, key), style))
    panels.append(_plot("response length (train)", "tokens", length_lines))
    for key, title, ylabel in (
        ("truncation_rate", "truncated responses", "share"),
        ("kl", "KL to the reference", "KL"),
        ("entropy", "entropy", "nats per token"),
        ("clip_fraction", "clip fraction", "share of tokens"),
        ("grad_norm", "grad norm (before clipping)", "L2 norm"),
    ):
        panels.append(_plot(title, ylabel, per_run(key)))
    # from metrics.jsonl (every response) or, for runs logged without them, from rollouts.jsonl
    series = {run.name: behaviour_series(run) for run in runs}

    def behaviour_points(run: Run, key: str) -> list[tuple[int, float]]:
        return sorted(series[run.name].get(key, {}).items())

    for b in BEHAVIOURS:
        lines = [(run.name, behaviour_points(run, f"behaviour/{b}"), "-") for run in runs]
        panels.append(_plot(f"{b} (rule-based)", "share of responses", lines))
    word_lines = []
    for run in runs:
        for key in [f"r1_words/{w}" for w in REFLECTION_WORDS] + [
            f"oat_zero/{k}" for k in OAT_ZERO_KEYWORDS
        ]:
            points = behaviour_points(run, key)
            if any(v for _, v in points):
                word_lines.append((f"{run.name} {key}", points, "-"))
    panels.append(_plot("reflection words, each", "per response", word_lines))
    panels = [p for p in panels if p]
    if not panels:
        return []
    return [
        "<h2>Training curves</h2>",
        '<p class="meta">One line per run and series. Behaviour and reflection series: over '
        "every response of a step where the trainer logged them (metrics.jsonl), else over the "
        "logged sample (rollouts.jsonl).</p>",
        '<div class="plots">',
        *panels,
        "</div>",
    ]


def _aha_section(runs: Sequence[Run], top: int = 4) -> list[str]:
    e = html.escape
    out: list[str] = []
    for run in runs:
        if not (run.metrics or run.rollouts):
            continue
        changes = [a for a in aha_moments(run) if a["series"].startswith(("behaviour/", "r1_"))]
        changes = [a for a in changes if not a["series"].endswith("_per_response")][:top]
        if not changes:
            continue
        out.append(f"<h3>{e(run.name)}</h3><table>")
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
        "<h2>Largest behaviour changes</h2>",
        '<p class="meta">The step that splits each series into two levels best (least '
        "squares); a description of the curve, not a significance test.</p>",
        _legend(),
        *out,
    ]


def _samples_section(
    runs: Sequence[Run], sample_steps: Sequence[int] | None, per_step: int
) -> list[str]:
    e = html.escape
    out: list[str] = []
    for run in runs:
        steps = sorted({int(r.get("step", 0)) for r in run.rollouts})
        if not steps:
            continue
        if sample_steps is None:
            chosen = sorted({steps[0], steps[len(steps) // 2], steps[-1]})
        else:
            chosen = sorted(set(sample_steps) & set(steps))
        if not chosen:
            continue
        detector = run_detector(run)
        out.append(f"<h3>{e(run.name)}: steps {', '.join(map(str, chosen))}</h3>")
        for step in chosen:
            rows = [r for r in run.rollouts if int(r.get("step", 0)) == step][:per_step]
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
                out.append(
                    f'<div class="meta">step {step}: {e(problem)}reward '
                    f"{row.get('reward', '-')}, {row.get('num_tokens', '-')} tokens, "
                    f"{e(str(row.get('finish_reason', '-')))}{mark}</div>"
                    f'<div class="resp">{highlight(completion_text(row), detector, meta)}</div>'
                )
    if not out:
        return []
    return ["<h2>Sample responses</h2>", _legend(), *out]


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


def markdown_tables(text: str) -> str:
    """Markdown pipe tables as HTML tables; other lines as paragraphs (escaped)."""
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

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            cells = [c.strip() for c in stripped[1:-1].split("|")]
            if not all(set(c) <= set("-: ") for c in cells):  # skip the |---| rule
                table.append(cells)
            continue
        flush()
        if stripped:
            out.append(f"<p>{e(stripped)}</p>")
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


def _plot(title: str, ylabel: str, lines: Sequence[tuple[str, list, str]]) -> str:
    """One small SVG line plot (inline), or "" when no line has a point."""
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
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("RL step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(lines) > 1 or lines[0][0]:
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return f'<div class="plot">{svg[svg.index("<svg") :]}</div>'


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
