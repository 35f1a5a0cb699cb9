"""Intra-op threads: the one place a recipe's `num_threads` reaches torch.

    set_intra_op_threads(cfg.run.num_threads)        # for the rest of the process (a trainer)
    with intra_op_threads(2):                         # for a block, the old count restored after
        pretrain(...)

The environment's `OMP_NUM_THREADS`, when set, is a cap: a recipe that asks for 2 threads runs on
1 where the user, `torchrun` (which sets `OMP_NUM_THREADS=1` for each of several processes) or the
test runner says 1. torch's OpenMP threads spin while they wait for each other, so more threads
than free cores is far worse than too few: two processes of 2 threads each on 2 cores ran small
matmuls ~40x slower than one (`/tmp/omp_mb.py`-style, 20000 64x128x384 linears: 87 s against 2 s,
2026-11-30), and one 2-thread process next to a 1-thread one ~1.5x slower (3.0 s).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def thread_cap() -> int | None:
    """`OMP_NUM_THREADS` as a positive int, or None when it is unset or not a positive int."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def set_intra_op_threads(count: int | None) -> int:
    """Set torch's intra-op threads to `count` (None: leave them), capped by `OMP_NUM_THREADS`;
    returns the count before the call."""
    previous = torch.get_num_threads()
    cap = thread_cap()
    if count:
        torch.set_num_threads(min(count, cap) if cap else count)
    elif cap and previous > cap:
        torch.set_num_threads(cap)
    return previous


@contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """`set_intra_op_threads(count)` for the block; the previous count is restored after it."""
    previous = set_intra_op_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
