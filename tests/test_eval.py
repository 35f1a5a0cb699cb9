"""The evaluation runner: resume, rescore, stored settings, benchmarks, and the `reasonlab eval` CLI
end to end with a tiny random model."""

from __future__ import annotations

import json
import random

import pytest

from reasonlab import tasks
from reasonlab.cli import main
from reasonlab.eval import benchmarks
from reasonlab.eval.metrics import pass_at_k
from reasonlab.eval.runner import evaluate, generate, score
from reasonlab.eval.store import GenerationStore, SettingsMismatch
from reasonlab.records import Example, Rollout
from reasonlab.registry import UnknownNameError
from reasonlab.rollout.base import SamplingParams


class FakeEngine:
    """Deterministic in (seed, example id, sample index): the solution, a wrong answer or none."""

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.fail_after = fail_after
        self.prompts_seen: list[str] = []

    def generate(self, prompts, params):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        out = []
        for p in prompts:
            self.prompts_seen.append(p.example_id)
            for j in range(params.n):
                rng = random.Random(f"{params.seed}/{p.example_id}/{j}")
                kind = rng.choice(["right", "right", "wrong", "none"])
                solution = _SOLUTIONS[p.example_id]
                text = {
                    "right": f"some work </think> <answer> {solution} </answer>",
                    "wrong": "guess </think> <answer> 1 + 1 </answer>",
                    "none": "I do not know",
                }[kind]
                length = rng.randint(3, 30)
                out.append(
                    Rollout(
                        example_id=p.example_id,
                        prompt_ids=[1],
                        completion_ids=list(range(length)),
                        text=text,
                        finish_reason="length" if length > 25 else "stop",
                    )
                )
        return out


_SOLUTIONS: dict[str, str] = {}


@pytest.fixture(scope="module")
def countdown():
    task = tasks.get("countdown")
    examples = task.generate(n=10, seed=3, preset="cognitive")
    for e in examples:
        _SOLUTIONS[e.id] = e.meta["solution"]
    return task, examples


PARAMS = SamplingParams(n=4, temperature=1.0, max_new_tokens=32, seed=11)


def test_evaluate_metrics_match_the_samples(countdown):
    task, examples = countdown
    result = evaluate(FakeEngine(), task, examples, PARAMS, batch_size=3, group_by="numbers")
    rows = result.rows
    assert len(rows) == 10 * 4
    per_example: dict[str, list[bool]] = {}
    for r in rows:
        per_example.setdefault(r["example_id"], []).append(r["correct"])
        assert r["correct"] == (r["answer"] == _SOLUTIONS[r["example_id"]].replace(" ", ""))
    expected_avg = sum(sum(c) / 4 for c in per_example.values()) / 10
    assert result.metrics["avg@4"] == pytest.approx(expected_avg)
    expected_pass2 = sum(pass_at_k(4, sum(c), 2) for c in per_example.values()) / 10
    assert result.metrics["pass@2"] == pytest.approx(expected_pass2)
    assert result.metrics["maj@1"] == pytest.approx(expected_avg)
    assert set(result.metrics) >= {"pass@4", "maj@2", "maj@4", "mean_length", "truncation_rate"}
    # groups: by how many numbers (a list-valued meta key groups by length)
    sizes = {len(e.meta["numbers"]) for e in examples}
    assert set(result.groups) == {str(s) for s in sizes}
    assert sum(g["num_examples"] for g in result.groups.values()) == 10


def test_interrupted_run_resumes_to_the_same_result(countdown, tmp_path):
    task, examples = countdown
    full = evaluate(FakeEngine(), task, examples, PARAMS, batch_size=3)

    store = GenerationStore(tmp_path, "countdown")
    store.open({"n": 4})
    with pytest.raises(KeyboardInterrupt):
        evaluate(FakeEngine(fail_after=2), task, examples, PARAMS, batch_size=3, store=store)
    assert len(GenerationStore(tmp_path, "countdown").load()) == 6  # two batches of 3 were saved

    engine = FakeEngine()
    store = GenerationStore(tmp_path, "countdown")
    store.open({"n": 4})  # same settings: resume
    resumed = evaluate(engine, task, examples, PARAMS, batch_size=3, store=store)
    assert engine.calls == 2  # batches [6, 9) and [9, 10) only
    assert engine.prompts_seen == [e.id for e in examples[6:]]
    assert resumed.metrics == full.metrics
    assert resumed.rows == full.rows


def test_rescore_needs_no_engine(countdown, tmp_path):
    task, examples = countdown
    store = GenerationStore(tmp_path, "cd")
    store.open({"n": 4})
    result = evaluate(FakeEngine(), task, examples, PARAMS, batch_size=4, store=store)
    again = score(task, GenerationStore(tmp_path, "cd").load().values())
    assert again.metrics == result.metrics
    assert again.rows == result.rows


def test_changed_settings_are_refused_or_overwritten(tmp_path):
    store = GenerationStore(tmp_path, "b")
    store.open({"n": 4, "temperature": 1.0})
    store.append([{"example_id": "x", "completions": []}])
    with pytest.raises(SettingsMismatch, match=r"n: stored 4, asked 8") as err:
        GenerationStore(tmp_path, "b").open({"n": 8, "temperature": 1.0})
    assert "temperature" not in str(err.value)
    GenerationStore(tmp_path, "b").open({"n": 4, "temperature": 1.0})  # same: fine, kept
    assert list(GenerationStore(tmp_path, "b").load()) == ["x"]
    GenerationStore(tmp_path, "b").open({"n": 8, "temperature": 1.0}, overwrite=True)
    assert GenerationStore(tmp_path, "b").load() == {}
    assert GenerationStore(tmp_path, "b").read_settings() == {"n": 8, "temperature": 1.0}


def test_a_partial_last_line_is_dropped_and_cut_before_appending(tmp_path):
    store = GenerationStore(tmp_path, "b")
    store.open({})
    store.append([{"example_id": "a"}, {"example_id": "b"}])
    with open(store.path, "a") as f:
        f.write('{"example_id": "c", "compl')  # a crash in the middle of a write
    fresh = GenerationStore(tmp_path, "b")
    assert list(fresh.load()) == ["a", "b"]
    fresh.append([{"example_id": "d"}])
    assert list(GenerationStore(tmp_path, "b").load()) == ["a", "b", "d"]
    assert store.path.read_text().count("\n") == 3


def test_a_bad_line_in_the_middle_names_file_and_line(tmp_path):
    store = GenerationStore(tmp_path, "b")
    store.open({})
    store.append([{"example_id": "a"}])
    with open(store.path, "a") as f:
        f.write("not json\n")
        f.write('{"example_id": "b"}\n')
    with pytest.raises(ValueError, match=r"b\.generations\.jsonl:2: not valid JSON"):
        GenerationStore(tmp_path, "b").load()


def test_generate_rejects_duplicate_ids_and_short_engines(countdown):
    task, examples = countdown

    class Short(FakeEngine):
        def generate(self, prompts, params):
            return super().generate(prompts, params)[:-1]

    with pytest.raises(ValueError, match="unique"):
        generate(FakeEngine(), task, [examples[0], examples[0]], PARAMS)
    with pytest.raises(RuntimeError, match="expected 4"):
        generate(Short(), task, examples[:1], PARAMS)


def test_benchmark_registry():
    assert {"math500", "aime24", "amc23", "gsm8k", "knights_knaves", "countdown"} <= set(
        benchmarks.names()
    )
    with pytest.raises(UnknownNameError, match="valid names: .*math500"):
        benchmarks.get("math501")
    with pytest.raises(UnknownNameError, match="did you mean 'aime24'"):
        benchmarks.parse_list("math500,aime2024")
    assert [b.name for b in benchmarks.parse_list("gsm8k, amc23")] == ["gsm8k", "amc23"]
    bench = benchmarks.get("countdown")
    # a generated benchmark is the same list whatever the limit: a larger --limit extends a run
    assert bench.load(limit=5) == bench.load(limit=12)[:5]
    kk = benchmarks.get("knights_knaves").load()
    assert len(kk) == 500
    assert {e.meta["num_people"] for e in kk} == {3, 4, 5, 6, 7}
    assert len(benchmarks.get("math500").load(limit=7)) == 7


def test_countdown_demo_is_every_held_out_problem_of_the_demo():
    import itertools

    import yaml

    from reasonlab.demo import DEMO_RECIPE
    from reasonlab.tasks import split
    from reasonlab.tasks.countdown import solve

    bench = benchmarks.get("countdown_demo")
    task = bench.task_instance()
    assert bench.held_out and bench.group_by is None and bench.template == "r1-zero"
    params = yaml.safe_load(DEMO_RECIPE.read_text())["task"]["params"]
    assert {k: v for k, v in bench.generate.items() if k not in ("n", "seed")} == params
    # the demo's problem space, enumerated: 3 numbers in 1-9, a solvable target in 10-30
    held_out = set()
    for numbers in itertools.combinations_with_replacement(range(1, 10), 3):
        for target in range(10, 31):
            example = Example("x", "", target, {"numbers": list(numbers), "target": target})
            if solve(list(numbers), target) is not None and split.in_held_out_share(task, example):
                held_out.add(task.key(example))
    examples = bench.load()
    assert len(examples) == len(held_out) == benchmarks.DEMO_HELD_OUT
    assert {task.key(e) for e in examples} == held_out  # distinct, all held out
    assert len({e.id for e in examples}) == len(examples)
    again = bench.load()
    assert [(e.id, e.prompt, e.meta) for e in again] == [(e.id, e.prompt, e.meta) for e in examples]
    assert bench.load(limit=17) == examples[:17]  # --limit takes a prefix of the same list


# -- the CLI end to end with a tiny random model -----------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from reasonlab import models
    from reasonlab.models import tiny

    task = tasks.get("countdown")
    texts = [task.render(e) for e in task.generate(n=30, seed=0, preset="cognitive")]
    tokenizer = tiny.build_tokenizer(texts, vocab_size=400)
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    path = tmp_path_factory.mktemp("model") / "tiny"
    models.save(model, tokenizer, path)
    return path


def _eval_args(model_dir, out, *extra):
    return [
        "eval",
        "--model",
        str(model_dir),
        "--benchmarks",
        "countdown_cognitive",
        "--n",
        "2",
        "--max-new-tokens",
        "6",
        "--temperature",
        "1.0",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_cli_eval_end_to_end(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    # a run cut short (first 2 examples), then extended to 4, equals a run of 4 from scratch
    assert main(_eval_args(tiny_model_dir, out, "--limit", "2")) == 0
    assert main(_eval_args(tiny_model_dir, out, "--limit", "4")) == 0
    fresh = tmp_path / "fresh"
    assert main(_eval_args(tiny_model_dir, fresh, "--limit", "4")) == 0
    gens = (out / "countdown_cognitive.generations.jsonl").read_text()
    assert gens == (fresh / "countdown_cognitive.generations.jsonl").read_text()
    records = [json.loads(line) for line in gens.splitlines()]
    assert len(records) == 4 and all(len(r["completions"]) == 2 for r in records)
    assert all(c["num_tokens"] <= 6 for r in records for c in r["completions"])

    results = json.loads((out / "results.json").read_text())
    entry = results["benchmarks"]["countdown_cognitive"]
    assert entry["task"] == "countdown" and entry["group_by"] == "numbers"
    assert entry["settings"]["n"] == 2 and entry["settings"]["template"] == "r1-zero"
    assert {"avg@2", "pass@1", "pass@2", "maj@1", "maj@2", "mean_length", "truncation_rate"} <= set(
        entry["metrics"]
    )
    assert entry["metrics"]["num_examples"] == 4
    assert entry["metrics"]["truncation_rate"] > 0  # 6 tokens of a random model rarely stop
    assert entry["groups"]
    md = (out / "results.md").read_text()
    assert "| countdown_cognitive | 4 |" in md and "By `numbers`" in md
    scored = (out / "countdown_cognitive.scored.jsonl").read_text().splitlines()
    assert len(scored) == 8 and {"correct", "answer", "detail"} <= set(json.loads(scored[0]))

    # --rescore reads the saved generations only (no --model)
    (out / "results.json").unlink()
    rescore = ["eval", "--benchmarks", "countdown_cognitive", "--out", str(out), "--rescore"]
    assert main(rescore) == 0
    assert json.loads((out / "results.json").read_text())["benchmarks"] == results["benchmarks"]

    # other sampling settings into the same folder: a clear error, exit status 2
    capsys.readouterr()
    assert main(_eval_args(tiny_model_dir, out, "--limit", "4", "--seed", "5")) == 2
    assert "seed: stored 0, asked 5" in capsys.readouterr().err
    assert main(["eval", "--benchmarks", "nope", "--out", str(out), "--rescore"]) == 2


def test_maj_groups_math_answers_by_math_verify():
    task = tasks.get("math")
    example = Example("half", "What is 1/2?", "\\frac{1}{2}", {})
    texts = ["\\boxed{1}", "\\boxed{0.5}", "\\boxed{\\frac12}", "\\boxed{2}"]
    record = {
        "example_id": example.id,
        "example": example.to_dict(),
        "prompt": "",
        "completions": [{"text": t, "num_tokens": 3, "finish_reason": "stop"} for t in texts],
    }
    result = score(task, [record])
    assert [r["answer_group"] for r in result.rows] == [0, 1, 1, 2]
    assert [r["correct"] for r in result.rows] == [False, True, True, False]
    # by strings this is a four-way tie won by "1"; by math-verify 0.5 = \frac12 wins 2 to 1
    assert result.metrics["maj@4"] == 1.0
    # blocks of 2: [1, 0.5] is a tie won by "1"; [\frac12, 2] one won by \frac12
    assert result.metrics["maj@2"] == 0.5
    assert result.metrics["avg@4"] == 0.5
