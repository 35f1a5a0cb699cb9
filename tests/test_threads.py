"""`reasonlab.threads`: a recipe's num_threads, capped by OMP_NUM_THREADS, restored after a block."""

from __future__ import annotations

import torch

from reasonlab.threads import intra_op_threads, set_intra_op_threads, thread_cap


def test_the_environment_caps_a_recipes_thread_count(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert thread_cap() is None
        set_intra_op_threads(2)
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert set_intra_op_threads(2) == 2  # returns the count before the call
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        set_intra_op_threads(None)  # no count asked: the cap still holds
        assert torch.get_num_threads() == 1
        for junk in ("", "0", "-2", "two"):
            monkeypatch.setenv("OMP_NUM_THREADS", junk)
            assert thread_cap() is None
    finally:
        torch.set_num_threads(before)


def test_a_block_restores_the_previous_count(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with intra_op_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
        with intra_op_threads(None):
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
