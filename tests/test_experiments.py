"""`reasonlab experiment`: the verdict from hand-made numbers, the CLI's errors, and the mechanics
of a --quick run (arms x seeds, results.json, resume of an interrupted run, reuse of finished
ones) on a random tiny model. The findings themselves are measured by the default settings, not
here (docs/findings.md)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from reasonlab.cli import main
from reasonlab.experiments import Arm, Effect, ExperimentError, mean_std, names, verdict
from reasonlab.experiments.core import Context, get, run_experiment


def test_mean_std_is_the_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_verdict_reproduced_when_every_effect_is_positive_in_every_seed():
    effects = [
        Effect("accuracy gain", [10.0, 20.0, 30.0], "pts"),
        Effect("length gain", [5.0, 5.0, 8.0], "tokens"),
    ]
    assert verdict(effects, 3) == (
        "reproduced: accuracy gain +20.0 +- 10.0 pts; length gain +6.0 +- 1.7 tokens (3 seeds)"
    )


def test_verdict_not_reproduced_names_the_seeds_against_the_claim():
    # a positive mean is not enough: one seed of three goes the other way
    effects = [
        Effect("accuracy gain", [10.0, 20.0, 30.0], "pts"),
        Effect("length gain", [6.0, -1.0, 7.0], "tokens"),
    ]
    line = verdict(effects, 3)
    assert line == (
        "not reproduced: accuracy gain +20.0 +- 10.0 pts; length gain +4.0 +- 4.4 tokens "
        "[not > 0 in 1 of 3 seeds] (3 seeds)"
    )
    assert not Effect("zero", [0.0]).holds
    with pytest.raises(ValueError, match="at least one effect"):
        verdict([], 3)


def test_r1_zero_verdict_from_a_hand_made_table_both_ways():
    effects = get("r1_zero").effects
    table = {
        "base": {"accuracy": [18.0, 18.0, 18.0], "mean_length": [44.0, 44.0, 44.0]},
        "grpo": {"accuracy": [35.0, 30.0, 40.0], "mean_length": [120.0, 90.0, 100.0]},
    }
    assert verdict(effects(table), 3) == (
        "reproduced: held-out accuracy gain (grpo - base) +17.0 +- 5.0 pts; held-out response "
        "length gain +59.3 +- 15.3 tokens (3 seeds)"
    )
    table["grpo"]["mean_length"] = [40.0, 90.0, 100.0]  # one seed's responses got shorter
    assert verdict(effects(table), 3).startswith("not reproduced: ")


def test_test_time_scaling_effects_compare_the_largest_n_with_n_1():
    exp = get("test_time_scaling")
    table = {
        arm: {key: [10.0 + 5 * int(key.split("@")[1] > "1"), 12.0] for key in exp.metrics}
        for arm in ("base", "grpo")
    }
    effects = exp.effects(table)
    assert len(effects) == 8  # 2 models x 4 methods
    assert effects[0].label == "base majority: accuracy at N=16 - N=1"
    assert effects[0].values == [5.0, 0.0] and not effects[0].holds


def test_list_names_every_experiment_with_paper_and_claim(capsys):
    assert main(["experiment", "--list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "r1_zero",
        "cosine_reward",
        "test_time_scaling",
        "reflection_emergence",
        "policy_losses",
        "long_vs_short_cot",
        "priming",
        "distill_vs_rl",
        "warmup_data",
        "constructed_vs_emergent",
    ):
        assert name in names()
        assert f"{name}" in out
    assert "[needs" not in out  # every experiment runs now
    assert "paper: " in out and "claim: " in out


def test_cli_errors_are_clear(capsys, tmp_path, monkeypatch):
    assert main(["experiment", "r1_zeroo", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown experiment 'r1_zeroo' (did you mean 'r1_zero'?)" in err
    monkeypatch.setattr(get("priming"), "needs", "a stage not built")
    assert main(["experiment", "priming", "--out", str(tmp_path)]) == 2
    assert "needs a stage not built; it cannot run yet" in capsys.readouterr().err
    assert main(["experiment", "--out", str(tmp_path)]) == 2
    assert "give one experiment NAME or --all" in capsys.readouterr().err
    assert main(["experiment", "r1_zero", "--seeds", "0", "--out", str(tmp_path)]) == 2
    assert "--seeds must be >= 1" in capsys.readouterr().err


def test_policy_loss_arms_take_each_recipe_s_own_parameters():
    arms = {arm.name: arm.overrides for arm in get("policy_losses").arms}
    assert sorted(arms) == [
        "cispo",
        "clip_cov",
        "gmpo",
        "gspo",
        "gspo_token",
        "kl_cov",
        "ppo",
        "sapo",
    ]
    assert "algorithm.clip_low=0.0003" in arms["gspo"]
    assert "algorithm.delta=3.0" in arms["ppo"]
    assert "algorithm.delta=null" in arms["gspo"]  # not gspo's parameter: back to its default
    assert "algorithm.clip_high=0.2" in arms["sapo"]  # sapo takes no clip: the default, not 0.28
    # 4 updates per step of 128 responses: off-policy after the first (see LOSS_MINIBATCH)
    assert all("batching.minibatch_size=32" in overrides for overrides in arms.values())


class _Interrupt:
    """Stops the first run at the end of step 2, after step 1's checkpoint (save_every=1)."""

    def __init__(self):
        self.fired = False

    def on_step_end(self, trainer, step, metrics):
        if step == 2 and not self.fired:
            self.fired = True
            raise KeyboardInterrupt

    def on_evaluate(self, trainer, step, results):
        pass


def test_quick_run_resumes_reuses_and_writes_results(tmp_path):
    out = tmp_path / "exp"
    logs: list[str] = []
    # 1. the first run is interrupted after its step-1 checkpoint
    with pytest.raises(KeyboardInterrupt):
        run_experiment(
            "cosine_reward", out, seeds=2, quick=True, log=logs.append, callbacks=[_Interrupt()]
        )
    # 2. the same command resumes it from the checkpoint and runs the other three
    logs.clear()
    results = run_experiment("cosine_reward", out, seeds=2, quick=True, log=logs.append)
    assert sum("resuming" in line for line in logs) == 1
    assert sum(": training " in line for line in logs) == 3
    arms = results["arms"]
    assert list(arms) == ["plain", "cosine"]
    resumed = None
    for arm in arms.values():
        assert arm["metric"] == "truncation" and len(arm["values"]) == 2
        assert set(arm["metrics"]) == set(results["metrics"])
        assert arm["command"].startswith("reasonlab train reasonlab/demo_countdown.yaml")
        for key, stats in arm["metrics"].items():
            assert stats["mean"] == pytest.approx(mean_std(stats["values"])[0]), key
        for run in arm["runs"]:
            data = json.loads((Path(run) / "experiment.json").read_text())
            if data["resumed"]:
                resumed = run
            steps = [json.loads(line)["step"] for line in open(f"{run}/metrics.jsonl")]
            assert steps == [1, 2]  # the interrupted step 2 was cut and run again once
    assert resumed is not None
    # the verdict is the one computed from the per-seed effects written beside it
    effects = [Effect(e["label"], e["values"], e["unit"]) for e in results["effects"]]
    assert results["verdict"] == verdict(effects, 2)
    assert results["verdict"].startswith(("reproduced: ", "not reproduced: "))
    assert results["effects"][0]["values"] == [
        p - c
        for p, c in zip(
            arms["plain"]["metrics"]["truncation"]["values"],
            arms["cosine"]["metrics"]["truncation"]["values"],
        )
    ]
    on_disk = json.loads((out / "cosine_reward" / "results.json").read_text())
    assert on_disk["verdict"] == results["verdict"] and on_disk["seeds"] == [0, 1]
    assert (out / "cosine_reward" / "cosine_reward.png").stat().st_size > 1000
    page = (out / "report.html").read_text()
    assert 'id="cosine_reward"' in page and html.escape(results["verdict"]) in page
    # 3. again: every run is reused, nothing trains, the same numbers come back
    logs.clear()
    again = run_experiment("cosine_reward", out, seeds=2, quick=True, log=logs.append)
    assert sum("finished run reused" in line for line in logs) == 4
    assert not any(": training " in line or "resuming" in line for line in logs)
    assert {a: v["metrics"] for a, v in again["arms"].items()} == {
        a: v["metrics"] for a, v in arms.items()
    }


@pytest.mark.slow(seconds=40)
def test_jobs_split_the_runs_between_processes_with_one_process_s_results(
    tmp_path, capsys, monkeypatch
):
    """`--jobs 2`: a second process trains the runs the first does not hold (file locks); each
    run is trained once, and the numbers are those of one process alone."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # both ways on one thread: equal float sums
    alone = run_experiment("cosine_reward", tmp_path / "one", seeds=2, quick=True, log=print)
    capsys.readouterr()
    out = tmp_path / "two"
    assert main(["experiment", "cosine_reward", "--quick", "--seeds", "2", "--out", str(out),
                 "--jobs", "2"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    worker = (out / "jobs" / "job-1.log").read_text()
    trained = [line for line in (printed + worker).splitlines() if ": training " in line]
    assert len(trained) == 4, printed + worker  # 2 arms x 2 seeds, each trained by one process
    assert "1 torch thread(s) each" in printed
    both = json.loads((out / "cosine_reward" / "results.json").read_text())
    assert {a: v["metrics"] for a, v in both["arms"].items()} == {
        a: v["metrics"] for a, v in alone["arms"].items()
    }
    assert both["verdict"] == alone["verdict"]


def test_an_arm_may_not_change_the_held_out_problems(tmp_path):
    ctx = Context.__new__(Context)  # arm_overrides reads no model
    ctx.quick_overrides = []
    ctx.base_dir = tmp_path
    with pytest.raises(ExperimentError, match="overrides task.*held-out"):
        ctx.arm_overrides(Arm("bad", ["task.eval_seed=5"]), 0)


# ----------------------------------------------------------------------------- arms with stages

SFT_EXPERIMENTS = [
    "priming",
    "long_vs_short_cot",
    "constructed_vs_emergent",
    "distill_vs_rl",
    "warmup_data",
]
QUICK_SEEDS = {"warmup_data": 2}
"""Seeds of each quick run (1 unless named): one experiment with two checks the seeds' shape,
the rest stay cheap."""


def test_priming_and_long_vs_short_verdicts_from_hand_made_tables():
    priming = get("priming").effects
    table = {
        "all_behaviours": {"rl_gain": [10.0, 12.0]},
        "backtracking_only": {"rl_gain": [8.0, 9.0]},
        "wrong_answers": {"rl_gain": [7.0, 5.0]},
        "no_behaviours": {"rl_gain": [2.0, 6.0]},
        "empty_cot": {"rl_gain": [4.0, 1.0]},
    }
    effects = priming(table)
    # each primed arm against the better control of the same seed: 4 then 6
    assert [e.values for e in effects] == [[6.0, 6.0], [4.0, 3.0], [3.0, -1.0]]
    assert verdict(effects, 2).startswith("not reproduced: ")  # wrong_answers' seed 1
    long_short = get("long_vs_short_cot").effects
    table = {
        f"{kind}_sft{steps}": {"accuracy": [acc, acc], "rl_gain": [0.0, 0.0]}
        for kind, accs in (("short", (20.0, 25.0, 25.0)), ("long", (15.0, 22.0, 30.0)))
        for steps, acc in zip((10, 30, 90), accs)
    }
    table["short_rl"] = {"accuracy": [28.0, 27.0], "rl_gain": [3.0, 2.0]}
    table["long_rl"] = {"accuracy": [40.0, 41.0], "rl_gain": [10.0, 11.0]}
    line = verdict(long_short(table), 2)
    assert line == (
        "reproduced: long CoT: accuracy at 90 - 30 SFT steps +8.0 +- 0.0 pts; accuracy rise from "
        "30 to 90 SFT steps, long - short +8.0 +- 0.0 pts; RL gain, after long - after short CoT "
        "SFT +8.0 +- 1.4 pts (2 seeds)"
    )


def _bare_context(tmp_path: Path) -> Context:
    """A Context with the demo recipe's task and held-out problems, no base model built."""
    from reasonlab import tasks
    from reasonlab.config import load_config
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.data import split_examples

    ctx = Context.__new__(Context)
    ctx.out, ctx.quick, ctx.log = tmp_path, False, lambda _: None
    ctx.base_cfg = load_config(TrainConfig, str(get("priming").recipe), [])
    ctx.task = tasks.get("countdown")
    _, ctx.held_out = split_examples(ctx.task, ctx.base_cfg.task)
    ctx.held_out_keys = sorted(ctx.task.key(e) for e in ctx.held_out)
    ctx.probe_examples = []
    ctx.base_dir, ctx.base_id = tmp_path / "base", "base-id"
    return ctx


def test_sft_data_of_a_held_out_problem_is_refused(tmp_path):
    from reasonlab.io import write_jsonl
    from reasonlab.tasks.cot import cot_rows

    ctx = _bare_context(tmp_path)
    rows = cot_rows("long", 3, seed=0, params=dict(ctx.base_cfg.task.params))
    write_jsonl(tmp_path / "clean.jsonl", rows)
    ctx._check_data(tmp_path / "clean.jsonl", where="stage data")  # the generator's rows pass
    rows[1] = {**rows[1], "key": ctx.held_out_keys[0]}
    write_jsonl(tmp_path / "leak.jsonl", rows)
    with pytest.raises(
        ExperimentError, match=r"stage data: .*leak.jsonl:2: an SFT row of held-out"
    ):
        ctx._check_data(tmp_path / "leak.jsonl", where="stage data")
    rows[1].pop("key")
    write_jsonl(tmp_path / "nokey.jsonl", rows)
    with pytest.raises(ExperimentError, match=r"nokey.jsonl:2: an SFT row names no problem"):
        ctx._check_data(tmp_path / "nokey.jsonl", where="stage data")


def test_bad_stages_are_named_with_the_valid_choices(tmp_path):
    ctx = _bare_context(tmp_path)
    with pytest.raises(
        ExperimentError, match=r"arm 'a' stage 'x': kind 'rl'; valid: pretrain, cot"
    ):
        ctx.stage_config(
            Arm("a", stages=[{"name": "x", "kind": "rl"}]), {"name": "x", "kind": "rl"}, 0
        )
    spec = {"name": "data", "kind": "cot", "cot": {"knd": "long"}}
    with pytest.raises(
        ExperimentError,
        match=r"stage 'data': field 'cot.knd': unknown key; did you mean 'cot.kind'",
    ):
        ctx.stage_config(Arm("a", stages=[spec]), spec, 0)
    arm = Arm("a", stages=[{"name": "sft", "kind": "sft", "model": "teachr", "data": "data"}])
    with pytest.raises(ExperimentError, match=r"model 'teachr' is unknown; valid: base, teacher"):
        ctx.prepare(arm, 0)


# One test for the five (not a parametrized test on a shared fixture): pytest-xdist may hand the
# parameters to both workers, and each would build the fixture, the whole cost twice.
@pytest.mark.slow(seconds=120)
def test_quick_sft_experiments_run_stages_then_rl_and_a_rerun_reuses_everything(
    tmp_path, monkeypatch
):
    """The five SFT-based experiments, --quick, into one folder (one random base, one teacher);
    a rerun reuses everything, and from another working folder (OUT spelled another way) the
    stages are found again (path-free keys) with their outputs re-anchored."""
    logs: list[str] = []
    results = {
        name: run_experiment(
            name, tmp_path, seeds=QUICK_SEEDS.get(name, 1), quick=True, log=logs.append
        )
        for name in SFT_EXPERIMENTS
    }
    for name in SFT_EXPERIMENTS:
        _check_quick_sft_experiment(tmp_path, results, name)
    _check_rerun_reuses_every_stage_and_run(tmp_path, results, logs)
    monkeypatch.chdir(tmp_path.parent)
    logs = []
    run_experiment(
        "constructed_vs_emergent", Path(tmp_path.name), seeds=1, quick=True, log=logs.append
    )
    constructed = [line for line in logs if "constructed seed 0: stage" in line]
    assert len(constructed) == 2 and all(" reused in " in line for line in constructed), logs


def _check_quick_sft_experiment(out, all_results, name):
    from reasonlab.tasks.split import share_position

    results, exp = all_results[name], get(name)
    seeds = QUICK_SEEDS.get(name, 1)
    assert results["seeds"] == list(range(seeds))
    assert list(results["arms"]) == [arm.name for arm in exp.arms]
    for arm in exp.arms:
        info = results["arms"][arm.name]
        assert set(info["metrics"]) == set(exp.metrics)
        assert all(len(s["values"]) == seeds for s in info["metrics"].values())
        assert len(info["stage_runs"]) == seeds
        for folders, run in zip(info["stage_runs"], info["runs"]):
            # every stage ran (or was reused) in its own folder, one per stage, in order
            kinds = [
                json.loads(next(Path(f).glob("*/done.json")).read_text())["kind"] for f in folders
            ]
            assert kinds == [s["kind"] for s in arm.stages]
            for folder in folders:
                for data in list(Path(folder).glob("cot/cot.jsonl")) + list(
                    Path(folder).glob("sample/samples.jsonl")
                ):
                    keys = [json.loads(line)["key"] for line in open(data)]
                    assert keys and all(share_position(k) >= 0.2 for k in keys), data
            if run is None:
                assert not arm.train
                continue
            config = (Path(run) / "config.yaml").read_text()
            last_model = [
                f for f, s in zip(folders, arm.stages) if s["kind"] in ("sft", "pretrain")
            ][-1]
            assert f"path: {last_model}" in config  # RL started from the stages' model
            data = json.loads((Path(run) / "experiment.json").read_text())
            assert [s["folder"] for s in data["stages"]] == folders
    # every experiment evaluates on the same held-out problems
    assert results["held_out"]["keys_sha"] == all_results["priming"]["held_out"]["keys_sha"]
    effects = [Effect(e["label"], e["values"], e["unit"]) for e in results["effects"]]
    assert results["verdict"] == verdict(effects, seeds)
    assert results["verdict"].startswith(("reproduced: ", "not reproduced: "))
    on_disk = json.loads((out / name / "results.json").read_text())
    assert on_disk["verdict"] == results["verdict"]
    assert (out / name / f"{name}.png").stat().st_size > 1000
    assert f'id="{name}"' in (out / "report.html").read_text()


def _check_rerun_reuses_every_stage_and_run(out, all_results, first_logs):
    # the teacher is the grpo arm's seed-0 run, trained once for both experiments that sample it
    assert sum("grpo seed 0: training" in line for line in first_logs) == 1
    logs: list[str] = []
    again = run_experiment("constructed_vs_emergent", out, seeds=1, quick=True, log=logs.append)
    assert sum(" reused in " in line for line in logs) == 4  # 2 arms x 2 stages
    assert sum("finished run reused" in line for line in logs) == 3  # 2 arms + the teacher
    assert not any(" running in " in line or ": training " in line for line in logs)
    before = all_results["constructed_vs_emergent"]["arms"]
    assert {a: v["metrics"] for a, v in again["arms"].items()} == {
        a: v["metrics"] for a, v in before.items()
    }


@pytest.mark.slow(seconds=30)
def test_jobs_share_out_the_measurements_and_reuse_them(tmp_path):
    """A `--jobs` helper process (`train_only`) measures the pairs no other process is
    measuring (here test_time_scaling's searches, cached beside each model) and skips a pair
    whose measurement lock another holds; the main process then reads what the helper measured."""
    from reasonlab.experiments.core import digest
    from reasonlab.io import file_lock

    out = tmp_path / "out"
    held = out / "locks" / f"measure-test_time_scaling-{digest(['grpo', 0, True])[:12]}"
    lines: list[str] = []
    with file_lock(held):  # "another process" measures grpo seed 0
        run_experiment("test_time_scaling", out, seeds=1, quick=True, log=lines.append,
                       train_only=True)  # fmt: skip
    assert "  grpo seed 0: another process is measuring it" in lines
    base_searches = list((out / "search-base").glob("search-*.json"))
    assert len(base_searches) == 1  # the base arm's pair was measured by the helper
    run_searches = list((out / "runs").glob("*/search-*.json"))
    assert run_searches == []  # the held pair was left alone
    stamp = base_searches[0].stat().st_mtime_ns
    results = run_experiment("test_time_scaling", out, seeds=1, quick=True, log=lines.append)
    assert base_searches[0].stat().st_mtime_ns == stamp  # read, not searched again
    assert len(list((out / "runs").glob("*/search-*.json"))) == 1
    assert set(results["arms"]) == {"base", "grpo"}


def test_jobs_cap_this_process_s_torch_threads_too(tmp_path, monkeypatch):
    """`--jobs 2` on 2 cores: the command's own process (torch already loaded) drops to the
    1-thread cap as its workers get, for the measurements it makes outside any trainer."""
    import argparse
    import subprocess

    import torch

    from reasonlab.cli import experiment_cmd

    class FakeProcess:
        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(subprocess, "Popen", FakeProcess)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(experiment_cmd.os, "cpu_count", lambda: 2)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        args = argparse.Namespace(jobs=2, name="r1_zero", all=False, out=tmp_path, seeds=1,
                                  quick=True)  # fmt: skip
        experiment_cmd.start_workers(args)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow(seconds=20)
def test_every_cot_stage_finds_its_problems_at_default_sizes():
    """Every experiment's cot stage at its default size (not --quick) finds its distinct training
    problems outside the held-out share (warmup_data's targets 31-60 once asked for 400 of 321)."""
    from reasonlab.config import load_config
    from reasonlab.demo import DEMO_RECIPE
    from reasonlab.rl.config import TrainConfig
    from reasonlab.tasks.cot import cot_rows

    task = load_config(TrainConfig, str(DEMO_RECIPE), []).task
    checked = 0
    for name in names():
        for arm in get(name).arms:
            for spec in arm.stages:
                if spec.get("kind") != "cot":
                    continue
                cot = spec["cot"]
                rows = cot_rows(
                    cot["kind"],
                    cot["n"],
                    task_name=task.name,
                    problems=cot["problems"],
                    seed=0,
                    params={**task.params, **cot.get("params", {})},
                    held_out_fraction=task.held_out_fraction,
                    template=task.template,
                )
                assert len(rows) == cot["n"], (name, arm.name)
                checked += 1
    assert checked >= 5


def test_a_new_recipe_field_at_its_neutral_default_keeps_the_run_keys():
    """`key_text`: a field added after runs were cached (`KEY_OMITS_AT_DEFAULT`) is left out of
    a run's key while at its neutral value, so the runs made before it stay reusable; set, it
    enters the key (a different run). The experiments pin the demo recipe's later batching
    (`RECIPE_PINS`) back to what their runs were measured with."""
    from reasonlab.config import config_to_yaml, load_config
    from reasonlab.demo import DEMO_RECIPE
    from reasonlab.experiments.core import RECIPE_PINS, key_text
    from reasonlab.rl.config import TrainConfig

    cfg = load_config(TrainConfig, str(DEMO_RECIPE), list(RECIPE_PINS))
    text, full = key_text(cfg), config_to_yaml(cfg)
    assert "group_by_length" not in text and "group_by_length: false" in full
    assert "  micro_batch_size: null" in text
    dropped = set(full.split("\n")) - set(text.split("\n"))  # the field and its comment lines
    assert dropped and all(
        line.startswith("  #") or line == "  group_by_length: false" for line in dropped
    )
    demo = load_config(TrainConfig, str(DEMO_RECIPE), [])  # the demo's own batching
    assert demo.batching.group_by_length and "group_by_length: true" in key_text(demo)
    assert "  micro_batch_size: 32" in key_text(demo)


def test_the_experiments_keep_the_base_their_findings_were_measured_on():
    """The base model every figure of docs/findings.md was measured on has the settings hash
    3340de4a51754378 (2400 steps, greedy packing): the demo's pretraining may change, the
    experiments' (`BASE_PRETRAIN`) may not without re-running every experiment."""
    from reasonlab.config import load_config
    from reasonlab.demo import DEMO_RECIPE, base_settings
    from reasonlab.experiments.core import BASE_PRETRAIN
    from reasonlab.rl.config import TrainConfig

    cfg = load_config(TrainConfig, str(DEMO_RECIPE), [])
    assert base_settings(cfg, 0, BASE_PRETRAIN).digest() == "3340de4a51754378"
    committed = Path(__file__).parent / "data" / "experiments_base" / "pretrain.json"
    assert json.loads(committed.read_text())["settings_hash"] == "3340de4a51754378"


def test_a_stage_s_key_does_not_depend_on_where_out_or_the_checkout_lie(tmp_path):
    """`stage_key`: the input paths are stood for by their identities and a recipe inside the
    repository by its path from the root, so the same stage is found again from another spelling
    of OUT or another checkout; a setting that makes the stage differently changes the key."""
    from reasonlab.experiments.core import REPO_ROOT, SFT_RECIPE, stage_key
    from reasonlab.pipeline import StageConfig, TrainStage

    def sft(out: str, recipe: str, steps: int = 30) -> StageConfig:
        return StageConfig(
            name="sft",
            kind="sft",
            model=f"{out}/base",
            data=f"{out}/stages/abc/cot/cot.jsonl",
            sft=TrainStage(recipe=recipe, overrides=[f"training.max_steps={steps}"]),
        )

    inputs = {"model": "base-id", "data": "data-id"}
    key = stage_key(sft("runs/experiments", str(SFT_RECIPE)), inputs)
    assert stage_key(sft(str(tmp_path / "elsewhere"), str(SFT_RECIPE)), inputs) == key
    relative = str(SFT_RECIPE.relative_to(REPO_ROOT))
    moved = str(tmp_path / "checkout" / relative)  # a file outside the repository: its full path
    assert stage_key(sft("runs/experiments", moved), inputs) != key
    assert stage_key(sft("runs/experiments", str(SFT_RECIPE), steps=31), inputs) != key
    assert stage_key(sft("runs/experiments", str(SFT_RECIPE)), {**inputs, "data": "x"}) != key
