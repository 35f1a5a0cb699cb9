"""R1-Zero on a laptop: pretrain a tiny base model, evaluate, GRPO with a verifiable reward,
evaluate again, and write a summary and plots.

    pretrain (cached)  ->  held-out accuracy before  ->  GRPO  ->  held-out accuracy after

The base model (`reasonlab.models.base_model`, settings `DEMO_PRETRAIN`) is a ~1M-parameter Llama
trained from scratch on simulated countdown attempts (`reasonlab.tasks.corpus`): three in four give
up after one failed try, one in four keeps trying, checks and backtracks. Greedy decoding of that
base gives up after a first miss; GRPO with the countdown reward (recipe `demo_countdown.yaml`)
finds that trying again pays, and held-out accuracy and response length go up together, as in
R1-Zero. The held-out problems come from the share of the problem space (`task.held_out_fraction`
of the recipe, by a hash of each problem's sorted numbers and target: `reasonlab.tasks.split`) that
neither the corpus nor the RL prompt stream ever draws from; the summary's `audit` counts, from the
run's own files, the RL prompts and corpus problems that are held-out problems (zero by
construction, checked on every run). The policy kept and evaluated is the final step's.

Accuracy is measured twice on the same held-out problems: greedy (`accuracy`, the headline) and
the mean over `eval_samples` samples at temperature 1 (`accuracy_sampled`, avg@n).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from reasonlab.io import atomic_write_text

DEMO_RECIPE = Path(__file__).resolve().parent / "demo_countdown.yaml"

DEMO_PRETRAIN: dict[str, Any] = dict(
    problems=500,
    attempts=16,
    steps=1800,
    batch_size=8,
    packing="bfd",
    style={"mistake_rate": 0.03},
)
"""`PretrainSettings` of the demo's base model (task, params and template come from the recipe).
Best-fit decreasing packing puts the corpus in 10% fewer rows than greedy packing; 1800 steps
(3.6 epochs) is what fits the demo's 10 minutes with the RL stage (README: 533 s for a first run
on 2 idle cores; the 2150-step base, the same 4.25 epochs as the former 2400 greedy steps, gave
more RL gain but 625 s). `reasonlab experiment` keeps the former base (its `BASE_PRETRAIN`)."""


def base_settings(cfg: Any, seed: int = 0, pretrain: dict[str, Any] | None = None) -> Any:
    """The demo base model's `PretrainSettings` for the RL recipe `cfg` (its task, params and
    template), `DEMO_PRETRAIN` updated by `pretrain`; `reasonlab experiment` shares this base."""
    from reasonlab.models.base_model import PretrainSettings

    return PretrainSettings(
        task=cfg.task.name,
        params=dict(cfg.task.params),
        template=cfg.task.template,
        seed=seed,
        **{**DEMO_PRETRAIN, **(pretrain or {})},
    )


def evaluate_held_out(
    model: Any, tokenizer: Any, task: Any, examples: list[Any], cfg: Any, samples: int, seed: int
) -> dict[str, Any]:
    """Greedy and sampled (T=1, avg@`samples`) held-out accuracy
    (`reasonlab.eval.runner.greedy_and_sampled`), with the greedy responses' format rate, mean
    length, truncation rate, tries per response ("Try again" + 1), and what
    `reasonlab.analysis.behaviours` counts in them, per response: each R1 reflection word
    (`reflection_words`, word -> mean count), each oat-zero keyword (`oat_zero_keywords`), and the
    share of responses showing each cognitive behaviour (`behaviours`, rule-based detector)."""
    from reasonlab.analysis.behaviours import detector_for, summarize
    from reasonlab.eval.runner import greedy_and_sampled
    from reasonlab.rollout import get_engine

    results = greedy_and_sampled(
        get_engine("hf", model=model, tokenizer=tokenizer),
        task,
        examples,
        template=cfg.task.template,
        max_new_tokens=cfg.rollout.max_new_tokens,
        stop=cfg.rollout.stop,
        samples=samples,
        seed=seed,
    )
    greedy = results["greedy"].headline()
    out: dict[str, Any] = {
        k: greedy[k] for k in ("accuracy", "format_rate", "mean_length", "truncation_rate")
    }
    if "sampled" in results:
        out["accuracy_sampled"] = results["sampled"].headline()["accuracy"]
    generations = results["greedy"].generations
    texts = [c["text"] for g in generations for c in g["completions"]]
    metas = [g["example"].get("meta") for g in generations for _ in g["completions"]]
    out["tries"] = sum(t.count("Try again") + 1 for t in texts) / max(1, len(texts))
    counted = summarize(texts, detector_for(task.name), metas)
    for key, prefix in (
        ("reflection_words", "r1_words/"),
        ("oat_zero_keywords", "oat_zero/"),
        ("behaviours", "behaviour/"),
    ):
        out[key] = {
            k[len(prefix) :]: v
            for k, v in counted.items()
            if k.startswith(prefix) and not k.endswith("_per_response")
        }
    return out


def run_demo(
    out: Path,
    *,
    recipe: Path = DEMO_RECIPE,
    overrides: list[str] | None = None,
    pretrain: dict[str, Any] | None = None,
    eval_examples: int = 100,
    eval_samples: int = 4,
    seed: int = 0,
    rl_seed: int | None = None,
    log=print,
) -> dict[str, Any]:
    """Run the demo into `out`; returns the summary also written to `out/summary.json`.

    `out` receives base/ (the pretrained base model), rl/ (the GRPO run: metrics, rollouts,
    eval, checkpoint), policy/ (the RL model as a Hugging Face folder), training.png,
    summary.json, summary.md and report.html (`reasonlab.analysis.report`).

    `pretrain` overrides entries of `DEMO_PRETRAIN` (e.g. {"steps": 600} for a quick run);
    `overrides` are `key=value` overrides of the RL recipe. `seed` seeds the base model (corpus,
    weights, batches) and, unless `rl_seed` is given, the RL run (prompt stream and sampling); the
    held-out problems are the recipe's (`task.eval_seed`), the same for every seed.
    """
    from reasonlab import models, tasks
    from reasonlab.analysis.plots import plot_training
    from reasonlab.config import load_config
    from reasonlab.models.base_model import corpus_problems, pretrain_base
    from reasonlab.rl.config import TrainConfig
    from reasonlab.rl.data import split_examples
    from reasonlab.rl.trainer import Trainer

    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"task.eval_size={eval_examples}", *list(overrides or [])]
    cfg = load_config(TrainConfig, str(recipe), overrides)
    settings = base_settings(cfg, seed, pretrain)
    base_dir = out / "base"
    # the recipe's thread count for pretraining too: torch's process-wide setting may have been
    # lowered by an earlier run in the same process (a test session), which doubled this stage
    record = pretrain_base(
        settings, base_dir, eval_examples=0, num_threads=cfg.run.num_threads, log=log
    )
    pretrain_seconds = time.perf_counter() - start

    task = tasks.get(cfg.task.name)
    _, held = split_examples(task, cfg.task)  # the same problems for every seed
    model, tokenizer = models.load(base_dir)
    eval_start = time.perf_counter()
    before = evaluate_held_out(model, tokenizer, task, held, cfg, eval_samples, seed)
    eval_seconds = time.perf_counter() - eval_start
    log(
        f"base model: held-out accuracy {before['accuracy']:.1%} greedy, "
        f"{before.get('accuracy_sampled', float('nan')):.1%} sampled ({len(held)} problems)"
    )

    cfg.model.path = str(base_dir)
    cfg.run.out_dir = str(out / "rl")
    if (out / "rl").exists():  # a demo run is one piece: only the base model is reused
        log(f"replacing the previous RL run in {out / 'rl'}")
        shutil.rmtree(out / "rl")
    cfg.run.seed = cfg.task.seed = seed if rl_seed is None else rl_seed
    rl_start = time.perf_counter()
    trainer = Trainer(cfg, model=model, tokenizer=tokenizer, eval_examples=held)
    trainer.train()
    rl_seconds = time.perf_counter() - rl_start
    models.save(trainer.model, tokenizer, out / "policy")  # the RL model, for `reasonlab eval`
    eval_start = time.perf_counter()
    after = evaluate_held_out(trainer.model, tokenizer, task, held, cfg, eval_samples, seed)
    eval_seconds += time.perf_counter() - eval_start
    log(
        f"after GRPO: held-out accuracy {after['accuracy']:.1%} greedy, "
        f"{after.get('accuracy_sampled', float('nan')):.1%} sampled"
    )

    plot_training(out / "rl", out / "training.png")
    corpus_examples = corpus_problems(settings)
    summary = {
        "task": cfg.task.name,
        "params": dict(cfg.task.params),
        "held_out_examples": len(held),
        "held_out_fraction": cfg.task.held_out_fraction,
        "audit": audit(task, out / "rl", corpus_examples, cfg.task.held_out_fraction),
        "policy": "final step",
        "eval_samples": eval_samples,
        "seed": seed,
        "rl_seed": cfg.run.seed,
        "base_model": {
            "settings_hash": record["settings_hash"],
            "num_params": record["train"]["num_params"],
            "pretrain_steps": settings.steps,
        },
        "before": before,
        "after": after,
        "gain": after["accuracy"] - before["accuracy"],
        "rl_steps": cfg.run.steps,
        "seconds": time.perf_counter() - start,
        "seconds_pretrain": pretrain_seconds,
        "seconds_rl": rl_seconds,
        "seconds_eval": eval_seconds,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    table = summary_table(summary)
    atomic_write_text(out / "summary.md", table + "\n")
    log(table)
    from reasonlab.analysis.report import write_report

    log(f"wrote {write_report([out], out / 'report.html')}")
    log(f"{summary['seconds']:.0f}s in all; run folder {out}")
    return summary


def audit(task: Any, run_dir: Path, corpus_examples: list[Any], fraction: float) -> dict[str, int]:
    """Held-out problems among what was trained on, counted by key from the run's own files
    (`heldout.jsonl`, `prompts.jsonl`) and the base model's corpus problems: all zero by
    construction."""
    from reasonlab.io import read_jsonl
    from reasonlab.tasks.split import share_position

    held = {row["key"] for row in read_jsonl(run_dir / "heldout.jsonl")}
    prompts = [row["key"] for row in read_jsonl(run_dir / "prompts.jsonl")]
    corpus_keys = [task.key(ex) for ex in corpus_examples]
    return {
        "rl_prompts": len(prompts),
        "rl_prompts_evaluated": sum(k in held for k in prompts),
        "rl_prompts_in_held_out_share": sum(share_position(k) < fraction for k in prompts),
        "corpus_problems": len(corpus_keys),
        "corpus_problems_evaluated": sum(k in held for k in corpus_keys),
        "corpus_problems_in_held_out_share": sum(share_position(k) < fraction for k in corpus_keys),
    }


def summary_table(summary: dict[str, Any]) -> str:
    """The before/after markdown table of a demo summary."""
    rows = [
        "| | held-out accuracy (greedy) | sampled (T=1, avg@n) | format | mean length | tries "
        "| R1 reflection words per response (each) | truncated |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in ("before", "after"):
        r = summary[name]
        sampled = f"{r['accuracy_sampled']:.1%}" if "accuracy_sampled" in r else "-"
        rows.append(
            f"| {name} | {r['accuracy']:.1%} | {sampled} | {r['format_rate']:.1%} | "
            f"{r['mean_length']:.1f} | {r['tries']:.2f} | {_words(r['reflection_words'])} | "
            f"{r['truncation_rate']:.1%} |"
        )
    return "\n".join(rows)


def _words(per_word: dict[str, float]) -> str:
    """ "wrong 1.20, check 0.30": the words that occur, most frequent first."""
    shown = sorted(((v, w) for w, v in per_word.items() if v > 0), reverse=True)
    return ", ".join(f"{w} {v:.2f}" for v, w in shown) or "none"
