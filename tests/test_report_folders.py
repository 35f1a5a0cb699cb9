"""`reasonlab report` on every kind of folder the project writes, made for real with tiny models:
a pipeline (pretrain -> CoT -> SFT -> GRPO -> eval) gives an SFT run, an RL run and an eval
stage; `reasonlab eval` and `reasonlab search` run on its policy. Each report must show what its
folder holds, with the folder's own numbers: SFT loss, learning rate, grad norm and held-out
accuracy per evaluation; eval avg@n / pass@k / maj@k tables per difficulty and scaling curves;
search tables and curves; a section per pipeline stage; several runs on the same axes."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest
import yaml
from html_check import CHROMIUM, Page, Structure, render_in_chromium
from tiny_stages import TINY_PRETRAIN

from reasonlab.cli import main

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow(seconds=90)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _g(value: float) -> str:
    """How the report writes a figure of a run log (4 significant digits)."""
    return f"{value:.4g}"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """A pipeline folder, an eval folder and a search folder, made by the CLI (one thread)."""
    tmp = tmp_path_factory.mktemp("folders")
    pipe = tmp / "pipe"
    recipe = {
        "out_dir": str(pipe),
        "num_threads": 1,
        "stages": [
            {
                "name": "base",
                "kind": "pretrain",
                "pretrain": dict(TINY_PRETRAIN),
            },
            {
                "name": "cot",
                "kind": "cot",
                "cot": {"kind": "long", "n": 12, "problems": 6},
            },
            {
                "name": "cold_start",
                "kind": "sft",
                "model": "base",
                "data": "cot",
                "sft": {
                    "recipe": str(ROOT / "configs" / "sft_countdown_cpu.yaml"),
                    "overrides": [
                        "training.max_steps=4",
                        "training.per_device_train_batch_size=1",
                        f"data.eval_files=[{pipe / 'cot' / 'cot.jsonl'}]",
                        "task.eval_examples=2",
                        "task.max_new_tokens=16",
                        "run.save_steps=0",
                        "run.logging_steps=1",
                        "run.eval_steps=2",
                        "run.progress=false",
                        "run.num_threads=1",
                    ],
                },
            },
            {
                "name": "grpo",
                "kind": "rl",
                "model": "cold_start",
                "rl": {
                    "recipe": str(ROOT / "reasonlab" / "demo_countdown.yaml"),
                    "overrides": [
                        "run.steps=3",
                        "batching.prompts_per_step=2",
                        "rollout.n=2",
                        "rollout.max_new_tokens=24",
                        "task.eval_size=2",
                        "run.eval_every=1",
                        "run.num_threads=1",
                    ],
                },
            },
            {
                "name": "eval",
                "kind": "eval",
                "model": "grpo",
                "eval": {
                    "benchmarks": ["countdown_demo"],
                    "n": 2,
                    "limit": 3,
                    "max_new_tokens": 24,
                },
            },
        ],
    }
    (tmp / "pipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["pipeline", str(tmp / "pipe.yaml")]) == 0
    policy = str(pipe / "grpo" / "model")
    sampling = ["--max-new-tokens", "24", "--temperature", "1.0", "--device", "cpu"]
    assert (
        main(
            ["eval", "--model", policy, "--benchmarks", "countdown_cognitive", "--n", "4"]
            + ["--limit", "4", "--batch-size", "4", *sampling, "--out", str(tmp / "eval")]
        )
        == 0
    )
    assert (
        main(
            ["search", "--model", policy, "--benchmark", "countdown_demo", "--n", "1,2"]
            + ["--limit", "2", "--num-iterations", "2", "--beam-width", "2", *sampling[:2]]
            + [*sampling[4:], "--out", str(tmp / "search")]
        )
        == 0
    )
    return {"pipe": pipe, "sft": pipe / "cold_start" / "run", "rl": pipe / "grpo" / "run",
            "eval": tmp / "eval", "search": tmp / "search"}  # fmt: skip


def _report(tmp_path: Path, *folders: Path) -> tuple[str, Page]:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, folders), "--out", str(out)]) == 0
    text = out.read_text()
    assert Structure(text).errors == []
    return text, Page(text)


def test_sft_folder_shows_loss_lr_grad_norm_and_held_out_accuracy(folders, tmp_path):
    run = folders["sft"]
    text, page = _report(tmp_path, run)
    metrics, evals = _jsonl(run / "metrics.jsonl"), _jsonl(run / "eval.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4] and [e["step"] for e in evals] == [0, 2, 4]
    # the runs table names the kind and the command that makes the run again, with its config
    runs = page.tables("Runs")[0]
    assert runs[1][:2] == ["run", "sft"]
    assert f"reasonlab sft {run / 'config.yaml'} --out NEW_DIR" in text
    assert "training:" in text and "learning_rate" in text  # the resolved config, folded
    # held-out evaluations: one row per eval.jsonl row, the run's own figures
    (table,) = page.tables("held-out evaluations (eval.jsonl, greedy)")
    assert table[0] == ["step", "accuracy", "format ok", "mean length", "truncated", "eval loss"]
    assert table[1:] == [
        [str(e["step"])]
        + [_g(e[k]) for k in ("eval/accuracy", "eval/format_rate", "eval/mean_length")]
        + [_g(e["eval/truncation_rate"]), _g(e["eval_loss"])]
        for e in evals
    ]
    # the plots carry the run's numbers, against the SFT step
    (loss,) = page.plotted("loss")
    assert loss["run train (cross-entropy)"] == ", ".join(
        f"{m['step']}: {_g(m['loss'])}" for m in metrics
    )
    assert loss["run eval loss"] == ", ".join(f"{e['step']}: {_g(e['eval_loss'])}" for e in evals)
    for title, key in (("learning rate", "lr"), ("grad norm (before clipping)", "grad_norm")):
        (plot,) = page.plotted(title)
        assert plot == {"run": ", ".join(f"{m['step']}: {_g(m[key])}" for m in metrics)}
    (accuracy,) = page.plotted("accuracy (step 0: the model before training)")
    assert accuracy == {
        "run held-out (greedy)": ", ".join(f"{e['step']}: {_g(e['eval/accuracy'])}" for e in evals)
    }
    assert "SFT step (optimizer step)" in text
    assert "reward (mean" not in text  # nothing an SFT run does not log


def test_eval_folder_shows_its_tables_per_difficulty_curves_and_responses(folders, tmp_path):
    folder = folders["eval"]
    text, page = _report(tmp_path, folder)
    result = json.loads((folder / "results.json").read_text())["benchmarks"]["countdown_cognitive"]
    m = result["metrics"]
    # avg@n, pass@k, maj@k as `reasonlab eval` wrote them (results.md: percentages)
    overall = page.tables("Evaluation results")[0]
    head, row = overall[0], overall[1]
    assert row[0] == "countdown_cognitive" and row[1] == "4"
    for key in ("avg@4", "pass@1", "pass@2", "pass@4", "maj@1", "maj@2", "maj@4"):
        assert row[head.index(key)] == f"{100 * m[key]:.1f}", key
    assert row[head.index("truncated")] == f"{100 * m['truncation_rate']:.1f}"
    # per difficulty (countdown_cognitive groups by how many numbers)
    (groups,) = page.tables("countdown_cognitive")
    assert groups[0][0] == "numbers" and result["groups"]
    assert {r[0]: r[2] for r in groups[1:]} == {
        g: f"{100 * gm['avg@4']:.1f}" for g, gm in result["groups"].items()
    }
    # scaling curves: pass@k and maj@k against k, the results' values
    for family, title in (
        ("pass", "pass@k (unbiased pass@k)"),
        ("maj", "maj@k (majority vote of k samples)"),
    ):
        (plot,) = page.plotted(title)
        assert plot == {
            "eval countdown_cognitive": ", ".join(
                f"{k}: {_g(m[f'{family}@{k}'])}" for k in (1, 2, 4)
            )
        }
    # responses, with the problem and each sample's verdict from countdown_cognitive.scored.jsonl
    scored = _jsonl(folder / "countdown_cognitive.scored.jsonl")
    first = json.loads((folder / "countdown_cognitive.generations.jsonl").open().readline())
    meta = first["example"]["meta"]
    assert text.count(f"numbers {meta['numbers']}, target {meta['target']};") == 1
    # the first sample of each of the first three problems (3 responses per run by default)
    firsts = [s for s in scored if s["sample"] == 0][:3]
    assert len({s["example_id"] for s in firsts}) == 3
    verdicts = ["correct" if s["correct"] else "wrong" for s in firsts]
    shown = [word for word in ("correct</span>", "wrong</span>") for _ in range(text.count(word))]
    assert sorted(shown) == sorted(f"{v}</span>" for v in verdicts)
    assert "reasonlab eval --model" in text and "--benchmarks countdown_cognitive --n 4" in text


def test_search_folder_shows_accuracy_and_tokens_per_method_and_budget(folders, tmp_path):
    folder = folders["search"]
    data = json.loads((folder / "search_results.json").read_text())
    text, page = _report(tmp_path, folder)
    accuracy, tokens = page.tables("search results on countdown_demo, 2 examples")
    for table, key, fmt in ((accuracy, "accuracy", lambda v: f"{100 * v:.1f}"),
                            (tokens, "tokens", lambda v: f"{v:.1f}")):  # fmt: skip
        assert table[0] == ["method", "N=1", "N=2"]
        assert {r[0]: r[1:] for r in table[1:]} == {
            method: [fmt(by_n["1"]), fmt(by_n["2"])] for method, by_n in data[key].items()
        }
    assert set(data["accuracy"]) == {"majority", "best_of_n", "weighted_bon", "beam", "dvts"}
    (plot,) = page.plotted("search: accuracy against the budget")
    assert plot == {
        f"search {method}": f"1: {_g(by_n['1'])}, 2: {_g(by_n['2'])}"
        for method, by_n in data["accuracy"].items()
    }
    assert '"beam_width": 2' in html.unescape(text)  # the settings, folded


@pytest.fixture(scope="module")
def pipeline_page(folders, tmp_path_factory) -> Path:
    """The report on the pipeline folder (its SFT, RL and eval stages: a long page to draw)."""
    out = tmp_path_factory.mktemp("pipeline_page") / "report.html"
    assert main(["report", str(folders["pipe"]), "--out", str(out)]) == 0
    return out


def test_pipeline_folder_has_a_section_per_stage_linked_from_its_table(folders, pipeline_page):
    text = pipeline_page.read_text()
    assert Structure(text).errors == []
    page = Page(text)
    stages = ["base", "cot", "cold_start", "grpo", "eval"]
    (table,) = page.tables("Pipeline pipe: 5 finished stages")
    assert [r[:2] for r in table[1:]] == [
        ["base", "pretrain"], ["cot", "cot"], ["cold_start", "sft"], ["grpo", "rl"], ["eval", "eval"]
    ]  # fmt: skip
    assert page.links == [f"#pipe-{s}" for s in stages]
    ids = {ident: title for _, title, ident in page.headings if ident}
    for stage in stages:
        assert ids[f"pipe-{stage}"].startswith(f"stage {stage} (")
    # each stage's section holds its run's report: the SFT's held-out table, the RL's curves
    # (the base model at step 0 of its held-out accuracy), the eval's results
    sft_evals = _jsonl(folders["sft"] / "eval.jsonl")
    (sft_table,) = page.tables("pipe/cold_start: held-out evaluations")
    assert [r[0] for r in sft_table[1:]] == [str(e["step"]) for e in sft_evals]
    rl_evals = _jsonl(folders["rl"] / "eval.jsonl")
    accuracy = page.plotted("accuracy (step 0: the model before training)")
    assert len(accuracy) == 2  # the SFT stage's and the RL stage's
    assert accuracy[1]["pipe/grpo held-out (greedy)"].startswith("0: ")
    assert len(rl_evals) == 4
    assert page.tables("Evaluation results")[0][1][0] == "countdown_demo"  # the eval stage's
    assert '"rows": 12' in html.unescape(text)  # the cot stage: its summary (no run folder)
    # the order of the stages' sections is the pipeline's
    order = [ident for _, _, ident in page.headings if ident and ident.startswith("pipe-")]
    assert order == [f"pipe-{s}" for s in stages]


def test_several_runs_share_each_plot(folders, tmp_path):
    sft, rl = folders["sft"], folders["rl"]
    text, page = _report(tmp_path, sft, rl)
    runs = page.tables("Runs")[0]
    assert [r[:2] for r in runs[1:]] == [["cold_start/run", "sft"], ["grpo/run", "rl"]]
    (accuracy,) = page.plotted("accuracy (step 0: the model before training)")
    assert {"cold_start/run held-out (greedy)", "grpo/run held-out (greedy)"} <= set(accuracy)
    (loss,) = page.plotted("loss")
    rl_metrics = _jsonl(rl / "metrics.jsonl")
    assert loss["grpo/run train (policy loss)"] == ", ".join(
        f"{m['step']}: {_g(m['loss'])}" for m in rl_metrics
    )
    assert "cold_start/run train (cross-entropy)" in loss
    assert "step (each run's own: RL or SFT optimizer steps)" in html.unescape(text)


def _experiment(folder: Path) -> dict:
    """A results.json with the fields `reasonlab experiment` writes (a real one takes minutes:
    tests/test_experiments.py runs them); the report's subject is the folder layout."""
    from PIL import Image

    results = {
        "experiment": "cosine_reward",
        "paper": "Demystifying Long CoT",
        "claim": "the cosine length reward keeps responses shorter",
        "quick": True,
        "seeds": [0, 1],
        "metric": "accuracy",
        "metrics": {"accuracy": "held-out accuracy (%)"},
        "held_out": {"examples": 154},
        "arms": {
            arm: {
                "note": "",
                "command": f"reasonlab train reasonlab/demo_countdown.yaml # {arm}",
                "metrics": {"accuracy": {"mean": mean, "std": 1.0, "values": [mean - 1, mean + 1]}},
            }
            for arm, mean in (("plain", 21.5), ("cosine", 23.5))
        },
        "effects": [
            {
                "label": "accuracy gain",
                "unit": "pts",
                "mean": 2.0,
                "std": 0.0,
                "values": [2.0, 2.0],
                "holds": True,
            }
        ],
        "verdict": "reproduced: accuracy gain +2.0 +- 0.0 pts (2 seeds)",
        "command": "reasonlab experiment cosine_reward --seeds 2 --quick",
        "seconds": 12.0,
    }
    (folder / "cosine_reward").mkdir(parents=True)
    (folder / "cosine_reward" / "results.json").write_text(json.dumps(results))
    Image.new("RGB", (8, 8), "white").save(folder / "cosine_reward" / "cosine_reward.png")
    return results


@pytest.mark.parametrize("which", ["experiment", "experiments"])
def test_experiment_folders_show_verdict_table_and_plot(tmp_path, which):
    results = _experiment(tmp_path / "out")
    folder = tmp_path / "out" / "cosine_reward" if which == "experiment" else tmp_path / "out"
    text, page = _report(tmp_path, folder)
    assert page.tables("Runs")[0][1][1] == "experiment"
    assert results["verdict"] in text and 'src="data:image/png;base64,' in text
    (arms, effects) = page.tables("cosine_reward")
    assert arms[1] == [
        "held-out accuracy (%)",
        "21.50 +- 1.00 (20.5, 22.5)",
        "23.50 +- 1.00 (22.5, 24.5)",
    ]
    assert effects[1][:2] == ["accuracy gain (pts)", "+2.00 +- 0.00"]
    assert "Tables" not in [h for _, h, _ in page.headings]  # not read as `reasonlab eval` results


def test_an_unknown_folder_names_what_was_expected(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    assert main(["report", str(tmp_path / "notes"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "notes: none of the run files is there; expected an RL or SFT run folder" in err
    for kind in ("`reasonlab eval --out` folder", "`reasonlab pipeline` folder (STAGE/done.json)",
                 "`reasonlab search --out` folder", "`reasonlab experiment --out` folder"):  # fmt: skip
        assert kind in err


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package `chromium`)")
def test_the_pipeline_page_renders_in_chromium(pipeline_page, tmp_path):
    """The SFT, RL and eval sections of one page (two runs side by side: tests/test_analysis.py)."""
    console, pixels = render_in_chromium(pipeline_page, tmp_path / "pipe.png", height=3000)
    assert console == []
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01


def test_analyze_sends_a_pipeline_folder_to_its_stages_runs(folders, capsys):
    assert main(["analyze", str(folders["pipe"])]) == 2
    err = capsys.readouterr().err
    assert "is a pipeline folder: analyze one of its stages' runs" in err
    assert str(folders["rl"]) in err and not (folders["pipe"] / "analysis.json").exists()
