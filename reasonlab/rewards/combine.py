"""Weighted sums of rewards that report every component, and rewards from a task's verifier."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reasonlab.records import Verdict
from reasonlab.rewards.base import REGISTRY, Batch, Parts, Reward, RewardFn, Scores


@dataclass
class RewardOutput:
    """A combined reward's value per completion and every component that went into it."""

    total: list[float]
    """sum over components of weight * value (NaN values skipped, as TRL's nansum does)."""
    components: dict[str, list[float]]
    """Unweighted values by component: a term's label, or `label/part` for a composite reward's
    parts (Logic-RL's `accuracy/format` and `accuracy/answer`)."""
    weights: dict[str, float] = field(default_factory=dict)
    """The weight applied to each component (a composite's parts share its term's weight)."""

    def means(self) -> dict[str, float]:
        """Mean of the total (key 'reward') and of each component, NaNs skipped."""
        return {"reward": _nanmean(self.total)} | {
            k: _nanmean(v) for k, v in self.components.items()
        }


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _spec_term(spec: Any, index: int) -> tuple[str, RewardFn, float]:
    """A term from a spec `{"name": ..., "weight": 1.0, "label": ..., **params}`."""
    if not isinstance(spec, Mapping) or "name" not in spec:
        raise ValueError(
            f"reward spec #{index} must be a mapping with a 'name' (and optional 'weight', "
            f"'label' and parameters), got {spec!r:.100}"
        )
    params = dict(spec)
    name = params.pop("name")
    weight = params.pop("weight", 1.0)
    label = params.pop("label", name)
    return str(label), get(name, **params), weight


class Combined:
    """A weighted sum of reward terms, each reported as a component (the tiny-grpo / GRPO-Zero
    habit: log every part of the reward, not only the total).

        total_i = sum_k w_k * r_k(completion_i)

    Terms come as `{label: (reward_fn, weight)}` or as a list of specs
    `[{"name": "cosine_length", "weight": 1.0, **params}, ...]` (optional `label`, default the
    name). A term may be any TRL-convention reward function; this package's rewards share one
    normalised `Batch` per call (and `from_task` terms on the same task share one verification).
    `score()` returns a `RewardOutput`; calling it returns the totals, TRL-style, and reports the
    component means through TRL's `log_metric` when TRL passes it.
    """

    def __init__(
        self,
        terms: Mapping[str, tuple[RewardFn, float]] | Sequence[Mapping[str, Any]],
        name: str = "combined",
    ):
        if isinstance(terms, Mapping):
            items = []
            for label, term in terms.items():
                if not (isinstance(term, tuple) and len(term) == 2 and callable(term[0])):
                    raise ValueError(
                        f"term {label!r} must be a (reward_fn, weight) pair, got {term!r:.100}"
                    )
                items.append((str(label), term[0], term[1]))
        else:
            items = [_spec_term(spec, i) for i, spec in enumerate(terms)]
        if not items:
            raise ValueError("Combined needs at least one reward term")
        seen = set()
        for label, _, weight in items:
            if label in seen:
                raise ValueError(f"two reward terms are labelled {label!r}; give one a 'label'")
            seen.add(label)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)):
                raise ValueError(f"term {label!r}: weight must be a number, got {weight!r}")
        self.terms: list[tuple[str, RewardFn, float]] = [(lbl, f, float(w)) for lbl, f, w in items]
        self.__name__ = name

    def __repr__(self) -> str:
        inner = ", ".join(f"{label}={weight:g}*{fn!r}" for label, fn, weight in self.terms)
        return f"Combined({inner})"

    def score(self, completions: Sequence[Any], **columns: Any) -> RewardOutput:
        batch = Batch(completions, columns)
        components: dict[str, list[float]] = {}
        weights: dict[str, float] = {}
        for label, fn, weight in self.terms:
            if isinstance(fn, Reward):
                out: Scores | Parts = fn.compute(batch)
            else:
                raw = fn(completions=batch.completions, **columns)
                out = [math.nan if v is None else float(v) for v in raw]
            named = (
                {f"{label}/{part}": v for part, v in out.items()}
                if isinstance(out, dict)
                else {label: out}
            )
            for key, values in named.items():
                if len(values) != len(batch):
                    raise ValueError(
                        f"reward term {label!r} returned {len(values)} values for "
                        f"{len(batch)} completions"
                    )
                components[key], weights[key] = list(values), weight
        total = [0.0] * len(batch)
        for key, values in components.items():
            for i, v in enumerate(values):
                if not math.isnan(v):
                    total[i] += weights[key] * v
        return RewardOutput(total=total, components=components, weights=weights)

    def __call__(self, completions: Sequence[Any], **columns: Any) -> list[float]:
        out = self.score(completions, **columns)
        log_metric = columns.get("log_metric")
        if callable(log_metric):
            for key, mean in out.means().items():
                if key != "reward" and not math.isnan(mean):
                    log_metric(f"{self.__name__}/{key}", mean)
        return out.total


def verify_batch(task: Any, batch: Batch) -> list[Verdict]:
    """Verify every completion against the example rebuilt from the columns
    (`Task.example_from_columns`), with `Task.verify_batch` when the task has it. Cached on the
    batch, so the terms of one Combined call verify once per task."""
    key = ("task_verdicts", id(task))
    if key not in batch.cache:
        from reasonlab.tasks.base import verify_all

        examples = [task.example_from_columns(i, batch.columns) for i in range(len(batch))]
        batch.cache[key] = verify_all(task, batch.texts, examples)
    return batch.cache[key]


class TaskReward(Reward):
    """A reward that gets its `verdicts` column by verifying each completion with a task (see
    `from_task`)."""

    def __init__(self, task: Any, reward: Reward):
        self.task, self.reward = task, reward
        self.name = f"{task.name}_{reward.name}"
        self.__name__ = self.name

    def __repr__(self) -> str:
        return f"from_task({self.task.name!r}, {self.reward!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskReward) and (self.task, self.reward) == (
            other.task,
            other.reward,
        )

    __hash__ = None  # type: ignore[assignment]

    def compute(self, batch: Batch) -> Scores | Parts:
        verdicts = verify_batch(self.task, batch)
        return self.reward.compute(batch.with_columns(verdicts=verdicts))


def get(name: str, **params: Any) -> Reward:
    """A reward by name with its parameters; an unknown name or parameter is an error listing
    the valid ones."""
    return REGISTRY[name].create(**params)


def from_task(task: Any, scheme: str | Reward = "r1", **params: Any) -> TaskReward:
    """A TRL-convention reward that verifies each completion with `task` against the example
    rebuilt from the dataset columns (`Task.example_from_columns`: an `example` column, or
    `answer` / `id` / `meta` columns) and scores the verdicts with `scheme`: an accuracy scheme
    (`r1`, `tinyzero`, `logic_rl`, `simplerl`), any reward that reads correctness
    (`cosine_length`, `length`), or a reward instance. `params` go to the scheme."""
    if isinstance(scheme, Reward):
        if params:
            raise ValueError("pass parameters to the reward instance, not to from_task")
        return TaskReward(task, scheme)
    return TaskReward(task, get(scheme, **params))
