"""The evaluation runner: sample n completions per example, verify them, aggregate the metrics.

    result = evaluate(engine, task, examples, SamplingParams(n=16, temperature=0.6, top_p=0.95))
    result.metrics["avg@16"], result.metrics["pass@8"], result.metrics["maj@16"], result.groups

`evaluate` = `generate` (sampling, optionally saved to a `GenerationStore` batch by batch so that an
interrupted run resumes) + `score` (verification and metrics, also usable on stored generations
alone: `score(task, store.load().values())` re-scores without a model).

Determinism: examples are cut into fixed batches of `batch_size` by position, and batch b samples
with seed `params.seed + b * batch_size` (its first example's index), so a resumed run draws what
the uninterrupted run would have drawn (given the same batch size) and a larger `--limit` extends
an earlier run without changing it. With `params.seed=None` the engine's own generator is used.
`generate_sharded` splits the batches over the ranks of a torchrun group, each batch drawn as
one process draws it (the pipeline's sample and eval stages under torchrun).

Verification uses `task.verify_batch(texts, examples)` when the task has it (a process pool for
math), else `task.verify` per completion; the answer each completion votes for is
`task.extract` when the task overrides it, else the verdict's extracted answer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reasonlab.eval.metrics import SampleSet, cluster_answers, summarize, summarize_groups
from reasonlab.eval.store import GenerationStore, SettingsMismatch
from reasonlab.records import Example, Verdict
from reasonlab.rollout.base import Prompt, RolloutEngine, SamplingParams
from reasonlab.tasks.base import Task, verify_all

if TYPE_CHECKING:
    from reasonlab.parallel import Dist

Progress = Callable[[int, int], None]
"""Called with (examples done, examples in all) after each batch."""


@dataclass
class EvalResult:
    """Metrics of one benchmark (or one list of examples) and what they were computed from."""

    benchmark: str
    task: str
    metrics: dict[str, float]
    """avg@n, pass@k, maj@k, lengths, truncation and format rates (see `metrics.summarize`)."""
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    """The same metrics per value of the `group_by` meta key."""
    group_by: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    samples: list[SampleSet] = field(default_factory=list, repr=False)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """One row per scored completion (id, sample index, verdict, length, finish reason, group)."""
    generations: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """The generation records scored (`generation_record`: example, prompt, completion texts)."""

    def headline(self) -> dict[str, float]:
        """The figures a training run logs per evaluation: accuracy (the mean over all samples:
        avg@n, greedy accuracy when n = 1), format_rate, mean_length, max_length (tokens),
        truncation_rate, examples, responses."""
        m = self.metrics
        accuracy = next(v for k, v in m.items() if k.startswith("avg@"))
        return {
            "accuracy": accuracy,
            "format_rate": m.get("format_rate", float("nan")),
            "mean_length": m["mean_length"],
            "max_length": float(max((r["num_tokens"] for r in self.rows), default=0)),
            "truncation_rate": m["truncation_rate"],
            "examples": m["num_examples"],
            "responses": float(len(self.rows)),
        }

    def to_dict(self) -> dict[str, Any]:
        """What results.json keeps (no per-sample rows)."""
        return {
            "benchmark": self.benchmark,
            "task": self.task,
            "group_by": self.group_by,
            "settings": self.settings,
            "metrics": _finite(self.metrics),
            "groups": {g: _finite(m) for g, m in self.groups.items()},
        }


def generation_record(example: Example, prompt: str, rollouts: Sequence[Any]) -> dict[str, Any]:
    """The stored form of one example's samples."""
    return {
        "example_id": example.id,
        "example": example.to_dict(),
        "prompt": prompt,
        "completions": [
            {
                "text": r.text,
                "num_tokens": len(r.completion_ids),
                "finish_reason": r.finish_reason,
            }
            for r in rollouts
        ],
    }


def generate(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    params: SamplingParams,
    *,
    template: str = "r1-zero",
    tokenizer: Any = None,
    batch_size: int = 8,
    store: GenerationStore | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """`params.n` completions for every example, as generation records in example order.

    Batches whose examples are all in `store` are skipped; the others are generated whole (same
    seed, same draws) and their missing records appended to it.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ids = [e.id for e in examples]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"example ids must be unique; {dup!r} appears more than once")
    done = store.load() if store is not None else {}
    if tokenizer is None:
        tokenizer = getattr(engine, "tokenizer", None)
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        if all(e.id in done for e in batch):
            continue
        texts = [task.render(e, template=template, tokenizer=tokenizer) for e in batch]
        seed = None if params.seed is None else params.seed + start
        rollouts = engine.generate(
            [Prompt(text=t, example_id=e.id) for t, e in zip(texts, batch)],
            dataclasses.replace(params, seed=seed),
        )
        if len(rollouts) != len(batch) * params.n:
            raise RuntimeError(
                f"the engine returned {len(rollouts)} rollouts for {len(batch)} prompts x "
                f"n={params.n}; expected {len(batch) * params.n}"
            )
        new = []
        for i, (example, text) in enumerate(zip(batch, texts)):
            if example.id not in done:
                record = generation_record(
                    example, text, rollouts[i * params.n : (i + 1) * params.n]
                )
                new.append(record)
                done[example.id] = record
        if store is not None and new:
            store.append(new)
        if progress is not None:
            progress(min(start + batch_size, len(examples)), len(examples))
    return [done[e.id] for e in examples]


def generate_sharded(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    params: SamplingParams,
    *,
    store: GenerationStore,
    settings: dict[str, Any],
    dist: Dist,
    template: str = "r1-zero",
    tokenizer: Any = None,
    batch_size: int = 8,
) -> None:
    """Data-parallel `generate` into `store` (a collective: every rank of `dist` calls it).

    The fixed batches of `batch_size` examples are split over the ranks, a contiguous run of
    whole batches each (`Dist.local_slice`); batch b samples with the seed one process gives it
    (`params.seed + b * batch_size`), so the generations equal one process's. Rank 0 opens `store`
    for `settings` (the caller has handled `SettingsMismatch`); each rank then generates its
    batches that `store` lacks into its own shard, `<name>.rank<R>` beside it (kept until merged,
    so an interrupted run resumes there); after a barrier rank 0 appends the shards' records to
    `store` in example order and removes them. Afterwards `generate` (or `Sampler.run`) on rank 0
    over `store` finds every example stored and only reads and scores.
    """
    if dist.is_main:
        store.open(settings)
    dist.barrier()  # rank 0 has opened (or reset) the store before any rank reads it
    done = GenerationStore(store.directory, store.name).load()
    shard = GenerationStore(store.directory, f"{store.name}.rank{dist.rank}")
    try:
        shard.open(settings)
    except SettingsMismatch:  # left by another version of the run: obsolete
        shard.open(settings, overwrite=True)
    starts = list(range(0, len(examples), batch_size))
    for start in starts[dist.local_slice(len(starts), even=False)]:
        batch = examples[start : start + batch_size]
        if all(e.id in done for e in batch):
            continue
        seed = None if params.seed is None else params.seed + start  # as `generate` seeds it
        generate(
            engine,
            task,
            batch,
            dataclasses.replace(params, seed=seed),
            template=template,
            tokenizer=tokenizer,
            batch_size=len(batch),
            store=shard,
        )
    dist.barrier()  # every shard is written
    if dist.is_main:
        shards = [
            GenerationStore(store.directory, f"{store.name}.rank{r}")
            for r in range(dist.world_size)
        ]
        found: dict[str, dict[str, Any]] = {}
        for part in shards:
            found.update(part.load())
        new = [found[e.id] for e in examples if e.id not in done and e.id in found]
        if new:
            store.append(new)
        for part in shards:
            part.path.unlink(missing_ok=True)
            part.settings_path.unlink(missing_ok=True)


def extract_answers(
    task: Task, texts: Sequence[str], examples: Sequence[Example], verdicts: Sequence[Verdict]
) -> list[str | None]:
    """The answer each completion votes for (see the module docstring)."""
    if type(task).extract is Task.extract:
        return [v.answer for v in verdicts]
    return [task.extract(t, e) for t, e in zip(texts, examples)]


def score(
    task: Task,
    records: Iterable[dict[str, Any]],
    *,
    benchmark: str = "",
    group_by: str | None = None,
    ks: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
) -> EvalResult:
    """Verify stored generations and aggregate the metrics (no model needed)."""
    records = list(records)
    if not records:
        raise ValueError(f"no generations to score for {benchmark or task.name!r}")
    examples = [Example.from_dict(r["example"]) for r in records]
    flat_texts, flat_examples = [], []
    for record, example in zip(records, examples):
        for c in record["completions"]:
            flat_texts.append(c["text"])
            flat_examples.append(example)
    verdicts = verify_all(task, flat_texts, flat_examples)
    answers = extract_answers(task, flat_texts, flat_examples, verdicts)

    samples: list[SampleSet] = []
    rows: list[dict[str, Any]] = []
    at = 0
    for record, example in zip(records, examples):
        completions = record["completions"]
        n = len(completions)
        ex_verdicts, ex_answers = verdicts[at : at + n], answers[at : at + n]
        at += n
        labels = cluster_answers(ex_answers, lambda a, b, ex=example: task.equivalent(a, b, ex))
        group = group_value(example, group_by)
        samples.append(
            SampleSet(
                example_id=example.id,
                correct=[v.correct for v in ex_verdicts],
                labels=labels,
                num_tokens=[int(c["num_tokens"]) for c in completions],
                finish_reasons=[c["finish_reason"] for c in completions],
                format_ok=[v.format_ok for v in ex_verdicts],
                group=group,
            )
        )
        for i, (c, v, a, label) in enumerate(zip(completions, ex_verdicts, ex_answers, labels)):
            rows.append(
                {
                    "example_id": example.id,
                    "sample": i,
                    "correct": v.correct,
                    "answer": a,
                    "answer_group": label,
                    "format_ok": v.format_ok,
                    "detail": v.detail,
                    "num_tokens": c["num_tokens"],
                    "finish_reason": c["finish_reason"],
                    "group": group,
                }
            )
    return EvalResult(
        benchmark=benchmark or task.name,
        task=task.name,
        metrics=summarize(samples, ks),
        groups=summarize_groups(samples, ks) if group_by else {},
        group_by=group_by,
        settings=dict(settings or {}),
        samples=samples,
        rows=rows,
        generations=records,
    )


def evaluate(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    params: SamplingParams,
    *,
    template: str = "r1-zero",
    tokenizer: Any = None,
    batch_size: int = 8,
    store: GenerationStore | None = None,
    benchmark: str = "",
    group_by: str | None = None,
    ks: Sequence[int] | None = None,
    settings: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> EvalResult:
    """Generate (resuming from `store` when given) and score; see the module docstring."""
    records = generate(
        engine,
        task,
        examples,
        params,
        template=template,
        tokenizer=tokenizer,
        batch_size=batch_size,
        store=store,
        progress=progress,
    )
    return score(task, records, benchmark=benchmark, group_by=group_by, ks=ks, settings=settings)


def greedy_and_sampled(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    *,
    template: str,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    samples: int = 4,
    seed: int = 0,
) -> dict[str, EvalResult]:
    """The two accuracies a training run reports on held-out problems: "greedy" (one greedy
    completion each) and, when `samples` > 0, "sampled" (`samples` draws at temperature 1:
    avg@n). One batch each, so the draws do not depend on a batch size."""
    batch = max(1, len(examples))
    params = SamplingParams(
        temperature=0.0, max_new_tokens=max_new_tokens, stop=list(stop), seed=seed
    )
    out = {"greedy": evaluate(engine, task, examples, params, template=template, batch_size=batch)}
    if samples > 0:
        sampled = dataclasses.replace(params, n=samples, temperature=1.0)
        out["sampled"] = evaluate(
            engine, task, examples, sampled, template=template, batch_size=batch
        )
    return out


def group_value(example: Example, key: str | None) -> Any:
    """The example's group for a breakdown by meta `key` (a list value: its length; countdown's
    `numbers` groups by how many numbers), None when there is no key or the example lacks it."""
    if key is None:
        return None
    value = example.meta.get(key)
    if isinstance(value, (list, tuple)):
        return len(value)
    return value


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    """NaN (e.g. the mean length of correct samples when none is correct) as JSON null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
