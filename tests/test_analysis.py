"""reasonlab.analysis: behaviour detectors against the corpus's own tags, reflection words word by
word, change points by hand, the trainer's per-step behaviour metrics, the LLM judge's mechanics,
the training plot's step-0 point, and the `analyze` / `report` commands."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
from html_check import CHROMIUM, Structure, render_in_chromium

from reasonlab import tasks
from reasonlab.analysis import dynamics
from reasonlab.analysis.behaviours import (
    BEHAVIOURS,
    count_keywords,
    count_words,
    detect,
    precision_recall,
    summarize,
)
from reasonlab.analysis.judge import Judge, judge_prompt, parse_count
from reasonlab.cli import main
from reasonlab.records import Rollout
from reasonlab.tasks import corpus

# ----------------------------------------------------------------------------- ground truth


def _tagged(
    n: int, seed: int, style: corpus.AttemptStyle
) -> list[tuple[dict, corpus.TaggedAttempt]]:
    task = tasks.get("countdown")
    params = dict(num_numbers=3, min_number=1, max_number=9, min_target=10, max_target=30)
    examples = task.generate(n, seed=seed, **params)
    rng = random.Random(seed)
    return [(ex.meta, corpus.countdown_attempt_tagged(ex, rng, style)) for ex in examples]


def test_tagged_attempt_writes_the_same_text_as_the_untagged_one():
    task = tasks.get("countdown")
    examples = task.generate(20, seed=3, num_numbers=3, min_number=1, max_number=9)
    style = corpus.AttemptStyle(mistake_rate=0.2, persistent_rate=0.5)
    plain_rng, tagged_rng = random.Random(7), random.Random(7)
    for ex in examples:
        tagged = corpus.countdown_attempt_tagged(ex, tagged_rng, style)
        assert tagged.text == corpus.countdown_attempt(ex, plain_rng, style)
        # the tags count what the solver wrote
        assert tagged.counts["backtracking"] == tagged.text.count("Try again.")
        assert tagged.counts["subgoal_setting"] == tagged.text.count("Try again.") + 1
        assert tagged.counts["verification"] == (
            tagged.text.count("Let me check") + tagged.text.count("Wait,")
        )
        assert tagged.counts["backward_chaining"] == 0
        assert tagged.tags == {b for b, c in tagged.counts.items() if c}


def test_countdown_detectors_find_exactly_what_the_corpus_wrote():
    # slips and checks often, so that every rule (caught slips in subgoals and finishes, checks
    # that turn a hit into a miss) is exercised
    style = corpus.AttemptStyle(mistake_rate=0.3, verify_rate=0.6, persistent_rate=0.6)
    pairs = _tagged(150, seed=11, style=style)
    predicted = [detect(t.text, "countdown", meta) for meta, t in pairs]
    truth = [t.counts for _, t in pairs]
    scores = precision_recall(predicted, truth)
    for b in ("verification", "backtracking", "subgoal_setting"):
        assert scores[b]["support"] > 20, (b, scores[b])
        assert scores[b]["precision"] == 1.0 and scores[b]["recall"] == 1.0, (b, scores[b])
        assert scores[b]["count_exact"] == 1.0, (b, scores[b])
    assert scores["backward_chaining"]["fp"] == 0  # the corpus never chains backward
    assert math.isnan(scores["backward_chaining"]["recall"])


def test_countdown_backward_chaining_rule_needs_a_step_from_the_target():
    meta = {"numbers": [3, 5, 2], "target": 13}
    # a finish compared with the target is the forward search, not backward chaining
    assert detect(" 13 - 2 = 11 vs 13: no.", "countdown", meta)["backward_chaining"] == 0
    assert detect(" 13 - 2 = 11. 11 from 5 and 3?", "countdown", meta)["backward_chaining"] == 1
    # off when the target is one of the numbers (a subgoal may start from it)
    same = {"numbers": [13, 5, 2], "target": 13}
    assert detect(" 13 - 2 = 11. 11 + 5", "countdown", same)["backward_chaining"] == 0


def test_generic_detectors_on_hand_labelled_sentences():
    cases = {
        "Let me verify: 3 * 4 = 12, which matches.": "verification",
        "That does not work, so let's try a different approach.": "backtracking",
        "First, we need to find the area of the square.": "subgoal_setting",
        "Working backwards from the target, 24 / 2 = 12.": "backward_chaining",
    }
    for text, behaviour in cases.items():
        found = detect(text, "generic")
        assert found[behaviour] >= 1, (text, found)
    assert detect("The answer is 42.", "generic") == dict.fromkeys(BEHAVIOURS, 0)
    with pytest.raises(ValueError, match="valid: countdown, generic"):
        detect("x", "kk")


def test_reflection_words_are_counted_word_by_word():
    text = "Wrong. Wrong. Try again. Let me check: recheck, rechecked. Wait, but"
    assert count_words(text) == {"wrong": 2, "check": 1, "wait": 1, "but": 1}
    # oat-zero counts substrings of the lower-cased text, as its script does
    assert count_keywords(text) == {"try again": 1, "recheck": 2}
    summary = summarize([text, "nothing here"], "countdown")
    assert summary["r1_words/wrong"] == 1.0  # 2 in one response of two
    assert summary["r1_words/check"] == 0.5
    assert summary["oat_zero/recheck"] == 1.0
    assert summary["behaviour/backtracking"] == 0.5
    assert summary["behaviour/verification_per_response"] == 1.0  # "Let me check" and "Wait,"


# ----------------------------------------------------------------------------- dynamics


def test_change_point_by_hand():
    found = dynamics.change_point([1, 2, 3, 4, 5, 6], [0.1, 0.1, 0.1, 0.7, 0.7, 0.7])
    assert found["step"] == 4
    assert found["before"] == pytest.approx(0.1) and found["after"] == pytest.approx(0.7)
    # a single outlier at the end: the split isolates it
    assert dynamics.change_point([0, 1, 2, 3], [0, 0, 0, 1])["step"] == 3
    assert dynamics.change_point([0, 1, 2], [0.5, 0.5, 0.5]) is None
    assert dynamics.change_point([0, 1], [0, 1]) is None


def test_step_metrics_keys_and_length_quantiles():
    out = dynamics.step_metrics(["Try again. Wrong."] * 3, "countdown", lengths=[10, 20, 30])
    assert out["behaviour/backtracking"] == 1.0
    assert out["r1_words/wrong"] == 1.0
    assert out["length/p50"] == 20.0
    assert {f"behaviour/{b}" for b in BEHAVIOURS} <= set(out)


def test_countdown_meta_reads_a_rendered_prompt():
    task = tasks.get("countdown")
    ex = task.generate(1, seed=0, num_numbers=3, min_number=1, max_number=9)[0]
    assert dynamics.countdown_meta(task.render(ex, "r1-zero")) == {
        "numbers": list(ex.meta["numbers"]),
        "target": ex.meta["target"],
    }
    assert dynamics.countdown_meta("What is 2 + 2?") is None


# ----------------------------------------------------------------------------- judge


class CountingEngine:
    """A rollout engine that answers each judge prompt with a fixed count."""

    def __init__(self, answer: str):
        self.answer, self.prompts = answer, 0

    def generate(self, prompts, params):
        self.prompts += len(prompts)
        return [Rollout("", [], [], self.answer) for _ in prompts]


def test_judge_parses_counts_batches_and_caches(tmp_path):
    assert parse_count("so <count> 3 </count>.") == 3
    assert parse_count("none") is None
    prompt = judge_prompt("subgoal_setting", "5 + 3 = 8.", {"numbers": [5, 3, 2], "target": 13})
    assert "[5, 3, 2]" in prompt and "13" in prompt and "<count>" in prompt
    engine = CountingEngine("<count>2</count>")
    judge = Judge(engine, "fake", cache=tmp_path / "cache.jsonl", batch_size=3)
    labels = judge.label(["a", "b"], [None, None])
    assert labels == [dict.fromkeys(BEHAVIOURS, 2)] * 2
    assert engine.prompts == 8 and judge.generated == 8
    # a new judge on the same cache asks nothing again
    again = Judge(engine, "fake", cache=tmp_path / "cache.jsonl")
    assert again.label(["a", "b"]) == labels and engine.prompts == 8
    # another model's answers are not reused
    assert Judge(CountingEngine("none"), "other", cache=tmp_path / "cache.jsonl").label(["a"]) == [
        dict.fromkeys(BEHAVIOURS, None)
    ]


def test_judge_runs_a_tiny_model_through_the_rollout_engine(tmp_path):
    from reasonlab.models import tiny
    from reasonlab.rollout import get_engine

    tokenizer = tiny.build_tokenizer(["<count>1</count> reasoning"] * 20, vocab_size=300)
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    engine = get_engine("hf", model=model, tokenizer=tokenizer)
    judge = Judge(engine, "tiny", tokenizer, tmp_path / "c.jsonl", max_new_tokens=4, batch_size=4)
    labels = judge.label(["5 + 3 = 8. Try again.", "Let me check"])
    assert len(labels) == 2 and all(set(row) == set(BEHAVIOURS) for row in labels)
    assert all(v is None or isinstance(v, int) for row in labels for v in row.values())
    assert len((tmp_path / "c.jsonl").read_text().splitlines()) == 8


# ----------------------------------------------------------------------------- run files


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _fake_run(folder: Path) -> Path:
    """A run folder with the files the trainer writes, eval.jsonl with a step-0 row."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        "task: {name: countdown}\nrewards: {scheme: tinyzero}\nrun: {eval_temperature: 0.0}\n"
    )
    _write_jsonl(
        folder / "metrics.jsonl",
        [
            {"step": s, "accuracy": 0.1 * s, "reward/mean": 0.1 * s, "length/mean": 50.0 + s}
            for s in (1, 2, 3, 4)
        ],
    )
    _write_jsonl(
        folder / "eval.jsonl", [{"step": 0, "accuracy": 0.05}, {"step": 4, "accuracy": 0.3}]
    )
    prompt = "Using the numbers [5, 3, 2], create an equation that equals 13."
    rows = []
    for step in (1, 2, 3, 4):
        text = " 5 + 3 = 8. 8 + 2 = 10 vs 13: no. Wrong." + (" Try again." if step > 2 else "")
        rows.append({"step": step, "prompt": prompt, "completion": text, "reward": 0.0})
    _write_jsonl(folder / "rollouts.jsonl", rows)
    return folder


def test_training_plot_takes_held_out_points_from_eval_jsonl_with_step_zero(tmp_path):
    from reasonlab.analysis.plots import plot_training, training_series

    run = _fake_run(tmp_path / "run")
    series = training_series(run)
    held = series["held-out (greedy)"]
    assert held == ([0, 4], [0.05, 0.3])
    assert series["train responses (sampled, T=1.0)"][0] == [1, 2, 3, 4]
    assert plot_training(run, tmp_path / "t.png").stat().st_size > 10_000


def test_aha_finds_the_step_backtracking_appears(tmp_path):
    from reasonlab.analysis.runs import load_run

    moments = dynamics.aha_moments(load_run(_fake_run(tmp_path / "run")))
    top = {m["series"]: m for m in moments}["behaviour/backtracking"]
    assert top["step"] == 3 and top["before"] == 0.0 and top["after"] == 1.0
    assert "Try again" in top["after_examples"][0]
    assert "Try again" not in top["before_examples"][0]


def test_demo_held_out_evaluation_reports_reflection_words_per_word(monkeypatch):
    import reasonlab.eval.runner as runner
    import reasonlab.rollout as rollout
    from reasonlab.demo import evaluate_held_out

    texts = [" 5 + 3 = 8. Wrong. Try again. 5 * 3 = 15. Wrong.", " 5 + 3 = 8. Let me check."]

    def fake_evaluate(engine, task, examples, **kw):
        records = [
            runner.generation_record(ex, "", [Rollout(ex.id, [], [], t)])
            for ex, t in zip(examples, texts, strict=True)
        ]
        return {"greedy": runner.score(task, records)}

    monkeypatch.setattr(runner, "greedy_and_sampled", fake_evaluate)
    monkeypatch.setattr(rollout, "get_engine", lambda *a, **kw: None)
    task = tasks.get("countdown")
    examples = task.generate(2, seed=0, num_numbers=3, min_number=1, max_number=9)

    class Cfg:
        class task:
            template = "r1-zero"

        class rollout:
            max_new_tokens, stop = 16, []

    out = evaluate_held_out(None, None, task, examples, Cfg, samples=0, seed=0)
    assert out["accuracy"] == 0.0 and out["format_rate"] == 0.0  # no <answer> in either
    assert out["tries"] == 1.5
    assert out["reflection_words"]["wrong"] == 1.0  # 2 + 0 over two responses
    assert out["reflection_words"]["check"] == 0.5
    assert out["oat_zero_keywords"]["try again"] == 0.5
    assert out["behaviours"]["verification"] == 0.5


# ----------------------------------------------------------------------------- trainer hook


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A two-step tiny RL run that logs every response."""
    from test_trainer import make_config

    from reasonlab.rl.trainer import Trainer

    tmp = tmp_path_factory.mktemp("analysis_run")
    cfg = make_config(
        tmp,
        "rewards.scheme=tinyzero",
        "run.steps=2",
        "run.eval_every=2",
        "run.eval_before_train=true",
        "run.log_rollouts_per_step=-1",
    )
    Trainer(cfg).train()
    return tmp / "run"


def test_trainer_logs_behaviours_of_every_response(trained_run):
    metrics = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines()]
    rollouts = [json.loads(x) for x in (trained_run / "rollouts.jsonl").read_text().splitlines()]
    for row in metrics:
        texts = [r["completion"] for r in rollouts if r["step"] == row["step"]]
        assert len(texts) == row["responses"]  # all of them were logged
        expected = dynamics.step_metrics(
            texts, "countdown", [r["num_tokens"] for r in rollouts if r["step"] == row["step"]]
        )
        for key, value in expected.items():
            assert row[key] == pytest.approx(value), key


# ----------------------------------------------------------------------------- commands


def test_analyze_command_prints_tables_and_writes_json(trained_run, tmp_path, capsys):
    assert main(["analyze", str(trained_run), "--json", str(tmp_path / "a.json")]) == 0
    printed = capsys.readouterr().out
    assert "| step | verification | backtracking |" in printed
    result = json.loads((tmp_path / "a.json").read_text())
    assert result["source"].startswith("metrics.jsonl")
    assert set(result["steps"]) == {"1", "2"}
    fake = _fake_run(tmp_path / "fake")
    assert main(["analyze", str(fake / "rollouts.jsonl")]) == 0
    assert (fake / "rollouts.analysis.json").is_file()


def test_report_command_shows_chosen_steps_and_checks_its_arguments(tmp_path, capsys):
    fake = _fake_run(tmp_path / "fake")
    out = tmp_path / "r.html"
    args = ["report", str(fake), "--out", str(out), "--sample-steps", "2", "9"]
    assert main(args) == 0
    assert "<h3>fake: steps 2</h3>" in out.read_text()
    assert main(["report", str(fake), "--names", "a", "b", "--out", str(out)]) == 2
    assert "--names: 2 names for 1 runs" in capsys.readouterr().err


def test_demo_summary_table_shows_each_reflection_word():
    from reasonlab.demo import summary_table

    row = {
        "accuracy": 0.2,
        "format_rate": 1.0,
        "mean_length": 80.0,
        "tries": 1.3,
        "truncation_rate": 0.0,
        "reflection_words": {"wrong": 1.2, "check": 0.3, "wait": 0.0},
    }
    table = summary_table({"before": row, "after": row})
    assert "| wrong 1.20, check 0.30 |" in table and "wait" not in table


def test_analyze_and_report_name_a_missing_folder(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "nope: no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    assert "none of the run files" in capsys.readouterr().err


def test_report_is_valid_self_contained_html(trained_run, tmp_path):
    from reasonlab.analysis.report import highlight, write_report

    fake = _fake_run(tmp_path / "fake")
    out = write_report([trained_run, fake], tmp_path / "report.html")
    text = out.read_text()
    check = Structure(text)
    assert check.errors == []
    assert check.tags["svg"] >= 8  # accuracy, reward, length, truncation, KL, ... behaviours
    for section in ("Runs", "Training curves", "Largest behaviour changes", "Sample responses"):
        assert f"<h2>{section}</h2>" in text
    # behaviours highlighted in the sample text
    assert '<mark style="background:#ffd9c2" title="backtracking">Try again</mark>' in text
    assert "held-out (greedy)" in text
    assert "\x00" not in highlight("a\x00b") and "\x0c" not in text  # no control characters


def test_report_works_on_a_demo_folder(trained_run, tmp_path):
    from reasonlab.analysis.report import write_report

    demo = tmp_path / "demo"
    shutil.copytree(trained_run, demo / "rl")
    (demo / "summary.md").write_text("| | accuracy |\n|---|---|\n| before | 20.0% |\n")
    (demo / "summary.json").write_text('{"before": {"accuracy": 0.2}}')
    text = write_report([demo], tmp_path / "r.html").read_text()
    assert "<h3>demo: demo summary (summary.md)</h3>" in text
    assert "<td>before</td><td>20.0%</td>" in text
    assert "<h2>Training curves</h2>" in text  # read from rl/


@pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian package `chromium`; .ci/run installs it)"
)
def test_report_renders_in_headless_chromium(trained_run, tmp_path):
    from reasonlab.analysis.report import write_report

    out = write_report([trained_run, _fake_run(tmp_path / "fake")], tmp_path / "report.html")
    console, pixels = render_in_chromium(out, tmp_path / "shot.png", height=2400)
    assert console == []  # no script errors, no failed loads
    assert pixels.shape == (2400, 1400)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and lines, not a blank page


def test_eval_folders_are_read_through_their_generation_files(tmp_path):
    from reasonlab.analysis.analyze import analyze
    from reasonlab.analysis.report import write_report
    from reasonlab.analysis.runs import load_run

    folder = tmp_path / "eval"
    folder.mkdir()
    meta = {"numbers": [5, 3, 2], "target": 13}
    record = {
        "example_id": "a",
        "example": {"id": "a", "prompt": "p", "answer": "", "meta": meta},
        "prompt": "p",  # not a countdown prompt: the meta comes from the example
        "completions": [
            {"text": " 5 + 3 = 8. 8 + 2 = 10 vs 13: no. Wrong. Try again.", "num_tokens": 9},
            {"text": " 5 * 3 = 15. 15 - 2 = 13 vs 13: yes.", "num_tokens": 8},
        ],
    }
    _write_jsonl(folder / "countdown.generations.jsonl", [record])
    (folder / "results.md").write_text("| benchmark | avg@2 |\n|---|---|\n| countdown | 0.500 |\n")
    run = load_run(folder)
    assert [r["meta"] for r in run.rollouts] == [meta, meta] and len(run.rollouts) == 2
    result = analyze(run)
    assert result["steps"]["0"]["behaviour/backtracking"] == 0.5  # countdown detector chosen
    assert result["steps"]["0"]["behaviour/subgoal_setting"] == 1.0
    text = write_report([folder], tmp_path / "r.html").read_text()
    assert "<td>countdown</td><td>0.500</td>" in text
    assert "numbers [5, 3, 2], target 13" in text
    assert Structure(text).errors == []


def test_countdown_backward_chaining_phrase_at_a_sentence_start():
    from reasonlab.analysis.behaviours import detect

    meta = {"target": 25, "numbers": [1, 2, 3]}
    for text in ("Working backwards from 25.", "I am working backwards from 25."):
        assert detect(text, "countdown", meta)["backward_chaining"] == 1, text
    assert detect("Let me check: 1 + 2 = 3.", "countdown", meta)["backward_chaining"] == 0
