"""`reasonlab pipeline`: stages feed each other, finished stages are not re-run, an interrupted
pipeline resumes at its stage, and bad recipes are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_stages import TINY_PRETRAIN

from reasonlab import pipeline
from reasonlab.cli import main
from reasonlab.config import ConfigError, load_config
from reasonlab.rl.trainer import build_scorer

ROOT = Path(__file__).resolve().parent.parent

RECIPE = """\
out_dir: {out}
num_threads: 1
stages:
  - name: base
    kind: pretrain
    pretrain: {{size: tiny, problems: 16, attempts: 2, steps: 6, batch_size: 4, vocab_size: 512}}
  - name: rs
    kind: sample
    model: base
    sample:
      params: {{num_numbers: 3, min_number: 1, max_number: 9, min_target: 10, max_target: 30}}
      problems: 3
      n: 2
      keep: all
      max_new_tokens: 24
  - name: grpo
    kind: rl
    model: base
    rl:
      recipe: {rl_recipe}
      overrides: [run.steps=2, batching.prompts_per_step=2, rollout.n=2,
                  rollout.max_new_tokens=24, task.eval_size=2, run.eval_every=0,
                  run.eval_before_train=false, run.num_threads=1]
  - name: eval
    kind: eval
    model: grpo
    eval: {{benchmarks: [countdown_demo], n: 2, limit: 3, max_new_tokens: 24}}
"""


def _write(tmp_path, **fmt):
    path = tmp_path / "pipe.yaml"
    values = dict(out=tmp_path / "out", rl_recipe=ROOT / "reasonlab" / "demo_countdown.yaml")
    path.write_text(RECIPE.format(**{**values, **fmt}))
    return path


def _done(tmp_path, stage):
    return json.loads((tmp_path / "out" / stage / "done.json").read_text())


@pytest.mark.slow
def test_pipeline_runs_stages_in_order_and_resumes(tmp_path, monkeypatch, capsys):
    recipe = _write(tmp_path)
    calls: list[str] = []
    real = dict(pipeline.RUNNERS)

    def counting(kind, fail=False):
        def runner(pipe, stage, inputs, out):
            calls.append(stage.name)
            if fail:
                raise KeyboardInterrupt("simulated kill")
            return real[kind](pipe, stage, inputs, out)

        return runner

    # killed during the RL stage
    monkeypatch.setitem(pipeline.RUNNERS, "pretrain", counting("pretrain"))
    monkeypatch.setitem(pipeline.RUNNERS, "sample", counting("sample"))
    monkeypatch.setitem(pipeline.RUNNERS, "rl", counting("rl", fail=True))
    monkeypatch.setitem(pipeline.RUNNERS, "eval", counting("eval"))
    assert main(["pipeline", str(recipe)]) == 130
    assert calls == ["base", "rs", "grpo"]
    assert not (tmp_path / "out" / "grpo" / "done.json").exists()

    # resumed: the finished stages are not run again
    monkeypatch.setitem(pipeline.RUNNERS, "rl", counting("rl"))
    assert main(["pipeline", str(recipe)]) == 0
    assert calls == ["base", "rs", "grpo", "grpo", "eval"]
    out = tmp_path / "out"
    # each stage's output fed the next
    assert _done(tmp_path, "rs")["inputs"]["model"] == str(out / "base" / "model")
    assert _done(tmp_path, "grpo")["inputs"]["model"] == str(out / "base" / "model")
    assert _done(tmp_path, "eval")["inputs"]["model"] == str(out / "grpo" / "model")
    assert (out / "grpo" / "model" / "config.json").is_file()
    assert (out / "grpo" / "run" / "metrics.jsonl").read_text().count("\n") >= 2
    rows = [json.loads(line) for line in (out / "rs" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) >= 3 and all(r["purpose"] == "train" for r in rows)
    assert _done(tmp_path, "rs")["summary"]["samples"] == 6
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["benchmarks"]["countdown_demo"]["metrics"]["num_examples"] == 3
    assert "avg@2" in _done(tmp_path, "eval")["summary"]["countdown_demo"]

    # all done: nothing runs
    assert main(["pipeline", str(recipe)]) == 0
    assert len(calls) == 5
    # a changed stage is refused, naming the way to re-run it
    capsys.readouterr()
    changed = _write(tmp_path).read_text().replace("n: 2, limit: 3", "n: 1, limit: 3")
    recipe.write_text(changed)
    assert main(["pipeline", str(recipe)]) == 2
    assert "re-run it and the stages after it with --from eval" in capsys.readouterr().err
    assert main(["pipeline", str(recipe), "--from", "eval"]) == 0
    assert calls[-1] == "eval" and len(calls) == 6


def test_a_sample_stage_with_too_few_rows_stops_the_pipeline_with_its_counts(
    tmp_path, monkeypatch, capsys
):
    """A sample stage that keeps fewer rows than its min_rows stops the pipeline after it, not
    with an error: the CLI names the stage, the counts and the stages not run, and exits 0; the
    sample stage is finished, so lowering min_rows goes on without sampling again."""
    recipe = _write(tmp_path)
    recipe.write_text(recipe.read_text().replace("keep: all", "keep: all\n      min_rows: 7"))
    calls: list[str] = []
    real = dict(pipeline.RUNNERS)

    def counting(kind):
        def runner(pipe, stage, inputs, out):
            calls.append(stage.name)
            if kind in ("rl", "eval"):  # what follows the stop: its mechanics only
                return {"model": str(inputs["model"])}, {}
            return real[kind](pipe, stage, inputs, out)

        return runner

    for kind in real:
        monkeypatch.setitem(pipeline.RUNNERS, kind, counting(kind))
    assert main(["pipeline", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert calls == ["base", "rs"]
    assert (
        "pipeline stopped early in " in out
        and "stage 'rs' kept 6 of 6 samples (3 of 3 problems; pass@2" in out
        and "fewer than its sample.min_rows=7: stopped before grpo, eval" in out
    ), out
    assert _done(tmp_path, "rs")["summary"]["kept"] == 6
    assert not (tmp_path / "out" / "grpo").exists()
    # a rerun stops again, without sampling again
    assert main(["pipeline", str(recipe)]) == 0
    assert calls == ["base", "rs"] and "stopped before grpo" in capsys.readouterr().out
    # min_rows lowered: the finished sample stage is kept and the pipeline goes on
    recipe.write_text(recipe.read_text().replace("min_rows: 7", "min_rows: 6"))
    assert main(["pipeline", str(recipe)]) == 0
    assert calls == ["base", "rs", "grpo", "eval"]
    assert "pipeline done: 4 stages" in capsys.readouterr().out


def test_bad_recipes_are_refused_with_where_and_what(tmp_path):
    def check(text):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError) as err:
            load_config(pipeline.PipelineConfig, path)
        return str(err.value)

    assert "two stages are named 'a'" in check(
        "stages:\n  - {name: a, kind: pretrain}\n  - {name: a, kind: pretrain}\n"
    )
    assert "bad.yaml:2: field 'stages[0].kind': expected one of 'pretrain', 'cot', 'sft'" in check(
        "stages:\n  - {name: a, kind: distil}\n"
    )
    msg = check(
        "stages:\n  - {name: a, kind: pretrain}\n"
        "  - {name: s, kind: sample, model: a}\n"
        "  - {name: e, kind: eval, model: s}\n"
    )
    assert "model 's' is a sample stage" in msg and "pretrain, sft, rl" in msg
    assert "needs a model" in check("stages:\n  - {name: s, kind: sample}\n")
    assert "has a 'eval' section" in check(
        "stages:\n  - {name: s, kind: sample, model: m, eval: {n: 2}}\n"
    )
    assert "cot.kind 'longest' is unknown; valid: short, long," in check(
        "stages:\n  - {name: c, kind: cot, cot: {kind: longest}}\n"
    )
    assert "(cot) starts from nothing" in check("stages:\n  - {name: c, kind: cot, model: m}\n")
    msg = check(
        "stages:\n  - {name: a, kind: pretrain}\n"
        "  - {name: t, kind: sft, model: a, data: a, sft: {recipe: r.yaml}}\n"
    )
    assert "data 'a' is a pretrain stage" in msg and "cot, sample" in msg
    assert "bad.yaml:2" in check("stages:\n  - {name: s, kind: sample, model: m, sample: {n: x}}\n")


def test_a_missing_model_path_names_the_stage(tmp_path):
    config = pipeline.PipelineConfig(
        out_dir=str(tmp_path / "o"),
        stages=[pipeline.StageConfig(name="e", kind="eval", model="no/such/model")],
    )
    with pytest.raises(pipeline.PipelineError, match="stage 'e' model: 'no/such/model' is neither"):
        pipeline.Pipeline(config, base=tmp_path, log=lambda _: None).run()


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs" / "pipelines").glob("*.yaml")))
def test_shipped_pipeline_recipes_load(recipe):
    config = pipeline.load(recipe)
    names = [s.name for s in config.stages]
    assert len(names) == len(set(names))
    pipe = pipeline.Pipeline(config, base=recipe.parent, log=lambda _: None)
    extra = {"rl": ["model.path=tiny"], "sft": ["model.path=tiny", "data.train_files=[d.jsonl]"]}
    for stage in config.stages:  # every stage recipe exists and takes the stage's overrides
        if stage.kind in extra:
            config = pipeline.stage_recipe(pipe, stage, extra[stage.kind])
            if stage.kind == "rl":  # reward parameters too (presets, lengths)
                build_scorer(config.rewards)


def test_the_papers_pipelines_ship_with_tiny_variants():
    shipped = {p.stem for p in (ROOT / "configs" / "pipelines").glob("*.yaml")}
    for name in ("r1", "r1_distill", "sky_t1", "demystify"):
        assert {name, f"{name}_tiny"} <= shipped


def _reduced_r1_tiny(tmp_path) -> Path:
    """configs/pipelines/r1_tiny.yaml with every stage cut to seconds: mechanics, not learning.
    Rejection sampling keeps every sample (a 6-step base is rarely right)."""
    recipe = yaml.safe_load((ROOT / "configs" / "pipelines" / "r1_tiny.yaml").read_text())
    recipe["out_dir"] = str(tmp_path / "out")
    recipe["num_threads"] = 1
    fewer = {
        "pretrain": dict(TINY_PRETRAIN),
        "cot": {"n": 12, "problems": 6},
        "sample": {
            "problems": 3,
            "n": 2,
            "keep": "all",
            "k": None,
            "max_new_tokens": 24,
            "min_rows": 1,
        },
        "eval": {"n": 2, "limit": 3, "max_new_tokens": 24},
    }
    shorter = {
        "sft": [
            "training.max_steps=4",
            "training.per_device_train_batch_size=1",
            "task.eval_examples=2",
            "task.max_new_tokens=16",
            "run.save_steps=1",
            "run.logging_steps=1",
            "run.progress=false",
            "run.num_threads=1",
        ],
        "rl": [
            "run.steps=2",
            "batching.prompts_per_step=2",
            "rollout.n=2",
            "rollout.max_new_tokens=24",
            "task.eval_size=2",
            "run.eval_every=0",
            "run.eval_before_train=false",
            "run.save_every=1",
            "run.num_threads=1",
        ],
    }
    for stage in recipe["stages"]:
        kind = stage["kind"]
        if kind in fewer:
            stage[kind].update(fewer[kind])
        else:
            stage[kind]["overrides"] += shorter[kind]
    path = tmp_path / "r1_reduced.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.slow
def test_r1_tiny_runs_end_to_end_and_resumes_inside_the_sft_stage(tmp_path, monkeypatch):
    from reasonlab.sft.trainer import SFTTrainer

    config = pipeline.load(_reduced_r1_tiny(tmp_path))
    kinds = [s.kind for s in config.stages]
    assert kinds == ["pretrain", "cot", "sft", "rl", "sample", "sft", "rl", "eval"]
    out = tmp_path / "out"
    calls: list[str] = []
    for kind, real in dict(pipeline.RUNNERS).items():

        def runner(pipe, stage, inputs, folder, real=real):
            calls.append(stage.name)
            return real(pipe, stage, inputs, folder)

        monkeypatch.setitem(pipeline.RUNNERS, kind, runner)
    steps: list[tuple[str, int]] = []  # (stage, step before it) of every SFT step taken
    real_step = SFTTrainer.train_step

    def killed_at_cold_start_step_3(self):
        stage = self.run_dir.parent.name
        if stage == "cold_start" and self.step == 2 and not steps.count(("kill", 2)):
            steps.append(("kill", 2))
            raise KeyboardInterrupt("simulated kill during the sft stage")
        steps.append((stage, self.step))
        return real_step(self)

    monkeypatch.setattr(SFTTrainer, "train_step", killed_at_cold_start_step_3)

    def run():
        return pipeline.Pipeline(config, base=ROOT / "configs" / "pipelines", log=lambda _: None)

    with pytest.raises(KeyboardInterrupt):
        run().run()
    assert calls == ["base", "cold_start_data", "cold_start"]
    assert steps == [("cold_start", 0), ("cold_start", 1), ("kill", 2)]
    assert not (out / "cold_start" / "done.json").exists()

    # rerun: the finished stages are skipped, the sft stage continues from its step-2 checkpoint
    outputs = run().run()
    assert calls[3:] == [s.name for s in config.stages[2:]]
    assert steps[3:5] == [("cold_start", 2), ("cold_start", 3)]
    metrics = [json.loads(x) for x in (out / "cold_start" / "run" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    for stage in config.stages:  # every stage marked done
        assert _done(tmp_path, stage.name)["stage"] == stage.name
    # the sft stage's model feeds the next stage: the RL run trained that folder
    sft_model = out / "cold_start" / "run" / "model"
    assert outputs["cold_start"]["model"] == str(sft_model)
    assert (sft_model / "config.json").is_file()
    assert _done(tmp_path, "reasoning_rl")["inputs"]["model"] == str(sft_model)
    rl_config = yaml.safe_load((out / "reasoning_rl" / "run" / "config.yaml").read_text())
    assert rl_config["model"]["path"] == str(sft_model)
    # the cold start trained on the cot stage's rows; the second sft on the rejection samples
    assert _done(tmp_path, "cold_start")["inputs"]["data"] == str(
        out / "cold_start_data" / "cot.jsonl"
    )
    assert _done(tmp_path, "cold_start")["summary"]["data"]["kept"] == 12
    assert _done(tmp_path, "sft")["inputs"] == {
        "model": str(out / "base" / "model"),
        "data": str(out / "rejection_sampling" / "samples.jsonl"),
    }
    assert _done(tmp_path, "rl")["inputs"]["model"] == str(out / "sft" / "run" / "model")
    assert _done(tmp_path, "eval")["inputs"]["model"] == str(out / "rl" / "model")

    # all done: a rerun runs nothing
    before = (len(calls), len(steps))
    run().run()
    assert (len(calls), len(steps)) == before

    # changed sft settings, re-run with --from: the stage starts over, not from the old checkpoint
    changed = next(s for s in config.stages if s.name == "sft")
    changed.sft.overrides.append("training.max_steps=3")
    again = run()
    again.restart_from("sft")
    # the later stages start over too: the RL stage must not resume its checkpoint of the old
    # SFT model, which the new one replaces at the same path
    assert not (out / "sft").exists() and not (out / "rl").exists()
    taken = len(steps)
    again.run()
    assert steps[taken:] == [("sft", 0), ("sft", 1), ("sft", 2)]
    metrics = [json.loads(x) for x in (out / "sft" / "run" / "metrics.jsonl").open()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
