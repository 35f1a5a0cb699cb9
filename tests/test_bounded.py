"""reasonlab.verify.bounded: per-call timeouts from any thread, memory limits, ordered batches."""

from __future__ import annotations

import os
import threading
import time

import pytest

from reasonlab.verify import bounded
from reasonlab.verify.bounded import ERROR, OK, TIMEOUT, WorkerPool


def behave(kind: str, x: float) -> float:
    """A worker-side helper whose behaviour the test picks per item."""
    if kind == "sleep":
        time.sleep(x)
    elif kind == "exit":
        os._exit(int(x))
    elif kind == "raise":
        raise ValueError(f"bad {x}")
    elif kind == "spin":
        while True:
            pass
    elif kind == "busy":
        end = time.process_time() + x
        while time.process_time() < end:
            pass
    return 2 * x


def where_am_i() -> tuple[bool, bool]:
    """(in a worker, and a nested `run` executes inline there)."""
    nested = bounded.run(os.getpid, timeout=5)
    return bounded.in_worker(), nested.ok and nested.value == os.getpid()


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, memory_mb=512) as p:
        yield p


def test_call_returns_value_and_errors_as_outcomes(pool):
    assert pool.call(pow, 3, 4, timeout=30) == bounded.Outcome(OK, 81)
    out = pool.call(behave, "raise", 7, timeout=30)
    assert out.status == ERROR and out.detail == "ValueError: bad 7" and not out.ok


def test_timeout_from_a_thread_returns_quickly_and_pool_recovers(pool):
    box = {}

    def caller():
        start = time.monotonic()
        box["out"] = pool.call(behave, "sleep", 60, timeout=0.5)
        box["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=caller)
    thread.start()
    thread.join(30)
    assert box["out"].status == TIMEOUT
    assert box["elapsed"] < 10  # 0.5 s bound plus a kill; generous for a loaded machine
    assert pool.call(behave, "ok", 5, timeout=30).value == 10  # replaced worker works


def test_cpu_bound_call_is_killed(pool):
    start = time.monotonic()
    assert pool.call(behave, "spin", 0, timeout=0.5).status == TIMEOUT
    assert time.monotonic() - start < 10


def test_memory_is_bounded(pool):
    out = pool.call(bytearray, 2 * 2**30, timeout=30)  # 2 GiB against a 512 MiB limit
    assert out.status == ERROR and "MemoryError" in out.detail
    assert pool.call(pow, 2, 10, timeout=30).value == 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc")
def test_worker_cpu_seconds_counts_the_work_done(pool):
    pool.call(behave, "ok", 0, timeout=30)  # at least one live worker
    before = pool.worker_cpu_seconds()
    assert pool.call(behave, "busy", 0.3, timeout=30).ok
    assert pool.worker_cpu_seconds() - before >= 0.25


def test_starmap_is_ordered_and_identical_to_sequential(pool):
    items = [(i, 3, 1009) for i in range(300)]
    expected = [pow(*args) for args in items]
    for chunksize in (None, 1, 7, 1000):
        outs = pool.starmap(pow, items, timeout=30, chunksize=chunksize)
        assert [o.value for o in outs] == expected
        assert all(o.ok for o in outs)
    assert pool.map(abs, [-3, 4, -5], timeout=30)[2].value == 5
    assert pool.starmap(pow, [], timeout=1) == []


def test_guided_chunk_sizes():
    # a quarter of one worker's share of what is left: ceil(20 / 8) = 3, ceil(17 / 8) = 3,
    # ceil(14 / 8) = 2, ceil(12 / 8) = 2, ceil(10 / 8) = 2, then ceil(8 / 8) = 1 eight times
    assert bounded.guided_chunk_sizes(20, 2) == [3, 3, 2, 2, 2] + [1] * 8
    # capped at 64 while more than 256 are left (one worker), then ceil(232 / 4) = 58, ...
    tail = [58, 44, 33, 25, 18, 14, 10, 8, 6, 4, 3, 3, 2, 1, 1, 1, 1]
    assert bounded.guided_chunk_sizes(1000, 1) == [64] * 12 + tail
    assert bounded.guided_chunk_sizes(0, 4) == []
    for count, workers in ((1, 1), (7, 3), (1980, 2), (10_000, 16)):
        sizes = bounded.guided_chunk_sizes(count, workers)
        assert sum(sizes) == count and max(sizes) <= 64 and sizes == sorted(sizes, reverse=True)


def test_one_stuck_item_times_out_and_the_rest_of_its_chunk_is_done(pool):
    items = [("ok", i) for i in range(10)]
    items[4] = ("sleep", 60)
    items[7] = ("raise", 7)
    outs = pool.starmap(behave, items, timeout=0.5, chunksize=5)
    assert [o.status for o in outs] == [OK] * 4 + [TIMEOUT] + [OK] * 2 + [ERROR] + [OK] * 2
    assert [o.value for o in outs if o.ok] == [0, 2, 4, 6, 10, 12, 16, 18]


def test_a_dying_worker_costs_only_its_item(pool):
    items = [("ok", 1), ("exit", 3), ("ok", 2), ("ok", 3)]
    outs = pool.starmap(behave, items, timeout=30, chunksize=4)
    assert outs[1].status == ERROR and "exit code 3" in outs[1].detail
    assert [outs[i].value for i in (0, 2, 3)] == [2, 4, 6]


def test_a_worker_started_from_a_finished_thread_lives_on():
    # Linux's PR_SET_PDEATHSIG fires when the thread that started a child ends: workers must be
    # started from the pool's own thread, or they die with the caller's thread.
    with WorkerPool(1, memory_mb=512) as fresh:
        box = {}
        thread = threading.Thread(target=lambda: box.update(pid=fresh.call(os.getpid, timeout=60)))
        thread.start()
        thread.join(60)
        time.sleep(0.5)
        assert fresh.call(os.getpid, timeout=60) == box["pid"]  # the same worker, alive


def test_threads_share_a_pool(pool):
    results = {}

    def work(k: int) -> None:
        results[k] = [o.value for o in pool.starmap(pow, [(k, i) for i in range(20)], timeout=30)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [k**i for i in range(20)] for k in range(2, 6)}


def test_caller_errors_raise():
    with WorkerPool(1) as p:
        with pytest.raises(Exception, match="pickle|lambda"):
            p.call(lambda: 1, timeout=5)
    with pytest.raises(RuntimeError, match="closed"):
        p.call(pow, 1, 1, timeout=5)
    with pytest.raises(ValueError, match="workers"):
        WorkerPool(0)


def test_close_leaves_no_process_behind():
    p = WorkerPool(2)
    p.starmap(pow, [(i, 2) for i in range(50)], timeout=30, chunksize=1)
    procs = [w.proc for w in p._live.workers]
    assert len(procs) == 2
    p.close()
    assert all(proc.returncode is not None for proc in procs)  # exited and reaped


def test_run_is_inline_inside_a_worker():
    assert bounded.in_worker() is False
    out = bounded.run(where_am_i, timeout=60)
    assert out.value == (True, True)
    assert [o.value for o in bounded.run_many(abs, [(-1,), (2,)], timeout=60)] == [1, 2]


def test_usable_from_a_thread_of_a_process_with_torch_loaded(pool):
    torch = pytest.importorskip("torch")
    assert float(torch.ones(64, 64).sum()) == 4096.0  # torch's thread pool is up
    box = {}
    thread = threading.Thread(target=lambda: box.update(out=pool.call(pow, 2, 5, timeout=30)))
    thread.start()
    thread.join(60)
    assert box["out"].value == 32


CHILD = """
import os, sys, time
from reasonlab.verify import bounded
pool = bounded.shared_pool(2)
pool.starmap(pow, [(i, 2) for i in range(8)], timeout=60, chunksize=1)
print(" ".join(str(w.proc.pid) for w in pool._live.workers), flush=True)
if sys.argv[1] == "hang":
    time.sleep(600)
"""


def _gone(pid: int, within: float = 20.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a worker of ours that exited but is not reaped yet (we are not its parent)
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split()[2] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_workers_end_with_their_parent(how):
    """Normal exit stops workers (atexit); a parent killed by SIGKILL takes them along (Linux)."""
    import subprocess
    import sys

    if how == "hang" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, how], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    pids = [int(p) for p in child.stdout.readline().split()]
    assert len(pids) == 2
    if how == "hang":
        child.kill()
    child.wait(60)
    assert all(_gone(pid) for pid in pids)
