"""Where training prompts come from: a deterministic, resumable stream, and the held-out set.

- `PromptStream`: an endless stream of examples whose `position` alone determines what comes next
  (saved in checkpoints, so a resumed run reads the same prompts). Generator tasks: chunk k is
  `task.generate(chunk_size, seed=derive_seed(seed, k))`; file-backed tasks: the split in a fresh
  seeded order every epoch.
- `split_examples`: the training examples (file-backed tasks) and the held-out evaluation set:
  drawn from the held-out share of the problem space (`task.held_out_fraction` > 0, see
  `reasonlab.tasks.split`), or generated with `task.eval_seed`, or `task.eval_split`, or
  `task.eval_size` examples held out of the training split.
- Exclusion is by problem identity (`Task.key`: countdown's sorted numbers and target, a K&K puzzle
  up to names, normalised text for math), never by id or text: the stream skips every example whose
  key is an evaluated problem's, and, when the run declares a held-out share, every example in it.
  `PromptStream.taken` records every prompt handed out (the trainer writes them to prompts.jsonl),
  so a run can be audited.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from reasonlab.records import Example
from reasonlab.tasks import split
from reasonlab.tasks.split import share_position


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from integers (run seed, step, round, rank...), stable across runs."""
    state = np.random.SeedSequence([int(p) % (2**32) for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) % (2**63)


class PromptStream:
    """An endless, deterministic stream of training examples with a resumable position.

    Generator tasks: chunk k of the stream is `task.generate(chunk_size, seed=derive(seed, k))`.
    File-backed tasks (`task.split` set): the examples in a fresh seeded order every epoch.
    Examples whose key (`task.key`) is in `exclude_keys` (the evaluation set's) or that fall in the
    held-out share `held_out_fraction` of the problem space are skipped; `position` counts every
    example read, skipped or not, so it alone determines what comes next. `taken` lists
    `(position, example)` for every example handed out since it was last cleared.
    """

    def __init__(
        self,
        task: Any,
        *,
        seed: int,
        params: dict[str, Any] | None = None,
        examples: list[Example] | None = None,
        exclude_keys: set[str] | None = None,
        held_out_fraction: float = 0.0,
        chunk_size: int = 256,
    ):
        self.task, self.seed, self.params = task, seed, dict(params or {})
        self.examples = examples
        self.exclude_keys = exclude_keys or set()
        self.held_out_fraction = held_out_fraction
        self.taken: list[tuple[int, Example]] = []
        self.chunk_size = len(examples) if examples is not None else chunk_size
        if examples is not None and not examples:
            raise ValueError(f"task {task.name!r}: the training split has no examples")
        self.position = 0
        self._chunk_index: int | None = None
        self._chunk: list[Example] = []

    def _load_chunk(self, index: int) -> list[Example]:
        if self.examples is not None:  # epoch `index` of a file-backed split
            order = np.random.default_rng([self.seed, index]).permutation(len(self.examples))
            return [self.examples[i] for i in order]
        return self.task.generate(
            self.chunk_size, seed=derive_seed(self.seed, index), **self.params
        )

    def _at(self, position: int) -> Example:
        index = position // self.chunk_size
        if index != self._chunk_index:
            self._chunk, self._chunk_index = self._load_chunk(index), index
        return self._chunk[position % self.chunk_size]

    def excluded(self, example: Example) -> bool:
        """Whether the stream never hands out `example` (an evaluated or held-out problem)."""
        key = self.task.key(example)
        return key in self.exclude_keys or share_position(key) < self.held_out_fraction

    def take(self, count: int) -> list[Example]:
        out: list[Example] = []
        skipped = 0
        while len(out) < count:
            example = self._at(self.position)
            self.position += 1
            if self.excluded(example):
                skipped += 1
                if skipped > 100 * (count + self.chunk_size):
                    raise ValueError(
                        f"task {self.task.name!r}: almost every training example is an evaluated "
                        "or held-out problem; use a larger training split, a smaller eval_size "
                        "or a smaller task.held_out_fraction"
                    )
                continue
            self.taken.append((self.position - 1, example))
            out.append(example)
        return out


def has_generator(task: Any) -> bool:
    from reasonlab.tasks.base import Task

    return type(task).generate is not Task.generate


def split_examples(task: Any, cfg: Any) -> tuple[list[Example] | None, list[Example]]:
    """(training examples of a file-backed task or None for a generator, held-out examples).

    With `cfg.held_out_fraction` > 0 the held-out examples come from that share of the problem
    space (generators: `split.problems(..., held_out=True)`; files: the split's examples in the
    share) and the training examples from the rest. Training examples never share a key with a
    held-out one."""
    fraction = cfg.held_out_fraction
    if cfg.split is None:
        if not has_generator(task):
            raise ValueError(
                f"task {task.name!r} has no generator: set task.split to one of "
                f"{', '.join(task.splits) or 'its data files'}"
            )
        if fraction > 0:
            held_out = split.problems(
                task,
                cfg.eval_size,
                seed=cfg.eval_seed,
                held_out=True,
                fraction=fraction,
                **cfg.params,
            )
        else:
            held_out = task.generate(cfg.eval_size, seed=cfg.eval_seed, **cfg.params)
        return None, held_out
    train = [ex for ex in task.load(cfg.split) if meta_matches(ex, cfg.where)]
    if not train:
        raise ValueError(f"task {task.name!r}: no example of {cfg.split!r} matches {cfg.where}")
    if fraction > 0:
        in_share = [split.in_held_out_share(task, ex, fraction) for ex in train]
        pool = [ex for ex, held in zip(train, in_share) if held]
        train = [ex for ex, held in zip(train, in_share) if not held]
    else:
        pool = train
    if cfg.eval_split is not None:
        held_out = task.load(cfg.eval_split, limit=cfg.eval_size)
    else:
        order = np.random.default_rng(cfg.eval_seed).permutation(len(pool))
        held_out = [pool[int(i)] for i in sorted(order[: cfg.eval_size])]
    held_keys = split.key_set(task, held_out)
    train = [ex for ex in train if task.key(ex) not in held_keys]
    if not train:
        raise ValueError(
            f"task {task.name!r} split {cfg.split!r}: no training example is left after holding "
            f"out task.eval_size={cfg.eval_size} problems (held_out_fraction={fraction}) for "
            "evaluation"
        )
    return train, held_out


def build_stream(
    task: Any, cfg: Any, train: list[Example] | None, held_out: Sequence[Example]
) -> PromptStream:
    """The run's training stream (`cfg` is a `TaskConfig`): never an evaluated problem, nor one
    of the declared held-out share."""
    return PromptStream(
        task,
        seed=cfg.seed,
        params=cfg.params,
        examples=train,
        exclude_keys=split.key_set(task, held_out),
        held_out_fraction=cfg.held_out_fraction,
    )


def meta_matches(example: Example, where: dict[str, Any]) -> bool:
    """meta[key] equals each value of `where` (or is in it, for a list)."""
    for key, wanted in where.items():
        value = example.meta.get(key)
        if not (value in wanted if isinstance(wanted, list) else value == wanted):
            return False
    return True


__all__ = [
    "PromptStream",
    "build_stream",
    "derive_seed",
    "has_generator",
    "meta_matches",
    "split_examples",
]
