"""Peak memory of the RL learner's update on CPU, each case in its own subprocess.

    python benchmarks/learner_memory.py [--positions 256] [--vocab 151936] [--completion 512]

Peak memory is the growth of the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs just before the measured step) over its resident set at that moment: what
the step itself adds, from the same starting point for every case. Linux only; the children run
with MALLOC_MMAP_THRESHOLD_=65536 so that freed tensors leave the resident set at once.

1. **Logits reductions, 150k vocabulary** (what `ratio` reports). A policy-gradient loss on
   `--positions` response tokens: hidden states [N, 64] times an lm_head [64, V] (V = 151,936,
   Qwen2.5's vocabulary) give float32 logits [1, N, V]; loss = -mean(A * logprob) at temperature
   0.7, the entropy computed for the log (entropy_coef 0, the default) or as a bonus (0.01); then
   backward. "old" is the learner before issue 9 (its reductions are copied below, unchanged):
   `token_logprobs` chunked only in the forward pass, and the entropy taken with gradient from a
   float32 copy of the logits divided by the temperature. "new" is `logprobs_and_entropy`, chunked
   in the forward and the backward pass. Both give the same loss and gradient (checked, printed).
2. **Gradient checkpointing** on a long-completion config: a tiny but deep Llama (12 layers,
   hidden 128, 4 heads, MLP 512, ~0.5k vocabulary), 2 prompts of 32 tokens x 4 responses of
   `--completion` tokens, one `Learner.update` (GRPO, one pass, AdamW), with
   `model.gradient_checkpointing` off and on, prompts shared (the default) in both.

Ends with `ratio: X`, X = old / new peak memory of the logits reductions with entropy_coef 0.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time

import torch

HIDDEN = 64
TEMPERATURE = 0.7


def rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(re.search(rf"{field}:\s+(\d+)", status.read()).group(1))


def start_measuring() -> int:
    """Reset the peak resident set to the current one; return the current one (KiB)."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return rss_kib("VmRSS")


# --- the learner's logits reductions before issue 9 (reasonlab/rl/losses.py at feffcce) --------


def old_token_logprobs(logits, labels, temperature, chunk_rows=1024):
    flat = logits.reshape(-1, logits.shape[-1])
    flat_labels = labels.reshape(-1, 1)
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        scaled = flat[start : start + chunk_rows].float()
        if temperature != 1.0:
            scaled = scaled / temperature
        picked = scaled.gather(-1, flat_labels[start : start + chunk_rows]).squeeze(-1)
        pieces.append(picked - torch.logsumexp(scaled, dim=-1))
    return torch.cat(pieces).view(labels.shape)


def old_entropy_from_logits(logits, chunk_rows=1024):
    flat = logits.reshape(-1, logits.shape[-1])
    pieces = []
    for start in range(0, flat.shape[0], chunk_rows):
        z = flat[start : start + chunk_rows].float()
        pieces.append(torch.logsumexp(z, dim=-1) - (torch.softmax(z, dim=-1) * z).sum(dim=-1))
    return torch.cat(pieces).view(logits.shape[:-1])


# --- the cases, one per subprocess ----------------------------------------------------------------


def logits_case(way: str, positions: int, vocab: int, entropy_coef: float) -> dict:
    from reasonlab.rl.losses import logprobs_and_entropy

    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(positions, HIDDEN, generator=gen, requires_grad=True)  # [N, H]
    head = (torch.randn(vocab, HIDDEN, generator=gen) * HIDDEN**-0.5).requires_grad_()  # [V, H]
    labels = torch.randint(0, vocab, (1, positions), generator=gen)  # [1, N]
    advantages = torch.randn(1, positions, generator=gen)
    base = start_measuring()
    logits = (hidden @ head.T)[None]  # [1, N, V]
    if way == "old":  # as the learner did: learner.py `forward` before issue 9
        logprobs = old_token_logprobs(logits, labels, TEMPERATURE)
        entropy = old_entropy_from_logits(logits.float() / TEMPERATURE)
    else:
        logprobs, entropy = logprobs_and_entropy(logits, labels, TEMPERATURE)
    loss = -(advantages * logprobs).mean()
    if entropy_coef:
        loss = loss - entropy_coef * entropy.mean()
    logged = float(entropy.detach().mean())
    loss.backward()
    peak = rss_kib("VmHWM")
    return {
        "peak_mib": (peak - base) / 1024,
        "loss": float(loss),
        "entropy": logged,
        "grad": head.grad.flatten()[:: max(1, head.grad.numel() // 4096)].tolist(),
    }


def checkpointing_case(checkpointing: bool, completion: int) -> dict:
    import random

    from reasonlab.config import load_config
    from reasonlab.models import enable_gradient_checkpointing, tiny
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.learner import Learner, StepBatch, build_optimizer

    texts = ["12 + 34 = 46", "<think> 7 * 8 = 56 </think> <answer> 56 </answer>"] * 20
    tokenizer = tiny.build_tokenizer(texts, vocab_size=512)
    model = tiny.build_model(
        tokenizer,
        hidden_size=128,
        num_hidden_layers=12,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=completion + 64,
    )
    if checkpointing:
        enable_gradient_checkpointing(model)
    model.eval()
    cfg = load_config(
        TrainConfig,
        None,
        ["rollout.n=4", "batching.prompts_per_step=2", f"rollout.max_new_tokens={completion}"],
    )
    rng = random.Random(0)
    vocab = len(tokenizer)
    prompts, completions = [], []
    for _ in range(2):
        prompt = [rng.randrange(5, vocab) for _ in range(32)]
        for _ in range(4):
            prompts.append(prompt)
            completions.append([rng.randrange(5, vocab) for _ in range(completion)])
    rewards = torch.tensor([rng.random() for _ in completions])
    batch = StepBatch(prompts, completions, rewards, ["stop"] * len(completions), group_size=4)
    learner = Learner(model, build_optimizer(list(model.parameters()), cfg), cfg, pad_id=0)
    base = start_measuring()
    began = time.perf_counter()
    stats = learner.update(batch, step=1)
    seconds = time.perf_counter() - began
    peak = rss_kib("VmHWM")
    return {
        "peak_mib": (peak - base) / 1024,
        "seconds": seconds,
        "share_prompts": learner.share_prompts,
        "grad_norm": stats["grad_norm"],
    }


def run_child(*args: str) -> dict:
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    # glibc returns blocks of 64 KiB and more to the system when freed, so the resident set
    # follows the live tensors instead of what the allocator keeps cached
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--positions", type=int, default=256, help="response tokens (logits)")
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--completion", type=int, default=512, help="tokens per response (ckpt)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        kind, *rest = args.child
        if kind == "logits":
            result = logits_case(rest[0], args.positions, args.vocab, float(rest[1]))
        else:
            result = checkpointing_case(rest[0] == "on", args.completion)
        print(json.dumps(result))
        return

    common = [f"--positions={args.positions}", f"--vocab={args.vocab}"]
    common += [f"--completion={args.completion}", f"--threads={args.threads}"]
    print(
        f"1. logits reductions: {args.positions} positions x vocabulary {args.vocab} "
        f"(float32 logits {args.positions * args.vocab * 4 / 2**20:.0f} MiB), temperature "
        f"{TEMPERATURE}, lm_head hidden {HIDDEN}"
    )
    ratios = {}
    for coef in ("0", "0.01"):
        old = run_child(*common, "--child", "logits", "old", coef)
        new = run_child(*common, "--child", "logits", "new", coef)
        grad_diff = max(abs(a - b) for a, b in zip(old["grad"], new["grad"]))
        same = (
            abs(old["loss"] - new["loss"]) <= 1e-5 * max(1.0, abs(old["loss"]))
            and abs(old["entropy"] - new["entropy"]) <= 1e-4
            and grad_diff <= 1e-6
        )
        ratios[coef] = old["peak_mib"] / new["peak_mib"]
        print(
            f"   entropy_coef {coef:>4}: old {old['peak_mib']:7.0f} MiB   new "
            f"{new['peak_mib']:7.0f} MiB   old/new {ratios[coef]:.2f}   same loss, entropy and "
            f"gradient: {'yes' if same else 'NO'} (max gradient difference {grad_diff:.1e})"
        )
    print(
        f"2. gradient checkpointing: 12-layer tiny Llama (hidden 128), 8 responses of "
        f"{args.completion} tokens after 32-token prompts, one Learner.update"
    )
    cases = {flag: run_child(*common, "--child", "ckpt", flag) for flag in ("off", "on")}
    for flag, case in cases.items():
        print(
            f"   checkpointing {flag:>3}: {case['peak_mib']:7.0f} MiB   {case['seconds']:6.1f} s   "
            f"share_prompts {case['share_prompts']}   grad_norm {case['grad_norm']:.6f}"
        )
    print(f"   off/on peak memory: {cases['off']['peak_mib'] / cases['on']['peak_mib']:.2f}")
    print(f"ratio: {ratios['0']:.2f}")


if __name__ == "__main__":
    main()
