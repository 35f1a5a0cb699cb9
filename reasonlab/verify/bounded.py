"""Bounded execution: every check of untrusted text ends within a time and memory bound, from any
thread, and batches use every core.

What it provides:

- `WorkerPool(workers, memory_mb=...)`: persistent worker processes. `pool.call(fn, *args,
  timeout=s)` runs one call in a worker and returns an `Outcome` (status `ok`, `timeout` or
  `error`), never raising because of what `fn` did. `pool.starmap(fn, arg_tuples, timeout=s)`
  spreads a batch over all workers in chunks; results come back in order, one `Outcome` per item,
  the same as calling `fn` item by item. The timeout is per item: a stuck item is reported as
  `timeout`, its worker is killed and replaced, and the rest of its chunk is sent elsewhere.
- `run(fn, *args, timeout=s)` / `run_many(fn, arg_tuples, timeout=s)`: the same on a shared pool
  (all cores, created on first use, closed at exit). Inside a worker they run inline: the worker
  is already bounded by the call that sent the work.

Why not the alternatives:

- math-verify's own timeout uses `signal.alarm`, which only works in the main thread; a trainer
  calls rewards from other threads.
- `multiprocessing.Pool` and `concurrent.futures.ProcessPoolExecutor` cannot kill one stuck task:
  a task that never returns holds its worker forever, and the only remedy is to end the pool.

How workers start (measured and decided). A worker is a fresh interpreter started with
`subprocess` (fork+exec of `python -c`), talking to its parent over two pipes:

- not `fork` (multiprocessing's Linux default before 3.14): the child would inherit a copy of a
  trainer process with torch's thread pools and locks held by threads that no longer exist, a
  known source of deadlocks;
- not `spawn` / `forkserver`: both re-import the parent's `__main__` in each worker (a script
  without an `if __name__ == "__main__":` guard then fails), and the forkserver is one per process,
  shared with torch's DataLoader;
- a plain subprocess inherits only `sys.path` (passed explicitly), is unaffected by torch or CUDA
  state in the parent and can be started from any thread. Its cost is an interpreter start plus
  imports. Measured from a process with torch loaded, on the shared 2-core development machine:
  fork 0.02 s, spawn 0.1 s, forkserver 0.01 s (after a 0.1 s server start), subprocess 0.08 s,
  and 0.8 s for a subprocess that imports math-verify and parses once (what a math worker does).
  Workers are persistent, so this is paid once per worker, and again only after a timeout kills
  one. Import time never counts against an item's timeout: a worker acknowledges a chunk after
  unpickling it, which imports `fn`'s module.

Bounds in a worker: address space (`RLIMIT_AS`, `memory_mb`), no core dumps, SIGINT ignored (the
parent handles Ctrl-C), and on Linux the worker is killed when its parent dies (`PR_SET_PDEATHSIG`;
workers are started from a thread of the pool's own that lives as long as the pool, because that
signal comes when the starting thread ends).
Input size is the caller's to cap before sending work (see `reasonlab.verify.math`).
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

OK = "ok"
TIMEOUT = "timeout"
ERROR = "error"

DEFAULT_MEMORY_MB = 2048
"""Address-space limit of a worker (one with math-verify loaded maps about 65 MB)."""
DEFAULT_START_TIMEOUT = 120.0
"""Seconds a new worker may take to start and import what a chunk needs (generous: shared CPUs)."""

_START = b"s"  # a worker's acknowledgement that it unpickled a chunk and starts on it
_in_worker = False  # set once by `_worker_main`; identifies a worker process, never reset


@dataclass(frozen=True)
class Outcome:
    """The result of one bounded call."""

    status: str
    """`ok` (`value` holds the return value), `timeout`, or `error` (`detail` says what)."""
    value: Any = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def available_cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def guided_chunk_sizes(count: int, workers: int, largest: int = 64) -> list[int]:
    """Sizes of the consecutive chunks `count` items are sent in to `workers` workers: guided
    self-scheduling (Polychronopoulos and Kuck, 1987; OpenMP's `schedule(guided)`), each chunk a
    quarter of one worker's share of the items still unsent, `largest` at most and 1 at least.

    Large chunks first keep the round trips few (one per chunk); small ones at the end keep a
    worker that drew a slow item from finishing long after the others."""
    sizes = []
    left = count
    while left > 0:
        size = max(1, min(largest, math.ceil(left / (4 * workers))))
        sizes.append(size)
        left -= size
    return sizes


def in_worker() -> bool:
    """Whether this process is a bounded worker (so calls here are already bounded)."""
    return _in_worker


# --------------------------------------------------------------------------------------------
# The worker side


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(0)


def _limit_memory(memory_mb: int | None) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        limit = int(memory_mb) * 2**20
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(
    read_fd: int, write_fd: int, parent_pid: int, memory_mb: int | None, preload: list[str]
) -> None:
    """Serve chunks until the parent closes the pipe: receive (fn, [(index, args), ...]), answer
    `_START`, then one (index, status, value, detail) message per item, in order."""
    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    _limit_memory(memory_mb)
    for name in preload:
        importlib.import_module(name)
    rx = Connection(read_fd, writable=False)
    tx = Connection(write_fd, readable=False)
    while True:
        try:
            blob = rx.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, items = pickle.loads(blob)
        except BaseException as exc:  # e.g. fn's module fails to import here
            tx.send_bytes(pickle.dumps(("unpickle", _describe(exc))))
            continue
        tx.send_bytes(_START)
        for index, args in items:
            try:
                message = pickle.dumps((index, OK, fn(*args), ""), pickle.HIGHEST_PROTOCOL)
            except BaseException as exc:  # MemoryError and RecursionError included
                message = pickle.dumps((index, ERROR, None, _describe(exc)))
            tx.send_bytes(message)


# --------------------------------------------------------------------------------------------
# The parent side


class _Worker:
    """One worker process and the parent's ends of its two pipes."""

    def __init__(self, memory_mb: int | None, preload: Sequence[str]):
        child_read, parent_write = os.pipe()
        parent_read, child_write = os.pipe()
        code = (
            f"import sys; sys.path[:] = {sys.path!r}; "
            "from reasonlab.verify.bounded import _worker_main; "
            f"_worker_main({child_read}, {child_write}, {os.getpid()}, {memory_mb!r}, "
            f"{list(preload)!r})"
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.DEVNULL,
                pass_fds=(child_read, child_write),
            )
        finally:
            os.close(child_read)
            os.close(child_write)
        self.tx = Connection(parent_write, readable=False)
        self.rx = Connection(parent_read, writable=False)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._close_pipes()

    def stop(self, grace: float = 2.0) -> None:
        self._close_pipes()  # EOF: the worker returns from its loop
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _close_pipes(self) -> None:
        for conn in (self.tx, self.rx):
            try:
                conn.close()
            except OSError:
                pass


@dataclass
class _Job:
    """A chunk in flight on one worker."""

    worker: _Worker
    pending: deque[tuple[int, tuple]]
    deadline: float
    started: bool = False


@dataclass
class _Live:
    """The workers a pool has started, for shutdown (shared with the pool's finalizer)."""

    owner_pid: int
    workers: set[_Worker] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    starter: ThreadPoolExecutor | None = None
    """The pool's own thread that starts every worker (see `WorkerPool._start`)."""


def _shutdown(live: _Live) -> None:
    if os.getpid() != live.owner_pid:  # a forked copy of the owner must not stop its workers
        return
    with live.lock:
        workers, live.workers = list(live.workers), set()
    for worker in workers:
        worker.stop()
    if live.starter is not None:
        live.starter.shutdown(wait=False)


class WorkerPool:
    """Persistent worker processes running calls with per-item timeouts (see the module doc).

    Thread-safe: each call checks workers out of the pool, so threads share it without blocking
    each other beyond the number of workers. Workers start on first use.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        memory_mb: int | None = DEFAULT_MEMORY_MB,
        preload: Sequence[str] = (),
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1 (or None for all cores), got {workers}")
        self.size = workers or available_cores()
        self.memory_mb = memory_mb
        self.preload = tuple(preload)
        self.start_timeout = start_timeout
        self._idle: queue.LifoQueue[_Worker | None] = queue.LifoQueue()
        for _ in range(self.size):
            self._idle.put(None)  # a slot whose worker is started when first checked out
        self._live = _Live(os.getpid())
        self._closed = False
        self._finalizer = weakref.finalize(self, _shutdown, self._live)

    # -- public API ----------------------------------------------------------------------------

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float) -> Outcome:
        """`fn(*args)` in a worker, bounded by `timeout` seconds."""
        return self.starmap(fn, [args], timeout=timeout)[0]

    def map(
        self, fn: Callable[[Any], Any], items: Iterable[Any], *, timeout: float
    ) -> list[Outcome]:
        """`[fn(x) for x in items]`, each bounded by `timeout` seconds, spread over the workers."""
        return self.starmap(fn, [(item,) for item in items], timeout=timeout)

    def starmap(
        self,
        fn: Callable[..., Any],
        arg_tuples: Iterable[tuple],
        *,
        timeout: float,
        chunksize: int | None = None,
    ) -> list[Outcome]:
        """`[fn(*args) for args in arg_tuples]`, each bounded by `timeout` seconds, in order.

        Items go out in consecutive chunks (`guided_chunk_sizes` unless `chunksize` is given), so
        items sorted by what they share (a gold answer) mostly meet in one worker.

        `fn` and the arguments must be picklable (`fn` by reference: a module-level function or
        a method of a picklable object). Raises only for errors of the caller (unpicklable `fn`,
        a closed pool), never for what `fn` does with its input.
        """
        if self._closed:
            raise RuntimeError("this WorkerPool is closed")
        if os.getpid() != self._live.owner_pid:
            raise RuntimeError("a WorkerPool cannot be used from a forked copy of its process")
        items = list(enumerate(tuple(args) for args in arg_tuples))
        results: list[Outcome | None] = [None] * len(items)
        if not items:
            return []
        if chunksize is None:
            sizes = guided_chunk_sizes(len(items), self.size)
        else:
            sizes = [chunksize] * math.ceil(len(items) / chunksize)
        todo: deque[deque[tuple[int, tuple]]] = deque()
        start = 0
        for size in sizes:
            todo.append(deque(items[start : start + size]))
            start += size
        workers = self._checkout(len(todo))
        try:
            self._drive(fn, todo, workers, results, timeout)
        finally:
            self._checkin(workers)
        return results  # type: ignore[return-value]

    def worker_cpu_seconds(self) -> float | None:
        """CPU time (user + system) used so far by the pool's live workers, from `/proc` (None
        where there is no `/proc`). For benchmarks: wall time on a shared machine says little."""
        with self._live.lock:
            pids = [worker.proc.pid for worker in self._live.workers]
        total = 0
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                return None
            total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat
        return total / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        """Stop every worker (also done at interpreter exit)."""
        self._closed = True
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------------

    def _checkout(self, wanted: int) -> list[_Worker]:
        """One worker (waiting for it if all are busy), plus up to `wanted - 1` idle ones."""
        slots = [self._idle.get()]
        while len(slots) < wanted:
            try:
                slots.append(self._idle.get_nowait())
            except queue.Empty:
                break
        return [slot if slot is not None else self._start() for slot in slots]

    def _checkin(self, workers: list[_Worker]) -> None:
        for worker in workers:
            self._idle.put(worker)

    def _start(self) -> _Worker:
        """A new worker, started from the pool's own long-lived thread: Linux sends
        `PR_SET_PDEATHSIG` when the *thread* that started a child ends, not its process, so a
        worker started from a caller's short-lived thread would be killed when that thread
        returns, in the middle of another thread's work."""
        with self._live.lock:
            if self._live.starter is None:
                self._live.starter = ThreadPoolExecutor(1, thread_name_prefix="bounded-starter")
            starter = self._live.starter
        worker = starter.submit(_Worker, self.memory_mb, self.preload).result()
        with self._live.lock:
            self._live.workers.add(worker)
        return worker

    def _drive(
        self,
        fn: Callable[..., Any],
        todo: deque[deque[tuple[int, tuple]]],
        workers: list[_Worker],
        results: list[Outcome | None],
        timeout: float,
    ) -> None:
        """Keep every checked-out worker busy with one chunk until all items have an outcome.

        `workers` is updated in place when a worker is replaced, so the caller checks in live ones.
        """
        free = list(workers)
        jobs: dict[Connection, _Job] = {}
        try:
            while todo or jobs:
                while todo and free:
                    job = self._send(fn, todo.popleft(), free.pop(), workers)
                    jobs[job.worker.rx] = job
                wait_for = max(0.0, min(job.deadline for job in jobs.values()) - time.monotonic())
                for conn in wait(list(jobs), timeout=wait_for):
                    job = jobs[conn]
                    state = self._receive(job, results, timeout)
                    if state == "busy":
                        continue
                    del jobs[conn]
                    if state == "dead":
                        job.worker = self._replace(workers, job.worker)
                    free.append(job.worker)
                    if job.pending:
                        todo.appendleft(job.pending)
                now = time.monotonic()
                for conn, job in list(jobs.items()):
                    if now < job.deadline or conn.poll(0):
                        continue
                    del jobs[conn]
                    if job.started:  # the item it is on has run out of time
                        index, _ = job.pending.popleft()
                        results[index] = Outcome(TIMEOUT, detail=f"no result within {timeout:g}s")
                    else:
                        self._fail(job, results, f"no worker start within {self.start_timeout:g}s")
                    job.worker = self._replace(workers, job.worker)
                    free.append(job.worker)
                    if job.pending:
                        todo.appendleft(job.pending)
        finally:
            for job in jobs.values():  # interrupted (e.g. KeyboardInterrupt): state unknown
                self._replace(workers, job.worker)

    def _send(
        self,
        fn: Callable[..., Any],
        chunk: deque[tuple[int, tuple]],
        worker: _Worker,
        workers: list[_Worker],
    ) -> _Job:
        # Pickling errors are the caller's (an unpicklable fn): let them propagate.
        blob = pickle.dumps((fn, list(chunk)), pickle.HIGHEST_PROTOCOL)
        try:
            worker.tx.send_bytes(blob)
        except OSError:  # the worker died while idle: replace it and resend
            worker = self._replace(workers, worker)
            worker.tx.send_bytes(blob)
        return _Job(worker, chunk, time.monotonic() + self.start_timeout)

    def _receive(self, job: _Job, results: list[Outcome | None], timeout: float) -> str:
        """Read what a worker has sent: `busy` (items pending), `done` (chunk finished, or not
        loadable: its items are errors) or `dead` (the worker exited: its current item is an
        error and the rest stay pending; all are errors if it died before starting)."""
        while job.worker.rx.poll(0):
            try:
                message = job.worker.rx.recv_bytes()
            except (EOFError, OSError):
                try:
                    code: int | str | None = job.worker.proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    code = "?"
                if not job.started:
                    self._fail(job, results, f"worker exited while starting (exit code {code})")
                elif job.pending:
                    index, _ = job.pending.popleft()
                    results[index] = Outcome(ERROR, detail=f"worker died (exit code {code})")
                return "dead"
            if message == _START:
                job.started = True
                job.deadline = time.monotonic() + timeout
                continue
            reply = pickle.loads(message)
            if reply[0] == "unpickle":
                self._fail(job, results, f"worker could not load the call: {reply[1]}")
                return "done"
            index, status, value, detail = reply
            results[index] = Outcome(status, value, detail)
            job.pending.popleft()
            job.deadline = time.monotonic() + timeout
            if not job.pending:
                return "done"
        return "busy"

    @staticmethod
    def _fail(job: _Job, results: list[Outcome | None], detail: str) -> None:
        while job.pending:
            index, _ = job.pending.popleft()
            results[index] = Outcome(ERROR, detail=detail)

    def _replace(self, workers: list[_Worker], old: _Worker) -> _Worker:
        """Kill `old` and put a fresh worker in its place in `workers`."""
        with self._live.lock:
            self._live.workers.discard(old)
        old.kill()
        new = self._start()
        workers[workers.index(old)] = new
        return new


# --------------------------------------------------------------------------------------------
# Shared pools

_shared: dict[tuple[int, int], WorkerPool] = {}
_shared_lock = threading.Lock()


def shared_pool(workers: int | None = None) -> WorkerPool:
    """The process-wide pool with `workers` workers (all cores when None), created on first use
    and closed at interpreter exit. One per size, so repeated batches reuse warm workers."""
    size = workers or available_cores()
    key = (os.getpid(), size)  # a forked child gets pools of its own
    with _shared_lock:
        pool = _shared.get(key)
        if pool is None or pool._closed:
            pool = _shared[key] = WorkerPool(size)
        return pool


def _run_inline(fn: Callable[..., Any], args: tuple) -> Outcome:
    try:
        return Outcome(OK, fn(*args))
    except Exception as exc:
        return Outcome(ERROR, detail=_describe(exc))


def run(fn: Callable[..., Any], *args: Any, timeout: float) -> Outcome:
    """`fn(*args)` bounded by `timeout` seconds on the shared pool (inline inside a worker)."""
    if _in_worker:
        return _run_inline(fn, args)
    return shared_pool().call(fn, *args, timeout=timeout)


def run_many(
    fn: Callable[..., Any],
    arg_tuples: Sequence[tuple],
    *,
    timeout: float,
    workers: int | None = None,
) -> list[Outcome]:
    """`[fn(*args) for args in arg_tuples]`, each bounded by `timeout` seconds, on the shared pool
    of `workers` workers (inline inside a worker)."""
    if _in_worker:
        return [_run_inline(fn, tuple(args)) for args in arg_tuples]
    if not arg_tuples:
        return []
    return shared_pool(workers).starmap(fn, arg_tuples, timeout=timeout)
