"""Seconds per pretraining epoch: best-fit decreasing packing against greedy, on the demo's corpus.

    python benchmarks/pretrain_packing.py [--steps 40] [--warmup 5] [--threads 2]

The demo's base model settings (`reasonlab.demo.DEMO_PRETRAIN`: the countdown corpus of 8,000
attempts, the `small` Llama, rows of 256 tokens, 8 rows a step) with the corpus packed two ways
(`reasonlab.models.pretrain.pack`): greedily (`packing="samples"`, each row filled in turn) and
best-fit decreasing (`packing="bfd"`, TRL's `packing_strategy="bfd"`). One model trains on both
streams, their steps interleaved (one of each in turn, AdamW at a small learning rate), so a
change of load reaches both. Prints, per packing, the rows per epoch, the share of row tokens
that are samples (the rest is padding), the median ms per step after `--warmup` untimed steps and
the seconds an epoch takes at that rate; the last line is `ratio: X` (greedy's epoch seconds over
bfd's: above 1, bfd trains an epoch faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def main() -> None:
    from reasonlab.demo import DEMO_PRETRAIN
    from reasonlab.models import pretrain, tiny
    from reasonlab.models.base_model import PretrainSettings, build_corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="timed steps per packing")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per packing first")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = PretrainSettings(**{**DEMO_PRETRAIN, "packing": "samples"})
    pairs, _, _ = build_corpus(settings)
    tokenizer = tiny.build_tokenizer(
        [p + c for p, c in pairs],
        vocab_size=settings.vocab_size,
        pre_tokenizer=settings.pre_tokenizer,
    )
    model = tiny.build_model(
        tokenizer, arch=settings.arch, seed=0, **tiny.size_kwargs(settings.size)
    )
    data = pretrain.tokenize_samples(pairs, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model.train()
    rows, tokens = settings.batch_size, sum(min(len(ids), settings.seq_len) for ids, _ in data)
    streams = {
        packing: pretrain.RowStream(
            data, settings.seq_len, tokenizer.pad_token_id, seed=0, packing=packing
        )
        for packing in ("samples", "bfd")
    }
    times: dict[str, list[float]] = {packing: [] for packing in streams}
    for i in range(args.warmup + args.steps):
        for packing, stream in streams.items():
            batch = stream.take(rows)
            start = time.perf_counter()
            pretrain.supervised_step(model, optimizer, schedule, [batch])
            if i >= args.warmup:
                times[packing].append(time.perf_counter() - start)
    print(
        f"settings: demo corpus ({len(data)} attempts), {settings.size} llama, {rows} rows of "
        f"{settings.seq_len} tokens a step, {args.threads} threads, steps interleaved, median of "
        f"{args.steps} after {args.warmup}"
    )
    epoch = {}
    for packing, stream in streams.items():
        step = statistics.median(times[packing])
        epoch[packing] = step * len(stream) / rows
        fill = tokens / (len(stream) * settings.seq_len)
        print(
            f"{packing:8s} rows/epoch {len(stream):5d}  fill {fill:.1%}  {step * 1000:.1f} ms/step  "
            f"{epoch[packing]:.1f} s/epoch"
        )
    print(f"ratio: {epoch['samples'] / epoch['bfd']:.2f}")


if __name__ == "__main__":
    main()
