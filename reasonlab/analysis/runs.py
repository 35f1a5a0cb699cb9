"""A run folder's files, read once: whatever of them the folder holds.

RL runs write config.yaml, metrics.jsonl (one row per step), eval.jsonl (held-out evaluations,
step 0 when `run.eval_before_train`) and rollouts.jsonl (sampled responses); SFT runs
(`reasonlab sft`) config.yaml, metrics.jsonl (loss, lr, grad_norm per logging step), eval.jsonl
(eval_loss and `eval/accuracy`...: held-out greedy accuracy) and summary.json; the demo adds
summary.json/summary.md one folder up; `reasonlab eval` writes results.json/results.md, `reasonlab
search` search_results.json, `reasonlab pretrain` pretrain.json, `reasonlab experiment`
NAME/results.json (with an `experiment` field) and NAME/NAME.png; `reasonlab eval` generation
files (`*.generations.jsonl`) are read as responses when there is no rollouts.jsonl. `load_run`
reads every one that is present and leaves the rest empty, so the analysis and the report work on
any of these folders. A pipeline folder (`reasonlab pipeline`: STAGE/done.json per finished stage)
is read as its stages, each with the run folder it wrote (`Run.stages`); a folder of experiments
(`reasonlab experiment --out DIR`) as the results of each (`Run.experiments`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlab.io import DataError, read_jsonl

RUN_FILES = (
    "config.yaml",
    "metrics.jsonl",
    "eval.jsonl",
    "rollouts.jsonl",
    "summary.json",
    "summary.md",
    "results.json",
    "results.md",
    "search_results.json",
    "pretrain.json",
)
"""The files `load_run` looks for (a demo folder's RL run is read from its rl/ subfolder)."""


@dataclass
class Run:
    """What a run folder holds (empty where a file is absent)."""

    path: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)
    config_text: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    json_files: dict[str, Any] = field(default_factory=dict)
    """summary.json, results.json, search_results.json, pretrain.json: parsed, by file name."""
    markdown: dict[str, str] = field(default_factory=dict)
    """summary.md, results.md: the text, by file name."""
    stages: list[Stage] = field(default_factory=list)
    """A pipeline folder's finished stages, in the order they finished."""
    experiments: list[dict[str, Any]] = field(default_factory=list)
    """`reasonlab experiment` results (results.json of each experiment in the folder)."""

    @property
    def kind(self) -> str:
        """What wrote the folder: pipeline, experiment, demo, rl, sft, eval, search, pretrain or
        responses (a JSONL file, or a folder of responses only)."""
        if self.stages:
            return "pipeline"
        if self.experiments:
            return "experiment"
        if "summary.json" in self.json_files and "summary.md" in self.markdown:
            return "demo"
        if self.config:
            return "sft" if "training" in self.config and "data" in self.config else "rl"
        for file, kind in (
            ("results.json", "eval"),
            ("search_results.json", "search"),
            ("pretrain.json", "pretrain"),
        ):
            if file in self.json_files:
                return kind
        return "responses"

    @property
    def eval_results(self) -> dict[str, Any]:
        """`reasonlab eval`'s results.json by benchmark (empty when the folder has none)."""
        return (self.json_files.get("results.json") or {}).get("benchmarks") or {}

    @property
    def task(self) -> str | None:
        return (self.config.get("task") or {}).get("name")

    @property
    def reward_scheme(self) -> str | None:
        return (self.config.get("rewards") or {}).get("scheme")

    @property
    def eval_decoding(self) -> str:
        """How the held-out rows of eval.jsonl were decoded: "greedy" or "T=..."."""
        temperature = (self.config.get("run") or {}).get("eval_temperature", 0.0)
        return "greedy" if not temperature else f"T={temperature}"

    @property
    def train_decoding(self) -> str:
        temperature = (self.config.get("rollout") or {}).get("temperature", 1.0)
        return f"sampled, T={temperature}"

    def is_empty(self) -> bool:
        return not (
            self.config
            or self.metrics
            or self.evals
            or self.rollouts
            or self.json_files
            or self.stages
            or self.experiments
        )


@dataclass
class Stage:
    """One finished stage of a pipeline folder: its done.json and the run folder it wrote (the
    rl and sft stages' `run`, an eval stage's own folder, a pretrain stage's `model`; None for a
    stage whose folder holds no run files: cot, sample)."""

    name: str
    kind: str
    record: dict[str, Any]
    """done.json: stage, kind, inputs, outputs, summary, seconds, fingerprint."""
    path: Path
    run: Run | None


EXPECTED = (
    "an RL or SFT run folder (config.yaml, metrics.jsonl, eval.jsonl), a demo folder (summary.json "
    "beside rl/), a `reasonlab eval --out` folder (results.json, *.generations.jsonl), a "
    "`reasonlab search --out` folder (search_results.json), a `reasonlab pipeline` folder "
    "(STAGE/done.json), a `reasonlab experiment --out` folder (NAME/results.json) or a JSONL file "
    "of responses"
)
"""What `load_run` reads, for its error messages."""


def load_run(path: str | Path, name: str | None = None) -> Run:
    """Read the run files in `path` (a folder, or one JSONL file of rollouts); a demo folder
    (summary.json beside rl/) is read as its RL run plus the summary.

    Raises FileNotFoundError naming the folder when it holds none of `RUN_FILES`, and
    `DataError` (file:line) for a malformed row.
    """
    path = Path(path)
    if path.is_file():
        rows = read_jsonl(path, drop_partial_last_line=True)
        return Run(path=path, name=name or path.stem, rollouts=_responses(rows))
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run folder or JSONL file")
    run = Run(path=path, name=name or path.name)
    folders = [path]
    if (path / "rl").is_dir() and not (path / "metrics.jsonl").exists():
        folders.insert(0, path / "rl")  # the demo's layout: rl/ holds the RL run
    for folder in folders:
        _read_into(run, folder)
    if "experiment" in run.json_files.get("results.json", {}):  # `reasonlab experiment`'s NAME/
        run.experiments = [run.json_files.pop("results.json")]
        run.markdown.pop("results.md", None)
    if run.is_empty():
        run.stages = _stages(path)
    if run.is_empty():
        run.experiments = [
            results
            for results in map(_read_json, sorted(path.glob("*/results.json")))
            if "experiment" in results
        ]
    if run.is_empty():
        raise FileNotFoundError(f"{path}: none of the run files is there; expected {EXPECTED}")
    return run


def _stages(path: Path) -> list[Stage]:
    """The finished stages of a pipeline folder, in the order their done.json were written (a
    pipeline runs its stages in recipe order)."""
    done = sorted(path.glob("*/done.json"), key=lambda p: (p.stat().st_mtime, p.parent.name))
    stages = []
    for file in done:
        record = _read_json(file)
        outputs = record.get("outputs") or {}
        folder = Path(outputs["run"]) if "run" in outputs else file.parent
        if not folder.is_dir():  # moved: the same layout under this folder
            folder = file.parent / "run" if "run" in outputs else file.parent
        if record.get("kind") == "pretrain":
            folder = file.parent / "model"
        try:
            run: Run | None = load_run(folder, name=f"{path.name}/{file.parent.name}")
        except FileNotFoundError:
            run = None
        stages.append(
            Stage(file.parent.name, str(record.get("kind", "?")), record, file.parent, run)
        )
    return stages


def _read_json(file: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{file}:{err.lineno}: not valid JSON ({err.msg})") from None


def _read_into(run: Run, folder: Path) -> None:
    import yaml

    config = folder / "config.yaml"
    if config.is_file() and not run.config:
        run.config_text = config.read_text(encoding="utf-8")
        try:
            run.config = yaml.safe_load(run.config_text) or {}
        except yaml.YAMLError as err:
            raise DataError(f"{config}: not valid YAML ({err})") from None
    for attr, file in (("metrics", "metrics.jsonl"), ("evals", "eval.jsonl")):
        if (folder / file).is_file() and not getattr(run, attr):
            rows = read_jsonl(folder / file, ("step",), drop_partial_last_line=True)
            setattr(run, attr, sorted(rows, key=lambda r: r["step"]))
    if (folder / "rollouts.jsonl").is_file() and not run.rollouts:
        run.rollouts = list(read_jsonl(folder / "rollouts.jsonl", drop_partial_last_line=True))
    for generations in sorted(folder.glob("*.generations.jsonl")):  # `reasonlab eval` output
        if not (folder / "rollouts.jsonl").is_file():
            rows = read_jsonl(generations, drop_partial_last_line=True)
            scored = generations.with_name(
                generations.name.removesuffix(".generations.jsonl") + ".scored.jsonl"
            )
            verdicts = (
                {
                    (row.get("example_id"), row.get("sample")): row
                    for row in read_jsonl(scored, drop_partial_last_line=True)
                }
                if scored.is_file()
                else {}
            )
            run.rollouts += _responses(rows, verdicts)
    for file in ("summary.json", "results.json", "search_results.json", "pretrain.json"):
        if (folder / file).is_file() and file not in run.json_files:
            run.json_files[file] = _read_json(folder / file)
    for file in ("summary.md", "results.md"):
        if (folder / file).is_file() and file not in run.markdown:
            run.markdown[file] = (folder / file).read_text(encoding="utf-8")


def _responses(
    rows: Any, verdicts: dict[tuple[Any, Any], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One row per response: rows of `reasonlab eval` generation files (`completions`, a list per
    example) are expanded, with the prompt, the example's `meta` and, from `verdicts` (the
    `*.scored.jsonl` rows by example id and sample index), the verdict as rollouts.jsonl holds it;
    other rows pass as they are."""
    out: list[dict[str, Any]] = []
    for row in rows:
        completions = row.get("completions")
        if not isinstance(completions, list):
            out.append(row)
            continue
        meta = (row.get("example") or {}).get("meta")
        for index, sample in enumerate(completions):
            sample = sample if isinstance(sample, dict) else {"text": str(sample)}
            response = {
                "example_id": row.get("example_id"),
                "prompt": row.get("prompt", ""),
                "meta": meta,
                **sample,
            }
            scored = (verdicts or {}).get((row.get("example_id"), index))
            if scored is not None:
                response["verdict"] = {
                    k: scored.get(k) for k in ("correct", "answer", "format_ok", "detail")
                }
            out.append(response)
    return out


def completion_text(row: dict[str, Any]) -> str:
    """The response text of a rollout row: `completion` (run rollouts.jsonl), else `text` or
    `response` (generation files of other tools)."""
    for key in ("completion", "text", "response", "generated"):
        value = row.get(key)
        if isinstance(value, str):
            return value
    return ""
