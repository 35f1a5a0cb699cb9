"""Data-parallel SFT through `SFTTrainer`, for `model.parallel` ddp and fsdp (gloo, CPU, 2
processes launched as torchrun would): a 2-process run is the 1-process run on the combined batch,
and a 2-process run killed (SIGKILL) after a checkpoint and resumed by two new processes ends with
the uninterrupted run's weights. Pretraining (`models.pretrain.pretrain`, the same step and row
stream) with shared-prompt packing: 2 processes == 1 process with the same (global) batch_size.

The recipe exercises what the equivalence needs: samples of different lengths packed into rows
(`data.packing`) with the loss on completions only, so the two ranks' shares of a micro-batch hold
different numbers of loss tokens (a per-rank token-mean, or DDP's default average of the ranks'
means, would weigh them wrongly); gradient accumulation (2 micro-batches per step, the gradient
reduced once, at the last); clipping (max_grad_norm below the gradients' norm, so it acts); a
cosine schedule with warm-up; epochs that end mid-step (the stream's order and position); an eval
loss every 3 steps (under fsdp on rank 0's full copy gathered from the shards).

Tolerances. The ranks sum per-rank gradient shares, float sums in another order than one process
makes, so weights agree to round-off: atol 1e-6, and the logged loss, grad_norm and eval_loss to
rel 1e-5 (pytest.approx); token counts and the learning rate exactly. AdamW runs with eps=1 (as in
tests/test_distributed_trainer.py) so that its first steps do not blow round-off up to
lr * sign(g). The resumed run makes the same computation from the checkpoint: bit-identical.
Pretraining's AdamW has eps 1e-8 (`pretrain` sets no other), which amplifies the round-off:
its weights are held to atol 1e-5 (measured under ddp: 1.0e-6 at most, on weights that moved
3.6e-2 over 5 steps of lr 1e-2), its losses to rel 1e-5, its token count exactly.

Run as a script (`python tests/test_sft_distributed.py ROOT PARALLEL JOB...`), this file is the
worker of one rank; a JOB is `full=DIR` (a whole run), `cut=DIR` (the run to be killed once step
STOP_AT is done), `resume=DIR` or `pretrain=DIR`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from ranks import (
    assert_weights_close,
    kill_when_waiting,
    launch_ranks,
    wait_ranks,
    wait_to_be_killed,
)
from safetensors.torch import load_file

from reasonlab.config import load_config
from reasonlab.parallel import Dist
from reasonlab.sft.config import SFTConfig
from reasonlab.sft.trainer import SFTTrainer

WORLD, STEPS, SAVE_EVERY, STOP_AT, PER_RANK = 2, 6, 2, 3, 2
PRETRAIN_STEPS = 5
WORDS = "cat dog sun ink map owl elk fig bee yak hen ant ram cod eel gnu".split()
PAIRS = [(f"{w}:", " " + w[::-1] * (1 + i % 3) + "!") for i, w in enumerate(WORDS)]


def write_inputs(root: Path) -> None:
    """The base model and the data (the test writes them once; the ranks read them)."""
    from reasonlab import models
    from reasonlab.models import tiny

    tokenizer = tiny.build_char_tokenizer()
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    models.save(model, tokenizer, root / "base")
    rows = [{"prompt": p, "completion": c} for p, c in PAIRS]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))


def config(root: Path, out: Path, parallel: str, per_device: int) -> SFTConfig:
    overrides = [
        f"model.path={root / 'base'}",
        f"model.parallel={parallel}",
        f"data.train_files=[{root / 'train.jsonl'}]",
        f"data.eval_files=[{root / 'eval.jsonl'}]",
        "data.max_length=24",
        "data.packing=true",
        f"training.max_steps={STEPS}",
        f"training.per_device_train_batch_size={per_device}",
        "training.gradient_accumulation_steps=2",
        "training.learning_rate=0.5",
        "training.adam_epsilon=1.0",
        "training.warmup_steps=1",
        "training.max_grad_norm=0.5",
        f"run.out_dir={out}",
        "run.logging_steps=1",
        "run.eval_steps=3",
        f"run.save_steps={SAVE_EVERY}",
        "run.save_total_limit=4",
        "run.num_threads=1",
        "run.progress=false",
    ]
    return load_config(SFTConfig, None, overrides)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "time/eval")} for r in rows]


def _weights(run: Path, step: int | None = None) -> dict[str, torch.Tensor]:
    folder = run / "model" if step is None else run / "checkpoints" / f"step_{step:06d}" / "model"
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.slow(seconds=60)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_equal_one_process_on_the_combined_batch_and_resume_exactly(tmp_path, parallel):
    write_inputs(tmp_path)
    full, cut, single = tmp_path / "full", tmp_path / "cut", tmp_path / "single"
    worker = [__file__, str(tmp_path), parallel]
    procs = launch_ranks(lambda rank: [*worker, f"full={full}", f"cut={cut}"], WORLD)
    # meanwhile, here: one process on the combined batch (both ranks' rows of each micro-batch)
    SFTTrainer(config(tmp_path, single, "none", PER_RANK * WORLD), log=lambda *_: None).train()
    kill_when_waiting(procs, cut)
    stopped = json.loads((cut / "stopped.json").read_text())
    assert stopped == {
        "steps_logged": list(range(1, STOP_AT + 1)),
        "checkpoints": [f"step_{s:06d}" for s in range(SAVE_EVERY, STOP_AT + 1, SAVE_EVERY)],
    }
    wait_ranks(launch_ranks(lambda rank: [*worker, f"resume={cut}"], WORLD))

    one, two = _without_timing(_rows(single / "metrics.jsonl")), _rows(full / "metrics.jsonl")
    two = _without_timing(two)
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, STEPS + 1))
    # (a) two ranks == one process on the combined batch
    for a, b in zip(one, two):
        assert a.keys() == b.keys()
        for key in a:
            where = f"step {a['step']}: {key}"
            if key in ("step", "tokens", "lr", "epoch"):
                assert a[key] == b[key], where
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-5), where
    assert any(r["grad_norm"] > 0.5 for r in one), "clipping never acted"
    assert max(r["epoch"] for r in one) > 1, "the run never crossed an epoch"
    evals = [_without_timing(_rows(run / "eval.jsonl")) for run in (single, full)]
    assert [r["step"] for r in evals[0]] == [r["step"] for r in evals[1]] == [0, 3, 6]
    for a, b in zip(*evals):
        assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-5), a["step"]
    w_one, w_two = _weights(single), _weights(full)
    assert_weights_close(w_one, w_two, 1e-6, parallel)
    # the weights moved over the last steps: the comparison is not vacuous
    before = _weights(full, STEPS - SAVE_EVERY)
    assert any((w_two[k] - before[k]).abs().max() > 1e-3 for k in w_two)

    # (b) killed after a checkpoint, resumed by two new processes == uninterrupted (bit-identical)
    assert _without_timing(_rows(cut / "metrics.jsonl")) == two
    w_resumed = _weights(cut)
    for key in w_two:
        assert torch.equal(w_resumed[key], w_two[key]), key


def pretrain_run(root: Path, out: Path, parallel: str, batch_size: int, dist: Dist) -> None:
    """`pretrain` of the base model on PAIRS with shared-prompt packing (three completions per
    prompt); the losses go to out/losses.json and the weights to out/model/ (rank 0)."""
    from reasonlab import models
    from reasonlab.models.pretrain import pretrain
    from reasonlab.parallel import full_state_dict

    model, tokenizer = models.load(str(root / "base"), dtype="float32", device="cpu")
    samples = [(p, c[: 2 + k]) for p, c in PAIRS for k in range(3)]
    stats = pretrain(
        samples,
        tokenizer,
        model,
        steps=PRETRAIN_STEPS,
        batch_size=batch_size,
        lr=1e-2,
        seq_len=32,
        warmup=1,
        log_every=1,
        packing="shared_prompt",
        num_threads=1,
        parallel=parallel,
        dist=dist,
    )
    full = full_state_dict(model, rank0_only=True) if parallel == "fsdp" else None  # collective
    if dist.is_main:
        models.save(model, tokenizer, out / "model", full)
        (out / "losses.json").write_text(json.dumps({k: stats[k] for k in ("losses", "tokens")}))


@pytest.mark.slow(seconds=40)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_pretraining_on_two_ranks_equals_one_process_with_the_same_global_batch(tmp_path, parallel):
    write_inputs(tmp_path)
    two, one = tmp_path / "two", tmp_path / "one"
    procs = launch_ranks(lambda rank: [__file__, str(tmp_path), parallel, f"pretrain={two}"], WORLD)
    pretrain_run(tmp_path, one, "none", PER_RANK * WORLD, Dist.single())
    wait_ranks(procs)
    a, b = (json.loads((run / "losses.json").read_text()) for run in (one, two))
    assert a["tokens"] == b["tokens"]
    assert b["losses"] == pytest.approx(a["losses"], rel=1e-5)
    w_one, w_two = _weights(one), _weights(two)
    assert_weights_close(w_one, w_two, 1e-5, f"pretrain {parallel}")
    base = load_file(str(tmp_path / "base" / "model.safetensors"))
    assert any((w_two[k] - base[k]).abs().max() > 1e-3 for k in w_two)  # it trained


def _stop_after(trainer: SFTTrainer, step: int) -> None:
    """Make `trainer` wait to be killed once `step` is done: rank 0 records what is on disk in
    stopped.json, then every rank writes `killable_rank{R}` and sleeps."""
    train_step = trainer.train_step

    def wait_then_step() -> dict[str, float]:
        if trainer.step == step:
            trainer.dist.barrier()  # every rank is past the last step's save
            wait_to_be_killed(trainer.run_dir, trainer.dist.rank)
        return train_step()

    trainer.train_step = wait_then_step


if __name__ == "__main__":  # one rank of the test above
    dist = Dist.from_env()
    root, parallel = Path(sys.argv[1]), sys.argv[2]
    try:
        for job in sys.argv[3:]:
            kind, out_dir = job.split("=", 1)
            if kind == "pretrain":
                pretrain_run(root, Path(out_dir), parallel, PER_RANK * WORLD, dist)  # global
                continue
            cfg = config(root, Path(out_dir), parallel, PER_RANK)
            trainer = SFTTrainer(cfg, resume=kind == "resume", dist=dist)
            if kind == "cut":
                _stop_after(trainer, STOP_AT)
            trainer.train()
    finally:
        dist.close()
