"""Seconds per SFT step: reasonlab's SFTTrainer against TRL's SFTTrainer on the same work.

Both train the same tiny Llama-architecture model (the same initial weights) on the same
prompt/completion rows (the Countdown corpus of worked attempts), with the same sequence length,
packing setting (packed rows with position ids restarting per sample, or one padded sample per
row), rows per step, completion-only loss and optimiser (AdamW, lr 1e-3, weight decay 0.01,
clipping at 1.0, constant schedule), on the CPU with the same torch thread count. Steps after
`--warmup` untimed ones are timed; tokens/s counts the non-pad tokens of the rows trained on.

    python benchmarks/sft_step.py [--steps 20] [--packing true] [--max-length 256] [--threads 2]

Prints each trainer's s/step and tokens/s and the settings, and ends with `ratio: X` (TRL s/step
/ reasonlab s/step; > 1 means reasonlab is faster).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch


def build(problems: int, seed: int = 0):
    from reasonlab.models import tiny
    from reasonlab.models.base_model import PretrainSettings, build_corpus

    settings = PretrainSettings(problems=problems, attempts=2, seed=seed)
    pairs, _, _ = build_corpus(settings)
    tokenizer = tiny.build_tokenizer([p + c for p, c in pairs], vocab_size=512)
    model = tiny.build_model(tokenizer, seed=seed, **tiny.size_kwargs("tiny"))
    return pairs, tokenizer, model


def time_reasonlab(pairs, tokenizer, model, args) -> tuple[float, float]:
    from reasonlab.config import load_config
    from reasonlab.sft import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        data.write_text(
            "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in pairs)
        )
        cfg = load_config(
            SFTConfig,
            None,
            [
                "model.path=unused", f"data.train_files=[{data}]",
                f"data.max_length={args.max_length}", f"data.packing={args.packing}",
                f"training.max_steps={args.steps + args.warmup}",
                f"training.per_device_train_batch_size={args.batch_size}",
                "training.learning_rate=1e-3", "training.lr_scheduler_type=constant",
                "training.weight_decay=0.01", "run.progress=false", f"run.out_dir={tmp}/run",
            ],
        )  # fmt: skip
        trainer = SFTTrainer(cfg, model=model, tokenizer=tokenizer, log=lambda _: None)
        for _ in range(args.warmup):
            trainer.train_step()
        tokens = 0
        start = time.perf_counter()
        for _ in range(args.steps):
            before = trainer.stream.cursor
            trainer.train_step()
            rows = trainer.stream.rows["input_ids"][before : before + args.batch_size]
            tokens += int((rows != trainer.pad_id).sum())
        seconds = time.perf_counter() - start
    return seconds / args.steps, tokens / seconds


def time_trl(pairs, tokenizer, model, args) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks: list[float] = []
            self.tokens = 0

        def on_step_begin(self, args_, state, control, **kw):
            if state.global_step == args.warmup:
                self.marks.append(time.perf_counter())

        def on_step_end(self, args_, state, control, **kw):
            if state.global_step == args.warmup + args.steps:
                self.marks.append(time.perf_counter())

    dataset = Dataset.from_list([{"prompt": p, "completion": c} for p, c in pairs])
    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            max_steps=args.steps + args.warmup,
            per_device_train_batch_size=args.batch_size,
            max_length=args.max_length,
            packing=args.packing == "true",
            completion_only_loss=True,
            learning_rate=1e-3,
            lr_scheduler_type="constant",
            weight_decay=0.01,
            max_grad_norm=1.0,
            optim="adamw_torch",
            use_cpu=True,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
            dataloader_num_workers=0,
            seed=0,
        )
        clock = Clock()
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        batches = iter(trainer.get_train_dataloader())
        tokens = sum(
            int(next(batches)["input_ids"].ne(tokenizer.pad_token_id).sum())
            for _ in range(args.steps)
        )  # what the timed steps see, the same batch size (approximate: another epoch order)
        trainer.train()
        seconds = clock.marks[1] - clock.marks[0]
    return seconds / args.steps, tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step")
    parser.add_argument("--max-length", type=int, default=256, help="tokens per row")
    parser.add_argument("--packing", choices=["true", "false"], default="true")
    parser.add_argument("--problems", type=int, default=200, help="corpus problems (x2 rows)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs, tokenizer, model = build(args.problems)
    print(
        f"settings: {len(pairs)} rows, tiny llama {sum(p.numel() for p in model.parameters()):,} "
        f"params, max_length {args.max_length}, packing {args.packing}, {args.batch_size} rows "
        f"per step, AdamW lr 1e-3, {args.threads} threads, {args.steps} timed steps after "
        f"{args.warmup}"
    )
    ours = time_reasonlab(pairs, tokenizer, copy.deepcopy(model), args)
    print(f"reasonlab: {ours[0]:.4f} s/step, {ours[1]:,.0f} tokens/s")
    theirs = time_trl(pairs, tokenizer, copy.deepcopy(model), args)
    print(f"trl {__import__('trl').__version__}: {theirs[0]:.4f} s/step, {theirs[1]:,.0f} tokens/s")
    print(f"ratio: {theirs[0] / ours[0]:.2f}")


if __name__ == "__main__":
    main()
