"""Launching the processes of a data-parallel test on one machine (gloo on CPU): the environment
torchrun would set (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), one torch thread each; the kill
point of a resume test and the weights comparison those tests share."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


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


def wait_ranks(procs: list[subprocess.Popen], timeout: float = 300) -> list[str]:
    """Wait for every rank; fail with its output when one exits with an error. Returns each
    rank's output (stdout and stderr)."""
    outputs = []
    for rank, proc in enumerate(procs):
        output, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"rank {rank} exited {proc.returncode}:\n{output}"
        outputs.append(output)
    return outputs


def kill_when_waiting(procs: list[subprocess.Popen], run: Path, timeout: float = 600) -> None:
    """SIGKILL every rank once all of them wait at the kill point (each wrote
    `run/killable_rank{R}`); fail with a rank's output if it exits first."""
    deadline = time.monotonic() + timeout
    while not all((run / f"killable_rank{r}").exists() for r in range(len(procs))):
        for rank, proc in enumerate(procs):
            if proc.poll() is not None:
                output = proc.communicate()[0]
                raise AssertionError(f"rank {rank} exited {proc.returncode}:\n{output}")
        assert time.monotonic() < deadline, "the ranks never reached the kill point"
        time.sleep(0.2)
    for proc in procs:
        proc.kill()  # SIGKILL
        proc.communicate()


def wait_to_be_killed(run: Path, rank: int) -> None:
    """The kill point of a resume test: rank 0 records what is on disk (`run/stopped.json`: the
    steps in metrics.jsonl and the checkpoints), then every rank writes `run/killable_rank{R}` and
    sleeps until `kill_when_waiting` kills it."""
    if rank == 0:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        state = {
            "steps_logged": [json.loads(line)["step"] for line in lines if line.strip()],
            "checkpoints": sorted(p.name for p in (run / "checkpoints").glob("step_*")),
        }
        (run / "stopped.json").write_text(json.dumps(state))
    (run / f"killable_rank{rank}").write_text("")
    time.sleep(3600)


def assert_weights_close(expected: dict, got: dict, atol: float, label: str) -> float:
    """Every tensor of `got` within `atol` of `expected` (same names); prints and returns the
    largest difference (`pytest -s` shows it)."""
    import torch

    assert got.keys() == expected.keys(), label
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=atol, rtol=0, msg=key)
    apart = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    print(f"{label}: weights at most {apart:.2g} apart from one process's")
    return apart
