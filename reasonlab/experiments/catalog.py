"""The experiments: each seed paper's claim, its arms, metrics and the effects its verdict reads.

All arms start from the CPU demo's recipe (`reasonlab/demo_countdown.yaml`: GRPO on countdown
with 3 numbers in 1-9, 30 steps of 16 prompts x 8 responses) and base model; accuracies are on the
demo's 100 held-out problems, greedy unless said otherwise, in percent. Effects are paired by seed
(arm A's seed s minus arm B's seed s).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from reasonlab.experiments.core import (
    REPO_ROOT,
    Arm,
    Context,
    Effect,
    Experiment,
    RunRecord,
    digest,
    mean_std,
    plot_title,
    register,
)

BASE = Arm("base", train=False, note="the pretrained base model, no RL")
GRPO = Arm("grpo", note="the demo's GRPO recipe as it is")


def _diff(table: dict[str, dict[str, list[float]]], a: str, b: str, key: str) -> list[float]:
    """Per seed: arm a's `key` minus arm b's."""
    return [x - y for x, y in zip(table[a][key], table[b][key], strict=True)]


def _last_mean(values: list[float], k: int = 5) -> float:
    tail = values[-k:]
    return sum(tail) / len(tail) if tail else float("nan")


# ----------------------------------------------------------------------------- r1_zero


def _held_out(record: RunRecord) -> dict[str, float]:
    after = record.after
    return {
        "accuracy": 100 * after["accuracy"],
        "mean_length": after["mean_length"],
        "tries": after["tries"],
    }


def _r1_zero_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    return [
        Effect(
            "held-out accuracy gain (grpo - base)", _diff(table, "grpo", "base", "accuracy"), "pts"
        ),
        Effect(
            "held-out response length gain", _diff(table, "grpo", "base", "mean_length"), "tokens"
        ),
    ]


register(
    Experiment(
        name="r1_zero",
        paper="DeepSeek-R1 (R1-Zero), TinyZero, SimpleRL-Zoo",
        claim="RL from a base model raises held-out accuracy, and response length grows with it",
        arms=[BASE, GRPO],
        metrics={
            "accuracy": "held-out accuracy (greedy, %)",
            "mean_length": "held-out response length (tokens, greedy)",
            "tries": "tries per held-out response",
        },
        measure=lambda ctx, arm, seed, record: _held_out(record),
        effects=_r1_zero_effects,
        curves=["length/mean", "accuracy"],
    )
)


# ----------------------------------------------------------------------------- reflection


def _reflection(record: RunRecord) -> dict[str, float]:
    after = record.after
    rates = after["behaviours"]
    return {
        "accuracy": 100 * after["accuracy"],
        "reflection_words": sum(after["reflection_words"].values()),
        "oat_zero_keywords": sum(after["oat_zero_keywords"].values()),
        "behaviour_rate": 100 * sum(rates.values()) / max(1, len(rates)),
        **{f"behaviour/{b}": 100 * v for b, v in sorted(rates.items())},
    }


def _reflection_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    return [
        Effect("held-out accuracy gain", _diff(table, "grpo", "base", "accuracy"), "pts"),
        Effect(
            "R1 reflection words per response, gain",
            _diff(table, "grpo", "base", "reflection_words"),
        ),
        Effect("mean behaviour rate gain", _diff(table, "grpo", "base", "behaviour_rate"), "pts"),
    ]


register(
    Experiment(
        name="reflection_emergence",
        paper="DeepSeek-R1 ('aha moment'); Demystifying Long CoT (Yeo et al. 2025)",
        claim="RL from a base raises reflection-word and behaviour rates together with accuracy "
        "(R1-Zero's 'aha'); Demystify saw Qwen2.5-Math-7B's 'recheck' not rise under RL",
        arms=[BASE, GRPO],
        metrics={
            "accuracy": "held-out accuracy (greedy, %)",
            "reflection_words": "R1 reflection words per held-out response",
            "oat_zero_keywords": "oat-zero self-reflection keywords per response",
            "behaviour_rate": "mean of the four behaviour rates (%)",
            "behaviour/backtracking": "backtracking (% of responses)",
            "behaviour/backward_chaining": "backward chaining (% of responses)",
            "behaviour/subgoal_setting": "subgoal setting (% of responses)",
            "behaviour/verification": "verification (% of responses)",
        },
        measure=lambda ctx, arm, seed, record: _reflection(record),
        effects=_reflection_effects,
        curves=["r1_words/wrong", "behaviour/backtracking", "behaviour/verification"],
    )
)


# ----------------------------------------------------------------------------- cosine_reward

LENGTH_BUDGET = 96
"""The tight response budget (tokens) of cosine_reward: the demo's GRPO grows held-out responses
past it (from ~44 tokens) under its 256-token budget."""
COSINE_TERM = {
    "name": "cosine_length",
    "weight": 1.0,
    # the paper's run values (wrong -10..0, correct 1..2, exceed -10, margin 16), our budget; the
    # repetition penalty on wrong answers over 10-word n-grams (the paper's 40-grams never repeat
    # in responses this short)
    "params": {
        "preset": "demystify",
        "max_len": LENGTH_BUDGET,
        "repetition_max_penalty": -1.0,
        "repetition_ngram_size": 10,
    },
}


def _cosine(record: RunRecord) -> dict[str, float]:
    lengths = record.curve("length/mean")
    jumps = [abs(b - a) for a, b in zip(lengths, lengths[1:])]
    truncation = record.curve("truncation_rate")
    return {
        "truncation": 100 * sum(truncation) / max(1, len(truncation)),
        "length_jitter": mean_std(jumps)[0] if jumps else 0.0,
        "final_length": _last_mean(lengths),
        "accuracy": 100 * record.after["accuracy"],
    }


def _cosine_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    return [
        Effect(
            "truncation rate, plain - cosine", _diff(table, "plain", "cosine", "truncation"), "pts"
        ),
        Effect(
            "step-to-step length change, plain - cosine",
            _diff(table, "plain", "cosine", "length_jitter"),
            "tokens",
        ),
    ]


register(
    Experiment(
        name="cosine_reward",
        paper="Demystifying Long CoT (Yeo et al. 2025, sec. 4.1-4.2)",
        claim=f"under a tight length budget ({LENGTH_BUDGET} tokens) the cosine length-scaled "
        "reward with a repetition penalty keeps length growth stable: fewer truncated responses "
        "and smaller swings than the plain accuracy reward",
        arms=[
            Arm(
                "plain",
                [f"rollout.max_new_tokens={LENGTH_BUDGET}"],
                note="the demo's accuracy reward (tinyzero)",
            ),
            Arm(
                "cosine",
                [
                    f"rollout.max_new_tokens={LENGTH_BUDGET}",
                    "rewards.scheme=null",
                    "rewards.terms=" + json.dumps([COSINE_TERM]),
                ],
                note="cosine_length (preset demystify) with its repetition penalty",
            ),
        ],
        metrics={
            "truncation": "truncated training responses (%, mean over steps)",
            "length_jitter": "mean |change| of mean length per step (tokens)",
            "final_length": "mean training length, last 5 steps (tokens)",
            "accuracy": "held-out accuracy (greedy, %)",
        },
        measure=lambda ctx, arm, seed, record: _cosine(record),
        effects=_cosine_effects,
        curves=["length/mean", "truncation_rate"],
    )
)


# ----------------------------------------------------------------------------- test-time scaling

SCALING_METHODS = ["majority", "best_of_n", "weighted_bon", "beam"]
SCALING_NS = [1, 4, 16]
SCALING_EXAMPLES = 40
"""Held-out problems searched (the first of the experiment's), default settings."""


def _scaling(ctx: Context, arm: Arm, seed: int, record: RunRecord) -> dict[str, float]:
    """run_scaling on the arm's model, cached beside the run (or beside the base model)."""
    from reasonlab import models
    from reasonlab.rollout import get_engine
    from reasonlab.search import ArithmeticStepChecker, ScalingConfig, TreeSearchConfig
    from reasonlab.search.runner import run_scaling

    quick = ctx.quick
    config = ScalingConfig(
        methods=SCALING_METHODS,
        ns=SCALING_NS,
        tree=TreeSearchConfig(
            beam_width=4,
            num_iterations=2 if quick else 40,
            aggregation="min",
            temperature=1.0,
            max_step_tokens=8 if quick else 64,
            delimiter=". ",
        ),
        max_new_tokens=16 if quick else ctx.base_cfg.rollout.max_new_tokens,
        outcome="prm",
        template=ctx.base_cfg.task.template,
        seed=seed,
    )
    examples = ctx.held_out[: 2 if quick else SCALING_EXAMPLES]
    folder = record.run_dir or ctx.out / "search-base"
    key = digest(
        {
            "config": dataclasses.asdict(config),
            "model": ctx.base_id if record.run_dir is None else str(record.model_dir),
            "examples": [ex.id for ex in examples],
        }
    )
    path = folder / f"search-{key[:12]}.json"
    if not path.is_file():
        model, tokenizer = models.load(record.model_dir)
        engine = get_engine("hf", model=model, tokenizer=tokenizer)
        result = run_scaling(
            engine, ctx.task, examples, ArithmeticStepChecker(), config, tokenizer=tokenizer
        )
        from reasonlab.io import atomic_write_text

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        f"{m}@{n}": 100 * data["accuracy"][m][str(n)] for m in SCALING_METHODS for n in SCALING_NS
    }


def _scaling_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    top, low = SCALING_NS[-1], SCALING_NS[0]
    return [
        Effect(
            f"{arm} {m}: accuracy at N={top} - N={low}",
            [a - b for a, b in zip(table[arm][f"{m}@{top}"], table[arm][f"{m}@{low}"])],
            "pts",
        )
        for arm in ("base", "grpo")
        for m in SCALING_METHODS
    ]


def _scaling_plot(results: dict[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    for i, arm in enumerate(results["arms"]):
        ax = fig.add_subplot(1, len(results["arms"]), i + 1)
        stats = results["arms"][arm]["metrics"]
        for m in SCALING_METHODS:
            cells = [stats[f"{m}@{n}"] for n in SCALING_NS]
            ax.errorbar(
                SCALING_NS,
                [c["mean"] for c in cells],
                yerr=[c["std"] for c in cells],
                marker="o",
                capsize=3,
                label=m,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(SCALING_NS, [str(n) for n in SCALING_NS])
        ax.set_xlabel("generation budget N")
        ax.set_ylabel("held-out accuracy (%)")
        ax.set_title(f"{arm} model", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(plot_title(results), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)


register(
    Experiment(
        name="test_time_scaling",
        paper="Snell et al. 2024 (scaling test-time compute); HF search-and-learn",
        claim="accuracy rises with the generation budget N for majority voting, best-of-N and "
        "weighted best-of-N (outcome score: the exact arithmetic checker) and beam search (the "
        "checker per step), on the base and on the RL model",
        arms=[BASE, Arm("grpo", note="the r1_zero GRPO run of the same seed (shared folder)")],
        metrics={
            f"{m}@{n}": f"{m}, N={n} (held-out accuracy, %)"
            for m in SCALING_METHODS
            for n in SCALING_NS
        },
        measure=_scaling,
        effects=_scaling_effects,
        plot=_scaling_plot,
    )
)


# ----------------------------------------------------------------------------- policy losses

LOSS_RECIPES = REPO_ROOT / "configs" / "losses"


def loss_arms() -> list[Arm]:
    """One arm per recipe in configs/losses: the demo recipe with that file's policy_loss, its
    own parameters (`policy_loss_params`) and its loss_agg (all seq-mean-token-mean: gspo and gmpo
    are defined per response, docs/policy_losses.md); every other loss parameter back at its
    default (the demo's clip_high 0.28 would be rejected by `validate` on a loss that takes no
    clip). Learning rate, KL and the rest stay the demo's."""
    from reasonlab.rl.config import AlgorithmConfig
    from reasonlab.rl.losses import POLICY_LOSSES, policy_loss_params

    every = sorted(
        {k for n in POLICY_LOSSES.names() for k in policy_loss_params(n) if k != "generator"}
    )
    defaults = AlgorithmConfig()
    arms = []
    for path in sorted(LOSS_RECIPES.glob("*.yaml")):
        algorithm = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("algorithm", {})
        name = algorithm.get("policy_loss", path.stem)
        takes = set(policy_loss_params(name))
        overrides = [f"algorithm.policy_loss={name}"]
        if "loss_agg" in algorithm:  # gspo, gspo_token, gmpo are defined per response
            overrides.append(f"algorithm.loss_agg={algorithm['loss_agg']}")
        for key in every:
            value = algorithm[key] if key in takes and key in algorithm else getattr(defaults, key)
            overrides.append(f"algorithm.{key}={'null' if value is None else value}")
        arms.append(Arm(name, overrides, note=f"configs/losses/{path.name}"))
    return arms


def _loss(record: RunRecord) -> dict[str, float]:
    return {
        "accuracy": 100 * record.after["accuracy"],
        "gain": 100 * (record.after["accuracy"] - record.before["accuracy"]),
        "entropy": _last_mean(record.curve("entropy")),
        "mean_length": record.after["mean_length"],
    }


register(
    Experiment(
        name="policy_losses",
        paper="GSPO, CISPO (MiniMax-M1), SAPO, GMPO, Clip-Cov / KL-Cov (Cui et al. 2025), PPO",
        claim="every policy loss of configs/losses raises held-out accuracy over the base on the "
        "demo's task (and how entropy and length differ between them)",
        arms=loss_arms(),
        metrics={
            "accuracy": "held-out accuracy after RL (greedy, %)",
            "gain": "held-out accuracy gain over the base (pts)",
            "entropy": "token entropy, last 5 steps (nats)",
            "mean_length": "held-out response length (tokens)",
        },
        measure=lambda ctx, arm, seed, record: _loss(record),
        effects=lambda table: [
            Effect(f"{arm} gain", values["gain"], "pts") for arm, values in table.items()
        ],
        curves=["entropy", "length/mean", "eval/accuracy"],
    )
)


# ----------------------------------------------------------------------------- SFT-based

SFT = "arms with an SFT stage (issue 12: reasonlab sft exists, these arms are not written)"
for name, paper, claim in (
    (
        "long_vs_short_cot",
        "Demystifying Long CoT (Yeo et al. 2025)",
        "SFT on long CoT keeps improving with more SFT tokens while short CoT saturates, and RL "
        "adds more on top of long-CoT SFT",
    ),
    (
        "priming",
        "Cognitive Behaviors (Gandhi et al. 2025)",
        "priming with reasoning behaviours, even with wrong answers, decides whether RL improves",
    ),
    (
        "distill_vs_rl",
        "DeepSeek-R1 (distillation vs RL on Qwen-32B)",
        "for a small student, distillation from a stronger RL teacher beats RL on the student",
    ),
    (
        "warmup_data",
        "SimpleRL / Logic-RL notes (rejection-sampling warm-up)",
        "SFT warm-up on the model's own rejection-sampled traces beats reference solutions of "
        "another distribution (accuracy, and forgetting on a second task)",
    ),
    (
        "constructed_vs_emergent",
        "Demystifying Long CoT (Yeo et al. 2025)",
        "SFT on emergent long CoT (sampled from an RL model) generalises better and gains more "
        "from RL than constructed long CoT",
    ),
):
    register(Experiment(name=name, paper=paper, claim=claim, arms=[], metrics={}, needs=SFT))
