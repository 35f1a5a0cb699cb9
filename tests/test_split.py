"""Held out by construction: problem identity (`Task.key`), the held-out share, and audits that no
evaluated problem reaches training (the demo's RL stream, its pretraining corpus, a run's files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reasonlab import tasks
from reasonlab.config import load_config
from reasonlab.demo import DEMO_PRETRAIN, DEMO_RECIPE
from reasonlab.records import Example
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.data import PromptStream, build_stream, split_examples
from reasonlab.tasks import split
from reasonlab.tasks.knights_knaves import _relabel, canonical_statements, parse_statements

COUNTDOWN = tasks.get("countdown")


def countdown(numbers, target, id_="x"):
    return Example(id_, "", target, {"numbers": list(numbers), "target": target})


# ----------------------------------------------------------------------------- keys


def test_countdown_key_ignores_the_order_of_the_numbers_and_the_id():
    a, b = countdown([3, 5, 7], 12, "a"), countdown([7, 3, 5], 12, "b")
    assert COUNTDOWN.key(a) == COUNTDOWN.key(b)
    assert COUNTDOWN.key(a) != COUNTDOWN.key(countdown([3, 5, 7], 13))
    assert COUNTDOWN.key(a) != COUNTDOWN.key(countdown([3, 5, 8], 12))
    examples = COUNTDOWN.generate(200, seed=0, preset="cognitive")
    assert len({COUNTDOWN.key(e) for e in examples}) == 200  # the generator's distinct problems


def test_arithmetic_key_is_the_expression_up_to_commutativity():
    task = tasks.get("arithmetic")

    def ex(operands, ops):
        expression = str(operands[0]) + "".join(f" {o} {x}" for o, x in zip(ops, operands[1:]))
        return Example("x", "", 0, {"operands": operands, "ops": ops, "expression": expression})

    assert task.key(ex([12, 7, 3], ["+", "*"])) == task.key(ex([7, 3, 12], ["*", "+"]))
    assert task.key(ex([3, 7], ["*"])) == task.key(ex([7, 3], ["*"]))
    assert task.key(ex([12, 7], ["-"])) != task.key(ex([7, 12], ["-"]))
    assert task.key(ex([2, 3, 4], ["+", "*"])) != task.key(ex([2, 3, 4], ["*", "+"]))


def test_knights_knaves_key_ignores_names_and_the_order_of_people():
    task = tasks.get("knights_knaves")
    puzzles = task.generate(30, seed=0, num_people=4)
    keys = [task.key(p) for p in puzzles]
    assert len(set(keys)) == 30
    first = puzzles[0]
    statements = parse_statements(first.meta["statements"], 4)
    renamed = Example(
        "y",
        "",
        first.answer,
        {**first.meta, "names": ["Ann", "Bob", "Cid", "Dee"]},
    )
    assert task.key(renamed) == keys[0]
    for where in ([1, 0, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1]):  # person i moves to where[i]
        moved = [None] * 4
        for old in range(4):
            moved[where[old]] = _relabel(statements[old], where)
        assert canonical_statements(moved) == canonical_statements(statements)
    # the shipped Logic-RL test sets, 500 puzzles: two are the same puzzle up to names and order
    shipped = task.load("test")
    assert len({task.key(p) for p in shipped}) == 499


def test_default_key_is_the_normalised_question():
    task = tasks.get("math")
    a = Example("a", "What is  $1+1$?\n", "2", {})
    b = Example("b", "what is $1+1$?", "2", {})
    assert task.key(a) == task.key(b)
    assert task.key(a) != task.key(Example("c", "What is $1+2$?", "3", {}))


# ----------------------------------------------------------------------------- the share


def test_held_out_share_is_a_fixed_fraction_and_problems_respect_it():
    params = dict(num_numbers=3, min_number=1, max_number=9, min_target=10, max_target=30)
    train = split.problems(COUNTDOWN, 200, seed=0, **params)
    held = split.problems(COUNTDOWN, 40, seed=1, held_out=True, **params)
    assert len(split.key_set(COUNTDOWN, train)) == 200
    assert not split.overlap(COUNTDOWN, train, held)
    assert all(split.in_held_out_share(COUNTDOWN, e) for e in held)
    assert not any(split.in_held_out_share(COUNTDOWN, e) for e in train)
    share = sum(
        split.in_held_out_share(COUNTDOWN, countdown([i, j, 1], t))
        for i in range(1, 30)
        for j in range(1, 30)
        for t in range(20)
    )
    assert 0.17 < share / (29 * 29 * 20) < 0.23
    with pytest.raises(ValueError, match="held-out"):
        split.problems(COUNTDOWN, 10_000, seed=0, held_out=True, max_rounds=3, **params)


def test_file_backed_split_holds_out_by_key(tmp_path):
    cfg = load_config(
        TrainConfig,
        None,
        ["task.name=knights_knaves", "task.split=test", "task.eval_size=50"],
    ).task
    task = tasks.get("knights_knaves")
    train, held = split_examples(task, cfg)
    assert len(held) == 50 and not split.overlap(task, train, held)
    assert len(train) + len(held) < 500  # the duplicate of a held-out puzzle left training too
    cfg.held_out_fraction = 0.3
    train, held = split_examples(task, cfg)
    assert not any(split.in_held_out_share(task, e, 0.3) for e in train)
    assert all(split.in_held_out_share(task, e, 0.3) for e in held)


# ----------------------------------------------------------------------------- the demo's data


def demo_config(*overrides: str) -> TrainConfig:
    return load_config(TrainConfig, str(DEMO_RECIPE), list(overrides))


def test_the_demo_rl_stream_never_reaches_a_held_out_problem():
    """The demo's real prompt stream, as the Trainer builds it, for the whole run."""
    cfg = demo_config()
    assert cfg.task.held_out_fraction > 0
    train, held = split_examples(COUNTDOWN, cfg.task)
    assert len(held) == cfg.task.eval_size and train is None
    held_keys = split.key_set(COUNTDOWN, held)
    stream = build_stream(COUNTDOWN, cfg.task, train, held)
    drawn = [ex for _ in range(cfg.run.steps) for ex in stream.take(cfg.batching.prompts_per_step)]
    assert len(drawn) == cfg.run.steps * cfg.batching.prompts_per_step
    assert not held_keys & split.key_set(COUNTDOWN, drawn)
    assert not any(split.in_held_out_share(COUNTDOWN, e, cfg.task.held_out_fraction) for e in drawn)
    # the check has teeth: the same stream without exclusions draws evaluated problems, some with
    # their numbers in another order than the evaluated copy (what matching by text missed)
    raw = PromptStream(COUNTDOWN, seed=cfg.task.seed, params=cfg.task.params)
    raw_drawn = raw.take(len(drawn))
    hits = [e for e in raw_drawn if COUNTDOWN.key(e) in held_keys]
    texts = {COUNTDOWN.question(e) for e in held}
    assert hits and any(COUNTDOWN.question(e) not in texts for e in hits)


def test_the_demo_corpus_and_benchmark_respect_the_held_out_share():
    from reasonlab.eval import benchmarks
    from reasonlab.models.base_model import PretrainSettings, build_corpus

    cfg = demo_config()
    settings = PretrainSettings(
        task="countdown", params=dict(cfg.task.params), **{**DEMO_PRETRAIN, "attempts": 1}
    )
    _, info, problems = build_corpus(settings)
    assert info["problems"] == len(problems) == settings.problems
    _, held = split_examples(COUNTDOWN, cfg.task)
    assert not split.overlap(COUNTDOWN, problems, held)
    assert not any(split.in_held_out_share(COUNTDOWN, e) for e in problems)
    bench = benchmarks.get("countdown_demo").load()
    assert split.key_set(COUNTDOWN, held) <= split.key_set(COUNTDOWN, bench)
    assert not split.overlap(COUNTDOWN, problems, bench)


# ----------------------------------------------------------------------------- a run's audit trail


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_run_records_its_held_out_set_and_every_prompt(tmp_path):
    from reasonlab.rl.trainer import Trainer

    cfg = load_config(
        TrainConfig,
        None,
        [
            "model.tiny={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
            "intermediate_size: 64, vocab_size: 300, corpus_examples: 50}",
            "task.name=countdown",
            "task.params={num_numbers: 3, min_number: 1, max_number: 9, min_target: 10, "
            "max_target: 30}",
            "task.eval_size=20",
            "task.held_out_fraction=0.2",
            "rollout.n=2",
            "rollout.max_new_tokens=4",
            "batching.prompts_per_step=8",
            "run.steps=3",
            "run.eval_every=0",
            "run.save_every=0",
            "run.progress=false",
            "run.num_threads=1",
            f"run.out_dir={tmp_path / 'run'}",
        ],
    )
    Trainer(cfg).train()
    run = tmp_path / "run"
    held = read_jsonl(run / "heldout.jsonl")
    prompts = read_jsonl(run / "prompts.jsonl")
    assert len(held) == 20 and all(split.share_position(r["key"]) < 0.2 for r in held)
    assert [r["step"] for r in prompts] == [s for s in (1, 2, 3) for _ in range(8)]
    positions = [r["position"] for r in prompts]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert not {r["key"] for r in held} & {r["key"] for r in prompts}
    assert all(split.share_position(r["key"]) >= 0.2 for r in prompts)
