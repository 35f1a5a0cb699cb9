"""reasonlab.io: JSONL reading with file:line errors, atomic writes."""

from __future__ import annotations

import json
import stat

import pytest

from reasonlab.io import (
    CannotWrite,
    DataError,
    atomic_open,
    atomic_path,
    atomic_write_text,
    enumerate_jsonl,
    read_jsonl,
    require,
    write_jsonl,
)


def write_bytes(tmp_path, data: bytes):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    return path


# -- reading --------------------------------------------------------------------------------


def test_rows_with_line_numbers_skip_blank_lines(tmp_path):
    path = write_bytes(tmp_path, b'{"a": 1}\n\n   \n{"a": 2, "b": "\xc3\xa9"}\r\n')
    assert list(enumerate_jsonl(path)) == [(1, {"a": 1}), (4, {"a": 2, "b": "é"})]
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2, "b": "é"}]


@pytest.mark.parametrize(
    "line, message",
    [
        (b"{not json", "rows.jsonl:3: not valid JSON (Expecting property name"),
        (b"[1, 2]", "rows.jsonl:3: a row must be a JSON object, got list"),
        (b'"text"', "rows.jsonl:3: a row must be a JSON object, got str"),
        (b'{"a": "\xff"}', "rows.jsonl:3: not UTF-8 text (byte 8)"),
        (b'{"b": 1}', "rows.jsonl:3: missing field 'a'"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path, line, message):
    path = write_bytes(tmp_path, b'{"a": 1}\n\n' + line + b'\n{"a": 4}\n')
    rows = read_jsonl(path, required=("a",))
    assert next(rows) == {"a": 1}  # rows before the bad one are yielded
    with pytest.raises(DataError) as err:
        next(rows)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)
    assert isinstance(err.value, ValueError)


def test_require_names_the_first_missing_field_with_its_prefix():
    require({"id": 1, "prompt": "p"}, ("id", "prompt"), "f.jsonl:7")  # all there: no error
    with pytest.raises(DataError, match=r"^f\.jsonl:7: missing field 'example\.answer'$"):
        require({"id": 1}, ("id", "answer", "prompt"), "f.jsonl:7", prefix="example.")


def test_a_partial_last_line_is_an_error_unless_dropped(tmp_path):
    path = write_bytes(tmp_path, b'{"a": 1}\n{"a": 2}\n{"a": 3, "tex')
    with pytest.raises(DataError, match=r"rows\.jsonl:3: not valid JSON"):
        list(read_jsonl(path))
    assert list(read_jsonl(path, drop_partial_last_line=True)) == [{"a": 1}, {"a": 2}]
    # valid JSON without its newline is cut short too (every complete row ends in a newline)
    path.write_bytes(b'{"a": 1}\n{"a": 2}')
    assert list(read_jsonl(path, drop_partial_last_line=True)) == [{"a": 1}]
    assert list(read_jsonl(path)) == [{"a": 1}, {"a": 2}]
    # a bad line that is not the last one stays an error
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2: not valid JSON"):
        list(read_jsonl(path, drop_partial_last_line=True))


def test_a_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        list(read_jsonl(tmp_path / "nope.jsonl"))


# -- writing --------------------------------------------------------------------------------


def test_write_jsonl_round_trips_and_counts(tmp_path):
    path = tmp_path / "new" / "sub" / "out.jsonl"  # folders are created
    rows = [{"a": 1, "text": "é ∑"}, {"b": [1, 2]}]
    assert write_jsonl(path, iter(rows)) == 2
    assert path.read_text(encoding="utf-8") == '{"a": 1, "text": "é ∑"}\n{"b": [1, 2]}\n'
    assert list(read_jsonl(path)) == rows
    assert write_jsonl(tmp_path / "d.jsonl", [{"x": {1, 2}}], default=sorted) == 1
    assert (tmp_path / "d.jsonl").read_text() == '{"x": [1, 2]}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "new"]


def test_atomic_write_replaces_and_keeps_the_usual_permissions(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old")
    atomic_write_text(path, "new text\n")
    assert path.read_text() == "new text\n"
    plain = tmp_path / "plain.txt"
    plain.write_text("")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    with atomic_open(tmp_path / "b.bin", "wb") as f:
        f.write(b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"):
        with atomic_open(path, "a"):
            pass


class Boom(Exception):
    pass


def _failing_rows():
    yield {"a": 1}
    yield {"a": 2}
    raise Boom("disk full in the middle")


def test_a_failure_in_the_middle_leaves_no_file_and_no_temp_file(tmp_path):
    with pytest.raises(Boom):
        write_jsonl(tmp_path / "out.jsonl", _failing_rows())
    assert list(tmp_path.iterdir()) == []


def test_a_failure_in_the_middle_leaves_the_old_file_as_it_was(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"old": true}\n')
    with pytest.raises(Boom):
        write_jsonl(path, _failing_rows())
    assert path.read_text() == '{"old": true}\n'
    seen = []
    with pytest.raises(KeyboardInterrupt):  # not only Exception: any interruption
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            seen.append(tmp)
            assert tmp.parent == tmp_path and tmp.name.endswith(".tmp")
            raise KeyboardInterrupt
    assert not seen[0].exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert json.loads(path.read_text()) == {"old": True}


def test_an_unwritable_folder_is_cannot_write_naming_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CannotWrite, match=r"cannot write .*file/sub/out\.jsonl") as err:
        write_jsonl(blocker / "sub" / "out.jsonl", [{"a": 1}])
    assert isinstance(err.value, OSError)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_file_lock_excludes_other_holders_and_dies_with_its_process(tmp_path):
    import subprocess
    import sys
    import time

    from reasonlab.io import Busy, file_lock

    lock = tmp_path / "locks" / "run-x"
    with file_lock(lock):
        with pytest.raises(Busy, match="run-x"):  # another open file description: refused
            with file_lock(lock, wait=False):
                pass
    with file_lock(lock, wait=False):  # released after the block
        pass
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom reasonlab.io import file_lock\n"
            "with file_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy):
            with file_lock(lock, wait=False):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    deadline = time.monotonic() + 10
    while True:
        try:
            with file_lock(lock, wait=False):
                break
        except Busy:
            assert time.monotonic() < deadline, "the lock outlived its killed holder"
            time.sleep(0.05)
