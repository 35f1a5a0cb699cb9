"""Building SFT sets by sampling: rejection sampling from a model, verified by the task.

For every problem, `n` completions are sampled with the rollout engine, each is verified with the
task (`reasonlab.tasks.base.verify_all`) and scored with an accuracy reward, and a *keep rule*
chooses which become SFT rows:

| rule | keeps | as in |
|---|---|---|
| `correct` | every verified-correct sample | rejection sampling: DeepSeek-R1 stage 3 (DeepSeek-AI 2025, sec. 2.3.3), RFT (Yuan et al. 2023), STaR (Zelikman et al. 2022) |
| `shortest-correct` | the correct samples, shortest first | a length-aware pick (short-CoT data from a long-CoT model) |
| `first-correct` | the first correct sample in sampling order | STaR's one rationale per problem |
| `all` | every sample, with its verdict | unfiltered distillation; data for analysis |

Applied per problem, in this order: length bounds (`min_tokens` <= completion tokens <=
`max_tokens`), then dedup of identical completion texts (the first copy stays), then the rule, then
at most `k` rows.

Where the problems come from (the trust rule: training data never touches evaluation problems):
- `train`: problems outside the task's held-out share (`reasonlab.tasks.split`, by `task.key`,
  `held_out_fraction` of the problem space, the same share RL runs and benchmarks hold out);
  rows say `purpose: "train"`;
- `heldout`: problems *in* that share, and `benchmark:NAME`: a benchmark's examples; both are for
  evaluation only and their rows say `purpose: "eval"`.

Resume: generations go to `<out stem>.generations.jsonl` beside the output, appended batch by
batch through `reasonlab.eval.store.GenerationStore` (its settings file refuses to mix generations
made with other settings). Each run first rewrites the output from the stored generations
(verification and selection are deterministic), then appends the rows of every new batch, so a
killed run resumed ends with the same file as an uninterrupted one. Batch b samples with seed
`seed + b * batch_size`, as `reasonlab eval` does. Changing only the keep rule, `k` or the length
bounds re-filters the stored generations without sampling again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reasonlab.eval.metrics import pass_at_k
from reasonlab.eval.runner import generate
from reasonlab.eval.store import GenerationStore
from reasonlab.io import atomic_write_text, write_jsonl
from reasonlab.records import Example, Verdict
from reasonlab.rollout.base import RolloutEngine, SamplingParams
from reasonlab.tasks import split
from reasonlab.tasks.base import verify_all

KEEP_RULES = ("correct", "shortest-correct", "first-correct", "all")
"""The keep rules (see the module docstring)."""
SOURCES = ("train", "heldout")
"""Problem sources besides `benchmark:NAME`."""

Progress = Callable[[int, int], None]
"""Called with (problems done, problems in all) after each batch."""


@dataclass(frozen=True)
class KeepRule:
    """Which sampled completions of one problem become rows."""

    rule: str = "correct"
    """One of KEEP_RULES."""
    k: int | None = None
    """At most this many rows per problem (None: no limit)."""
    dedup: bool = True
    """Drop a completion whose text equals an earlier one of the same problem."""
    min_tokens: int = 0
    """Drop completions shorter than this many tokens."""
    max_tokens: int | None = None
    """Drop completions longer than this many tokens (None: no bound)."""

    def __post_init__(self) -> None:
        if self.rule not in KEEP_RULES:
            raise ValueError(f"keep rule {self.rule!r} is unknown; valid: {', '.join(KEEP_RULES)}")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be >= 1 (or None for no limit), got {self.k}")
        if self.min_tokens < 0:
            raise ValueError(f"min_tokens must be >= 0, got {self.min_tokens}")
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            raise ValueError(
                f"max_tokens ({self.max_tokens}) must be >= min_tokens ({self.min_tokens})"
            )


def select(
    keep: KeepRule, texts: Sequence[str], correct: Sequence[bool], lengths: Sequence[int]
) -> list[int]:
    """Indices of one problem's samples to keep: bounds, dedup, rule, then at most `k` (see the
    module docstring). In sampling order, except `shortest-correct` (shortest first, ties by
    order)."""
    if not len(texts) == len(correct) == len(lengths):
        raise ValueError(f"{len(texts)} texts, {len(correct)} verdicts, {len(lengths)} lengths")
    chosen: list[int] = []
    seen: set[str] = set()
    for i, (text, ok, length) in enumerate(zip(texts, correct, lengths)):
        if length < keep.min_tokens or (keep.max_tokens is not None and length > keep.max_tokens):
            continue
        if keep.dedup:
            if text in seen:
                continue
            seen.add(text)
        if keep.rule == "all" or ok:
            chosen.append(i)
    if keep.rule == "first-correct":
        chosen = chosen[:1]
    elif keep.rule == "shortest-correct":
        chosen.sort(key=lambda i: (lengths[i], i))
    return chosen if keep.k is None else chosen[: keep.k]


def purpose_of(source: str) -> str:
    """`train` for the training share, `eval` for the held-out share and benchmarks."""
    return "train" if source == "train" else "eval"


def problems_for(
    task: Any,
    source: str,
    n: int | None,
    *,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    held_out_fraction: float = split.HELD_OUT_FRACTION,
    data: str | None = None,
) -> list[Example]:
    """The problems to sample from (see the module docstring).

    `source`: `train`, `heldout` or `benchmark:NAME`. Generator tasks draw `n` distinct problems
    (`split.problems`) from the chosen share; file-backed tasks load `data` (a shipped split or a
    JSONL path) and keep the examples of the chosen share (the first `n` when given). A benchmark
    gives its first `n` examples. Raises ValueError naming what is wrong.
    """
    params = dict(params or {})
    if source.startswith("benchmark:"):
        from reasonlab.eval import benchmarks

        bench = benchmarks.get(source.split(":", 1)[1])
        if bench.task != task.name:
            raise ValueError(
                f"benchmark {bench.name!r} is a {bench.task} benchmark, not {task.name}"
            )
        return bench.load(limit=n, task=task)
    if source not in SOURCES:
        raise ValueError(
            f"source {source!r} is unknown; valid: {', '.join(SOURCES)}, benchmark:NAME"
        )
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(
            f"held_out_fraction must be in (0, 1) so that training and evaluation problems stay "
            f"apart, got {held_out_fraction}"
        )
    held_out = source == "heldout"
    if data is None:
        if n is None:
            raise ValueError(f"task {task.name!r} is generated: give the number of problems")
        return split.problems(
            task, n, seed=seed, held_out=held_out, fraction=held_out_fraction, **params
        )
    if params:
        raise ValueError(f"generator parameters {sorted(params)} do not apply to data {data!r}")
    examples = [
        ex
        for ex in task.load(data)
        if split.in_held_out_share(task, ex, held_out_fraction) == held_out
    ]
    if not examples:
        share = "held-out" if held_out else "training"
        raise ValueError(
            f"{data!r} has no example in the {share} share (held_out_fraction {held_out_fraction})"
        )
    return examples[:n] if n is not None else examples


@dataclass
class SampleSummary:
    """What one sampling run produced (also written to `<out stem>.summary.json`)."""

    problems: int
    samples: int
    kept: int
    problems_kept: int
    """Problems with at least one kept row."""
    pass_at_n: float
    """Share of problems with at least one correct sample among n (unbiased pass@n)."""
    avg_at_n: float
    """Mean share of correct samples per problem (R1's pass@1 over n samples)."""
    n: int
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Sampler:
    """One rejection-sampling job: the task, where the rows go and how they are chosen.

    `settings` are what made the generations (model, task, source, template, sampling, problems):
    they are stored beside the output and guard its resume, and every row carries them.
    """

    task: Any
    out: Path
    keep: KeepRule
    settings: dict[str, Any]
    source: str = "train"
    reward: str = "r1"
    """Accuracy scheme scoring each verdict (`reasonlab.rewards`: r1, tinyzero, logic_rl, simplerl)."""
    template: str = "r1-zero"

    def __post_init__(self) -> None:
        from reasonlab import rewards

        self.out = Path(self.out)
        self.store = GenerationStore(self.out.parent, self.out.stem)
        self.summary_path = self.out.with_name(f"{self.out.stem}.summary.json")
        self.reward_fn = rewards.get(self.reward)

    def kept_rows(
        self, record: dict[str, Any], verdicts: Sequence[Verdict]
    ) -> tuple[list[dict], int]:
        """The kept rows of one stored generation record, and its number of correct samples."""
        completions = record["completions"]
        example = Example.from_dict(record["example"])
        texts = [c["text"] for c in completions]
        correct = [v.correct for v in verdicts]
        lengths = [int(c["num_tokens"]) for c in completions]
        scores = self.reward_fn(
            completions=texts, prompts=[record["prompt"]] * len(texts), verdicts=list(verdicts)
        )
        key = self.task.key(example)
        out = []
        for i in select(self.keep, texts, correct, lengths):
            out.append(
                {
                    "prompt": record["prompt"],
                    "completion": texts[i],
                    "example_id": example.id,
                    "key": key,
                    "task": self.task.name,
                    "source": self.source,
                    "purpose": purpose_of(self.source),
                    "model": self.settings.get("model"),
                    "sampling": {
                        k: self.settings.get(k)
                        for k in ("n", "temperature", "top_p", "top_k", "max_new_tokens", "seed")
                    },
                    "keep": self.keep.rule,
                    "sample": i,
                    "verdict": verdicts[i].to_dict(),
                    "correct": correct[i],
                    "reward": float(scores[i]),
                    "num_tokens": lengths[i],
                    "finish_reason": completions[i]["finish_reason"],
                    "example": example.to_dict(),
                }
            )
        return out, sum(correct)

    def _verify(self, records: Sequence[dict[str, Any]]) -> list[list[Verdict]]:
        texts, examples, sizes = [], [], []
        for record in records:
            example = Example.from_dict(record["example"])
            sizes.append(len(record["completions"]))
            for c in record["completions"]:
                texts.append(c["text"])
                examples.append(example)
        flat = verify_all(self.task, texts, examples)
        out, at = [], 0
        for size in sizes:
            out.append(flat[at : at + size])
            at += size
        return out

    def _select(
        self, records: Sequence[dict[str, Any]]
    ) -> tuple[list[dict], list[tuple[int, int]]]:
        rows: list[dict] = []
        counts: list[tuple[int, int]] = []  # (samples, correct) per problem
        for record, verdicts in zip(records, self._verify(records)):
            kept, n_correct = self.kept_rows(record, verdicts)
            rows += kept
            counts.append((len(verdicts), n_correct))
        return rows, counts

    def run(
        self,
        engine: RolloutEngine | None,
        examples: Sequence[Example],
        params: SamplingParams,
        *,
        tokenizer: Any = None,
        batch_size: int = 8,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> SampleSummary:
        """Sample what is missing, write the rows; see the module docstring for the resume."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        ids = [e.id for e in examples]
        if len(set(ids)) != len(ids):
            raise ValueError("problem ids must be unique")
        self.store.open(self.settings, overwrite=overwrite)
        done = self.store.load()
        # the output from what is stored, then one append per new batch
        stored = [done[e.id] for e in examples if e.id in done]
        rows, counts = self._select(stored)
        write_jsonl(self.out, rows)
        kept = len(rows)
        for start in range(0, len(examples), batch_size):
            batch = examples[start : start + batch_size]
            if any(e.id not in done for e in batch):
                if engine is None:
                    raise ValueError("problems without stored generations need a model")
                # the whole batch, as `reasonlab eval` samples it: same seed, same draws
                seed = None if params.seed is None else params.seed + start
                records = generate(
                    engine,
                    self.task,
                    batch,
                    dataclasses.replace(params, seed=seed),
                    template=self.template,
                    tokenizer=tokenizer,
                    batch_size=len(batch),
                )
                new = [r for r in records if r["example_id"] not in done]
                self.store.append(new)
                done.update((r["example_id"], r) for r in new)
                new_rows, new_counts = self._select(new)
                _append_jsonl(self.out, new_rows)
                kept += len(new_rows)
                counts += new_counts
            if progress is not None:
                progress(min(start + batch_size, len(examples)), len(examples))
        return self._finish(rows_kept=kept, counts=counts, problems=len(examples))

    def _finish(
        self, *, rows_kept: int, counts: list[tuple[int, int]], problems: int
    ) -> SampleSummary:
        n = int(self.settings.get("n") or (counts[0][0] if counts else 0))
        kept_problems = 0
        with open(self.out, encoding="utf-8") as f:
            kept_problems = len({json.loads(line)["example_id"] for line in f if line.strip()})
        summary = SampleSummary(
            problems=problems,
            samples=sum(s for s, _ in counts),
            kept=rows_kept,
            problems_kept=kept_problems,
            pass_at_n=_mean([pass_at_k(s, c, s) for s, c in counts]),
            avg_at_n=_mean([c / s for s, c in counts]),
            n=n,
            settings={
                **self.settings,
                "keep": dataclasses.asdict(self.keep),
                "reward": self.reward,
            },
        )
        atomic_write_text(self.summary_path, json.dumps(summary.to_dict(), indent=2) + "\n")
        return summary


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _append_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Append rows (one JSON line each), flushed and synced, so a finished batch survives a
    crash."""
    if not rows:
        return
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    with open(path, "ab") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


__all__ = [
    "KEEP_RULES",
    "KeepRule",
    "SOURCES",
    "SampleSummary",
    "Sampler",
    "problems_for",
    "purpose_of",
    "select",
]
