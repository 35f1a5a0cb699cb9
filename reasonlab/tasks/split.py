"""Held-out shares of a problem space, by problem identity (`Task.key`).

A held-out set is held out by construction: a fixed share of *all* problems of a task, chosen by a
stable hash of each problem's key (`in_held_out_share`), is reserved for evaluation. Evaluation
sets are drawn from it (`problems(..., held_out=True)`); training streams, pretraining corpora and
SFT sets are drawn from the rest, so no evaluated problem reaches training under any order of its
numbers, naming of its people or wording, and the split does not depend on seeds or set sizes.

`key_set` and `overlap` audit a run: every split and exclusion compares keys, never ids or text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from reasonlab.records import Example

HELD_OUT_FRACTION = 0.2
"""Default share of a problem space reserved for evaluation."""


def share_position(key: str) -> float:
    """Where a problem key falls in [0, 1): a stable hash, the same on every machine."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_held_out_share(task: Any, example: Example, fraction: float = HELD_OUT_FRACTION) -> bool:
    """Whether `example` belongs to the held-out `fraction` of its task's problem space."""
    return share_position(task.key(example)) < fraction


def problems(
    task: Any,
    n: int,
    seed: int = 0,
    held_out: bool = False,
    fraction: float = HELD_OUT_FRACTION,
    max_rounds: int = 200,
    **params: Any,
) -> list[Example]:
    """`n` distinct problems (by key) from the held-out share (`held_out=True`) or from the rest.

    Draws `task.generate` batches with seeds derived from `seed` until it has `n`; raises a
    ValueError naming the sizes when the problem space is too small for that.
    """
    out: list[Example] = []
    seen: set[str] = set()
    batch = max(16, min(n, 100))
    for round_ in range(max_rounds):
        try:
            drawn = task.generate(batch, seed=seed * 100_003 + round_, **params)
        except ValueError:
            batch //= 2  # a small problem space: ask for fewer distinct problems per draw
            if batch < 4:
                break
            continue
        for example in drawn:
            key = task.key(example)
            if key not in seen and (share_position(key) < fraction) == held_out:
                seen.add(key)
                out.append(example)
                if len(out) == n:
                    return out
    share = "held-out" if held_out else "training"
    raise ValueError(
        f"found only {len(out)} of {n} distinct {share} problems of {task.name} with {params} "
        f"(held-out fraction {fraction}); ask for fewer or widen the ranges"
    )


def key_set(task: Any, examples: Iterable[Example]) -> set[str]:
    """The problem keys of `examples`."""
    return {task.key(ex) for ex in examples}


def overlap(task: Any, trained: Iterable[Example], evaluated: Iterable[Example]) -> set[str]:
    """Keys of the evaluated problems that also appear among the trained ones (should be empty)."""
    return key_set(task, trained) & key_set(task, evaluated)


__all__ = [
    "HELD_OUT_FRACTION",
    "in_held_out_share",
    "key_set",
    "overlap",
    "problems",
    "share_position",
]
