"""Reading JSONL records and writing files atomically: the one place every room does it.

Reading: `read_jsonl(path)` yields one dict per non-blank line; `enumerate_jsonl(path)` yields
`(line number, row)` for callers that report on rows later. A malformed row (not JSON, not a
JSON object, not UTF-8, or missing a field named in `required=`) raises `DataError` whose message
starts with `file:line:`. Append-only logs written line by line (generations, metrics) pass
`drop_partial_last_line=True`: a last line without its newline is a write cut short by a crash
and is skipped, not an error. A run's logs are read with `read_run_file` and cut back to a
checkpoint's step on resume with `truncate_run_file`.

Writing: `atomic_path(path)` hands out a temporary file in the same folder and renames it onto
`path` (`os.replace`, atomic on POSIX) only when the block succeeds; on any exception
the temporary file is removed and `path` is left as it was, so a reader never sees a partial
file. `atomic_open`, `atomic_write_text` and `write_jsonl` are built on it.

Locking: `file_lock(path)` serialises work on a shared folder between processes (an experiment's
runs, stages and base, when several `reasonlab experiment` processes share an output folder).

This module imports nothing of ours, so every room may use it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

PathLike = str | os.PathLike


class DataError(ValueError):
    """A malformed row in a data file; the message starts with `file:line:`."""


class CannotWrite(OSError):
    """The folder of an output file, or the temporary file beside it, could not be created."""


# --------------------------------------------------------------------------------------------
# Reading


def require(row: Mapping[str, Any], fields: Iterable[str], where: str, prefix: str = "") -> None:
    """Raise `DataError("{where}: missing field '{prefix}{name}'")` for the first absent field.

    `prefix` names a nested object in the message (e.g. `"example."`).
    """
    for name in fields:
        if name not in row:
            raise DataError(f"{where}: missing field {prefix + name!r}")


def enumerate_jsonl(
    path: PathLike, required: Iterable[str] = (), drop_partial_last_line: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, row)` for each non-blank line of a JSONL file (numbers start at 1).

    Raises `DataError` naming `file:line` for a line that is not UTF-8, not JSON, not a JSON
    object, or lacks one of the `required` fields; `OSError` when the file cannot be opened.
    """
    required = tuple(required)
    with open(path, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if drop_partial_last_line and not raw.endswith(b"\n"):
                return  # only the last line can lack its newline: a write cut short
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(f"{where}: not UTF-8 text (byte {err.start + 1})") from None
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{where}: not valid JSON ({err.msg} at column {err.colno})"
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
            require(row, required, where)
            yield lineno, row


def read_jsonl(
    path: PathLike, required: Iterable[str] = (), drop_partial_last_line: bool = False
) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file, one dict per non-blank line (errors as `enumerate_jsonl`)."""
    for _, row in enumerate_jsonl(path, required, drop_partial_last_line):
        yield row


def read_run_file(path: PathLike) -> list[dict[str, Any]]:
    """The rows of a run's append-only log (metrics.jsonl, eval.jsonl...): [] when the file is
    missing; a last line cut by a kill mid-write is dropped."""
    if not os.path.exists(path):
        return []
    return list(read_jsonl(path, drop_partial_last_line=True))


# --------------------------------------------------------------------------------------------
# Locking


class Busy(RuntimeError):
    """`file_lock(..., wait=False)`: another process holds the lock."""


@contextmanager
def file_lock(path: PathLike, wait: bool = True) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path` (created, never removed) for the block, against
    other processes (`fcntl.flock`, POSIX). The kernel drops it when the holder exits, even by
    SIGKILL, so a killed run never leaves a stale lock. `wait=False`: raise `Busy` at once when
    another process holds it."""
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise CannotWrite(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(f"{path} is held by another process") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


# --------------------------------------------------------------------------------------------
# Writing


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A fresh temporary file beside `path` to write (by name); renamed onto `path` on success.

    Creates `path`'s folder when missing (`CannotWrite` when that or the temporary file fails).
    The file is synced to disk before the rename, so after a crash `path` holds either the old
    content or the whole new one. On an exception in the block, the temporary file is removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
        # O_EXCL: never another writer's file; mode 0o666 & ~umask, like a plain open()
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as err:
        raise CannotWrite(err.errno, f"cannot write {path}: {err.strerror or err}") from err
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """`open(path, mode)` onto a temporary file, renamed onto `path` when the block succeeds.

    `mode` is "w" (text, in `encoding`) or "wb" (bytes).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if mode == "wb" else encoding) as f:
            yield f


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write `text` to `path` atomically (see `atomic_path`)."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def write_jsonl(
    path: PathLike, rows: Iterable[Any], default: Callable[[Any], Any] | None = None
) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped) atomically; returns the count.

    `default` is `json.dumps`'s hook for values JSON cannot hold.
    """
    count = 0
    with atomic_open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=default) + "\n")
            count += 1
    return count


def start_run_dir(
    run_dir: PathLike, config: Any, files: Iterable[str], heldout: Iterable[Mapping[str, Any]]
) -> None:
    """A fresh run folder (RL, SFT): `config.yaml`, the run's log files empty, and `heldout.jsonl`
    (the held-out examples with their keys, so that anyone can audit what was evaluated)."""
    from reasonlab.config import dump_config

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")
    for name in files:
        (run_dir / name).write_text("")
    write_jsonl(run_dir / "heldout.jsonl", heldout)


def truncate_run_file(path: PathLike, step: int) -> int:
    """Keep the rows of a run log whose `step` is <= `step` (a resumed run rewrites the later
    ones); returns the number kept. Atomic, like every write here."""
    rows = [row for row in read_run_file(path) if int(row.get("step", 0)) <= step]
    return write_jsonl(path, rows)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
