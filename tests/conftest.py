"""Test ordering and threads for the CI's two pytest-xdist workers (`make test`: `-n 2 --dist
worksteal`).

The tests marked `slow` run first, longest first by their `seconds` estimate
(`@pytest.mark.slow(seconds=...)`): the longest one (tests/test_demo.py, most of the suite's time)
then starts at once on one worker while the other takes the rest, and `worksteal` hands that
worker the tests queued behind the long one. Collected in file order, the demo's test started
only after the tests queued before it, and the ones queued behind it waited for it.
"""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on the CI's 2 cores: one intra-op thread each, the cap every recipe's
    # `num_threads` obeys (`reasonlab.threads`). The demo's `run.num_threads: 2` would put 3-4
    # OpenMP threads on 2 cores, and their spin-waiting cost 3.6x: test_demo took 705 s next to
    # the other worker against 197 s alone (2026-11-30). Subprocesses inherit the cap; a test
    # that compares thread counts removes it from their environment.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> tuple[bool, float]:
        slow = item.get_closest_marker("slow")
        return slow is None, -float(slow.kwargs.get("seconds", 0)) if slow else 0.0

    items.sort(key=order)  # stable: the rest keep their file order
