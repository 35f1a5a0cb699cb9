"""Seconds per RL update with `batching.group_by_length` against without, on the demo's work.

    python benchmarks/group_by_length.py --model runs/demo/policy [--steps 4] [--threads 1]

Three trainers run the demo's GRPO recipe (`reasonlab/demo_countdown.yaml`: 16 prompts x 8
responses a step, one optimiser update, KL to the reference) from the same model folder, with the
same seeds: one pass over the 128 responses, padded to the longest (the recipe until session 8,
and the experiments' `RECIPE_PINS`), micro-batches of 32 in shuffled order, and micro-batches of
32 cut longest first (`batching.group_by_length=true`, the recipe now). Their steps are interleaved (one of each in turn), so a change
of load reaches all three. The update (no-grad reference pass, forward, backward, AdamW step) is
timed by the trainer (`time/update`); the median over the steps after the first is printed with
the mean and longest response length, and the last line is `ratio: X` (one pass's median
update seconds over group_by_length's). The gain depends on how much response lengths vary:
with a trained policy's (the demo's `runs/demo/policy`) far more than with the base's one-try
answers. Generation is the same in all three and not part of the ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import torch

VARIANTS = {
    "one pass of 128": ["batching.micro_batch_size=null", "batching.group_by_length=false"],
    "micro-batches of 32": ["batching.micro_batch_size=32", "batching.group_by_length=false"],
    "micro-batches of 32, group_by_length (the recipe)": [
        "batching.micro_batch_size=32",
        "batching.group_by_length=true",
    ],
}


def main() -> None:
    from reasonlab import models
    from reasonlab.config import load_config
    from reasonlab.demo import DEMO_RECIPE
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.trainer import Trainer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="policy folder (demo's policy)")
    parser.add_argument("--steps", type=int, default=4, help="steps per trainer (first untimed)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the first step is not timed)")
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="reasonlab_bench_gbl_"))
    trainers = {}
    for i, (name, overrides) in enumerate(VARIANTS.items()):
        cfg = load_config(
            TrainConfig,
            str(DEMO_RECIPE),
            [
                f"model.path={args.model}",
                f"run.steps={args.steps}",
                "run.eval_every=0",
                "run.eval_before_train=false",
                f"run.out_dir={out / str(i)}",
                f"run.num_threads={args.threads}",
                "run.progress=false",
                *overrides,
            ],
        )
        model, tokenizer = models.load(args.model)
        trainers[name] = Trainer(cfg, model=model, tokenizer=tokenizer, eval_examples=[])
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in trainers}
    for _ in range(args.steps):
        for name, trainer in trainers.items():
            rows[name].append(trainer.train_step())
    shutil.rmtree(out, ignore_errors=True)
    print(
        f"settings: {args.model}, demo recipe, 16 prompts x 8 responses a step, {args.steps} "
        f"steps per trainer (first untimed), interleaved, {args.threads} thread(s)"
    )
    medians = {}
    for name, metrics in rows.items():
        timed = metrics[1:]
        medians[name] = statistics.median(m["time/update"] for m in timed)
        lengths = ", ".join(f"{m['length/mean']:.0f}/{m['length/max']:.0f}" for m in timed)
        print(
            f"{name:40s} update {medians[name]:6.2f} s (median)   "
            f"generate {statistics.median(m['time/generate'] for m in timed):5.2f} s   "
            f"response length mean/max per step: {lengths}"
        )
    first, last = list(medians)[0], list(medians)[-1]
    print(f"ratio: {medians[first] / medians[last]:.2f}")


if __name__ == "__main__":
    main()
