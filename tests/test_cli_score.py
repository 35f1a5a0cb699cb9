"""`reasonlab score`: end to end on countdown, and its errors."""

from __future__ import annotations

import json
import math

import pytest

from reasonlab import tasks
from reasonlab.cli import main


@pytest.fixture(scope="module")
def examples():
    return tasks.get("countdown").generate(n=4, seed=0)


def completions_for(examples):
    """Correct (prefilled <think>), wrong, no answer, and repeated </answer> (gaming)."""
    ex = examples
    return [
        f"add them</think> <answer>{ex[0].meta['solution']}</answer>",
        "guess</think> <answer>1 + 1</answer>",
        "no idea",
        f"x</think> <answer>{ex[3].meta['solution']}</answer></answer>",
    ]


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def input_file(tmp_path, examples):
    path = tmp_path / "in.jsonl"
    rows = [
        {**ex.to_dict(), "completion": c, "sample": i}
        for i, (ex, c) in enumerate(zip(examples, completions_for(examples)))
    ]
    write_rows(path, rows)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_score_writes_verdicts_rewards_and_components(tmp_path, input_file, capsys):
    out = tmp_path / "sub" / "out.jsonl"
    argv = ["score", "--task", "countdown", "--input", str(input_file), "--out", str(out)]
    argv += ["--scheme", "tinyzero", "--reward", "format:0.5", "--reward", "tag_count"]
    assert main(argv) == 0
    rows = read_jsonl(out)
    assert [r["sample"] for r in rows] == [0, 1, 2, 3]  # input fields kept, order kept
    # the last <answer> of the gaming row runs to its second </answer>: it does not parse
    assert [r["verdict"]["correct"] for r in rows] == [True, False, False, False]
    assert [r["verdict"]["format_ok"] for r in rows] == [True, True, False, False]
    # tinyzero 1 / 0.1 / 0; format counts the template's prefilled <think>, fails the gaming row
    assert [r["components"]["accuracy"] for r in rows] == [1.0, 0.1, 0.0, 0.0]
    assert [r["components"]["format"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    assert [r["components"]["tag_count"] for r in rows] == [1.0, 1.0, 0.25, 0.75]
    for r in rows:
        c = r["components"]
        assert r["reward"] == pytest.approx(c["accuracy"] + 0.5 * c["format"] + c["tag_count"])
    printed = capsys.readouterr().out
    assert "correct    0.2500" in printed and "format_ok  0.5000" in printed
    # one line says "accuracy": the scheme's reward component, named as such
    (line,) = [line for line in printed.splitlines() if "accuracy" in line]
    assert "0.2750" in line and "'tinyzero' scheme's reward" in line
    # totals 2.5, 1.6, 0.25, 0.75
    assert "reward     1.2750" in printed and "(weight 0.5)" in printed


def test_score_example_subobject_logic_rl_and_template(tmp_path, examples):
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [
        {"example": ex.to_dict(), "completion": c}
        for ex, c in zip(examples, completions_for(examples))
    ]
    write_rows(path, rows)
    argv = ["score", "--task", "countdown", "--input", str(path), "--out", str(out)]
    assert main(argv + ["--scheme", "logic_rl"]) == 0
    comps = [r["components"] for r in read_jsonl(out)]
    assert [c["accuracy/format"] for c in comps] == [1.0, 1.0, -1.0, -1.0]
    assert [c["accuracy/answer"] for c in comps] == [2.0, -1.5, -2.0, -2.0]
    # with the boxed template nothing is prefilled: no <think> at all, so the format fails
    assert main(argv + ["--scheme", "logic_rl", "--template", "boxed"]) == 0
    assert [r["components"]["accuracy/format"] for r in read_jsonl(out)] == [-1.0] * 4


def test_score_length_rewards_need_token_counts_or_chars(tmp_path, input_file, capsys):
    out = tmp_path / "out.jsonl"
    argv = ["score", "--task", "countdown", "--input", str(input_file), "--out", str(out)]
    assert main(argv + ["--reward", "cosine_length"]) == 2
    assert "'completion_ids'" in capsys.readouterr().err and not out.exists()
    assert main(argv + ["--reward", "cosine_length:2:max_len=100,unit=chars"]) == 0
    rows = read_jsonl(out)
    n = len(rows[2]["completion"])  # the wrong "no idea" row: -1 at length 0, rising
    expected = 0 + 0.5 * -1 * (1 + math.cos(math.pi * n / 100))
    assert rows[2]["components"]["cosine_length"] == pytest.approx(expected)
    lines = [json.loads(line) for line in input_file.read_text().splitlines()]
    write_rows(input_file, [{**r, "num_tokens": 10} for r in lines])
    assert main(argv + ["--reward", "soft_overlong:1:max_len=12,cache_len=4"]) == 0
    assert [r["components"]["soft_overlong"] for r in read_jsonl(out)] == [-0.5] * 4


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "in.jsonl:2: not valid JSON"),
        ('["a list"]', "in.jsonl:2: a row must be a JSON object"),
        ('{"id": "x", "prompt": "", "answer": 1}', "in.jsonl:2: missing field 'completion'"),
        ('{"completion": "c", "id": "x", "prompt": ""}', "in.jsonl:2: missing field 'answer'"),
        (
            '{"completion": "c", "example": {"id": "x"}}',
            "in.jsonl:2: missing field 'example.prompt'",
        ),
        ('{"completion": 3, "id": "x", "prompt": "", "answer": 1}', "field 'completion' must be"),
        (
            '{"completion": "c", "id": "x", "prompt": "p", "answer": "6"}',  # no meta
            "in.jsonl:2: field 'meta.numbers' is missing; task 'countdown' needs it",
        ),
    ],
)
def test_score_bad_rows_name_file_line_and_field(tmp_path, examples, capsys, line, message):
    path, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    good = json.dumps({**examples[0].to_dict(), "completion": "x"})
    path.write_text(good + "\n" + line + "\n")
    out.write_text("previous\n")
    assert main(["score", "--task", "countdown", "--input", str(path), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert out.read_text() == "previous\n"  # nothing partially written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--task", "countdwn"], "unknown task 'countdwn'"),
        (["--reward", "formatt"], "unknown reward 'formatt'"),
        (["--reward", "format:heavy"], "weight 'heavy' is not a number"),
        (["--reward", "format:1:strict"], "parameter 'strict' is not KEY=VALUE"),
        (["--reward", "format:1:strictness=1"], "no parameter 'strictness'"),
        (["--reward", "format", "--reward", "format"], "two reward terms are labelled 'format'"),
        (["--scheme", "cosine"], "unknown --scheme 'cosine'; valid schemes: r1, tinyzero"),
        (["--template", "chatml"], "unknown template 'chatml'"),
        (["--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_score_bad_arguments(tmp_path, input_file, capsys, extra, message):
    argv = ["score", "--task", "countdown", "--input", str(input_file)]
    argv += ["--out", str(tmp_path / "out.jsonl"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    if "unknown" in message and "scheme" not in message:
        assert "valid" in err  # the valid names are listed
    assert not (tmp_path / "out.jsonl").exists()


def test_score_missing_or_empty_input(tmp_path, capsys):
    argv = ["score", "--task", "countdown", "--out", str(tmp_path / "o.jsonl"), "--input"]
    assert main([*argv, str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "empty.jsonl").write_text("\n\n")
    assert main([*argv, str(tmp_path / "empty.jsonl")]) == 2
    assert "no rows" in capsys.readouterr().err


def test_score_help_documents_the_input(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = capsys.readouterr().out
    assert "completion" in text and "example" in text and "NAME[:WEIGHT]" in text
