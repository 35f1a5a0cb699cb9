"""Benchmarks: a named, fixed set of examples with the task that checks them and how to prompt.

    from reasonlab.eval import benchmarks
    bench = benchmarks.get("math500")      # an unknown name raises an error listing the valid ones
    task, examples = bench.task_instance(), bench.load(limit=50)

Each benchmark names its task, how its examples are obtained (a shipped split, or a generator with
a fixed seed), the template it is prompted with by default (`boxed` for the math sets, as in the
Qwen2.5-Math / SimpleRL evaluations; `r1-zero` for the puzzles, as in TinyZero and Logic-RL) and
the `Example.meta` key its per-group breakdown uses (`group_by`, None for none). A list-valued key
groups by its length (countdown's `numbers`: by how many numbers).

| name | task | examples | group_by |
|---|---|---|---|
| math500 | math | MATH-500 (500) | level |
| aime24 | math | AIME 2024 (30) | none |
| amc23 | math | AMC 2023 (40) | none |
| gsm8k | math | GSM8K test (1319) | none |
| knights_knaves | knights_knaves | Logic-RL K&K tests, 3-7 people (500) | num_people |
| kk3 ... kk7 | knights_knaves | one size of the above (100 each) | none |
| countdown | countdown | 500 TinyZero-preset problems, seed 314159 | numbers (count) |
| countdown_cognitive | countdown | 500 `cognitive`-preset problems (small numbers), seed 314159 | numbers (count) |
| arithmetic | arithmetic | 500 generated problems (2-3 operands in 0-50), seed 314159 | operands (count) |
| countdown_demo | countdown | all 154 held-out problems with the CPU demo's params (3 numbers in 1-9, targets 10-30) | none |

The generated sets use a seed no recipe trains on (training data is generated with small seeds), so
the same examples come back on every machine. `countdown_demo` draws from the held-out share of
problems (`reasonlab.tasks.split.in_held_out_share`, by `task.key`), which neither the demo's pretraining corpus nor its
RL prompt stream contains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reasonlab.records import Example
from reasonlab.registry import Registry

EVAL_SEED = 314159
"""Seed of the generated benchmarks."""
GENERATED_SIZE = 500


@dataclass(frozen=True)
class Benchmark:
    name: str
    task: str
    """Registry name of the task that renders and verifies the examples."""
    description: str
    split: str | None = None
    """A shipped split for `task.load`, or None for a generated benchmark."""
    generate: dict[str, Any] = field(default_factory=dict)
    """Arguments of `task.generate` (n, seed, params) for a generated benchmark."""
    held_out: bool = False
    """Draw the generated problems from the share no pretraining corpus or RL stream uses
    (`reasonlab.tasks.split.problems(..., held_out=True)`), so base and RL models are measured
    on problems neither saw."""
    template: str = "r1-zero"
    group_by: str | None = None
    task_kwargs: dict[str, Any] = field(default_factory=dict)

    def task_instance(self) -> Any:
        from reasonlab import tasks

        return tasks.get(self.task, **self.task_kwargs)

    def load(self, limit: int | None = None, task: Any = None) -> list[Example]:
        """The benchmark's examples (the first `limit` of them when given), in a fixed order."""
        task = task or self.task_instance()
        if self.split is not None:
            examples = task.load(self.split, limit=limit)
        else:
            n = self.generate.get("n", GENERATED_SIZE)
            seed = self.generate.get("seed", EVAL_SEED)
            params = {k: v for k, v in self.generate.items() if k not in ("n", "seed")}
            if self.held_out:
                from reasonlab.tasks import split

                # drawn in batches whose size depends on n: always draw all n, then cut
                examples = split.problems(task, n, seed=seed, held_out=True, **params)
            else:
                if limit is not None:
                    n = min(n, limit)
                examples = task.generate(n=n, seed=seed, **params)
        return list(examples[:limit] if limit is not None else examples)


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def register(bench: Benchmark) -> Benchmark:
    return BENCHMARKS.add(bench.name, bench)


def get(name: str) -> Benchmark:
    """A benchmark by name; an unknown name raises an error listing the valid ones."""
    return BENCHMARKS[name]


def names() -> list[str]:
    return BENCHMARKS.names()


def parse_list(spec: str) -> list[Benchmark]:
    """ "math500,aime24" -> benchmarks, in order, each name checked."""
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise ValueError(f"no benchmark named in {spec!r}; valid names: {', '.join(names())}")
    return [get(p) for p in parts]


for _name, _split, _desc, _group in [
    ("math500", "math500", "MATH-500 (Lightman et al. 2023's MATH test subset)", "level"),
    ("aime24", "aime24", "AIME 2024, 30 problems", None),
    ("amc23", "amc23", "AMC 2023, 40 problems", None),
    ("gsm8k", "gsm8k_test", "GSM8K test, 1319 problems", None),
]:
    register(Benchmark(_name, "math", _desc, split=_split, template="boxed", group_by=_group))

register(
    Benchmark(
        "knights_knaves",
        "knights_knaves",
        "Logic-RL Knights & Knaves tests, 3 to 7 people, 100 each",
        split="test",
        group_by="num_people",
    )
)
for _k in range(3, 8):
    register(
        Benchmark(
            f"kk{_k}",
            "knights_knaves",
            f"Logic-RL Knights & Knaves test, {_k} people (100 puzzles)",
            split=f"{_k}ppl",
        )
    )
register(
    Benchmark(
        "countdown",
        "countdown",
        f"{GENERATED_SIZE} Countdown problems, TinyZero preset (3-4 numbers in 1-100)",
        generate=dict(seed=EVAL_SEED, preset="tinyzero"),
        group_by="numbers",
    )
)
register(
    Benchmark(
        "countdown_cognitive",
        "countdown",
        f"{GENERATED_SIZE} Countdown problems, cognitive preset (2-4 numbers in 1-24)",
        generate=dict(seed=EVAL_SEED, preset="cognitive"),
        group_by="numbers",
    )
)
register(
    Benchmark(
        "arithmetic",
        "arithmetic",
        f"{GENERATED_SIZE} integer expressions, the task's default ranges (2-3 operands in 0-50)",
        generate=dict(seed=EVAL_SEED),
        group_by="operands",
    )
)

DEMO_PARAMS = dict(num_numbers=3, min_number=1, max_number=9, min_target=10, max_target=30)
"""Countdown params of the CPU demo (`reasonlab/demo_countdown.yaml`)."""
DEMO_HELD_OUT = 154
"""How many of the demo's 769 solvable problems are held out: all of them are the benchmark."""
register(
    Benchmark(
        "countdown_demo",
        "countdown",
        f"All {DEMO_HELD_OUT} held-out Countdown problems with the CPU demo's params "
        "(3 numbers in 1-9, targets 10-30)",
        generate=dict(n=DEMO_HELD_OUT, seed=EVAL_SEED, **DEMO_PARAMS),
        held_out=True,
    )
)
