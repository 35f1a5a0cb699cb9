"""Inference-time scaling methods, as implemented (parameters named as in search-and-learn).

Selection over N sampled solutions (labels: answer groups under the task's equivalence, see
`reasonlab.eval.metrics.cluster_answers`; scores: one outcome score per solution):

- `majority` — self-consistency (Wang et al. 2022, arXiv:2203.11171): the answer group with most
  solutions; a solution with no answer never votes.
- `best_of_n` — the solution with the highest outcome score (a PRM's aggregated score, or a
  verifier); ties go to the first.
- `weighted_bon` — weighted best-of-N (Li et al. 2023, "Making Large Language Models Better
  Reasoners with Step-Aware Verifier", arXiv:2206.02336; the HF blog's "weighted" selection):
  argmax over answer groups a of sum_{i: answer_i = a} score_i.

Ties in the two votes go to the group that appears first (`metrics.vote`).

Tree search over steps (a step ends at "\\n\\n"; the last iteration generates to the end), each
scoring partial solutions with a PRM aggregated by `last`/`min`/`prod`:

- `beam_search` — PRM beam search (Snell et al. 2024, arXiv:2408.03314, sec. 5; HF
  search-and-learn `beam_search`): N active beams; each iteration samples one next step per beam,
  scores every candidate, moves finished ones (end of text, step cut at `max_step_tokens`, or the
  last iteration) to the completed list, keeps the N / M best unfinished ones and copies each M
  times (M = `beam_width`) to form the next N beams. Stops when N solutions are complete, none is
  left, or after `num_iterations`; returns the completed solutions, best first, at most N.
- `dvts` — diverse verifier tree search (Beeching, Tunstall & Rush 2024, HF blog "Scaling test-time
  compute with open models"): N / M independent subtrees, each a greedy search that samples M next
  steps from its current solution and keeps the best-scoring one, until it finishes. Returns the
  N / M finished solutions (search-and-learn also returns the M - 1 unchosen siblings of each last
  step; they are unfinished, so they are left out here).

With `lookahead` k > 0, a candidate step is scored after k more steps generated greedily
(temperature 0) past it; only the candidate step is kept (Snell et al.'s lookahead search).
With N < M, M is taken as N (one beam kept, or one subtree).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from reasonlab.eval.metrics import vote
from reasonlab.rollout.base import Prompt, RolloutEngine, SamplingParams
from reasonlab.search.prm import AGGREGATIONS, PRM, STEP_DELIMITER, aggregate, split_steps

SELECTIONS = ("majority", "best_of_n", "weighted_bon")
TREE_SEARCHES = ("beam", "dvts")
METHODS = SELECTIONS + TREE_SEARCHES


def select(
    method: str, labels: Sequence[Hashable | None], scores: Sequence[float] | None = None
) -> int | None:
    """The index of the chosen solution (None when there is nothing to choose)."""
    if method == "majority":
        return vote(labels)
    if scores is None or len(scores) != len(labels):
        raise ValueError(f"{method} needs one score per solution")
    if method == "best_of_n":
        if not scores:
            return None
        best = max(scores)
        return next(i for i, s in enumerate(scores) if s == best)
    if method == "weighted_bon":
        return vote(labels, weights=scores)
    raise ValueError(f"unknown selection {method!r}; valid: {', '.join(SELECTIONS)}")


@dataclass
class TreeSearchConfig:
    """Step-level search settings (search-and-learn's names and defaults, except where noted)."""

    beam_width: int = 4
    """M: beams kept = N / M (beam search); subtrees = N / M, M children each (DVTS)."""
    num_iterations: int = 40
    """Most steps per solution; the last iteration generates to the end of the solution."""
    lookahead: int = 0
    """Greedy steps generated past a candidate before scoring it (search-and-learn uses 1)."""
    aggregation: str = "last"
    """How step scores make a solution score: last, min, prod."""
    temperature: float = 0.8
    top_p: float = 1.0
    max_step_tokens: int = 256
    """Most tokens in one step (a step cut here ends its solution, as truncated)."""
    delimiter: str = STEP_DELIMITER

    def __post_init__(self) -> None:
        problems = []
        if self.beam_width < 1:
            problems.append(f"beam_width={self.beam_width} (must be >= 1)")
        if self.num_iterations < 1:
            problems.append(f"num_iterations={self.num_iterations} (must be >= 1)")
        if self.lookahead < 0:
            problems.append(f"lookahead={self.lookahead} (must be >= 0)")
        if self.aggregation not in AGGREGATIONS:
            problems.append(f"aggregation={self.aggregation!r} (valid: {', '.join(AGGREGATIONS)})")
        if not self.delimiter:
            problems.append("delimiter is empty")
        if self.max_step_tokens < 1:
            problems.append(f"max_step_tokens={self.max_step_tokens} (must be >= 1)")
        if problems:
            raise ValueError("invalid TreeSearchConfig: " + "; ".join(problems))


@dataclass
class Candidate:
    """A partial or finished solution."""

    text: str = ""
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0
    """The aggregated PRM score of its steps (with lookahead, when used)."""
    done: bool = False
    finish_reason: str = ""
    """'stop' (the model ended it) or 'length' (a step hit max_step_tokens, or out of iterations)."""
    num_tokens: int = 0


@dataclass
class SearchOutput:
    candidates: list[Candidate]
    generated_tokens: int
    """Every token generated for this search: kept, pruned and lookahead."""


def _tree_config(config: TreeSearchConfig | None, n: int) -> TreeSearchConfig:
    """`config` (the defaults when None), once the budget `n` is checked."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return config or TreeSearchConfig()


class _Search:
    """State shared by the two tree searches: the engine calls, the PRM calls, the token count."""

    def __init__(
        self,
        engine: RolloutEngine,
        prompt: str,
        question: str,
        prm: PRM,
        config: TreeSearchConfig,
        seed: int | None,
    ):
        self.engine, self.prompt, self.question, self.prm = engine, prompt, question, prm
        self.config = config
        self.seed = seed
        self.tokens = 0

    def width(self, n: int) -> int:
        """M for a budget of N = `n`: `beam_width`, or N when N < M."""
        return min(self.config.beam_width, n)

    def _params(self, n: int, last: bool, call: int, greedy: bool = False) -> SamplingParams:
        c = self.config
        return SamplingParams(
            n=n,
            temperature=0.0 if greedy else c.temperature,
            top_p=1.0 if greedy else c.top_p,
            max_new_tokens=c.max_step_tokens,
            stop=[] if last else [c.delimiter],
            seed=None if self.seed is None or greedy else self.seed + call,
        )

    def expand(
        self, parents: Sequence[Candidate], n: int, last: bool, call: int
    ) -> list[list[Candidate]]:
        """`n` one-step extensions of every parent, grouped by parent."""
        rollouts = self.engine.generate(
            [Prompt(text=self.prompt + p.text) for p in parents], self._params(n, last, call)
        )
        groups: list[list[Candidate]] = []
        for i, parent in enumerate(parents):
            children = []
            for r in rollouts[i * n : (i + 1) * n]:
                self.tokens += len(r.completion_ids)
                ended_step = r.finish_reason == "stop" and r.text.endswith(self.config.delimiter)
                done = last or not ended_step or not r.text.strip()
                reason = "length" if r.finish_reason == "length" else "stop"
                children.append(
                    Candidate(
                        text=parent.text + r.text,
                        done=done,
                        finish_reason=reason if done else "",
                        num_tokens=parent.num_tokens + len(r.completion_ids),
                    )
                )
            groups.append(children)
        return groups

    def score(self, children: Sequence[Candidate], last: bool) -> None:
        """Set `step_scores` and `score` of each child, after `lookahead` greedy steps when asked."""
        extra = [""] * len(children)
        if self.config.lookahead and not last:
            extra = self._lookahead(children)
        step_lists = [
            split_steps(c.text + x, self.config.delimiter) for c, x in zip(children, extra)
        ]
        scores = self.prm.score_batch([self.question] * len(children), step_lists)
        for child, step_scores in zip(children, scores):
            child.step_scores = list(step_scores)
            child.score = aggregate(step_scores, self.config.aggregation)

    def _lookahead(self, children: Sequence[Candidate]) -> list[str]:
        extra = [""] * len(children)
        open_rows = [i for i, c in enumerate(children) if not c.done]
        for _ in range(self.config.lookahead):
            if not open_rows:
                break
            rollouts = self.engine.generate(
                [Prompt(text=self.prompt + children[i].text + extra[i]) for i in open_rows],
                self._params(1, last=False, call=0, greedy=True),
            )
            still_open = []
            for i, r in zip(open_rows, rollouts):
                self.tokens += len(r.completion_ids)
                extra[i] += r.text
                if r.finish_reason == "stop" and r.text.endswith(self.config.delimiter):
                    still_open.append(i)
            open_rows = still_open
        return extra


def beam_search(
    engine: RolloutEngine,
    prompt: str,
    question: str,
    prm: PRM,
    n: int,
    config: TreeSearchConfig | None = None,
    seed: int | None = None,
) -> SearchOutput:
    """PRM beam search with N = `n` beams (see the module docstring)."""
    search = _Search(engine, prompt, question, prm, _tree_config(config, n), seed)
    iterations = search.config.num_iterations
    keep = max(1, n // search.width(n))
    active = [Candidate() for _ in range(n)]
    completed: list[Candidate] = []
    for it in range(iterations):
        last = it == iterations - 1
        children = [group[0] for group in search.expand(active, 1, last, call=it)]
        search.score(children, last=last)
        completed += [c for c in children if c.done]
        alive = [c for c in children if not c.done]
        if len(completed) >= n or not alive:
            break
        best_first = sorted(
            range(len(alive)), key=lambda i: -alive[i].score
        )  # stable: ties by order
        survivors = [alive[i] for i in best_first[:keep]]
        active = [survivors[i % len(survivors)] for i in range(n)]
    completed = sorted(completed, key=lambda c: -c.score)[:n]
    return SearchOutput(candidates=completed, generated_tokens=search.tokens)


def dvts(
    engine: RolloutEngine,
    prompt: str,
    question: str,
    prm: PRM,
    n: int,
    config: TreeSearchConfig | None = None,
    seed: int | None = None,
) -> SearchOutput:
    """Diverse verifier tree search with a budget of N = `n` (see the module docstring)."""
    search = _Search(engine, prompt, question, prm, _tree_config(config, n), seed)
    iterations = search.config.num_iterations
    width = search.width(n)
    beams = [Candidate() for _ in range(max(1, n // width))]
    for it in range(iterations):
        open_idx = [i for i, b in enumerate(beams) if not b.done]
        if not open_idx:
            break
        last = it == iterations - 1
        groups = search.expand([beams[i] for i in open_idx], width, last, call=it)
        search.score([c for g in groups for c in g], last=last)
        for i, children in zip(open_idx, groups):
            beams[i] = max(children, key=lambda c: c.score)  # first of the best
    return SearchOutput(candidates=beams, generated_tokens=search.tokens)


TREE_SEARCH_FUNCTIONS = {"beam": beam_search, "dvts": dvts}
