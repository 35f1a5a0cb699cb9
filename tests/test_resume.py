"""Exact resume: a run killed with SIGKILL and resumed ends where an uninterrupted run ends.

All runs are `reasonlab train` in subprocesses (one torch thread each, deterministic algorithms).
Three interrupted runs, each killed at a seeded random moment after the first checkpoint:
- `after_row`: from outside, just after a metrics row appears (between steps);
- `mid_update`: the child SIGKILLs itself inside `Learner.update`, on a random call of the PPO
  policy loss (some minibatch optimiser steps of that step done, others not);
- `mid_save`: the child SIGKILLs itself while writing a checkpoint (the model files written into
  the temporary folder, the optimiser state not yet).
Each is resumed with `--resume`; the final weights must be bit-identical to the uninterrupted
run's and every metrics row equal (wall-time fields aside), with no step logged twice.

The reward is a test-only registered reward with a strong signal (the share of '7' characters in
the completion), so the weights really move between checkpoints; the recipe exercises the parts
of the state a resume must restore: AdamW moments over several minibatches and epochs, the LR
schedule, the data position, a reference model refreshed mid-run, and held-out evaluation.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
import torch
from kill_switch import launch
from safetensors.torch import load_file

from reasonlab.rl.trainer import strip_timing

STEPS, SAVE_EVERY = 10, 2

RECIPE = f"""
model:
  path: tiny
  tiny: {{hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64,
          vocab_size: 300, corpus_examples: 50}}
task: {{name: countdown, eval_size: 4}}
rewards:
  scheme: null
  terms: [{{name: sevens_for_test, weight: 1.0}}]
rollout: {{n: 4, max_new_tokens: 8}}
algorithm: {{advantage: grpo, kl_coef: 0.01, ref_refresh_every: 3}}
optim: {{lr: 1.0e-2, warmup_steps: 2, schedule: cosine, weight_decay: 0.01}}
batching: {{prompts_per_step: 4, minibatch_size: 8, micro_batch_size: 4, ppo_epochs: 2}}
run:
  steps: {STEPS}
  save_every: {SAVE_EVERY}
  keep_checkpoints: 2
  eval_every: 5
  num_threads: 1
  progress: false
  log_rollouts_per_step: 2
"""

LAUNCHER = textwrap.dedent(
    '''
    import sys
    from dataclasses import dataclass

    from reasonlab.rewards.base import Reward, register


    @register
    @dataclass
    class SevensForTest(Reward):
        """Share of '7' characters in the completion (a reward a tiny model learns fast)."""

        name = "sevens_for_test"

        def compute(self, batch):
            return [t.count("7") / max(1, len(t)) for t in batch.texts]


    from kill_switch import install

    # REASONLAB_TEST_KILL=WHERE:N makes this process SIGKILL itself on the N-th call of the PPO
    # policy loss (WHERE=update: inside Learner.update) or of torch.save (WHERE=save: inside a
    # checkpoint write, after the model files and before the optimiser state)
    install({"update": ("reasonlab.rl.learner", "policy_loss"), "save": ("torch", "save")})

    from reasonlab.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
    '''
)
POLICY_LOSS_CALLS_PER_STEP = 2 * 2 * 2  # ppo_epochs x minibatches x micro-batches per minibatch


def _launch(tmp_path: Path, *args: str, kill: str | None = None) -> subprocess.Popen:
    return launch(tmp_path / "launch.py", *args, kill=kill)


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{STEPS:06d}" / "model" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    (tmp_path / "launch.py").write_text(LAUNCHER)
    recipe = str(tmp_path / "recipe.yaml")
    full = tmp_path / "full"
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    kill_after = rng.randrange(SAVE_EVERY + 1, STEPS - 1)  # steps logged first (after_row)
    # a policy-loss call inside a step after the first checkpoint, before the last step
    nth_loss = rng.randrange(
        SAVE_EVERY * POLICY_LOSS_CALLS_PER_STEP + 1, (STEPS - 1) * POLICY_LOSS_CALLS_PER_STEP
    )
    nth_save = rng.randrange(2, STEPS // SAVE_EVERY)  # the save of step 4, 6 or 8
    context = (
        f"(kill seed {seed}: after_row after step {kill_after}, mid_update on policy-loss call "
        f"{nth_loss}, mid_save on checkpoint {nth_save})"
    )

    uninterrupted = _launch(tmp_path, recipe, f"--out={full}")
    victims = {
        "after_row": _launch(tmp_path, recipe, f"--out={tmp_path / 'after_row'}"),
        "mid_update": _launch(
            tmp_path, recipe, f"--out={tmp_path / 'mid_update'}", kill=f"update:{nth_loss}"
        ),
        "mid_save": _launch(
            tmp_path, recipe, f"--out={tmp_path / 'mid_save'}", kill=f"save:{nth_save}"
        ),
    }
    deadline = time.monotonic() + 600
    outside = victims["after_row"]
    while len(_rows(tmp_path / "after_row" / "metrics.jsonl")) < kill_after:
        assert outside.poll() is None, f"run ended before the kill:\n{outside.communicate()[0]}"
        assert time.monotonic() < deadline, "the run to kill made no progress"
        time.sleep(0.02)
    outside.send_signal(signal.SIGKILL)
    resumed = {}
    for mode, victim in victims.items():
        output = victim.communicate(timeout=600)[0]
        assert victim.returncode == -signal.SIGKILL, f"{mode} was not killed {context}:\n{output}"
        steps_before = len(_rows(tmp_path / mode / "metrics.jsonl"))
        assert SAVE_EVERY <= steps_before < STEPS, f"{mode}: killed too late or early {context}"
        if mode == "mid_save":
            assert list((tmp_path / mode / "checkpoints").glob(".tmp-*")), (
                f"mid_save left no partial checkpoint: the kill was not inside a save {context}"
            )
        resumed[mode] = _launch(tmp_path, f"--resume={tmp_path / mode}")
    out_full, _ = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, out_full
    full_rows = [strip_timing(r) for r in _rows(full / "metrics.jsonl")]
    a = _final_weights(full)
    for mode, process in resumed.items():
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, f"{mode} resume failed {context}:\n{output}"
        cut = tmp_path / mode
        cut_rows = [strip_timing(r) for r in _rows(cut / "metrics.jsonl")]
        assert [r["step"] for r in cut_rows] == list(range(1, STEPS + 1)), f"{mode} {context}"
        assert cut_rows == full_rows, f"{mode} {context}"
        for name in ("eval.jsonl", "rollouts.jsonl"):
            assert [strip_timing(r) for r in _rows(cut / name)] == [
                strip_timing(r) for r in _rows(full / name)
            ], f"{mode}: {name} {context}"
        b = _final_weights(cut)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{mode}: {key} differs {context}"
        assert not list((cut / "checkpoints").glob(".tmp-*")), f"{mode} {context}"

    # the weights moved between the last two checkpoints under a real learning signal: the test
    # would be vacuous on a model that does not change
    assert any(r["reward/std"] > 0 for r in full_rows) and all(
        r["grad_norm"] > 0 for r in full_rows
    )
    before_last = load_file(
        str(full / "checkpoints" / f"step_{STEPS - SAVE_EVERY:06d}" / "model" / "model.safetensors")
    )
    assert any(not torch.equal(a[key], before_last[key]) for key in a)
