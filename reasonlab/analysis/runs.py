"""A run folder's files, read once: whatever of them the folder holds.

RL runs write config.yaml, metrics.jsonl (one row per step), eval.jsonl (held-out evaluations,
step 0 when `run.eval_before_train`) and rollouts.jsonl (sampled responses); the demo adds
summary.json/summary.md one folder up; `reasonlab eval` writes results.json/results.md, `reasonlab
search` search_results.json, `reasonlab pretrain` pretrain.json; `reasonlab eval` generation
files (`*.generations.jsonl`) are read as responses when there is no rollouts.jsonl. `load_run` reads every one that is
present and leaves the rest empty, so the analysis and the report work on any of these folders.
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
        return not (self.config or self.metrics or self.evals or self.rollouts or self.json_files)


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
    if run.is_empty():
        raise FileNotFoundError(f"{path}: none of the run files ({', '.join(RUN_FILES)}) is there")
    return run


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
            run.rollouts += _responses(rows)
    for file in ("summary.json", "results.json", "search_results.json", "pretrain.json"):
        if (folder / file).is_file() and file not in run.json_files:
            try:
                run.json_files[file] = json.loads((folder / file).read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{folder / file}:{err.lineno}: not valid JSON ({err.msg})"
                ) from None
    for file in ("summary.md", "results.md"):
        if (folder / file).is_file() and file not in run.markdown:
            run.markdown[file] = (folder / file).read_text(encoding="utf-8")


def _responses(rows: Any) -> list[dict[str, Any]]:
    """One row per response: rows of `reasonlab eval` generation files (`completions`, a list per
    example) are expanded, with the prompt and the example's `meta`; other rows pass as they are."""
    out: list[dict[str, Any]] = []
    for row in rows:
        completions = row.get("completions")
        if not isinstance(completions, list):
            out.append(row)
            continue
        meta = (row.get("example") or {}).get("meta")
        for sample in completions:
            sample = sample if isinstance(sample, dict) else {"text": str(sample)}
            out.append(
                {
                    "example_id": row.get("example_id"),
                    "prompt": row.get("prompt", ""),
                    "meta": meta,
                    **sample,
                }
            )
    return out


def completion_text(row: dict[str, Any]) -> str:
    """The response text of a rollout row: `completion` (run rollouts.jsonl), else `text` or
    `response` (generation files of other tools)."""
    for key in ("completion", "text", "response", "generated"):
        value = row.get(key)
        if isinstance(value, str):
            return value
    return ""
