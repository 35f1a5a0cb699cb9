"""Rejection sampling (`reasonlab.sft.sample`, `reasonlab sample`): the keep rules, resume, the
trust rule (training rows never from the held-out share) and, on a tiny trained model, that
`--keep correct` keeps only verified-correct rows."""

from __future__ import annotations

import json
import random

import pytest

from reasonlab import tasks
from reasonlab.cli import main
from reasonlab.eval import benchmarks
from reasonlab.records import Example, Rollout
from reasonlab.rollout.base import SamplingParams
from reasonlab.sft.sample import KeepRule, Sampler, problems_for, select
from reasonlab.tasks import split

# -- the keep rules ---------------------------------------------------------------------------

TEXTS = ["a", "bb", "a", "cccc", "dd", "e"]
CORRECT = [True, False, True, True, True, False]
LENGTHS = [5, 2, 5, 9, 3, 1]


@pytest.mark.parametrize(
    "keep, expected",
    [
        (KeepRule("correct"), [0, 3, 4]),  # sample 2 repeats sample 0's text
        (KeepRule("correct", dedup=False), [0, 2, 3, 4]),
        (KeepRule("shortest-correct"), [4, 0, 3]),
        (KeepRule("shortest-correct", k=1), [4]),
        (KeepRule("first-correct"), [0]),
        (KeepRule("all"), [0, 1, 3, 4, 5]),
        (KeepRule("all", k=2), [0, 1]),
        (KeepRule("correct", min_tokens=4), [0, 3]),
        (KeepRule("correct", max_tokens=5), [0, 4]),
        (KeepRule("first-correct", min_tokens=6), [3]),
    ],
)
def test_select_applies_bounds_dedup_rule_and_k(keep, expected):
    assert select(keep, TEXTS, CORRECT, LENGTHS) == expected


def test_bad_keep_rules_name_the_valid_values():
    with pytest.raises(ValueError, match="valid: correct, shortest-correct, first-correct, all"):
        KeepRule("best")
    with pytest.raises(ValueError, match="k must be >= 1"):
        KeepRule("correct", k=0)
    with pytest.raises(ValueError, match="max_tokens"):
        KeepRule("correct", min_tokens=5, max_tokens=3)


# -- a deterministic engine -------------------------------------------------------------------


class FakeEngine:
    """Deterministic in (seed, example id, sample index): the solution, a wrong answer or none."""

    tokenizer = None

    def __init__(self, solutions: dict[str, str], fail_after: int | None = None):
        self.solutions, self.fail_after, self.calls = solutions, fail_after, 0

    def generate(self, prompts, params):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        out = []
        for p in prompts:
            for j in range(params.n):
                rng = random.Random(f"{params.seed}/{p.example_id}/{j}")
                kind = rng.choice(["right", "right", "wrong", "none"])
                text = {
                    "right": f"w{rng.randint(0, 2)} </think> <answer> "
                    f"{self.solutions[p.example_id]} </answer>",
                    "wrong": "w </think> <answer> 1 + 1 </answer>",
                    "none": "no idea",
                }[kind]
                ids = list(range(rng.randint(2, 12)))
                out.append(Rollout(p.example_id, [1], ids, text, prompt_text=p.text))
        return out


@pytest.fixture(scope="module")
def countdown():
    task = tasks.get("countdown")
    examples = problems_for(task, "train", 12, params=dict(preset="cognitive"))
    return task, examples, {e.id: e.meta["solution"] for e in examples}


PARAMS = SamplingParams(n=4, temperature=1.0, max_new_tokens=16, seed=7)
SETTINGS = {"model": "fake", "n": 4, "temperature": 1.0, "seed": 7}


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_correct_keeps_only_verified_rows_with_their_record(countdown, tmp_path):
    task, examples, solutions = countdown
    out = tmp_path / "rs.jsonl"
    summary = Sampler(task, out, KeepRule("correct"), SETTINGS, reward="tinyzero").run(
        FakeEngine(solutions), examples, PARAMS, batch_size=5
    )
    rows = _rows(out)
    assert rows and summary.kept == len(rows)
    by_id = {e.id: e for e in examples}
    for row in rows:
        assert task.verify(row["completion"], by_id[row["example_id"]]).correct
        assert row["correct"] and row["verdict"]["correct"] and row["reward"] == 1.0
        assert row["key"] == task.key(by_id[row["example_id"]])
        assert row["task"] == "countdown" and row["model"] == "fake"
        assert row["purpose"] == "train" and row["sampling"]["seed"] == 7
        assert row["prompt"] == task.render(by_id[row["example_id"]])
    # `all` keeps every distinct sample, with wrong verdicts and their reward
    everything = tmp_path / "all.jsonl"
    Sampler(task, everything, KeepRule("all"), SETTINGS, reward="tinyzero").run(
        FakeEngine(solutions), examples, PARAMS, batch_size=5
    )
    all_rows = _rows(everything)
    assert {r["reward"] for r in all_rows if not r["correct"]} <= {0.0, 0.1}
    assert [r for r in all_rows if r["correct"]] == [
        {**r, "keep": "all"} for r in rows
    ]  # same samples, same order
    assert summary.pass_at_n == pytest.approx(
        len({r["example_id"] for r in all_rows if r["correct"]}) / len(examples)
    )


def test_a_killed_run_resumed_writes_the_uninterrupted_file(countdown, tmp_path):
    task, examples, solutions = countdown
    keep = KeepRule("shortest-correct", k=2)
    whole = tmp_path / "whole.jsonl"
    Sampler(task, whole, keep, SETTINGS).run(FakeEngine(solutions), examples, PARAMS, batch_size=3)

    cut = tmp_path / "cut.jsonl"
    with pytest.raises(KeyboardInterrupt):
        Sampler(task, cut, keep, SETTINGS).run(
            FakeEngine(solutions, fail_after=2), examples, PARAMS, batch_size=3
        )
    assert 0 < len(_rows(cut)) < len(_rows(whole))
    # a write cut short by the kill: a partial last line in the generations
    with open(tmp_path / "cut.generations.jsonl", "a") as f:
        f.write('{"example_id": "half')
    engine = FakeEngine(solutions)
    summary = Sampler(task, cut, keep, SETTINGS).run(engine, examples, PARAMS, batch_size=3)
    assert cut.read_text() == whole.read_text()
    assert engine.calls == 2  # the 2 batches already done were not sampled again
    assert summary.problems == len(examples)
    # re-filtering the stored generations needs no model
    Sampler(task, cut, KeepRule("all"), SETTINGS).run(None, examples, PARAMS, batch_size=3)
    assert len(_rows(cut)) > len(_rows(whole))


def test_train_problems_never_come_from_the_held_out_share():
    task = tasks.get("countdown")
    params = dict(benchmarks.DEMO_PARAMS)
    train = problems_for(task, "train", 300, params=params, held_out_fraction=0.2)
    assert all(not split.in_held_out_share(task, e, 0.2) for e in train)
    held = problems_for(task, "heldout", 50, params=params, held_out_fraction=0.2)
    assert all(split.in_held_out_share(task, e, 0.2) for e in held)
    demo = benchmarks.get("countdown_demo").load(task=task)
    assert not split.overlap(task, train, demo)
    with pytest.raises(ValueError, match="held_out_fraction must be in"):
        problems_for(task, "train", 5, held_out_fraction=0.0)
    with pytest.raises(ValueError, match="valid: train, heldout, benchmark:NAME"):
        problems_for(task, "test", 5)
    with pytest.raises(ValueError, match="is a math benchmark"):
        problems_for(task, "benchmark:math500", 5)


def test_file_backed_tasks_take_their_share_of_the_data():
    task = tasks.get("knights_knaves")
    train = problems_for(task, "train", None, data="test", held_out_fraction=0.2)
    held = problems_for(task, "heldout", None, data="test", held_out_fraction=0.2)
    assert train and held and not split.overlap(task, train, held)
    assert len(train) + len(held) == len(task.load("test"))


# -- the CLI on a tiny model that learned some answers ---------------------------------------


@pytest.fixture(scope="module")
def tiny_solver(tmp_path_factory):
    """A tiny model trained for a few seconds on the direct answers of 2 training problems: at
    temperature 1 it answers some right and some wrong."""
    import torch

    from reasonlab import models
    from reasonlab.models import pretrain, tiny

    task = tasks.get("countdown")
    examples = problems_for(task, "train", 2, params=dict(benchmarks.DEMO_PARAMS))
    pairs = [
        (task.render(e), f" </think> <answer> {e.meta['solution']} </answer>") for e in examples
    ]
    tokenizer = tiny.build_tokenizer([p + c for p, c in pairs], vocab_size=400)
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    torch.manual_seed(0)
    pretrain.pretrain(
        pairs,
        tokenizer,
        model,
        steps=150,
        batch_size=2,
        lr=1e-2,
        seq_len=224,
        seed=0,
        num_threads=1,  # a model this small runs slower on two threads of a loaded machine
    )
    path = tmp_path_factory.mktemp("model") / "solver"
    models.save(model, tokenizer, path)
    return path, task, examples


def _sample_args(model, out, keep, *extra):
    params = [x for k, v in benchmarks.DEMO_PARAMS.items() for x in ("--param", f"{k}={v}")]
    return [
        "sample",
        "--model",
        str(model),
        "--task",
        "countdown",
        "--problems",
        "2",
        *params,
        "--n",
        "8",
        "--max-new-tokens",
        "24",
        "--keep",
        keep,
        "--device",
        "cpu",
        "--batch-size",
        "3",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_cli_rejection_sampling_keeps_only_verified_correct_rows(tiny_solver, tmp_path, capsys):
    model, task, examples = tiny_solver
    assert main(_sample_args(model, tmp_path / "all.jsonl", "all")) == 0
    all_rows = _rows(tmp_path / "all.jsonl")
    right = [r for r in all_rows if r["correct"]]
    assert right and len(right) < len(all_rows)  # the filter has something to do
    assert main(_sample_args(model, tmp_path / "rs.jsonl", "correct")) == 0
    printed = capsys.readouterr().out
    kept = _rows(tmp_path / "rs.jsonl")
    by_key = {task.key(e): e for e in examples}
    assert kept and all(task.verify(r["completion"], by_key[r["key"]]).correct for r in kept)
    assert [r["completion"] for r in kept] == [r["completion"] for r in right]
    summary = json.loads((tmp_path / "rs.summary.json").read_text())
    assert (
        f"kept {len(kept)}/16 samples" in printed
        and f"pass@8 {100 * summary['pass_at_n']:.1f}" in printed
    )
    assert all(not split.in_held_out_share(task, Example.from_dict(r["example"])) for r in all_rows)

    # evaluation problems: rows marked as such
    assert main(_sample_args(model, tmp_path / "h.jsonl", "all", "--split", "heldout")) == 0
    assert "for evaluation only" in capsys.readouterr().out
    held = _rows(tmp_path / "h.jsonl")
    assert held and all(r["purpose"] == "eval" and r["source"] == "heldout" for r in held)
    assert all(split.in_held_out_share(task, Example.from_dict(r["example"])) for r in held)

    # other sampling settings into the same output: a clear error
    assert main(_sample_args(model, tmp_path / "rs.jsonl", "correct", "--seed", "3")) == 2
    assert "seed: stored 0, asked 3" in capsys.readouterr().err
    assert main(_sample_args(model, tmp_path / "x.jsonl", "correct", "--n", "0")) == 2
    assert "--n 0 (must be >= 1)" in capsys.readouterr().err
