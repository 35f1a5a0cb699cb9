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
   state), parallel mode (one process: none; under torchrun, `--parallel fsdp` shards with FSDP2);
4. (`--variants`, first size only) generation engines on a copy of the model in the compute dtype:
   reasonlab's engine, `generate` with its dynamic cache and with a static cache (which
   transformers compiles on CUDA), and continuous batching (`generate_batch`), the compiled ones
   twice on CUDA (first run with compilation);
5. (`--recipe`, first size only) `--recipe-steps` steps of configs/r1_zero_qwen05b.yaml from a
   local model folder written with the size's random weights, as `reasonlab train` runs it.

To find where the update's time goes (its MFU was 9.6% at 0.5B on an H200), `--checkpointing on
--ab batching.share_prompts=false --profile` adds a step with another setting (here one pass over
prompt + response per response instead of the shared-prompt pass with its copied KV cache) and a
step whose update runs under `torch.profiler` (the top operators by self device time).

Every part is guarded: one that fails prints its traceback, records its error in the JSON (written
after each part) and the next part runs. Time on one H200 (2026-11-30,
benchmarks/results/gpu_check_h200.log): at 0.5B the engine 29 s, plain `generate` 123 s, each GRPO
step ~50 s; at 1.5B the engine 45 s, a GRPO step ~70 s. The whole default run is therefore longer
than the 8 minutes it was meant to fit; on a 15-minute lease run `--sizes 0.5b` and `--sizes 1.5b
--no-variants --recipe ''` as separate calls. `--small` runs on a CPU in about a minute
(tests/test_gpu_check.py runs it).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

SAMPLING = dict(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
"""Plain sampling at temperature 1 (no truncation), for every engine compared."""

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "r1_zero_qwen05b.yaml"

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


def _autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to `dtype` on `device`; off for float32 (and for a model already in `dtype`)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


def bench_engine(model, tokenizer, prompts, samples, tokens, dtype, device) -> dict[str, float]:
    """reasonlab's HFEngine: completion tokens per second."""
    from reasonlab.rollout.base import SamplingParams
    from reasonlab.rollout.hf import HFEngine

    engine = HFEngine(model, tokenizer)
    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=tokens, seed=0)
    _reset_peak(device)
    _sync(device)
    t0 = time.perf_counter()
    with _autocast(device, dtype):
        rollouts = engine.generate(prompts, params)
    _sync(device)
    seconds = time.perf_counter() - t0
    count = sum(len(r.completion_ids) for r in rollouts)
    return {"tokens": count, "seconds": seconds, "tokens_per_s": count / seconds}


def bench_generate(
    model, tokenizer, prompts, samples, tokens, dtype, device, cache: str | None = None
) -> dict[str, float]:
    """Plain `model.generate` (sampling at temperature 1): completion tokens per second.
    cache: transformers' `cache_implementation` (None: its default dynamic cache; "static": a
    preallocated cache, with which `generate` compiles the decode step on CUDA)."""
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    ids = batch["input_ids"].repeat_interleave(samples, dim=0)  # [prompts * samples, P]
    mask = batch["attention_mask"].repeat_interleave(samples, dim=0)
    torch.manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    extra = {"cache_implementation": cache} if cache else {}
    with torch.inference_mode(), _autocast(device, dtype):
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=tokens,
            pad_token_id=tokenizer.pad_token_id,
            **SAMPLING,
            **extra,
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


def bench_continuous_batching(
    model, tokenizer, prompts, samples, tokens, device
) -> dict[str, float]:
    """transformers' continuous batching (`model.generate_batch`, paged attention; it captures
    CUDA graphs on a GPU): completion tokens per second. Each sample is its own request."""
    from transformers import GenerationConfig

    ids = tokenizer(prompts)["input_ids"]
    eos = tokenizer.eos_token_id
    config = GenerationConfig(max_new_tokens=tokens, eos_token_id=eos, pad_token_id=eos, **SAMPLING)
    torch.manual_seed(0)
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        outputs = model.generate_batch(
            inputs=[p for p in ids for _ in range(samples)], generation_config=config
        )
    _sync(device)
    seconds = time.perf_counter() - t0
    count = sum(len(o.generated_tokens) for o in outputs.values())
    return {"tokens": count, "seconds": seconds, "tokens_per_s": count / seconds}


def bench_variants(model, tokenizer, prompts, samples, tokens, dtype, device) -> dict[str, Any]:
    """Generation engines on one copy of the model in the compute dtype (what a fast engine holds:
    no float32 master weights), same prompts, samples and budget: reasonlab's engine, `generate`
    with its dynamic cache, `generate` with a static cache (compiled on CUDA), continuous
    batching. On CUDA the compiled ones run twice: the first time includes compilation and graph
    capture.
    A variant that fails records its error and the others still run."""
    import copy

    copied = copy.deepcopy(model).to(dtype)
    f32 = torch.float32  # no autocast: the copy is in the compute dtype already
    batch = (copied, tokenizer, prompts, samples, tokens)
    runs = {
        "engine": (bench_engine, (*batch, f32, device), {}),
        "generate": (bench_generate, (*batch, f32, device), {}),
        "generate_static": (bench_generate, (*batch, f32, device), {"cache": "static"}),
        "continuous_batching": (bench_continuous_batching, (*batch, device), {}),
    }
    results: dict[str, Any] = {}
    for name, (part, part_args, part_kwargs) in runs.items():
        # twice where the first run compiles or captures graphs (on CUDA); once on a CPU
        compiled = name in ("generate_static", "continuous_batching") and device.type == "cuda"
        repeats = 2 if compiled else 1
        timings = [
            _attempt(f"  variant {name}", part, *part_args, **part_kwargs) for _ in range(repeats)
        ]
        if any("error" in t for t in timings):
            results[name] = next(t for t in timings if "error" in t)
            continue
        results[name] = {**timings[-1], "first_seconds": timings[0]["seconds"]}
        print(
            f"  variant {name}: {timings[-1]['tokens_per_s']:.1f} tokens/s "
            f"({timings[-1]['tokens']} tokens in {timings[-1]['seconds']:.2f} s"
            + (f"; first run {timings[0]['seconds']:.2f} s" if repeats > 1 else "")
            + ")",
            flush=True,
        )
    del copied
    return results


def _batch_overrides(args: argparse.Namespace) -> list[str]:
    """The step's sizes as recipe overrides: prompts x samples x tokens, and micro-batches that
    divide the step's batch (prompts x samples)."""
    return [
        f"rollout.n={args.samples}",
        f"rollout.max_new_tokens={args.tokens}",
        f"batching.prompts_per_step={args.prompts}",
        f"batching.micro_batch_size={math.gcd(args.micro_batch, args.prompts * args.samples)}",
    ]


def grpo_step(
    model,
    tokenizer,
    task,
    args,
    checkpointing: bool,
    device,
    extra: Sequence[str] = (),
    profile: bool = False,
) -> dict[str, Any]:
    """One GRPO step of `reasonlab.rl.Trainer` (no checkpoint written); its metrics row.
    extra: more `key=value` overrides of the step's recipe (an A/B of one setting). profile: run
    the update under `torch.profiler` and add its top operators by self time (device time on
    CUDA) as `profile` (the profiler's overhead enters that step's times)."""
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
            *_batch_overrides(args),
            "optim.lr=1e-6",
            "run.steps=1",
            f"run.out_dir={out}",
            "run.progress=false",
            "run.log_rollouts_per_step=0",
            "run.deterministic=false",
            *extra,
        ]
        cfg = load_config(TrainConfig, None, overrides)
        trainer = Trainer(cfg, model=model, tokenizer=tokenizer, task=task, dist=dist)
        table: list[dict[str, Any]] = []
        if profile:
            trainer.learner.update = _profiled(trainer.learner.update, device, table)
        _reset_peak(device)
        _sync(device)
        metrics = trainer.train_step()
        _sync(device)
        if profile:
            metrics["profile"] = table
        metrics["peak_gib"] = _peak_gib(device)
        metrics["settings"] = {
            "parallel": trainer.wrapped.kind,
            "autocast": str(trainer.autocast_dtype),
            "param_dtype": str(next(trainer.model.parameters()).dtype),
            "gradient_checkpointing": checkpointing,
            "world_size": dist.world_size,
            "overrides": list(extra),
        }
        trainer.optimizer.zero_grad(set_to_none=True)
        del trainer
    return metrics


def _profiled(update, device: torch.device, table: list[dict[str, Any]], rows: int = 20):
    """`update` run under `torch.profiler`; its top `rows` operators by self time go to `table`
    (name, calls, self milliseconds, share of the profiled total)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)

    def run(*args: Any, **kwargs: Any) -> Any:
        with profile(activities=activities) as prof:
            out = update(*args, **kwargs)
            _sync(device)
        events = prof.key_averages()
        attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        total = sum(getattr(e, attr) for e in events) or 1.0
        for e in sorted(events, key=lambda e: -getattr(e, attr))[:rows]:
            us = getattr(e, attr)
            table.append(
                {"name": e.key, "calls": e.count, "self_ms": us / 1e3, "share": us / total}
            )
        return out

    return run


def recipe_run(recipe: str, size: str, tokenizer, args, device) -> dict[str, Any]:
    """`--recipe-steps` steps of an RL recipe from a local model folder, through what
    `reasonlab train RECIPE model.path=DIR` runs: the folder is written here with random weights of
    the named configuration and the tokenizer; the batch sizes are this check's (the defaults are
    those of configs/r1_zero_qwen05b.yaml); the run evaluates once, after its last step."""
    from reasonlab import models
    from reasonlab.config import load_config
    from reasonlab.rl import TrainConfig, Trainer
    from reasonlab.rl.config import validate
    from reasonlab.rl.distributed import Dist

    dist = Dist.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        if dist.is_main:
            models.save(build_model(size, tokenizer, device), tokenizer, f"{tmp}/model")
        if dist.enabled:
            torch.distributed.barrier()
        steps = args.recipe_steps
        overrides = [
            f"model.path={tmp}/model",
            f"model.device={device}",
            f"model.dtype={args.dtype}",
            *_batch_overrides(args),
            f"task.eval_size={args.prompts}",
            f"run.steps={steps}",
            f"run.eval_every={steps}",
            f"run.out_dir={tmp}/run",
            "run.progress=false",
        ]
        config = load_config(TrainConfig, recipe, overrides)
        validate(config, dist.world_size, source=recipe, overrides=overrides)
        t0 = time.perf_counter()
        summary = Trainer(config, dist=dist).train()
        seconds = time.perf_counter() - t0
    keys = ("time/generate", "time/score", "time/update", "time/step", "length/mean")
    rows = [{k: row[k] for k in keys if k in row} for row in summary["history"] if "step" in row]
    evaluation = summary["eval"] or {}
    return {
        "recipe": recipe,
        "steps": rows,
        "seconds": seconds,
        "eval_seconds": evaluation.get("time/eval"),
        "eval_accuracy": evaluation.get("accuracy"),
    }


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
    parser.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time plain model.generate beside reasonlab's engine (the ratio's denominator)",
    )
    parser.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time generation engines on a compute-dtype copy of the first size's model "
        "(engine, generate with dynamic and static cache, continuous batching)",
    )
    parser.add_argument(
        "--recipe",
        default=str(RECIPE),
        help="an RL recipe to run for --recipe-steps steps from a local folder of the first "
        "size's model ('' to skip)",
    )
    parser.add_argument("--recipe-steps", type=int, default=2)
    parser.add_argument(
        "--checkpointing",
        choices=("both", "on", "off"),
        default="both",
        help="the GRPO steps timed: with gradient checkpointing, without, or both",
    )
    parser.add_argument(
        "--ab",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="one more GRPO step (checkpointing on, first size) with these recipe overrides, "
        "e.g. batching.share_prompts=false; repeatable",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more GRPO step (checkpointing on, first size) with its update under "
        "torch.profiler: the top operators by self time",
    )
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
    sizes = args.sizes.split(",")
    for size in sizes:
        if size not in QWEN25:
            parser.error(f"--sizes: {size!r} is not one of: {', '.join(QWEN25)}")
    for size in sizes:
        model = build_model(size, tokenizer, device)
        params = sum(p.numel() for p in model.parameters())
        row: dict[str, Any] = {"parameters": params}
        results["sizes"][size] = row
        batch = (model, tokenizer, prompts, args.samples, args.tokens, dtype, device)
        row["engine"] = _attempt(f"[{size}] engine", bench_engine, *batch)
        if args.baseline:
            row["generate"] = _attempt(f"[{size}] generate", bench_generate, *batch)
        engine, generate = row["engine"], row.get("generate", {})
        line = (
            f"[{size}] {params / 1e6:.1f}M parameters; generation tokens/s: reasonlab "
            f"{engine.get('tokens_per_s', float('nan')):.1f}"
        )
        if "tokens_per_s" in generate:
            line += f", model.generate {generate['tokens_per_s']:.1f}"
            if "tokens_per_s" in engine:
                line += f", ratio {engine['tokens_per_s'] / generate['tokens_per_s']:.2f}"
        print(line, flush=True)
        _write(args.json, results)
        steps = [("grpo", False, [], False), ("grpo_checkpointing", True, [], False)]
        steps = [st for st in steps if args.checkpointing in ("both", "on" if st[1] else "off")]
        if size == sizes[0]:
            steps += [(f"grpo_ab{i}", True, ab.split(","), False) for i, ab in enumerate(args.ab)]
            steps += [("grpo_profile", True, [], True)] if args.profile else []
        for key, checkpointing, extra, profile in steps:
            m = _attempt(
                f"[{size}] {key}",
                grpo_step,
                *(model, tokenizer, task, args, checkpointing, device, extra, profile),
            )
            if "error" not in m:  # prompt tokens of the step's batch: each response's prompt
                m = _step_row(
                    size, key, checkpointing, extra, m, params, prompt_tokens * args.samples, args
                )
            row[key] = m
            _write(args.json, results)
        if args.variants and size == sizes[0]:
            print(f"[{size}] generation engines on a {args.dtype} copy of the model:", flush=True)
            results["variants"] = {
                "size": size,
                **bench_variants(
                    model, tokenizer, prompts, args.samples, args.tokens, dtype, device
                ),
            }
            _write(args.json, results)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.recipe:
        run = _attempt(
            f"[{sizes[0]}] recipe", recipe_run, args.recipe, sizes[0], tokenizer, args, device
        )
        results["recipe"] = run
        _write(args.json, results)
        if "error" in run:
            return results
        for i, step in enumerate(run["steps"], 1):
            print(
                f"[{sizes[0]}] {Path(args.recipe).name} step {i}: "
                + ", ".join(f"{k} {v:.2f}" for k, v in step.items()),
                flush=True,
            )
        print(
            f"[{sizes[0]}] {Path(args.recipe).name}: {len(run['steps'])} steps and the evaluation "
            f"in {run['seconds']:.1f} s (evaluation {run['eval_seconds'] or 0:.1f} s)",
            flush=True,
        )
    return results


def _step_row(
    size: str,
    key: str,
    checkpointing: bool,
    extra: Sequence[str],
    m: dict[str, Any],
    params: int,
    prompt_tokens: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One timed GRPO step's results row (generate / score / update seconds, the update's MFU,
    peak memory), printed."""
    trained = prompt_tokens + m["length/mean"] * m["responses"]  # prompt + response tokens
    flops = 6 * params * trained
    mfu = flops / m["time/update"] / (args.peak_tflops * 1e12) if args.peak_tflops else None
    print(
        f"[{size}] GRPO step ({key}), gradient checkpointing "
        f"{'on' if checkpointing else 'off'}{''.join(' ' + o for o in extra)}: "
        f"generate {m['time/generate']:.2f} s, score {m['time/score']:.2f} s, update "
        f"{m['time/update']:.2f} s ({trained:.0f} tokens; MFU "
        f"{'n/a' if mfu is None else f'{100 * mfu:.1f}%'}), peak memory "
        f"{m['peak_gib']:.2f} GiB; settings {json.dumps(m['settings'])}",
        flush=True,
    )
    for op in m.get("profile", []):
        print(
            f"    {op['share']:6.1%} {op['self_ms']:10.1f} ms {op['calls']:7d}x  {op['name'][:90]}",
            flush=True,
        )
    return {
        "generate_s": m["time/generate"],
        "score_s": m["time/score"],
        "update_s": m["time/update"],
        "trained_tokens": trained,
        "mfu": mfu,
        "peak_gib": m["peak_gib"],
        "settings": m["settings"],
        **({"profile": m["profile"]} if "profile" in m else {}),
    }


def _attempt(label: str, part, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """part(*args, **kwargs)'s result, or {"error", "traceback"} (printed): on a GPU lent for minutes, one part
    that fails must not cost the parts after it."""
    import traceback

    try:
        return part(*args, **kwargs)
    except Exception as err:  # a benchmark reports a failed part and goes on
        text = traceback.format_exc()
        print(f"{label}: FAILED\n{text}", flush=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"error": f"{type(err).__name__}: {err}"[:2000], "traceback": text[-4000:]}


def _write(path: str | None, results: dict[str, Any]) -> None:
    """The results so far (a later part that fails or runs out of time loses nothing before it)."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main(sys.argv[1:])
