"""Launching the processes of a data-parallel test on one machine (gloo on CPU): the environment
torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), one torch thread each."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable


def launch_ranks(argv: Callable[[int], list[str]], world: int) -> list[subprocess.Popen]:
    """Start `world` Python processes, rank r running `python *argv(r)`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, *argv(rank)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return procs


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 300) -> None:
    """Wait for every rank; fail with its output when one exits with an error."""
    for rank, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"rank {rank} exited {proc.returncode}:\n{output}"
