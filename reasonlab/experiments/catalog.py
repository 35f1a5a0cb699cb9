"""The experiments: each seed paper's claim, its arms, metrics and the effects its verdict reads.

All arms start from the CPU demo's recipe (`reasonlab/demo_countdown.yaml`: GRPO on countdown
with 3 numbers in 1-9, 20 steps of 16 prompts x 8 responses; its update in one pass, as measured:
`core.RECIPE_PINS`) and the demo's former base model (`core.BASE_PRETRAIN`: 2400 steps, greedy
packing); accuracies are on the demo's 100 held-out problems, greedy unless said otherwise, in percent. Effects are paired by seed
(arm A's seed s minus arm B's seed s).

The SFT-based experiments (priming, long_vs_short_cot, constructed_vs_emergent, distill_vs_rl,
warmup_data) give their arms stages before RL (`Arm.stages`; see the section below for the sizes).
Measured from scratch on 2 idle cores (`reasonlab experiment NAME --seeds 3 --out OUT --jobs 2`,
the base copied into OUT/base, docs/findings.md): r1_zero 554 s (reflection_emergence reuses its
runs), cosine_reward 290 s, long_vs_short_cot 705 s, priming 755 s, constructed_vs_emergent 461 s
and distill_vs_rl 562 s (each with its teacher, a GRPO run of r1_zero, already made),
test_time_scaling 1128 s, warmup_data 387 s: all within the 30-minute bound. policy_losses
(8 losses x 3 seeds) is over it (72 minutes on loaded cores).
The default sizes were set before those runs, by this estimate: the near-idle demo run of 2026-11-30 (`reasonlab demo`, 2 cores, other jobs
niced) took 687 s to pretrain the base (2400 steps of 8 x 256 tokens: ~0.29 s per step, the
cost assumed for an SFT step of the same shape), 7-12 s per GRPO step of 16 prompts x 8
(responses 67-133 tokens; ~5 s assumed at 8 prompts) and ~10 s per held-out evaluation (greedy +
4 samples of 100 problems). With the base cached in OUT/base (else add its ~11 min once):
priming ~21 min (15 x (SFT 30 steps ~10 s + GRPO 10 x 8 prompts ~50 s + 2 evaluations ~20 s)),
long_vs_short_cot ~13 min (18 SFT runs, 780 steps in all, 18 + 6 evaluations, 6 GRPO runs),
constructed_vs_emergent ~16 min (the teacher's 20-step GRPO ~3.5 min, shared with r1_zero; 3
sample stages of 800 generations ~50 s each; 6 SFT + 6 GRPO runs), distill_vs_rl ~19 min (the
teacher; the student's pretraining, at most ~6 min; the sample stages, shared with
constructed_vs_emergent in the same OUT; 3 student GRPO runs of 10 x 16 prompts), warmup_data
~11 min. The machine these were written on was loaded (four to five other jobs).
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
LOSS_MINIBATCH = 32
"""Responses per optimiser update in policy_losses: 4 updates per step of 16 prompts x 8. With the
demo's one update per step every ratio is 1 when the loss is computed, and PPO, CISPO, GSPO-token
and KL-Cov have the same gradient there: measured, they gave the same per-seed figures
(docs/findings.md). The losses differ only where the policy has moved since sampling."""


def loss_arms() -> list[Arm]:
    """One arm per recipe in configs/losses: the demo recipe with that file's policy_loss, its
    own parameters (`policy_loss_params`) and its loss_agg (all seq-mean-token-mean: gspo and gmpo
    are defined per response, docs/policy_losses.md); every other loss parameter back at its
    default (the demo's clip_high 0.28 would be rejected by `validate` on a loss that takes no
    clip); `LOSS_MINIBATCH` responses per update, so that updates after the first of a step are
    off-policy. Learning rate, KL and the rest stay the demo's."""
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
        overrides = [f"algorithm.policy_loss={name}", f"batching.minibatch_size={LOSS_MINIBATCH}"]
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
#
# Arms with stages (`Arm.stages`): chains of thought written by program (cot), rejection sampling
# (sample) or a student's pretraining (pretrain), then SFT, each through the pipeline's stage
# runners, then (most) the demo's GRPO recipe from the SFT model for RL_STEPS steps. The seed sets
# the data draw, the SFT order and the RL run; the SFT model is evaluated on the same held-out
# problems as every RL run ("sft" metrics: before RL).

RL_STEPS = 10
"""GRPO steps after SFT (the demo runs 20 from its base)."""
RL_PROMPTS = 8
"""Prompts per GRPO step after SFT (the demo's 16 halved, x 8 responses each)."""
AFTER_SFT = [
    f"run.steps={RL_STEPS}",
    f"batching.prompts_per_step={RL_PROMPTS}",
    "run.eval_every=0",  # the start and final models are evaluated by the experiment
    "run.eval_before_train=false",
    "run.save_every=5",
]
"""Overrides of the demo recipe for the RL run of an arm with stages: the demo's GRPO, shorter."""
SFT_STEPS = 30
"""SFT optimiser steps (8 packed rows of 256 tokens each, `configs/sft_countdown_cpu.yaml`)."""
COT_ROWS, COT_PROBLEMS = 800, 400
"""Rows and distinct training problems of a cot stage."""
SAMPLE = {"problems": 200, "n": 4, "keep": "correct", "k": 2}
"""A sample stage: 200 training problems x 4 samples at T=1, correct ones kept, 2 per problem."""


def cot_stage(
    kind: str, params: dict[str, Any] | None = None, problems: int = COT_PROBLEMS
) -> dict[str, Any]:
    """A cot stage of `kind` (`reasonlab.tasks.cot.KINDS`), COT_ROWS rows over `problems`
    distinct training problems, named `data`."""
    cot = {"kind": kind, "n": COT_ROWS, "problems": problems, "params": params or {}}
    return {"name": "data", "kind": "cot", "cot": cot}


def sample_stage(model: str, **settings: Any) -> dict[str, Any]:
    """Rejection sampling (`reasonlab sample --keep correct`) from `model`, named `data`: SAMPLE
    updated by `settings`."""
    return {"name": "data", "kind": "sample", "model": model, "sample": {**SAMPLE, **settings}}


def sft_stage(steps: int = SFT_STEPS, model: str = "base", data: str = "data") -> dict[str, Any]:
    """SFT of `model` on `data` for `steps` steps (warm-up 10% of them, cosine decay), a
    checkpoint every 10 steps for the resume."""
    overrides = [
        f"training.max_steps={steps}",
        f"training.warmup_steps={max(1, steps // 10)}",
        "run.eval_steps=0",
        "run.save_steps=10",
    ]
    return {
        "name": "sft",
        "kind": "sft",
        "model": model,
        "data": data,
        "sft": {"overrides": overrides},
    }


def _pts(value: float) -> float:
    return 100 * value


def _sft_then_rl(record: RunRecord) -> dict[str, float]:
    """Held-out accuracy after SFT (`sft_accuracy`), after RL, the RL gain, and the behaviours
    after RL."""
    after, start = record.after, record.before
    rates = after["behaviours"]
    return {
        "rl_gain": _pts(after["accuracy"] - start["accuracy"]),
        "accuracy": _pts(after["accuracy"]),
        "sft_accuracy": _pts(start["accuracy"]),
        "mean_length": after["mean_length"],
        "tries": after["tries"],
        "behaviour_rate": 100 * sum(rates.values()) / max(1, len(rates)),
    }


SFT_THEN_RL_METRICS = {
    "rl_gain": "held-out accuracy gain of RL over the SFT model (pts)",
    "accuracy": "held-out accuracy after SFT and RL (greedy, %)",
    "sft_accuracy": "held-out accuracy after SFT, before RL (greedy, %)",
    "mean_length": "held-out response length after RL (tokens)",
    "tries": "tries per held-out response after RL",
    "behaviour_rate": "mean of the four behaviour rates after RL (%)",
}


# ----------------------------------------------------------------------------- priming

PRIMED = ("all_behaviours", "backtracking_only", "wrong_answers")
CONTROLS = ("no_behaviours", "empty_cot")


def _priming_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    best_control = [max(vals) for vals in zip(*(table[c]["rl_gain"] for c in CONTROLS))]
    return [
        Effect(
            f"RL gain, {arm} - best of {'/'.join(CONTROLS)}",
            [g - c for g, c in zip(table[arm]["rl_gain"], best_control, strict=True)],
            "pts",
        )
        for arm in PRIMED
    ]


register(
    Experiment(
        name="priming",
        paper="Cognitive Behaviors (Gandhi et al. 2025)",
        claim="priming by SFT with reasoning behaviours (all four, backtracking only, or all with "
        "wrong answers) lets the same RL improve more than priming without behaviours or with an "
        "empty chain of thought of the same length",
        arms=[
            Arm(
                kind,
                AFTER_SFT,
                note=f"SFT on {COT_ROWS} '{kind}' chains of thought (reasonlab cot), then GRPO",
                stages=[cot_stage(kind), sft_stage()],
            )
            for kind in (*PRIMED, *CONTROLS)
        ],
        metrics=SFT_THEN_RL_METRICS,
        measure=lambda ctx, arm, seed, record: _sft_then_rl(record),
        effects=_priming_effects,
        curves=["accuracy", "length/mean"],
    )
)


# ----------------------------------------------------------------------------- long vs short

SFT_BUDGETS = (10, 30, 90)
"""SFT steps of long_vs_short_cot's budgets (x 8 packed rows of 256 tokens)."""


def _sft_tokens(record: RunRecord) -> float:
    """Loss tokens of the arm's SFT stage (its run's token count)."""
    return float(record.stage("sft")["summary"]["final"]["tokens"])


def _long_short(record: RunRecord) -> dict[str, float]:
    return {
        "accuracy": _pts(record.after["accuracy"]),
        "rl_gain": _pts(record.after["accuracy"] - record.before["accuracy"]),
        "sft_tokens": _sft_tokens(record),
        "mean_length": record.after["mean_length"],
    }


def _long_short_effects(table: dict[str, dict[str, list[float]]]) -> list[Effect]:
    mid, top = SFT_BUDGETS[-2], SFT_BUDGETS[-1]

    def rise(kind: str) -> list[float]:
        return _diff(table, f"{kind}_sft{top}", f"{kind}_sft{mid}", "accuracy")

    return [
        Effect(f"long CoT: accuracy at {top} - {mid} SFT steps", rise("long"), "pts"),
        Effect(
            f"accuracy rise from {mid} to {top} SFT steps, long - short",
            [a - b for a, b in zip(rise("long"), rise("short"), strict=True)],
            "pts",
        ),
        Effect(
            "RL gain, after long - after short CoT SFT",
            _diff(table, "long_rl", "short_rl", "rl_gain"),
            "pts",
        ),
    ]


def _long_short_arms() -> list[Arm]:
    arms = []
    for kind in ("short", "long"):
        for steps in SFT_BUDGETS:
            arms.append(
                Arm(
                    f"{kind}_sft{steps}",
                    train=False,
                    note=f"SFT on {kind} CoT, {steps} steps; no RL",
                    stages=[cot_stage(kind), sft_stage(steps)],
                )
            )
        arms.append(
            Arm(
                f"{kind}_rl",
                AFTER_SFT,
                note=f"{kind}_sft{SFT_BUDGETS[-1]} (the same SFT run), then GRPO",
                stages=[cot_stage(kind), sft_stage(SFT_BUDGETS[-1])],
            )
        )
    return arms


register(
    Experiment(
        name="long_vs_short_cot",
        paper="Demystifying Long CoT (Yeo et al. 2025)",
        claim="SFT on long CoT keeps improving with more SFT tokens while short CoT saturates, and RL "
        "adds more on top of long-CoT SFT than on top of short-CoT SFT",
        arms=_long_short_arms(),
        metrics={
            "accuracy": "held-out accuracy (greedy, %): after SFT, or after SFT and RL (_rl)",
            "rl_gain": "held-out accuracy gain of RL over its SFT model (pts; 0 without RL)",
            "sft_tokens": "SFT loss tokens",
            "mean_length": "held-out response length (tokens)",
        },
        measure=lambda ctx, arm, seed, record: _long_short(record),
        effects=_long_short_effects,
    )
)


# ----------------------------------------------------------------------------- constructed vs emergent

SMALL_TARGETS = {"min_target": 1, "max_target": 9}
"""Countdown with targets 1-9 (numbers 1-9 as the demo's): the probe of constructed_vs_emergent
(transfer) and warmup_data (forgetting), a distribution no arm trains on (the base's corpus and
the RL stream are targets 10-30) that the base solves a little (greedy 6% of 50 held-out
problems, measured 2026-11-30)."""
LARGE_TARGETS = {"min_target": 31, "max_target": 60}
"""Countdown with targets 31-60: warmup_data's "another distribution" of reference solutions, far
from the base's (greedy 0% of 50 held-out problems, measured 2026-11-30)."""
LARGE_TARGET_PROBLEMS = 300
"""Distinct training problems of warmup_data's reference solutions: the share of that space outside
the held-out fifth holds 321 (three numbers 1-9), fewer than COT_PROBLEMS."""


def _transfer(record: RunRecord) -> dict[str, float]:
    probe = record.probe
    return {
        **_sft_then_rl(record),
        "probe_sft": _pts(probe["before"]["accuracy"]),
        "probe": _pts(probe["after"]["accuracy"]),
    }


register(
    Experiment(
        name="constructed_vs_emergent",
        paper="Demystifying Long CoT (Yeo et al. 2025)",
        claim="SFT on emergent long CoT (sampled from an RL model, rejection-filtered) generalises "
        "better (a second distribution: targets 1-9) and gains more from RL than SFT on "
        "constructed long CoT",
        arms=[
            Arm(
                "constructed",
                AFTER_SFT,
                note=f"SFT on {COT_ROWS} constructed long CoTs (reasonlab cot long), then GRPO",
                stages=[cot_stage("long"), sft_stage()],
            ),
            Arm(
                "emergent",
                AFTER_SFT,
                note="SFT on the demo GRPO policy's correct samples (reasonlab sample --keep "
                "correct: 200 problems x 4, at most 2 kept each), then GRPO",
                stages=[sample_stage("teacher"), sft_stage()],
            ),
        ],
        metrics={
            "probe_sft": "second distribution (targets 1-9): accuracy after SFT (greedy, %)",
            **SFT_THEN_RL_METRICS,
            "probe": "second distribution: accuracy after SFT and RL (greedy, %)",
        },
        measure=lambda ctx, arm, seed, record: _transfer(record),
        effects=lambda table: [
            Effect(
                "second-distribution accuracy after SFT, emergent - constructed",
                _diff(table, "emergent", "constructed", "probe_sft"),
                "pts",
            ),
            Effect(
                "RL gain, emergent - constructed",
                _diff(table, "emergent", "constructed", "rl_gain"),
                "pts",
            ),
        ],
        probe=SMALL_TARGETS,
        curves=["accuracy", "length/mean"],
    )
)


# ----------------------------------------------------------------------------- distill vs rl

STUDENT = {
    "name": "student",
    "kind": "pretrain",
    "pretrain": {
        "size": "tiny",
        "problems": 500,
        "attempts": 16,
        "steps": 1200,
        "batch_size": 8,
        "style": {"mistake_rate": 0.03},
    },
}
"""The student's base: the demo's corpus and pretraining with the `tiny` size (about a third of
the demo base's parameters) and half its steps; one for every seed."""
DISTILL_SFT_STEPS = 40
STUDENT_RL_STEPS = 10


def _student_tokens(record: RunRecord) -> float:
    """The student's training compute, in loss tokens (tokens whose log-likelihood gradient the
    update takes): the SFT run's, or the RL run's response tokens (responses x mean length, per
    step). The teacher's sampling is not the student's compute (as in DeepSeek-R1's comparison,
    where the distillation data came from the finished R1)."""
    if record.run_dir is None:
        return (
            _sft_tokens(record) if any(s["kind"] == "sft" for s in record.data["stages"]) else 0.0
        )
    counts, lengths = record.curve("responses"), record.curve("length/mean")
    return float(sum(c * m for c, m in zip(counts, lengths, strict=True)))


register(
    Experiment(
        name="distill_vs_rl",
        paper="DeepSeek-R1 (distillation vs RL on Qwen-32B)",
        claim="for a small student, distillation from a stronger RL-trained teacher (its correct "
        "samples, SFT) beats RL on the student itself at comparable student compute",
        arms=[
            Arm(
                "student",
                train=False,
                note="the student's base (pretrained, tiny size)",
                stages=[STUDENT],
            ),
            Arm(
                "distill",
                train=False,
                note="SFT of the student on the demo GRPO policy's correct samples "
                f"({DISTILL_SFT_STEPS} steps)",
                stages=[
                    STUDENT,
                    sample_stage("teacher"),
                    sft_stage(DISTILL_SFT_STEPS, model="student"),
                ],
            ),
            Arm(
                "student_rl",
                [
                    f"run.steps={STUDENT_RL_STEPS}",
                    f"run.eval_every={STUDENT_RL_STEPS}",
                    "run.save_every=5",
                ],
                note=f"GRPO on the student ({STUDENT_RL_STEPS} steps of the demo's recipe)",
                stages=[STUDENT],
            ),
        ],
        metrics={
            "accuracy": "student's held-out accuracy (greedy, %)",
            "student_tokens": "student training compute (loss tokens)",
            "accuracy_sampled": "student's held-out accuracy (T=1, avg@4, %)",
            "mean_length": "held-out response length (tokens)",
        },
        measure=lambda ctx, arm, seed, record: {
            "accuracy": _pts(record.after["accuracy"]),
            "student_tokens": _student_tokens(record),
            "accuracy_sampled": _pts(record.after.get("accuracy_sampled", float("nan"))),
            "mean_length": record.after["mean_length"],
        },
        effects=lambda table: [
            Effect(
                "held-out accuracy, distill - student_rl",
                _diff(table, "distill", "student_rl", "accuracy"),
                "pts",
            ),
            Effect(
                "held-out accuracy, distill - student base",
                _diff(table, "distill", "student", "accuracy"),
                "pts",
            ),
        ],
    )
)


# ----------------------------------------------------------------------------- warm-up data


def _warmup(record: RunRecord) -> dict[str, float]:
    probe = record.probe
    return {
        "accuracy": _pts(record.after["accuracy"]),
        "sft_accuracy": _pts(record.before["accuracy"]),
        "forgetting": _pts(probe["base"]["accuracy"] - probe["after"]["accuracy"]),
        "probe": _pts(probe["after"]["accuracy"]),
        "mean_length": record.after["mean_length"],
    }


register(
    Experiment(
        name="warmup_data",
        paper="SimpleRL-Zoo / Logic-RL notes (rejection-sampling warm-up)",
        claim="an SFT warm-up on the model's own rejection-sampled traces, then RL, ends more "
        "accurate and forgets less than a warm-up on reference solutions of another "
        "distribution, then the same RL",
        arms=[
            Arm(
                "own_traces",
                AFTER_SFT,
                note="SFT on the base's own correct samples (200 training problems x 8, at most 2 "
                "kept each), then GRPO",
                stages=[sample_stage("base", n=8), sft_stage()],
            ),
            Arm(
                "reference_other",
                AFTER_SFT,
                note=f"SFT on {COT_ROWS} reference solutions (reasonlab cot short) of "
                f"{LARGE_TARGET_PROBLEMS} countdown problems with targets 31-60, then GRPO",
                stages=[
                    cot_stage("short", LARGE_TARGETS, problems=LARGE_TARGET_PROBLEMS),
                    sft_stage(),
                ],
            ),
        ],
        metrics={
            "accuracy": "held-out accuracy after warm-up and RL (greedy, %)",
            "sft_accuracy": "held-out accuracy after the warm-up, before RL (greedy, %)",
            "forgetting": "probe (targets 1-9) accuracy, base - after RL (pts; > 0: forgotten)",
            "probe": "probe (targets 1-9) accuracy after RL (greedy, %)",
            "mean_length": "held-out response length after RL (tokens)",
        },
        measure=lambda ctx, arm, seed, record: _warmup(record),
        effects=lambda table: [
            Effect(
                "held-out accuracy after RL, own_traces - reference_other",
                _diff(table, "own_traces", "reference_other", "accuracy"),
                "pts",
            ),
            Effect(
                "forgetting, reference_other - own_traces",
                _diff(table, "reference_other", "own_traces", "forgetting"),
                "pts",
            ),
        ],
        probe=SMALL_TARGETS,
        curves=["accuracy", "length/mean"],
    )
)
