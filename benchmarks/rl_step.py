"""Seconds per RL step: reasonlab's trainer against TRL's GRPOTrainer, same model, prompts, reward
and loss, on CPU.

    python benchmarks/rl_step.py [--new-tokens 32] [--steps 4] [--warmup 1] [--threads 2]

Both sides get the same tiny Qwen2 model object (`reasonlab.models.tiny.build_model`, ~0.9M
parameters: the `small` preset, a byte-level BPE tokenizer trained offline), the same 8 Countdown
prompts (R1-Zero template) each step, 8 samples per prompt of at most `--new-tokens` new tokens at
temperature 1, the same dense reward (the share of '7' characters in the completion, so advantages
are non-zero), and the same loss: GRPO advantages (group mean and std), PPO clip 0.2, token-mean
aggregation over the whole batch (TRL `loss_type="dapo"`), no KL (`beta=0.0`), one optimiser step
per generation, AdamW at lr 1e-6, gradient clipping at 1.0, and gradient checkpointing off on
both sides (TRL's GRPOConfig turns it on by default; reasonlab's `model.gradient_checkpointing` is
off by default). A step is everything between two optimiser steps: generation, reward, advantages,
forward/backward and the update.

reasonlab runs twice, with `batching.share_prompts=true` (its default: one prefill per distinct
prompt in the update, its KV cache shared by the prompt's samples) and `=false` (one full
prompt + response pass per sample, as TRL does). The three are interleaved step by step (a TRL step,
then one of each reasonlab trainer, from a TRL callback), so a change of load between steps
reaches all three rather than one (a change within a round still does not). Each reports the
median seconds per step after `--warmup` steps, the median CPU seconds per step (this process,
all threads: on a machine shared with other jobs, wall time measures the neighbours too) and
completion tokens per second of step time (all tokens sampled in the measured steps over their
summed time). The ratios are TRL's over reasonlab's s/step (above 1: reasonlab is faster); the
last line is `ratio: X` in wall-clock s/step for reasonlab's default settings
(`share_prompts=true`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings

import torch

PROMPTS, SAMPLES = 8, 8


def sevens(completions, **columns) -> list[float]:
    """Share of '7' characters in each completion (dense: the advantages are not all zero)."""
    texts = [c if isinstance(c, str) else str(c) for c in completions]
    return [t.count("7") / max(1, len(t)) for t in texts]


def build(seed: int = 0):
    from reasonlab import tasks
    from reasonlab.models import tiny

    task = tasks.get("countdown")
    corpus = task.generate(200, seed=seed)
    texts = [f"{task.render(ex, 'r1-zero')} {ex.answer}" for ex in corpus]
    tokenizer = tiny.build_tokenizer(texts, vocab_size=1024, pre_tokenizer="qwen2")
    model = tiny.build_model(tokenizer, arch="qwen2", seed=seed, **tiny.SIZES["small"])
    examples = task.generate(PROMPTS, seed=seed + 1)
    return task, tokenizer, model, examples


def reasonlab_trainer(tokenizer, model, examples, new_tokens: int, share: bool, out_dir: str):
    """reasonlab's `Trainer` on the benchmark's prompts and reward; `share`: share_prompts."""
    from reasonlab.config import load_config
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.trainer import RewardTerm, Trainer
    from reasonlab.tasks.countdown import Countdown

    class FixedPrompts(Countdown):
        """Countdown whose training split is the benchmark's 8 prompts, every step."""

        def load(self, path_or_split=None, limit=None):
            return list(examples)

    cfg = load_config(
        TrainConfig,
        None,
        [
            "task.name=countdown",
            "task.split=bench",
            "task.eval_size=0",
            "rewards.scheme=null",
            "model.gradient_checkpointing=false",
            f"rollout.n={SAMPLES}",
            "rollout.temperature=1.0",
            f"rollout.max_new_tokens={new_tokens}",
            "algorithm.advantage=grpo",
            "algorithm.loss_agg=token-mean",
            "algorithm.clip_low=0.2",
            "algorithm.clip_high=0.2",
            "algorithm.kl_coef=0.0",
            "optim.lr=1e-6",
            "optim.weight_decay=0.0",
            "optim.grad_clip=1.0",
            f"batching.prompts_per_step={PROMPTS}",
            f"batching.share_prompts={str(share).lower()}",
            "run.steps=1000000",
            f"run.out_dir={out_dir}",
            "run.progress=false",
            "run.log_rollouts_per_step=0",
            "run.deterministic=false",
        ],
    )
    return Trainer(
        cfg,
        task=FixedPrompts(),
        model=model,
        tokenizer=tokenizer,
        reward_fns=[RewardTerm("sevens", 1.0, sevens)],
    )


class Side:
    """Wall-clock seconds, CPU seconds (this process, every thread) and completion tokens of each
    step of one trainer."""

    def __init__(self, name: str):
        self.name, self.times, self.cpu, self.tokens = name, [], [], []

    def summary(self, warmup: int) -> tuple[float, float, float]:
        """(median s/step, median CPU s/step, completion tokens per second) after `warmup`."""
        times, tokens = self.times[warmup:], self.tokens[warmup:]
        return (
            statistics.median(times),
            statistics.median(self.cpu[warmup:]),
            sum(tokens) / sum(times),
        )


def reasonlab_step(trainer, side: Side) -> None:
    t0, cpu0 = time.perf_counter(), time.process_time()
    metrics = trainer.train_step()
    side.times.append(time.perf_counter() - t0)
    side.cpu.append(time.process_time() - cpu0)
    side.tokens.append(metrics["length/mean"] * PROMPTS * SAMPLES)


def run_interleaved(tokenizer, model, prompts, ours: list, steps: int, new_tokens: int, out_dir):
    """TRL's GRPOTrainer for `steps` steps; after each, one step of each of `ours` (pairs of a
    reasonlab trainer and its `Side`). Returns TRL's `Side`."""
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    trl_side = Side("trl")

    class Interleave(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.start, self.cpu = time.perf_counter(), time.process_time()

        def on_step_end(self, args, state, control, **kwargs):
            trl_side.times.append(time.perf_counter() - self.start)
            trl_side.cpu.append(time.process_time() - self.cpu)
            for trainer, side in ours:
                reasonlab_step(trainer, side)
            sides = [trl_side] + [side for _, side in ours]
            times = ", ".join(
                f"{s.name} {s.times[-1]:.2f} s ({s.cpu[-1]:.2f} CPU s)" for s in sides
            )
            print(f"step {len(trl_side.times)}: {times}", file=sys.stderr, flush=True)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                trl_side.tokens.append(float(logs["completions/mean_length"]) * PROMPTS * SAMPLES)

    dataset = Dataset.from_dict({"prompt": prompts * steps})
    args = GRPOConfig(
        output_dir=out_dir,
        use_cpu=True,
        report_to="none",
        logging_strategy="steps",
        logging_steps=1,
        save_strategy="no",
        max_steps=steps,
        learning_rate=1e-6,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        gradient_checkpointing=False,
        per_device_train_batch_size=PROMPTS * SAMPLES,
        gradient_accumulation_steps=1,
        num_generations=SAMPLES,
        max_completion_length=new_tokens,
        temperature=1.0,
        loss_type="dapo",
        beta=0.0,
        epsilon=0.2,
        scale_rewards="group",
        shuffle_dataset=False,
        dataloader_num_workers=0,
        seed=0,
        bf16=False,
        fp16=False,
        disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=sevens,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[Interleave()],
    )
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts
    trainer.train()
    return trl_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=32, help="most new tokens per sample")
    parser.add_argument("--steps", type=int, default=4, help="measured steps per trainer")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--out", default="/tmp/reasonlab_bench_rl_step")
    args = parser.parse_args()
    if args.new_tokens < 1 or args.steps < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--new-tokens, --steps and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import shutil

    shutil.rmtree(args.out, ignore_errors=True)

    task, tokenizer, model, examples = build()
    prompts = [task.render(ex, "r1-zero") for ex in examples]
    from reasonlab.models import num_params

    print(
        f"model: tiny Qwen2, {num_params(model) / 1e6:.2f}M parameters; {PROMPTS} prompts x "
        f"{SAMPLES} samples x <= {args.new_tokens} new tokens at temperature 1; {args.threads} "
        f"threads; prompt length {len(tokenizer(prompts[0])['input_ids'])} tokens; gradient "
        "checkpointing off on both sides; steps interleaved (TRL, reasonlab shared, reasonlab full)"
    )
    ours = []
    for share in (True, False):
        side = Side(f"reasonlab share_prompts={str(share).lower()}")
        trainer = reasonlab_trainer(
            tokenizer,
            copy.deepcopy(model),
            examples,
            args.new_tokens,
            share,
            f"{args.out}/rl-{'shared' if share else 'full'}",
        )
        ours.append((trainer, side))
    total = args.warmup + args.steps
    theirs = run_interleaved(
        tokenizer, copy.deepcopy(model), prompts, ours, total, args.new_tokens, args.out + "/trl"
    )
    trl_s, trl_cpu, trl_tps = theirs.summary(args.warmup)
    for side in [theirs] + [side for _, side in ours]:
        median, cpu, tps = side.summary(args.warmup)
        kept = [round(t, 3) for t in side.times[args.warmup :]]
        print(
            f"{side.name:32s} {median:8.3f} s/step {cpu:8.3f} CPU s/step {tps:8.1f} tokens/s  "
            f"(steps: {kept})"
        )
    ratios = {}
    for _, side in ours:
        median, cpu, tps = side.summary(args.warmup)
        ratios[side.name] = trl_s / median
        print(
            f"TRL / {side.name}: {trl_s / median:.2f} in s/step, {trl_cpu / cpu:.2f} in CPU "
            f"s/step, {tps / trl_tps:.2f} in tokens/s"
        )
    print(
        f"ratio below: TRL s/step / reasonlab s/step, reasonlab with batching.share_prompts=true, "
        f"{args.new_tokens} new tokens, median of {args.steps} steps"
    )
    print(f"ratio: {ratios[ours[0][1].name]:.2f}")


if __name__ == "__main__":
    main()
