"""`rewards.from_task` with a real task (countdown), fed the way TRL feeds a reward function."""

from __future__ import annotations

import pytest

from reasonlab import rewards, tasks


@pytest.fixture(scope="module")
def countdown():
    task = tasks.get("countdown")
    return task, task.generate(n=3, seed=1)


def trl_columns(task, examples, per_prompt: int) -> dict:
    """GRPOTrainer's kwargs: each dataset column repeated per generation, plus its extras."""
    rows = [ex.to_dict() for ex in examples for _ in range(per_prompt)]
    columns = {key: [row[key] for row in rows] for key in ("id", "answer", "meta")}
    prompts = [task.render(ex, template="r1-zero") for ex in examples for _ in range(per_prompt)]
    return {**columns, "prompts": prompts, "completion_ids": [[1, 2, 3]] * len(rows)}


def test_from_task_scores_countdown_completions(countdown):
    task, examples = countdown
    columns = trl_columns(task, examples, per_prompt=2)
    solution = [ex.meta["solution"] for ex in examples]
    completions = [
        f"ok</think> <answer>{solution[0]}</answer>",  # right, prefilled <think>
        "hmm</think> <answer>1 + 2</answer>",  # parsed but wrong
        f"<think>x</think><answer>{solution[1]}</answer>",  # right, but a second <think>
        "no answer at all",
        f"y</think><answer>{solution[0]}</answer>",  # right answer to the wrong problem
        f"z</think><answer>\\boxed{{{solution[2]}}}</answer>",  # not an expression
    ]
    tinyzero = rewards.from_task(task, "tinyzero")
    assert tinyzero.__name__ == "countdown_tinyzero"
    assert tinyzero(completions, trainer_state=None, **columns) == [1.0, 0.1, 1.0, 0.0, 0.1, 0.0]

    logic = rewards.from_task(task, "logic_rl").parts(completions, **columns)
    assert logic["format"] == [1.0, 1.0, -1.0, -1.0, 1.0, 1.0]
    assert logic["answer"] == [2.0, -1.5, -2.0, -2.0, -1.5, -2.0]


def test_combined_task_terms_in_one_call(countdown):
    task, examples = countdown
    columns = trl_columns(task, examples[:1], per_prompt=2)
    completions = [f"a</think><answer>{examples[0].meta['solution']}</answer>", "b</think>"]
    combo = rewards.Combined(
        [
            {"name": "format", "weight": 0.5},
            {"name": "repetition_penalty", "weight": 1.0},
        ]
    )
    out = rewards.Combined(
        {"accuracy": (rewards.from_task(task, "r1"), 1.0), "shaping": (combo, 1.0)}
    ).score(completions, **columns)
    assert out.components["accuracy"] == [1.0, 0.0]
    assert out.components["shaping"] == [0.5, 0.0]
    assert out.total == [1.5, 0.0]
