"""Generations on disk: one JSONL file per benchmark, appended and flushed batch by batch.

    <dir>/<name>.generations.jsonl   one line per example: the example, its prompt, n completions
    <dir>/<name>.settings.json       the settings that made them and their fingerprint

An interrupted evaluation resumes: examples already in the file are skipped. The settings file
guards the resume: generations made with other settings (model, template, n, temperature, top-p,
top-k, max new tokens, seed, stop strings) are never mixed into one file; opening the store with
different settings raises `SettingsMismatch`, naming each differing field, unless `overwrite=True`
starts a fresh file. A crash in the middle of a write leaves at most one partial last line; it is
dropped (and cut from the file before the next append), any other bad line is an error naming the
file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from reasonlab.io import atomic_write_text, read_jsonl

GENERATIONS_SUFFIX = ".generations.jsonl"
SETTINGS_SUFFIX = ".settings.json"


class SettingsMismatch(ValueError):
    """The store holds generations made with other settings than the ones asked for."""


def fingerprint(settings: dict[str, Any]) -> str:
    """A short hash of the settings (JSON with sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class GenerationStore:
    """The generations of one benchmark in `directory` (see the module docstring)."""

    def __init__(self, directory: str | os.PathLike, name: str):
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}{GENERATIONS_SUFFIX}"
        self.settings_path = self.directory / f"{name}{SETTINGS_SUFFIX}"
        self._good_size: int | None = None

    def read_settings(self) -> dict[str, Any] | None:
        if not self.settings_path.is_file():
            return None
        with open(self.settings_path) as f:
            return json.load(f)["settings"]

    def open(self, settings: dict[str, Any], overwrite: bool = False) -> None:
        """Start a store for `settings`, or check that the existing one was made with them."""
        existing = self.read_settings()
        if existing is not None and not overwrite:
            if existing != settings:
                diffs = [
                    f"{key}: stored {existing.get(key)!r}, asked {settings.get(key)!r}"
                    for key in sorted(set(existing) | set(settings))
                    if existing.get(key) != settings.get(key)
                ]
                raise SettingsMismatch(
                    f"{self.path} holds generations made with other settings ("
                    + "; ".join(diffs)
                    + "); use another output folder, or overwrite to start afresh"
                )
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        self._good_size = 0
        record = {"fingerprint": fingerprint(settings), "settings": settings}
        atomic_write_text(self.settings_path, json.dumps(record, indent=2))

    def load(self) -> dict[str, dict[str, Any]]:
        """The stored records by example id (the last one wins if an id was written twice)."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            self._good_size = 0
            return records
        # a last line without its newline is a write cut short by a crash: dropped here, and cut
        # from the file before the next append
        for record in read_jsonl(self.path, ("example_id",), drop_partial_last_line=True):
            records[str(record["example_id"])] = record
        self._good_size = _complete_lines_size(self.path)
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records (one line each), flush and fsync, so a finished batch survives a crash."""
        if self._good_size is None:
            self.load()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > (self._good_size or 0):
            with open(self.path, "r+b") as f:
                f.truncate(self._good_size or 0)
        payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        with open(self.path, "ab") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        self._good_size = (self._good_size or 0) + len(payload)


def _complete_lines_size(path: Path, chunk: int = 1 << 16) -> int:
    """Bytes of `path` up to and including its last newline (0 when it has none)."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(0, end - chunk)
            f.seek(start)
            newline = f.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0
