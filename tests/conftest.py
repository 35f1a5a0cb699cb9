"""Test ordering for the CI's two pytest-xdist workers (`make test`: `-n 2 --dist worksteal`).

The tests marked `slow` run first, longest first by their `seconds` estimate
(`@pytest.mark.slow(seconds=...)`): the longest one (tests/test_demo.py, most of the suite's time)
then starts at once on one worker while the other takes the rest, and `worksteal` hands that
worker the tests queued behind the long one. Collected in file order, the demo's test started only after
the tests queued before it, and the ones queued behind it waited for it.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> tuple[bool, float]:
        slow = item.get_closest_marker("slow")
        return slow is None, -float(slow.kwargs.get("seconds", 0)) if slow else 0.0

    items.sort(key=order)  # stable: the rest keep their file order
