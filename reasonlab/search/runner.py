"""Accuracy against the generation budget N for each inference-time scaling method.

    result = run_scaling(engine, task, examples, prm, ScalingConfig(methods=["majority", "beam"],
                         ns=[1, 2, 4, 8]))
    result.accuracy["beam"][8]; plot_scaling(result, "scaling.png")

Selection methods (`majority`, `best_of_n`, `weighted_bon`) share one pool of max(N) solutions per
example, sampled once; accuracy at N is the mean over the floor(pool / N) disjoint blocks of N
solutions (as maj@k in `reasonlab.eval.metrics`: no random subsets, and every block is N i.i.d.
solutions). Outcome scores for best-of-N come from the PRM (its step scores aggregated as
`TreeSearchConfig.aggregation`) or, with `outcome="verifier"`, from the task's verifier (1.0 right,
0.0 wrong: the oracle upper bound of best-of-N, i.e. pass@N). Tree searches (`beam`, `dvts`) run
once per N and example; their final answer is chosen among the solutions they return by
`final_selection` (default weighted best-of-N over the PRM scores, as the HF blog reports them).

Cost is reported as the mean number of generated tokens per example (pruned and lookahead tokens
included), so methods can be compared at equal compute as well as at equal N.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from reasonlab.eval.metrics import cluster_answers
from reasonlab.eval.runner import extract_answers
from reasonlab.records import Example
from reasonlab.rollout.base import Prompt, RolloutEngine, SamplingParams
from reasonlab.search.methods import (
    METHODS,
    SELECTIONS,
    TREE_SEARCH_FUNCTIONS,
    TREE_SEARCHES,
    TreeSearchConfig,
    select,
)
from reasonlab.search.prm import PRM, aggregate, split_steps
from reasonlab.tasks.base import Task, verify_all

OUTCOMES = ("prm", "verifier")


@dataclass
class ScalingConfig:
    methods: list[str]
    """Any of: majority, best_of_n, weighted_bon, beam, dvts."""
    ns: list[int]
    """Generation budgets N (solutions sampled, beams, or M x subtrees)."""
    tree: TreeSearchConfig = field(default_factory=TreeSearchConfig)
    """Step-search settings; its temperature and top_p also drive the sampled pool."""
    max_new_tokens: int = 512
    """Token limit of one sampled solution (the pool of the selection methods)."""
    outcome: str = "prm"
    """Outcome score of best-of-N and weighted best-of-N: prm or verifier."""
    final_selection: str = "weighted_bon"
    """How a tree search's final answer is chosen among its solutions: a selection method."""
    template: str = "r1-zero"
    seed: int = 0
    batch_size: int = 4
    """Examples per sampling call of the pool."""

    def __post_init__(self) -> None:
        problems = []
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            problems.append(f"methods {unknown or 'none'} (valid: {', '.join(METHODS)})")
        if not self.ns or any(n < 1 for n in self.ns):
            problems.append(f"ns={self.ns} (each must be >= 1)")
        if self.outcome not in OUTCOMES:
            problems.append(f"outcome={self.outcome!r} (valid: {', '.join(OUTCOMES)})")
        if self.final_selection not in SELECTIONS:
            problems.append(
                f"final_selection={self.final_selection!r} (valid: {', '.join(SELECTIONS)})"
            )
        if self.max_new_tokens < 1 or self.batch_size < 1:
            problems.append("max_new_tokens and batch_size must be >= 1")
        if problems:
            raise ValueError("invalid ScalingConfig: " + "; ".join(problems))
        self.ns = sorted(set(self.ns))


@dataclass
class ScalingResult:
    benchmark: str
    accuracy: dict[str, dict[int, float]]
    """method -> N -> accuracy over the examples."""
    tokens: dict[str, dict[int, float]]
    """method -> N -> mean generated tokens per example."""
    num_examples: int
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """One row per (example, method, N)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "num_examples": self.num_examples,
            "config": self.config,
            "accuracy": {
                m: {str(n): v for n, v in by_n.items()} for m, by_n in self.accuracy.items()
            },
            "tokens": {m: {str(n): v for n, v in by_n.items()} for m, by_n in self.tokens.items()},
        }


@dataclass
class _Scored:
    """Solutions of one example with what selection needs."""

    correct: list[bool]
    answers: list[str | None]
    labels: list[int | None]
    scores: list[float]
    tokens: list[int]


def _score_solutions(
    task: Task,
    example: Example,
    texts: Sequence[str],
    tokens: Sequence[int],
    scores: Sequence[float] | None,
    prm: PRM,
    config: ScalingConfig,
) -> _Scored:
    examples = [example] * len(texts)
    verdicts = verify_all(task, texts, examples)
    answers = extract_answers(task, texts, examples, verdicts)
    labels = cluster_answers(answers, lambda a, b: task.equivalent(a, b, example))
    correct = [v.correct for v in verdicts]
    if scores is None:
        if config.outcome == "verifier":
            scores = [1.0 if c else 0.0 for c in correct]
        else:
            steps = [split_steps(t, config.tree.delimiter) for t in texts]
            step_scores = prm.score_batch([task.question(example)] * len(texts), steps)
            scores = [aggregate(s, config.tree.aggregation) for s in step_scores]
    return _Scored(correct, answers, labels, list(scores), list(tokens))


def run_scaling(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    prm: PRM,
    config: ScalingConfig,
    *,
    tokenizer: Any = None,
    benchmark: str = "",
    progress: Callable[[str], None] | None = None,
) -> ScalingResult:
    """Accuracy and cost of every method at every N on `examples` (see the module docstring)."""
    if not examples:
        raise ValueError("run_scaling needs at least one example")
    tokenizer = tokenizer if tokenizer is not None else getattr(engine, "tokenizer", None)
    prompts = [task.render(e, template=config.template, tokenizer=tokenizer) for e in examples]
    accuracy: dict[str, dict[int, float]] = {}
    tokens: dict[str, dict[int, float]] = {}
    rows: list[dict[str, Any]] = []

    pool_methods = [m for m in config.methods if m in SELECTIONS]
    if pool_methods:
        pool = _sample_pool(engine, task, examples, prompts, prm, config)
        for method in pool_methods:
            for n in config.ns:
                per_example = []
                for example, scored in zip(examples, pool):
                    acc, cost, answer = _blocks(method, scored, n)
                    per_example.append((acc, cost))
                    rows.append(_row(example, method, n, acc, cost, answer))
                accuracy.setdefault(method, {})[n] = _mean([a for a, _ in per_example])
                tokens.setdefault(method, {})[n] = _mean([c for _, c in per_example])
            if progress:
                progress(f"{method}: done")

    for method in [m for m in config.methods if m in TREE_SEARCHES]:
        search = TREE_SEARCH_FUNCTIONS[method]
        for n in config.ns:
            per_example = []
            for i, (example, prompt) in enumerate(zip(examples, prompts)):
                seed = config.seed + 1_000_003 * (i + 1) + 7919 * n
                out = search(engine, prompt, task.question(example), prm, n, config.tree, seed=seed)
                cands = out.candidates
                scored = _score_solutions(
                    task,
                    example,
                    [c.text for c in cands],
                    [c.num_tokens for c in cands],
                    [c.score for c in cands],
                    prm,
                    config,
                )
                chosen = select(config.final_selection, scored.labels, scored.scores)
                correct = chosen is not None and scored.correct[chosen]
                answer = None if chosen is None else scored.answers[chosen]
                per_example.append((float(correct), float(out.generated_tokens)))
                rows.append(_row(example, method, n, float(correct), out.generated_tokens, answer))
            accuracy.setdefault(method, {})[n] = _mean([a for a, _ in per_example])
            tokens.setdefault(method, {})[n] = _mean([c for _, c in per_example])
            if progress:
                progress(f"{method} N={n}: accuracy {accuracy[method][n]:.3f}")

    return ScalingResult(
        benchmark=benchmark or task.name,
        accuracy=accuracy,
        tokens=tokens,
        num_examples=len(examples),
        config=asdict(config),
        rows=rows,
    )


def _sample_pool(
    engine: RolloutEngine,
    task: Task,
    examples: Sequence[Example],
    prompts: Sequence[str],
    prm: PRM,
    config: ScalingConfig,
) -> list[_Scored]:
    """max(N) sampled solutions per example, verified and scored."""
    pool_n = max(config.ns)
    out: list[_Scored] = []
    for start in range(0, len(examples), config.batch_size):
        batch = list(range(start, min(start + config.batch_size, len(examples))))
        rollouts = engine.generate(
            [Prompt(text=prompts[i], example_id=examples[i].id) for i in batch],
            SamplingParams(
                n=pool_n,
                temperature=config.tree.temperature,
                top_p=config.tree.top_p,
                max_new_tokens=config.max_new_tokens,
                seed=config.seed + start,
            ),
        )
        for j, i in enumerate(batch):
            mine = rollouts[j * pool_n : (j + 1) * pool_n]
            out.append(
                _score_solutions(
                    task,
                    examples[i],
                    [r.text for r in mine],
                    [len(r.completion_ids) for r in mine],
                    None,
                    prm,
                    config,
                )
            )
    return out


def _blocks(method: str, scored: _Scored, n: int) -> tuple[float, float, str | None]:
    """(accuracy, mean tokens, the first block's answer) of `method` over the blocks of n."""
    blocks = len(scored.correct) // n
    right, cost, first_answer = 0, 0, None
    for b in range(blocks):
        lo, hi = b * n, (b + 1) * n
        chosen = select(method, scored.labels[lo:hi], scored.scores[lo:hi])
        right += chosen is not None and scored.correct[lo + chosen]
        cost += sum(scored.tokens[lo:hi])
        if b == 0 and chosen is not None:
            first_answer = scored.answers[lo + chosen]
    return right / blocks, cost / blocks, first_answer


def _row(
    example: Example, method: str, n: int, accuracy: float, tokens: float, answer: str | None
) -> dict[str, Any]:
    return {
        "example_id": example.id,
        "method": method,
        "n": n,
        "accuracy": accuracy,
        "generated_tokens": tokens,
        "answer": answer,
    }


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs)) / len(xs)


def plot_scaling(result: ScalingResult, path: str, title: str | None = None) -> None:
    """Accuracy against N (log2 axis), one line per method, saved as a PNG (Agg canvas, no
    pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-")]
    for i, (method, by_n) in enumerate(result.accuracy.items()):
        ns = sorted(by_n)
        marker, line = styles[i % len(styles)]  # lines that coincide stay visible
        ax.plot(ns, [100 * by_n[n] for n in ns], marker=marker, linestyle=line, label=method)
    ax.set_xscale("log", base=2)
    all_ns = sorted({n for by_n in result.accuracy.values() for n in by_n})
    ax.set_xticks(all_ns, [str(n) for n in all_ns])
    ax.set_xlabel("generation budget N")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title or f"{result.benchmark}: {result.num_examples} examples")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
