"""Exact resume of SFT: a run SIGKILLed and resumed ends with the weights of an uninterrupted run.

`reasonlab sft` in subprocesses (one torch thread each), following tests/test_resume.py. Two
victims, each resumed with `--resume`:
- `mid_step`: SIGKILLs itself inside an optimiser step (on a seeded random call of the loss, after
  the first checkpoint: some micro-batches of the step accumulated, the update not done);
- `mid_save`: SIGKILLs itself while writing a checkpoint (model files written, optimiser not).
The final weights must equal the uninterrupted run's bit for bit and every metrics row must match
(wall-time fields aside). The recipe exercises what a resume must restore: AdamW moments, warm-up
and cosine decay, gradient accumulation, the packed data stream's order across epochs, and a
metrics row whose steps straddle a checkpoint (logged every 2 steps, saved every 3).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import textwrap
from pathlib import Path

import pytest
from kill_switch import launch
from safetensors.torch import load_file

STEPS, SAVE, ACCUMULATION = 12, 3, 2
PAIRS = [
    (f"{w}:", f" {w[::-1]}!") for w in ("cat", "dog", "sun", "ink", "map", "owl", "elk", "fig")
]

LAUNCHER = textwrap.dedent(
    """
    import sys

    from kill_switch import install

    # REASONLAB_TEST_KILL=WHERE:N: SIGKILL this process on the N-th call of the SFT loss
    # (WHERE=step) or of torch.save (WHERE=save: inside a checkpoint write)
    install({"step": ("reasonlab.sft.losses", "nll_loss"), "save": ("torch", "save")})

    from reasonlab.cli import main

    sys.exit(main(["sft", *sys.argv[1:]]))
    """
)


def _launch(tmp_path: Path, *args: str, kill: str | None = None) -> subprocess.Popen:
    return launch(tmp_path / "launch.py", *args, kill=kill)


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path: Path) -> None:
    from reasonlab import models
    from reasonlab.models import tiny

    tokenizer = tiny.build_char_tokenizer()
    model = tiny.build_model(tokenizer, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    models.save(model, tokenizer, tmp_path / "base")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in PAIRS))
    (tmp_path / "recipe.yaml").write_text(
        f"model: {{path: {tmp_path / 'base'}}}\n"
        f"data: {{train_files: [{data}], max_length: 16}}\n"
        f"training: {{max_steps: {STEPS}, per_device_train_batch_size: 2, "
        f"gradient_accumulation_steps: {ACCUMULATION}, learning_rate: 1.0e-2, warmup_steps: 2, "
        "weight_decay: 0.01}\n"
        f"run: {{save_steps: {SAVE}, logging_steps: 2, num_threads: 1, progress: false}}\n"
    )
    (tmp_path / "launch.py").write_text(LAUNCHER)
    recipe = str(tmp_path / "recipe.yaml")
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    nth_loss = rng.randrange(SAVE * ACCUMULATION + 1, (STEPS - 1) * ACCUMULATION)
    nth_save = rng.randrange(2, STEPS // SAVE)
    context = f"(kill seed {seed}: mid_step on loss call {nth_loss}, mid_save on save {nth_save})"

    runs = {
        "full": _launch(tmp_path, recipe, f"--out={tmp_path / 'full'}"),
        "mid_step": _launch(
            tmp_path, recipe, f"--out={tmp_path / 'mid_step'}", kill=f"step:{nth_loss}"
        ),
        "mid_save": _launch(
            tmp_path, recipe, f"--out={tmp_path / 'mid_save'}", kill=f"save:{nth_save}"
        ),
    }
    resumed = {}
    for mode in ("mid_step", "mid_save"):
        output = runs[mode].communicate(timeout=900)[0]
        assert runs[mode].returncode == -signal.SIGKILL, f"{mode} not killed {context}:\n{output}"
        assert len(_rows(tmp_path / mode / "metrics.jsonl")) < STEPS, context
        resumed[mode] = _launch(tmp_path, f"--resume={tmp_path / mode}")
    output = runs["full"].communicate(timeout=900)[0]
    assert runs["full"].returncode == 0, output
    expected = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    for mode, process in resumed.items():
        output = process.communicate(timeout=900)[0]
        assert process.returncode == 0, f"{mode} resume failed {context}:\n{output}"
        got = load_file(str(tmp_path / mode / "model" / "model.safetensors"))
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name].equal(expected[name]), f"{mode}: {name} differs {context}"
        assert _rows(tmp_path / mode / "metrics.jsonl") == _rows(
            tmp_path / "full" / "metrics.jsonl"
        ), f"{mode}: metrics differ {context}"
