"""Data parallel with DAPO dynamic sampling, end to end through `Trainer`, for `model.parallel`
ddp and fsdp (FSDP2 shards; sharded checkpoints through torch.distributed.checkpoint): a 2-process
run (gloo, CPU) is the 1-process run on the combined batch, and a 2-process run killed (SIGKILL)
after a checkpoint and resumed by two new processes ends where the uninterrupted one ends.

The reward gives nothing to even-numbered examples (their groups have all-equal rewards: no signal)
and a share of '7's plus a length term to odd-numbered ones, so about half the groups are dropped
and refill rounds happen in every step; refill blocks of an odd number of prompts split unevenly
over the two ranks. What must agree across ranks for the runs to match: how many prompts each
round draws (from the groups kept over all ranks), the per-prompt sampling seeds (not the rank's),
which groups are kept and how they are shared out, and the data position saved in checkpoints.

Tolerances. Sampling-side figures (rewards, lengths, rounds, data position, the sampled texts) must
be equal: a rank samples each prompt from its own seed, and only float round-off in the logits of
a differently composed batch could change a token. The update sums per-rank gradient shares (float
sums in another order than one process), so weights and learner statistics agree to round-off:
atol 1e-6 on weights, rel 1e-5 or abs 1e-6 on statistics (pytest.approx). Measured in one run:
weights 4.5e-8 apart at most; statistics at most rel 1.5e-5 (approx_kl, 1.1e-8 on 7.6e-4) or
abs 1.2e-6 (ratio_max, rel 4.8e-7). AdamW runs with eps=1, as in tests/test_distributed.py, so
that its first steps do not blow round-off up to lr * sign(g). FSDP is held to the same
tolerances (the measured figures above are DDP-era, from the hand-written all-reduce).
The resumed run makes the same computation on the same shares from the checkpoint: bit-identical.

The kill: once step `STOP_AT` is logged (past the checkpoint of step SAVE_EVERY), each rank writes
a marker file and waits; the test then kills both processes with SIGKILL, and two new processes
resume from what is on disk.

Run as a script (`python tests/test_distributed_trainer.py PARALLEL JOB...`), this file is the
worker of one rank; a JOB is `full=DIR` (a whole run), `cut=DIR` (the run to be killed) or
`resume=DIR`.
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
from reasonlab.rl.config import TrainConfig
from reasonlab.rl.distributed import Dist
from reasonlab.rl.trainer import Callback, RewardTerm, Trainer, strip_timing

WORLD, STEPS, SAVE_EVERY, STOP_AT = 2, 4, 2, 3

OVERRIDES = [
    "model.tiny={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 64, vocab_size: 300, corpus_examples: 50}",
    "task.name=countdown",
    "task.eval_size=4",
    "rewards.scheme=null",
    "rollout.n=4",
    "rollout.max_new_tokens=8",
    "algorithm.dynamic_sampling=true",
    "algorithm.max_refill_rounds=8",
    "batching.prompts_per_step=4",
    "batching.minibatch_size=8",
    "batching.micro_batch_size=4",
    "batching.ppo_epochs=2",
    "optim.lr=0.5",
    "optim.eps=1.0",
    "optim.weight_decay=0.0",
    f"run.steps={STEPS}",
    f"run.save_every={SAVE_EVERY}",
    "run.keep_checkpoints=4",
    "run.num_threads=1",
    "run.progress=false",
    "run.log_rollouts_per_step=-1",
]

# the sampling side of a metrics row: a function of the sampled tokens alone
SAMPLED = ("reward/", "accuracy", "format_rate", "length/", "truncation_rate", "responses")
SAMPLED_EXACT = ("groups_trained", "sampling_rounds", "data_position", "step", "lr")


def odd_only(completions, example_id, **columns):
    """0 for even-numbered examples (no signal); '7' share + length / 100 for odd ones."""
    return [
        text.count("7") / max(1, len(text)) + len(text) / 100
        if int(eid.rsplit("-", 1)[1]) % 2
        else 0.0
        for text, eid in zip(completions, example_id)
    ]


def config(out_dir: Path, parallel: str) -> TrainConfig:
    extra = [f"run.out_dir={out_dir}", f"model.parallel={parallel}"]
    return load_config(TrainConfig, None, [*OVERRIDES, *extra])


def trainer(out_dir: Path, dist: Dist, parallel: str = "none", **kwargs) -> Trainer:
    reward = RewardTerm("odd_only", 1.0, odd_only)
    return Trainer(config(out_dir, parallel), reward_fns=[reward], dist=dist, **kwargs)


class _WaitForKill(Callback):
    """Once step `step` is logged: write `run/killable_rank{R}` (rank 0 first records what is on
    disk in stopped.json) and wait to be killed."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, trainer, step, metrics):
        if step == self.step:
            wait_to_be_killed(trainer.run_dir, trainer.dist.rank)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _weights(run: Path, step: int = STEPS) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step_{step:06d}" / "model" / "model.safetensors"))


def _round_sizes(rows: list[dict], group_size: int, target: int) -> list[int]:
    """Replays DAPO's refill rule on one step's logged responses (all of them, in sampling order):
    each round draws `target - kept` prompts, kept counted over the whole batch."""
    groups = [rows[i : i + group_size] for i in range(0, len(rows), group_size)]
    signal = [len({r["reward"] for r in group}) > 1 for group in groups]
    sizes, kept, drawn = [], 0, 0
    while kept < target and drawn < len(groups):
        sizes.append(target - kept)
        kept += sum(signal[drawn : drawn + sizes[-1]])
        drawn += sizes[-1]
    assert drawn == len(groups), "the step drew other prompts than the global rule does"
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_ranks_with_dynamic_sampling_equal_one_process_and_resume_exactly(tmp_path, parallel):
    full, cut, single = tmp_path / "full", tmp_path / "cut", tmp_path / "single"
    procs = launch_ranks(lambda rank: [__file__, parallel, f"full={full}", f"cut={cut}"], WORLD)
    trainer(single, Dist.single()).train()  # meanwhile, here
    kill_when_waiting(procs, cut)
    wait_ranks(launch_ranks(lambda rank: [__file__, parallel, f"resume={cut}"], WORLD))
    stopped = json.loads((cut / "stopped.json").read_text())
    assert stopped == {
        "steps_logged": list(range(1, STOP_AT + 1)),
        "checkpoints": [f"step_{s:06d}" for s in range(SAVE_EVERY, STOP_AT + 1, SAVE_EVERY)],
    }

    one, two, resumed = (_rows(run / "metrics.jsonl") for run in (single, full, cut))
    assert [r["step"] for r in two] == [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    # refill rounds really happened, by the global rule, and some refill block split unevenly
    # over the ranks (an odd number of prompts)
    logged = _rows(full / "rollouts.jsonl")
    sizes = [_round_sizes([r for r in logged if r["step"] == s], 4, 4) for s in range(1, STEPS + 1)]
    assert [len(x) for x in sizes] == [r["sampling_rounds"] for r in two], sizes
    assert all(len(x) >= 2 for x in sizes) and any(k % WORLD for x in sizes for k in x), sizes
    assert all(r["groups_trained"] == 4 for r in two)

    # (a) two ranks == one process on the combined batch
    for a, b in zip(one, two):
        a, b = strip_timing(a), strip_timing(b)
        assert a.keys() == b.keys()
        for key in a:
            where = f"step {a['step']}: {key}"
            if key.startswith(SAMPLED) or key in SAMPLED_EXACT:
                assert a[key] == b[key], where
            else:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), where
    assert _rows(single / "rollouts.jsonl") == logged  # every response, reward, kept flag
    w_one, w_two = _weights(single), _weights(full)
    assert_weights_close(w_one, w_two, 1e-6, parallel)
    # the weights moved between the last two checkpoints: the comparison is not vacuous
    before = _weights(full, STEPS - SAVE_EVERY)
    assert any((w_two[k] - before[k]).abs().max() > 1e-3 for k in w_two)

    # (b) stopped after a checkpoint, resumed == uninterrupted (bit-identical)
    assert [strip_timing(r) for r in resumed] == [strip_timing(r) for r in two]
    assert _rows(cut / "rollouts.jsonl") == logged
    w_resumed = _weights(cut)
    for key in w_two:
        assert torch.equal(w_resumed[key], w_two[key]), key


if __name__ == "__main__":  # one rank of the test above
    dist = Dist.from_env()
    parallel = sys.argv[1]
    try:
        for job in sys.argv[2:]:
            kind, out_dir = job.split("=", 1)
            run = Path(out_dir)
            if kind == "full":
                trainer(run, dist, parallel).train()
            elif kind == "cut":
                trainer(run, dist, parallel, callbacks=[_WaitForKill(STOP_AT)]).train()
            else:  # new processes, from what the killed run left on disk
                trainer(run, dist, parallel, resume=True).train()
    finally:
        dist.close()
