"""The GPU check of issue 13: generation throughput and one GRPO step on Qwen2.5-sized models.

    python benchmarks/gpu_check.py                 # one GPU: Qwen2.5-0.5B and -1.5B shapes
    python benchmarks/gpu_check.py --small         # CPU: the same code on tiny shapes

Models are built locally with random weights from the published Qwen2.5-0.5B and Qwen2.5-1.5B
configurations (the values below are those of the models' config.json files on the Hugging Face
Hub: hidden size, layers, heads, grouped KV heads, MLP width, the 151,936-token vocabulary, tied
embeddings, rope theta 1e6); nothing is downloaded. The tokenizer is reasonlab's tiny byte-level
BPE trained on Countdown text: prompts use its few hundred ids, while the model computes and
samples over the full vocabulary (a random model seldom samples its EOS, so responses run to the
token budget, which is what a throughput measurement wants).

For each size it prints:

1. generation tokens/s for `--prompts` Countdown prompts x `--samples` samples x `--tokens` new
   tokens at temperature 1: reasonlab's rollout engine (`reasonlab.rollout.hf.HFEngine`) against
   plain `model.generate` (sampling, the same prompts repeated `--samples` times, left-padded),
   both in the compute dtype, with the ratio;
2. one GRPO step through `reasonlab.rl.Trainer.train_step` (the same prompts, `rollout.n =
   --samples`, r1 reward on Countdown, one minibatch, micro-batches of `--micro-batch`), its time
   split into generate / score / update, once with gradient checkpointing off and once on, with
   the update's MFU: 6 x parameters x trained tokens (prompt + response; the model FLOPs of a
   forward and backward pass, recomputation not counted) over the update's seconds and
   `--peak-tflops` (H200 bf16 dense: 989), and peak memory (CUDA: max allocated; CPU: the
   process's peak resident set, which only grows);
3. the settings used: device, dtype (bfloat16 autocast on CUDA, float32 master weights and AdamW
   state), parallel mode (one process: none; under torchrun, `--parallel fsdp` shards with FSDP2).

The default sizes are meant to fit in 8 minutes on one H200; `--small` runs in well under a minute
on a CPU (tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from typing import Any

import torch

QWEN25 = {
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    "1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=131072,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    # the CPU smoke size: Qwen2 architecture, tiny shapes, the tokenizer's own vocabulary
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=None,
        max_position_embeddings=2048,
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}
"""Published Qwen2.5 configurations (config.json of Qwen/Qwen2.5-0.5B and Qwen/Qwen2.5-1.5B)."""


def build_model(size: str, tokenizer: Any, device: torch.device) -> Any:
    """A random-weight Qwen2 causal LM of the named configuration, float32, on `device`."""
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    shape = dict(QWEN25[size])
    theta = shape.pop("rope_theta")
    shape["vocab_size"] = shape["vocab_size"] or len(tokenizer)
    eos = tokenizer.eos_token_id
    config = Qwen2Config(
        **shape,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            config, dtype=torch.float32, attn_implementation="sdpa"
        )
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, do_sample=True
    )
    return model.eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def bench_engine(model, tokenizer, prompts, samples, tokens, dtype, device) -> dict[str, float]:
    """reasonlab's HFEngine: completion tokens per second."""
    from reasonlab.rollout.base import SamplingParams
    from reasonlab.rollout.hf import HFEngine

    engine = HFEngine(model, tokenizer)
    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=tokens, seed=0)
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        rollouts = engine.generate(prompts, params)
    _sync(device)
    seconds = time.perf_counter() - t0
    count = sum(len(r.completion_ids) for r in rollouts)
    return {"tokens": count, "seconds": seconds, "tokens_per_s": count / seconds}


def bench_generate(model, tokenizer, prompts, samples, tokens, dtype, device) -> dict[str, float]:
    """Plain `model.generate` (sampling at temperature 1): completion tokens per second."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    ids = batch["input_ids"].repeat_interleave(samples, dim=0)  # [prompts * samples, P]
    mask = batch["attention_mask"].repeat_interleave(samples, dim=0)
    torch.manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
    ):
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    _sync(device)
    seconds = time.perf_counter() - t0
    new = out[:, ids.shape[1] :]
    # tokens up to and including each row's first EOS (generate pads after it)
    eos = new == tokenizer.eos_token_id
    first = torch.where(
        eos.any(1),
        eos.float().argmax(1) + 1,
        torch.full_like(eos[:, 0], new.shape[1], dtype=torch.long),
    )
    count = int(first.sum())
    return {"tokens": count, "seconds": seconds, "tokens_per_s": count / seconds}


def grpo_step(model, tokenizer, task, args, checkpointing: bool, device) -> dict[str, Any]:
    """One GRPO step of `reasonlab.rl.Trainer` (no checkpoint written); its metrics row."""
    from reasonlab.config import load_config
    from reasonlab.rl import TrainConfig, Trainer
    from reasonlab.rl.distributed import Dist

    dist = Dist.from_env()
    with tempfile.TemporaryDirectory() as out:
        overrides = [
            f"model.dtype={args.dtype}",
            f"model.device={device}",
            f"model.gradient_checkpointing={str(checkpointing).lower()}",
            f"model.parallel={args.parallel if dist.enabled else 'none'}",
            "task.name=countdown",
            f"rollout.n={args.samples}",
            f"rollout.max_new_tokens={args.tokens}",
            f"batching.prompts_per_step={args.prompts}",
            # micro-batches must divide the step's batch (prompts x samples)
            f"batching.micro_batch_size={math.gcd(args.micro_batch, args.prompts * args.samples)}",
            "optim.lr=1e-6",
            "run.steps=1",
            f"run.out_dir={out}",
            "run.progress=false",
            "run.log_rollouts_per_step=0",
            "run.deterministic=false",
        ]
        cfg = load_config(TrainConfig, None, overrides)
        trainer = Trainer(cfg, model=model, tokenizer=tokenizer, task=task, dist=dist)
        _reset_peak(device)
        _sync(device)
        metrics = trainer.train_step()
        _sync(device)
        metrics["peak_gib"] = _peak_gib(device)
        metrics["settings"] = {
            "parallel": trainer.wrapped.kind,
            "autocast": str(trainer.autocast_dtype),
            "param_dtype": str(next(trainer.model.parameters()).dtype),
            "gradient_checkpointing": checkpointing,
            "world_size": dist.world_size,
        }
        trainer.optimizer.zero_grad(set_to_none=True)
        del trainer
    return metrics


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="CPU smoke sizes (tiny model)")
    parser.add_argument("--sizes", default=None, help="comma-separated: 0.5b,1.5b (or tiny)")
    parser.add_argument("--prompts", type=int, default=None)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=None)
    parser.add_argument("--micro-batch", type=int, default=None)
    parser.add_argument("--dtype", default=None, help="bfloat16 (CUDA default) or float32")
    parser.add_argument("--parallel", default="fsdp", help="under torchrun: ddp or fsdp")
    parser.add_argument("--peak-tflops", type=float, default=None, help="for MFU (H200: 989)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    small = args.small or device.type == "cpu"
    args.sizes = args.sizes or ("tiny" if small else "0.5b,1.5b")
    args.prompts = args.prompts or (4 if small else 64)
    args.tokens = args.tokens or (16 if small else 1024)
    args.micro_batch = args.micro_batch or (8 if small else 16)
    args.dtype = args.dtype or ("float32" if device.type == "cpu" else "bfloat16")
    if (
        args.peak_tflops is None
        and device.type == "cuda"
        and "H200" in torch.cuda.get_device_name()
    ):
        args.peak_tflops = 989.0
    dtype = getattr(torch, args.dtype)

    from reasonlab import tasks
    from reasonlab.models import tiny

    task = tasks.get("countdown")
    corpus = task.generate(200, seed=0)
    tokenizer = tiny.build_tokenizer(
        [f"{task.render(ex, 'r1-zero')} {ex.answer}" for ex in corpus],
        vocab_size=512,
        pre_tokenizer="qwen2",
    )
    examples = task.generate(args.prompts, seed=1)
    prompts = [task.render(ex, "r1-zero", tokenizer) for ex in examples]
    prompt_tokens = sum(len(ids) for ids in tokenizer(prompts)["input_ids"])
    where = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        f"gpu_check: {where}, torch {torch.__version__}, {args.prompts} prompts x {args.samples} "
        f"samples x {args.tokens} tokens, dtype {args.dtype}",
        flush=True,
    )
    results: dict[str, Any] = {"device": where, "args": vars(args), "sizes": {}}
    for size in args.sizes.split(","):
        if size not in QWEN25:
            parser.error(f"--sizes: {size!r} is not one of: {', '.join(QWEN25)}")
        model = build_model(size, tokenizer, device)
        params = sum(p.numel() for p in model.parameters())
        row: dict[str, Any] = {"parameters": params}
        row["engine"] = bench_engine(
            model, tokenizer, prompts, args.samples, args.tokens, dtype, device
        )
        row["generate"] = bench_generate(
            model, tokenizer, prompts, args.samples, args.tokens, dtype, device
        )
        ratio = row["engine"]["tokens_per_s"] / row["generate"]["tokens_per_s"]
        print(
            f"[{size}] {params / 1e6:.1f}M parameters; generation tokens/s: reasonlab "
            f"{row['engine']['tokens_per_s']:.1f}, model.generate "
            f"{row['generate']['tokens_per_s']:.1f}, ratio {ratio:.2f}",
            flush=True,
        )
        for checkpointing in (False, True):
            m = grpo_step(model, tokenizer, task, args, checkpointing, device)
            # prompt + response tokens of the step's batch (each response with its prompt)
            trained = prompt_tokens * args.samples + m["length/mean"] * m["responses"]
            flops = 6 * params * trained
            mfu = flops / m["time/update"] / (args.peak_tflops * 1e12) if args.peak_tflops else None
            key = "grpo_checkpointing" if checkpointing else "grpo"
            row[key] = {
                "generate_s": m["time/generate"],
                "score_s": m["time/score"],
                "update_s": m["time/update"],
                "trained_tokens": trained,
                "mfu": mfu,
                "peak_gib": m["peak_gib"],
                "settings": m["settings"],
            }
            print(
                f"[{size}] GRPO step, gradient checkpointing {'on' if checkpointing else 'off'}: "
                f"generate {m['time/generate']:.2f} s, score {m['time/score']:.2f} s, update "
                f"{m['time/update']:.2f} s ({trained:.0f} tokens; MFU "
                f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}), peak memory "
                f"{m['peak_gib']:.2f} GiB; settings {json.dumps(m['settings'])}",
                flush=True,
            )
        results["sizes"][size] = row
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
