"""`reasonlab pretrain` and `reasonlab pipeline` under torchrun: 2 gloo processes on the CPU,
launched with the environment torchrun sets (`ranks.launch_ranks`), each running the CLI as
`python -m reasonlab ...`.

- `pretrain --parallel ddp|fsdp` on 2 ranks trains the weights one process trains with the same
  `--batch-size` (the global batch): atol 1e-5, as `pretrain()`'s own test in
  tests/test_sft_distributed.py (AdamW eps 1e-8 amplifies the round-off of the ranks' gradient
  sums); the same settings hash; rank 0 evaluates and writes pretrain.json.
- A pipeline pretrain (ddp) -> cot (rank 0) -> sft (ddp) -> eval (its batches split over the
  ranks) on 2 ranks finishes, writes every done.json, trains the 1-process pretrain and SFT
  weights (atol 1e-5 and 5e-5), and its eval stage stores the same
  generations, byte for byte, and the same metrics as the 1-process pipeline. The 1-process
  pipeline's SFT stage trains per_device_train_batch_size=4 and the 2-rank one 2 per rank (SFT's
  batch is per process, as in TRL and transformers' Trainer): the same global batch. The models
  behind the eval then differ by round-off (the pretrain and SFT gradient sums), which the
  sampler does not see at these sizes; the eval's seeds are per batch, so the ranks draw what one
  process draws.
- Rerunning the finished 2-rank pipeline runs no stage, rewrites no done.json, and exits 0.

- `generate_sharded` (the sample and eval stages' generation) on 2 ranks: each rank generates its
  contiguous run of batches, minus those already stored, and the merged store equals one
  process's `generate`.

Run as a script (`python tests/test_torchrun.py DIR`), this file is one rank of that last test.

Errors before any group is joined: WORLD_SIZE 2 with `--parallel none`, or a `--batch-size`
that does not split over the ranks, is a one-line error naming the flag.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ranks import assert_weights_close, launch_ranks, wait_ranks
from safetensors.torch import load_file

from reasonlab.cli import main

ROOT = Path(__file__).resolve().parent.parent
WORLD = 2
PRETRAIN = [
    *("--size", "tiny", "--problems", "20", "--attempts", "2", "--steps", "4"),
    *("--batch-size", "4", "--lr", "1e-2", "--eval", "1", "--threads", "1"),
]
PIPELINE = """\
out_dir: {out}
num_threads: 1
parallel: ddp
stages:
  - name: base
    kind: pretrain
    pretrain: {{size: tiny, problems: 16, attempts: 2, steps: 4, batch_size: 4, vocab_size: 512}}
  - name: cot
    kind: cot
    cot: {{kind: long, n: 16, problems: 8}}
  - name: sft
    kind: sft
    model: base
    data: cot
    sft:
      recipe: {sft_recipe}
      overrides: [training.max_steps=2, training.per_device_train_batch_size={per_device},
                  training.learning_rate=1e-2, task.eval_examples=0, run.eval_steps=0,
                  run.save_steps=0, run.num_threads=1, run.progress=false]
  - name: eval
    kind: eval
    model: sft
    eval: {{benchmarks: [countdown_demo], n: 2, limit: 4, batch_size: 2, max_new_tokens: 24}}
"""
STAGES = ("base", "cot", "sft", "eval")


def _cli(*args: str) -> list[str]:
    return ["-m", "reasonlab", *args]


@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_pretrain_on_two_ranks_trains_the_one_process_model(tmp_path, parallel):
    two, one = tmp_path / "two", tmp_path / "one"
    procs = launch_ranks(
        lambda rank: _cli("pretrain", "--out", str(two), "--parallel", parallel, *PRETRAIN), WORLD
    )
    assert main(["pretrain", "--out", str(one), *PRETRAIN]) == 0  # meanwhile, one process
    wait_ranks(procs)
    a, b = (json.loads((run / "pretrain.json").read_text()) for run in (one, two))
    assert a["settings_hash"] == b["settings_hash"]
    assert b["processes"] == {"world_size": WORLD, "parallel": parallel}
    assert a["train"]["tokens"] == b["train"]["tokens"]
    assert b["train"]["losses"] == pytest.approx(a["train"]["losses"], rel=1e-5)
    assert b["eval"]["examples"] == 1 and set(b["eval"]) == set(a["eval"])
    w_one, w_two = (load_file(str(run / "model.safetensors")) for run in (one, two))
    assert_weights_close(w_one, w_two, 1e-5, f"reasonlab pretrain --parallel {parallel}")
    assert a["train"]["final_loss"] < a["train"]["first_loss"]  # it trained


def _pipeline(tmp_path: Path, name: str, per_device: int) -> Path:
    recipe = tmp_path / f"{name}.yaml"
    out = tmp_path / name
    sft_recipe = ROOT / "configs" / "sft_countdown_cpu.yaml"
    recipe.write_text(PIPELINE.format(out=out, sft_recipe=sft_recipe, per_device=per_device))
    return recipe


@pytest.mark.slow(seconds=60)
def test_pipeline_on_two_ranks_equals_one_process_and_a_rerun_does_nothing(tmp_path):
    two, one = _pipeline(tmp_path, "two", 2), _pipeline(tmp_path, "one", 2 * WORLD)
    procs = launch_ranks(lambda rank: _cli("pipeline", str(two)), WORLD)
    assert main(["pipeline", str(one)]) == 0  # meanwhile, one process
    outputs = wait_ranks(procs)
    assert "pipeline done: 4 stages" in outputs[0]
    assert "pipeline done" not in outputs[1]  # rank 0 reports
    done = {s: json.loads((tmp_path / "two" / s / "done.json").read_text()) for s in STAGES}
    assert [d["stage"] for d in done.values()] == list(STAGES)
    assert done["sft"]["summary"]["steps"] == 2
    # the training stages trained one process's models: pretrain's within 1e-5 as above; SFT's
    # AdamW (eps 1e-8) amplifies more round-off over its steps: 5e-5 (measured 7.1e-6 while the
    # SFT moved the weights by 3.0e-3)
    for stage, model, atol in (("base", "model", 1e-5), ("sft", "run/model", 5e-5)):
        w_one, w_two = (
            load_file(str(tmp_path / run / stage / model / "model.safetensors"))
            for run in ("one", "two")
        )
        assert_weights_close(w_one, w_two, atol, f"pipeline stage {stage}")
    w_base = load_file(str(tmp_path / "two" / "base" / "model" / "model.safetensors"))
    assert any((w_two[k] - w_base[k]).abs().max() > 1e-3 for k in w_two)  # the SFT trained
    # the eval: the same generations, byte for byte, and the same metrics as one process
    gens = [tmp_path / run / "eval" / "countdown_demo.generations.jsonl" for run in ("one", "two")]
    assert gens[1].read_text() == gens[0].read_text()
    assert len(gens[1].read_text().splitlines()) == 4
    assert not list((tmp_path / "two" / "eval").glob("*.rank*"))  # the shards were merged
    assert (
        done["eval"]["summary"]
        == json.loads((tmp_path / "one" / "eval" / "done.json").read_text())["summary"]
    )
    metrics = [
        json.loads((tmp_path / run / "eval" / "results.json").read_text())["benchmarks"][
            "countdown_demo"
        ]["metrics"]
        for run in ("one", "two")
    ]
    assert metrics[1] == metrics[0]

    # (c) rerun on two ranks: every stage is done earlier, nothing is written
    stamps = {s: (tmp_path / "two" / s / "done.json").stat().st_mtime_ns for s in STAGES}
    outputs = wait_ranks(launch_ranks(lambda rank: _cli("pipeline", str(two)), WORLD))
    assert outputs[0].count("done earlier") == len(STAGES), outputs[0]
    assert "running" not in outputs[0]
    assert stamps == {s: (tmp_path / "two" / s / "done.json").stat().st_mtime_ns for s in STAGES}


def test_pretrain_under_torchrun_refuses_parallel_none_and_an_uneven_batch(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WORLD_SIZE", str(WORLD))  # as torchrun sets it; refused before joining
    out = str(tmp_path / "base")
    assert main(["pretrain", "--out", out, *PRETRAIN]) == 2
    assert "--parallel is none but 2 processes were launched" in capsys.readouterr().err
    assert (
        main(["pretrain", "--out", out, "--parallel", "ddp", *PRETRAIN, "--batch-size", "3"]) == 2
    )
    err = capsys.readouterr().err
    assert "--batch-size=3 packed rows (the global batch) do not split evenly over 2" in err
    assert not (tmp_path / "base").exists()


def test_a_pipeline_under_torchrun_refuses_a_training_stage_left_on_one_process(tmp_path):
    from reasonlab.parallel import Dist
    from reasonlab.pipeline import Pipeline, PipelineError, load

    recipe = _pipeline(tmp_path, "two", 2)
    ranks = Dist(rank=0, world_size=WORLD)  # the checks run before any collective
    with pytest.raises(PipelineError, match=r"stage 'base' \(pretrain\) under 2 processes: "):
        Pipeline(load(recipe, ["parallel=none"]), dist=ranks).check_ranks()
    # a stage's own model.parallel=none (after the pipeline's ddp) is named with its stage
    config = load(recipe)
    config.stages[2].sft.overrides.append("model.parallel=none")
    with pytest.raises(PipelineError, match=r"stage 'sft' \(sft\).*model.parallel is none"):
        Pipeline(config, dist=ranks).check_ranks()
    odd = load(recipe, ["parallel=fsdp"])
    odd.stages[0].pretrain.batch_size = 3
    with pytest.raises(PipelineError, match=r"pretrain.batch_size=3 packed rows .* over 2"):
        Pipeline(odd, dist=ranks).check_ranks()
    Pipeline(load(recipe), dist=ranks).check_ranks()  # the recipe the 2-rank test runs
    assert not (tmp_path / "two").exists()


SHARD_BATCH = 3


def _countdown_examples():
    """10 Countdown problems (4 batches of 3, the last of 1), with test_eval's FakeEngine
    (deterministic in seed, example and sample index) knowing their solutions."""
    from test_eval import _SOLUTIONS, FakeEngine

    from reasonlab import tasks

    task = tasks.get("countdown")
    examples = task.generate(n=10, seed=3, preset="cognitive")
    for e in examples:
        _SOLUTIONS[e.id] = e.meta["solution"]
    return task, examples, FakeEngine


def _shard_params():
    from reasonlab.rollout.base import SamplingParams

    return SamplingParams(n=2, temperature=1.0, max_new_tokens=32, seed=11)


@pytest.mark.slow(seconds=15)
def test_generate_sharded_splits_the_batches_and_stores_one_process_s_generations(tmp_path):
    from reasonlab.eval.runner import generate
    from reasonlab.eval.store import GenerationStore

    task, examples, engine = _countdown_examples()
    params = _shard_params()
    expected = generate(engine(), task, examples, params, batch_size=SHARD_BATCH)
    store = GenerationStore(tmp_path, "bench")
    store.open({"n": 2})
    store.append(expected[:SHARD_BATCH])  # the first batch is stored already (a resume)
    wait_ranks(launch_ranks(lambda rank: [__file__, str(tmp_path)], WORLD))
    seen = [json.loads((tmp_path / f"seen{r}.json").read_text()) for r in range(WORLD)]
    ids = [e.id for e in examples]
    assert seen[0] == ids[3:6]  # rank 0: batches 0 (stored) and 1
    assert seen[1] == ids[6:10]  # rank 1: batches 2 and 3
    merged = GenerationStore(tmp_path, "bench").load()
    assert list(merged) == ids
    assert list(merged.values()) == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bench.generations.jsonl",
        "bench.settings.json",
        "seen0.json",
        "seen1.json",
    ]


if __name__ == "__main__":  # one rank of the test above
    from reasonlab.eval.runner import generate_sharded
    from reasonlab.eval.store import GenerationStore
    from reasonlab.parallel import Dist

    dist = Dist.from_env()
    out = Path(sys.argv[1])
    try:
        task, examples, engine_class = _countdown_examples()
        engine = engine_class()
        generate_sharded(
            engine,
            task,
            examples,
            _shard_params(),
            store=GenerationStore(out, "bench"),
            settings={"n": 2},
            dist=dist,
            batch_size=SHARD_BATCH,
        )
        (out / f"seen{dist.rank}.json").write_text(json.dumps(engine.prompts_seen))
    finally:
        dist.close()
