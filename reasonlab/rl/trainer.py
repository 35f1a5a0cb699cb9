"""The RL loop: sample prompts, roll out, verify and score, compute advantages, update the policy.

    from reasonlab.rl import Trainer, TrainConfig
    summary = Trainer(config).train()

One step, as implemented (the names are veRL's and TRL's):

1. **Prompts** come from a deterministic data stream (`PromptStream`) whose position is saved in
   every checkpoint, so a resumed run sees the same prompts as an uninterrupted one.
2. **Rollouts**: `rollout.n` responses per prompt from the engine (the policy itself with the `hf`
   engine); prompt i of a step is sampled with its own seed (run.seed, step, i) (`Prompt.seed`), so
   what it samples does not depend on the other prompts of the batch or on the number of ranks.
3. **Scores**: the task's verifier gives a `Verdict` per response; the reward is a weighted sum of
   terms (the accuracy scheme of `rewards.scheme`, which reads the verdicts, plus `rewards.terms`),
   every component logged on its own.
4. **Dynamic sampling** (DAPO, Yu et al. 2025, sec. 3.2; optional): groups whose rewards are all
   equal have zero group-relative advantage; they are dropped and more prompts sampled (as many as
   groups are still missing), up to `max_refill_rounds` extra rounds; the batch is then cut to
   `prompts_per_step` groups (or what was kept, when fewer). Under data parallelism every decision
   is made on the global batch (see `Trainer._collect`), so W ranks train on one process's batch.
5. **Update** (`reasonlab.rl.learner.Learner`): a no-grad pass (pi_old, reference logprobs,
   values), advantages with `compute_advantages`, then `ppo_epochs` passes of minibatch AdamW
   steps with gradient accumulation normalised by whole-minibatch counts; see that module. A
   non-finite loss or gradient skips the optimiser step and is reported; after `max_bad_steps`
   consecutive steps with such a skip, training stops with `TrainingError`.
6. **Logging**: one row per step in metrics.jsonl (reward and each component, accuracy, lengths,
   truncation, KL, entropy, clip fraction, grad norm, lr, tokens/s, seconds per phase), sampled
   responses in rollouts.jsonl, held-out evaluations in eval.jsonl; checkpoints every `save_every`.
7. **Reference model** (only when kl_coef > 0): a frozen copy of the initial policy, replaced by
   the current policy every `ref_refresh_every` steps (DeepSeek-R1 does so every 400 steps);
   with LoRA (`model.lora`), the policy itself with its adapters disabled (as TRL does).

What is kept simple, on purpose:

- The PPO critic is a linear value head on the policy (`reasonlab.rl.learner.ValueHead`).
- Dropout is disabled in the model (every dropout probability set to 0, as TRL's
  `disable_dropout` and veRL do for RL), so the logprobs of the update match those of sampling;
  the update runs in training mode, where transformers applies gradient checkpointing
  (`model.gradient_checkpointing`, non-reentrant), and everything else in eval mode.
- The learning-rate schedule advances once per RL step (warm-up and decay are counted in steps).
- Weights and AdamW states stay float32; `model.dtype` bfloat16/float16 is the autocast compute
  dtype on CUDA (veRL's FSDP mixed precision keeps fp32 master weights the same way), or, under
  `model.parallel=fsdp`, FSDP2's MixedPrecisionPolicy (bf16 parameters for compute, fp32 shards
  and reduction). Data parallelism and LoRA: `reasonlab.parallel` (see ARCHITECTURE.md, Scale).

Held-out evaluation (`reasonlab.eval.runner.evaluate`) runs every `run.eval_every` steps on examples drawn from the
held-out share of the problem space (`task.held_out_fraction`), generated with `task.eval_seed`, or
from `task.eval_split`; the data stream skips every training example with the key (`Task.key`) of
an evaluated problem or in the held-out share, so nothing evaluated is trained on under any
reordering or renaming. The run folder records both sides (heldout.jsonl, prompts.jsonl).
Greedy decoding by default (`run.eval_temperature=0`), one response per example.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import json
import os
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reasonlab.analysis.dynamics import step_metrics
from reasonlab.eval import runner as eval_runner
from reasonlab.io import read_run_file, start_run_dir, truncate_run_file
from reasonlab.models import enable_gradient_checkpointing, resolve_device
from reasonlab.optim import lr_factor
from reasonlab.parallel import add_lora, full_state_dict, wrap_model
from reasonlab.records import Example, Scored
from reasonlab.rl.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    remove_partial,
    save_checkpoint,
)
from reasonlab.rl.config import TrainConfig, validate
from reasonlab.rl.data import build_stream, derive_seed, has_generator, split_examples
from reasonlab.rl.distributed import Dist
from reasonlab.rl.learner import Learner, StepBatch, ValueHead, build_optimizer
from reasonlab.rl.losses import groups_with_signal
from reasonlab.rollout.base import Prompt, SamplingParams
from reasonlab.tasks.base import verify_all
from reasonlab.threads import set_intra_op_threads

RUN_FILES = ("metrics.jsonl", "rollouts.jsonl", "eval.jsonl", "prompts.jsonl")
"""Per-step run files, cut back to the checkpoint's step on resume. prompts.jsonl lists every
training prompt (step, stream position, id, problem key); heldout.jsonl, written once, the
evaluation examples with their keys: together they let anyone audit a run for overlap."""
TIMING_KEYS = ("time/", "tokens_per_s")
"""Metric-name prefixes that measure wall time (they differ between identical runs)."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps)."""


# ----------------------------------------------------------------------------- rewards


@dataclass
class RewardTerm:
    """A weighted reward function; `fn(completions, **columns) -> list[float]` (TRL's contract)."""

    name: str
    weight: float
    fn: Callable[..., list[float]]


def build_scorer(cfg: Any, extra: Sequence[RewardTerm] = ()) -> Any:
    """A `rewards.Combined` from `RewardsConfig`: the accuracy scheme (it reads the `verdicts`
    column the trainer fills) and each {name, weight, params}, plus `extra` terms (library users'
    own functions). Every component is reported by its name (`name/part` for composite rewards)."""
    from reasonlab import rewards

    terms: dict[str, tuple[Callable[..., list[float]], float]] = {}
    if cfg.scheme is not None:
        terms[cfg.scheme] = (rewards.get(cfg.scheme), cfg.scheme_weight)
    for term in list(cfg.terms) + list(extra):
        fn = term.fn if isinstance(term, RewardTerm) else rewards.get(term.name, **term.params)
        if term.name in terms:
            raise ValueError(f"reward term {term.name!r} is given twice")
        terms[term.name] = (fn, term.weight)
    return rewards.Combined(terms, name="reward")


# ----------------------------------------------------------------------------- models


def build_tiny_tokenizer(task: Any, cfg: TrainConfig) -> Any:
    """A tokenizer trained on rendered prompts and gold answers of the task (offline)."""
    from reasonlab.models import tiny

    t = cfg.model.tiny
    if has_generator(task) and cfg.task.split is None:
        examples = task.generate(t.corpus_examples, seed=t.seed, **cfg.task.params)
    else:
        examples = task.load(cfg.task.split, limit=t.corpus_examples)
    texts = [f"{task.render(ex, cfg.task.template)} {ex.answer}" for ex in examples]
    pre_tokenizer = "qwen2" if t.arch == "qwen2" else "compact"
    return tiny.build_tokenizer(texts, vocab_size=t.vocab_size, pre_tokenizer=pre_tokenizer)


def build_tiny_model(tokenizer: Any, cfg: TrainConfig) -> Any:
    from reasonlab.models import tiny

    t = cfg.model.tiny
    return tiny.build_model(
        tokenizer,
        arch=t.arch,
        hidden_size=t.hidden_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        intermediate_size=t.intermediate_size,
        max_position_embeddings=t.max_position_embeddings,
        seed=t.seed,
    )


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak lr after `k` scheduler steps (k = RL steps done): the shared
    schedule `reasonlab.optim.lr_factor` (linear warm-up over warmup_steps, then constant / cosine
    / linear decay towards min_lr_ratio over run.steps)."""
    o, total = cfg.optim, cfg.run.steps
    return functools.partial(
        lr_factor,
        total_steps=total,
        warmup_steps=o.warmup_steps,
        schedule=o.schedule,
        min_lr_ratio=o.min_lr_ratio,
    )


# ----------------------------------------------------------------------------- the update


# ----------------------------------------------------------------------------- evaluation


# ----------------------------------------------------------------------------- the trainer


class Callback:
    """Hooks called by `Trainer.train` (override what you need)."""

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        """After a step's metrics are written."""

    def on_evaluate(self, trainer: Trainer, step: int, results: dict[str, Any]) -> None:
        """After a held-out evaluation."""


class Trainer:
    """Runs `TrainConfig` end to end; `train()` returns a summary.

    Library hooks: `task=` (a Task object instead of `task.name`), `reward_fns=` (extra
    `RewardTerm`s: any TRL-style function with a weight), `model=`/`tokenizer=` (objects instead of
    `model.path`), `callbacks=`, `eval_examples=` (a held-out set instead of the config's; the
    training stream skips its questions). `resume=True` continues from the newest checkpoint in
    `run.out_dir` (metrics rows past it are dropped).
    """

    def __init__(
        self,
        config: TrainConfig,
        *,
        task: Any = None,
        reward_fns: Sequence[RewardTerm] = (),
        model: Any = None,
        tokenizer: Any = None,
        callbacks: Sequence[Callback] = (),
        resume: bool = False,
        dist: Dist | None = None,
        eval_examples: Sequence[Example] | None = None,
    ):
        self.dist = dist or Dist.single()
        self.config = validate(
            config, world_size=self.dist.world_size, extra_rewards=len(reward_fns)
        )
        cfg = self.config
        self.callbacks = list(callbacks)
        self.run_dir = Path(cfg.run.out_dir)
        self._setup_torch()

        from reasonlab import tasks

        self.task = task if task is not None else tasks.get(cfg.task.name)
        train_examples, self.eval_examples = split_examples(self.task, cfg.task)
        if eval_examples is not None:  # the caller's held-out set
            self.eval_examples = list(eval_examples)
        self.stream = build_stream(self.task, cfg.task, train_examples, self.eval_examples)
        self.scorer = build_scorer(cfg.rewards, reward_fns)

        checkpoint = None
        if resume:
            if self.dist.is_main:
                remove_partial(self.run_dir)
            checkpoint = latest_checkpoint(self.run_dir)
            if checkpoint is None and self.dist.is_main:
                print(f"reasonlab: no checkpoint in {self.run_dir}: starting the run over")
        if not resume and (self.run_dir / "metrics.jsonl").exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a run (metrics.jsonl); resume it with --resume "
                f"{self.run_dir} or choose another run.out_dir"
            )
        self.device = resolve_device(cfg.model.device)
        self.model, self.tokenizer = self._load_model(model, tokenizer, checkpoint)
        self.model.eval()  # the Learner disables dropout and trains in training mode
        if cfg.model.gradient_checkpointing:
            enable_gradient_checkpointing(self.model)
        self.peft = None  # with model.lora: the peft model around self.model (adapters injected)
        if cfg.model.lora is not None:
            self.peft = add_lora(self.model, cfg.model.lora)
        self.value_head = None
        if cfg.algorithm.advantage == "gae":
            hidden = self.model.config.hidden_size
            self.value_head = ValueHead(hidden).to(self.device)
        self.ref_model = None
        if cfg.algorithm.kl_coef > 0 and self.peft is not None:
            self.ref_model = self.model  # run with its adapters disabled (Learner.ref_context)
        elif cfg.algorithm.kl_coef > 0:
            self.ref_model = copy.deepcopy(self.model).requires_grad_(False).eval()
        half = None  # the compute dtype when not float32 (CUDA only)
        if self.device.type == "cuda" and cfg.model.dtype in ("bfloat16", "float16", "auto"):
            half = torch.float16 if cfg.model.dtype == "float16" else torch.bfloat16
        sharded = cfg.model.parallel == "fsdp" and self.dist.enabled
        # Generation from FSDP2 shards would all-gather every layer at every decoded token, in
        # lockstep over ranks that sample different lengths; instead each rank samples from a
        # full copy of its own (in the compute dtype), refreshed from the gathered weights after
        # each update, in memory (no save/load round trip).
        self.generation_model = self.model
        if sharded:
            self.generation_model = copy.deepcopy(self.model).requires_grad_(False)
            if half is not None:
                self.generation_model.to(half)
        wrap = dict(parallel=cfg.model.parallel, param_dtype=half if sharded else None)
        self.wrapped = wrap_model(self.model, cpu_offload=cfg.model.cpu_offload, **wrap)
        if self.ref_model is not None and self.ref_model is not self.model:
            wrap_model(self.ref_model, trainable=False, cpu_offload=cfg.model.cpu_offload, **wrap)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        self.optimizer = build_optimizer(params, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg))
        # with FSDP2's mixed precision the shards are cast for compute: no autocast on top
        autocast = None if sharded else half
        self.autocast_dtype = autocast
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else self.tokenizer.eos_token_id
        self.learner = Learner(
            self.model,
            self.optimizer,
            cfg,
            pad_id=self.pad_id,
            value_head=self.value_head,
            ref_model=self.ref_model,
            dist=self.dist,
            autocast_dtype=autocast,
            wrapped=self.wrapped,
            ref_context=None if self.peft is None else self.peft.disable_adapter,
        )
        from reasonlab.rollout import get_engine

        self.engine = get_engine(
            cfg.rollout.engine,
            model=self.generation_model,
            tokenizer=self.tokenizer,
            batch_size=cfg.rollout.batch_size,
        )
        self.step = 0
        self.bad_steps = 0
        self.ref_step = 0
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.dist.is_main:
            self._start_run_dir()

    # -- setup ------------------------------------------------------------------------------

    def _setup_torch(self) -> None:
        run = self.config.run
        set_intra_op_threads(run.num_threads)
        if run.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        random.seed(run.seed)
        np.random.seed(run.seed % (2**32))
        torch.manual_seed(run.seed)

    def _load_model(self, model: Any, tokenizer: Any, checkpoint: Path | None) -> tuple[Any, Any]:
        cfg = self.config
        if model is not None:
            if tokenizer is None:
                raise ValueError("pass tokenizer= together with model=")
        elif cfg.model.path == "tiny":
            # rebuilt (deterministic) rather than reloaded: the checkpoint's vocabulary must match
            tokenizer = build_tiny_tokenizer(self.task, cfg)
            if checkpoint is not None:
                _check_same_vocab(tokenizer, checkpoint / "model" / "tokenizer.json")
            model = build_tiny_model(tokenizer, cfg)
        else:
            from reasonlab import models

            model, tokenizer = models.load(cfg.model.path, dtype="float32", device="cpu")
        return model.to(self.device), tokenizer

    def _start_run_dir(self) -> None:
        start_run_dir(
            self.run_dir,
            self.config,
            RUN_FILES,
            [{**ex.to_dict(), "key": self.task.key(ex)} for ex in self.eval_examples],
        )

    def _restore(self, checkpoint: Path) -> None:
        ref = self.ref_model
        state = load_checkpoint(
            checkpoint,
            model=self.model if self.peft is None else self.peft,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            value_head=self.value_head,
            ref_model=ref,
        )
        self.step = int(state["step"])
        self.stream.position = int(state["data_position"])
        self.bad_steps = int(state.get("bad_steps", 0))
        self.ref_step = int(state.get("ref_step", 0))
        self.learner.entropy_coef = float(
            state.get("entropy_coef", self.config.algorithm.entropy_coef)
        )
        self.learner.last_entropy = state.get("last_entropy")
        self._sync_engine()
        if self.dist.is_main:
            for name in RUN_FILES:
                truncate_run_file(self.run_dir / name, self.step)
            self.history = [
                row for row in read_run_file(self.run_dir / "metrics.jsonl") if "step" in row
            ]
        self.dist.barrier()

    def _sync_engine(self) -> None:
        """Hand the policy's current weights to the generation engine (under FSDP: gathered from
        the shards on every rank, a collective)."""
        if self.wrapped.sharded:
            self.engine.update_weights(full_state_dict(self.model))
        else:
            self.engine.update_weights(self.model)

    def _save(self) -> None:
        if not self.dist.is_main and not self.wrapped.sharded:
            return  # replicated state: rank 0 writes it; sharded: every rank writes its shards
        save_checkpoint(
            self.run_dir,
            self.step,
            model=self.model,
            tokenizer=self.tokenizer,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state={
                "data_position": self.stream.position,
                "bad_steps": self.bad_steps,
                "ref_step": self.ref_step,
                "metrics_rows": len(self.history),
                "entropy_coef": self.learner.entropy_coef,
                "last_entropy": self.learner.last_entropy,
            },
            value_head=self.value_head,
            ref_model=self.ref_model if self.ref_step > 0 else None,
            keep=self.config.run.keep_checkpoints,
            dist=self.dist,
            peft=self.peft,
        )

    def export_merged(self, path: Path) -> Path:
        """Save the policy with its LoRA adapters merged into the base weights (W + (alpha / r) B
        A) as a standard Hugging Face folder; the trained model is left as it is."""
        from reasonlab import models

        merged = copy.deepcopy(self.peft).merge_and_unload()
        return models.save(merged, self.tokenizer, path)

    # -- one step ---------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _rollout_and_score(self, examples: list[Example], seeds: list[int]) -> dict[str, Any]:
        """Generate `rollout.n` responses per example (example i sampled with its own seed
        `seeds[i]`), verify and score them: {rollouts, verdicts, rewards, components (name ->
        value per response), difficulty (per response, `Task.difficulty_key`), time_generate,
        time_score}."""
        cfg = self.config
        n = cfg.rollout.n
        out: dict[str, Any] = {
            "rollouts": [],
            "verdicts": [],
            "difficulty": [],
            "rewards": [],
            "components": {},
        }
        if not examples:  # a rank whose share of a refill round is empty
            return {**out, "time_generate": 0.0, "time_score": 0.0}
        prompts = [
            Prompt(self.task.render(ex, cfg.task.template, self.tokenizer), ex.id, seed=seed)
            for ex, seed in zip(examples, seeds)
        ]
        params = SamplingParams(
            n=n,
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            max_new_tokens=cfg.rollout.max_new_tokens,
            stop=list(cfg.rollout.stop),
            logprobs_mode=cfg.rollout.logprobs_mode,
        )
        t0 = time.perf_counter()
        with self._autocast():
            rollouts = self.engine.generate(prompts, params)
        t1 = time.perf_counter()
        per_response = [ex for ex in examples for _ in range(n)]
        texts = [r.text for r in rollouts]
        verdicts = verify_all(self.task, texts, per_response)
        scored = self.scorer.score(
            texts,
            prompts=[p.text for p in prompts for _ in range(n)],
            completion_ids=[r.completion_ids for r in rollouts],
            verdicts=verdicts,
            example=per_response,
            example_id=[ex.id for ex in per_response],
            answer=[ex.answer for ex in per_response],
            finish_reason=[r.finish_reason for r in rollouts],
        )
        key = self.task.difficulty_key
        return {
            "rollouts": rollouts,
            "verdicts": verdicts,
            "difficulty": [eval_runner.group_value(ex, key) for ex in per_response],
            "rewards": scored.total,
            "components": scored.components,
            "time_generate": t1 - t0,
            "time_score": time.perf_counter() - t1,
        }

    def _collect(self, step: int) -> dict[str, Any]:
        """Sample and score the step's groups, filtered by dynamic sampling; every rank returns
        the same data (all ranks' responses, in stream order) and its own `local_rows`.

        Each round, every rank reads the same block of prompts from the stream: prompts_per_step
        in round 0, then as many as the groups still missing *over all ranks*. A rank generates
        and scores its contiguous share of the block (uneven when the block does not split evenly;
        a rank may get none), and the round's results are all-gathered in rank order. So every
        rank sees the same groups, keeps the same ones, runs the same rounds and ends at the same
        stream position. Prompt i of the step (counted over its rounds) is sampled with the seed
        (run.seed, step, i), whichever rank holds it (`Prompt.seed`): W ranks sample what one
        process does. The kept groups (the first prompts_per_step in stream order) are cut to a
        multiple of the world size, so each rank trains on an equal contiguous share; the global
        batch is then the one process's batch (the two differ only when the refill rounds run
        out with a kept count that is not a multiple of the world size).
        """
        cfg, d = self.config, self.dist
        n = cfg.rollout.n
        target = cfg.batching.prompts_per_step  # groups to train on, all ranks together
        data: dict[str, Any] = {
            "rollouts": [],
            "verdicts": [],
            "difficulty": [],
            "rewards": [],
            "components": {},
        }
        kept: list[int] = []  # the kept groups: indices into the step's groups, in stream order
        gen_time = score_time = 0.0
        drawn = rounds = 0  # prompts read from the stream in this step; sampling rounds
        while True:
            block = self.stream.take(target - len(kept))  # the same block on every rank
            share = d.local_slice(len(block), even=False)
            seeds = [derive_seed(cfg.run.seed, step, drawn + i) for i in range(len(block))]
            local = self._rollout_and_score(block[share], seeds[share])
            gen_time += local.pop("time_generate")
            score_time += local.pop("time_score")
            for part in d.all_gather_objects(local):  # rank order: the block's order
                for key in ("rollouts", "verdicts", "difficulty", "rewards"):
                    data[key] += part[key]
                for key, values in part["components"].items():
                    data["components"].setdefault(key, []).extend(values)
            if cfg.algorithm.dynamic_sampling:
                rewards = torch.tensor(data["rewards"][drawn * n :], dtype=torch.float64)
                signal = groups_with_signal(rewards, n).tolist()  # [len(block)]
                kept += [drawn + g for g, ok in enumerate(signal) if ok]
            else:
                kept += range(drawn, drawn + len(block))
            drawn += len(block)
            rounds += 1
            if len(kept) >= target or rounds > cfg.algorithm.max_refill_rounds:
                break
        kept = kept[:target]
        kept = kept[: len(kept) - len(kept) % d.world_size]  # an equal share per rank
        mine = kept[d.local_slice(len(kept))]
        return {
            **data,
            "rows": [g * n + j for g in kept for j in range(n)],  # trained responses, all ranks
            "local_rows": [g * n + j for g in mine for j in range(n)],  # this rank's share
            "rounds": rounds,
            "time_generate": gen_time,
            "time_score": score_time,
        }

    def _step_metrics(self, step: int, data: dict[str, Any]) -> dict[str, Any]:
        """Reward, accuracy and length statistics over every response sampled in the step (all
        ranks: `data` holds them all), before dynamic-sampling filtering."""
        rollouts, verdicts = data["rollouts"], data["verdicts"]
        rewards = np.asarray(data["rewards"], dtype=np.float64)
        lengths = np.asarray([len(r.completion_ids) for r in rollouts], dtype=np.float64)
        metrics: dict[str, Any] = {
            "step": step,
            "reward/mean": float(rewards.mean()),
            "reward/std": float(rewards.std()),
        }
        for key, values in sorted(data["components"].items()):
            metrics[f"reward/{key}"] = float(np.mean(values))
        metrics.update(
            {
                "accuracy": float(np.mean([v.correct for v in verdicts])),
                "format_rate": float(np.mean([v.format_ok for v in verdicts])),
                "length/mean": float(lengths.mean()),
                "length/min": float(lengths.min()),
                "length/max": float(lengths.max()),
                "truncation_rate": float(np.mean([r.finish_reason == "length" for r in rollouts])),
                "responses": len(rewards),
                "groups_trained": len(data["rows"]) // self.config.rollout.n,
                "sampling_rounds": data["rounds"],
                "data_position": self.stream.position,
            }
        )
        # accuracy by difficulty (`Task.difficulty_key`: countdown numbers, K&K people, MATH level)
        by: dict[Any, list[bool]] = {}
        for value, verdict in zip(data["difficulty"], verdicts):
            if value is not None:
                by.setdefault(value, []).append(verdict.correct)
        for value in sorted(by, key=str):
            metrics[f"accuracy/{self.task.difficulty_key}={value}"] = float(np.mean(by[value]))
        # behaviour rates and reflection words of every response (rule-based, reasonlab.analysis)
        texts = [r.text for r in rollouts]  # every rank's: `data` holds them all
        metrics.update(step_metrics(texts, self.config.task.name, [int(x) for x in lengths]))
        return metrics

    def train_step(self) -> dict[str, Any]:
        """One RL step: collect, update, log. Returns the step's metrics row."""
        cfg = self.config
        step = self.step + 1
        t0 = time.perf_counter()
        data = self._collect(step)
        metrics = self._step_metrics(step, data)
        rows = data["local_rows"]
        t1 = time.perf_counter()
        update: dict[str, float] = {}
        trained = metrics["groups_trained"] > 0
        if trained:
            rollouts = [data["rollouts"][i] for i in rows]
            rewards = [data["rewards"][i] for i in rows]
            batch = StepBatch.from_rollouts(rollouts, rewards, cfg.rollout.n)
            update = self.learner.update(batch, step)
        metrics["lr"] = self.optimizer.param_groups[0]["lr"]
        with warnings.catch_warnings():  # a step whose updates were all skipped still counts
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            self.scheduler.step()
        t2 = time.perf_counter()
        metrics.update(update)
        bad = update.get("skipped_updates", 0) > 0
        self.bad_steps = self.bad_steps + 1 if bad else 0
        metrics["bad_step"] = bad
        if self.ref_model is not None and cfg.algorithm.ref_refresh_every:
            if step % cfg.algorithm.ref_refresh_every == 0:
                self.ref_model.load_state_dict(self.model.state_dict())
                self.ref_step = step
        self._sync_engine()
        tokens = sum(len(r.completion_ids) for r in data["rollouts"])  # all ranks
        metrics.update(
            {
                "time/generate": data["time_generate"],
                "time/score": data["time_score"],
                "time/update": t2 - t1,
                "time/step": t2 - t0,
                "tokens_per_s": tokens / max(1e-9, data["time_generate"]),
            }
        )
        self.step = step
        if self.dist.is_main:
            self._log_rollouts(step, data)
            self._log_prompts(step)
        self.stream.taken.clear()
        return metrics

    def _log_prompts(self, step: int) -> None:
        """Every prompt the stream handed out this step (all ranks': they read the same blocks)."""
        rows = [
            {"step": step, "position": pos, "id": ex.id, "key": self.task.key(ex)}
            for pos, ex in self.stream.taken
        ]
        with open(self.run_dir / "prompts.jsonl", "a", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)

    def _log_rollouts(self, step: int, data: dict[str, Any]) -> None:
        k = self.config.run.log_rollouts_per_step
        rollouts = data["rollouts"]
        if k == 0 or not rollouts:
            return
        count = len(rollouts) if k < 0 else min(k, len(rollouts))
        picks = sorted({int(i * len(rollouts) / count) for i in range(count)})
        trained = set(data["rows"])
        with open(self.run_dir / "rollouts.jsonl", "a", encoding="utf-8") as f:
            for i in picks:
                comps = {key: values[i] for key, values in data["components"].items()}
                scored = Scored(rollouts[i], data["verdicts"][i], data["rewards"][i], comps)
                row = {"step": step, **scored.to_dict(), "trained": i in trained}
                f.write(json.dumps(row, default=str) + "\n")

    def run_eval(self) -> dict[str, Any]:
        """Held-out evaluation of the current policy (rank 0 only; others get {})."""
        cfg = self.config
        if not self.dist.is_main:
            return {}
        t0 = time.perf_counter()
        params = SamplingParams(
            temperature=cfg.run.eval_temperature,
            top_p=cfg.rollout.top_p if cfg.run.eval_temperature > 0 else 1.0,
            max_new_tokens=cfg.run.eval_max_new_tokens or cfg.rollout.max_new_tokens,
            stop=list(cfg.rollout.stop),
            seed=derive_seed(cfg.run.seed, self.step, 99),
        )
        with self._autocast():
            evaluated = eval_runner.evaluate(
                self.engine,
                self.task,
                self.eval_examples,
                params,
                template=cfg.task.template,
                tokenizer=self.tokenizer,
                batch_size=max(1, len(self.eval_examples)),  # one batch: draws independent of it
                group_by=self.task.difficulty_key,
            )
        results = {"step": self.step, **evaluated.headline()}
        for value, group in evaluated.groups.items():  # accuracy by difficulty
            results[f"accuracy/{evaluated.group_by}={value}"] = group[
                next(k for k in group if k.startswith("avg@"))
            ]
        results["time/eval"] = time.perf_counter() - t0
        with open(self.run_dir / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(results) + "\n")
        self.last_eval = results
        for cb in self.callbacks:
            cb.on_evaluate(self, self.step, results)
        return results

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Run until `run.steps`; returns {steps, run_dir, final (last metrics row), eval (last
        evaluation), history (every metrics row)}."""
        cfg = self.config
        trackers = _Trackers(cfg, self.run_dir) if self.dist.is_main else None
        bar = None
        if cfg.run.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.run.steps, initial=self.step, desc="train", unit="step")
        try:
            if cfg.run.eval_before_train and self.step == 0:
                self.run_eval()  # the starting point, step 0 (a resumed run has it already)
            while self.step < cfg.run.steps:
                metrics = self.train_step()
                step = self.step
                last = step == cfg.run.steps
                if cfg.run.eval_every and (step % cfg.run.eval_every == 0 or last):
                    results = self.run_eval()
                    metrics.update(
                        {
                            k if k.startswith("time/") else f"eval/{k}": v
                            for k, v in results.items()
                            if k != "step"
                        }
                    )
                if self.dist.is_main:
                    _append_jsonl(self.run_dir / "metrics.jsonl", metrics)
                    self.history.append(metrics)
                    if trackers is not None:
                        trackers.log(metrics, step)
                for cb in self.callbacks:
                    cb.on_step_end(self, step, metrics)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['accuracy']:.2f}"
                    )
                if self.bad_steps >= cfg.run.max_bad_steps:
                    raise TrainingError(
                        f"stopped at step {step}: {self.bad_steps} consecutive steps had a "
                        "NaN/inf loss or gradient (their updates were skipped). Lower optim.lr, "
                        "set optim.grad_clip, or check the rewards for NaN"
                    )
                if (cfg.run.save_every and step % cfg.run.save_every == 0) or last:
                    self._save()
                    self.dist.barrier()
            if self.peft is not None and self.dist.is_main:
                self.export_merged(self.run_dir / "merged")
        finally:
            if bar is not None:
                bar.close()
            if trackers is not None:
                trackers.close()
        return {
            "steps": self.step,
            "run_dir": str(self.run_dir),
            "final": self.history[-1] if self.history else {},
            "eval": self.last_eval,
            "history": self.history,
        }


# ----------------------------------------------------------------------------- run files


def _check_same_vocab(tokenizer: Any, saved: Path) -> None:
    from tokenizers import Tokenizer

    if Tokenizer.from_file(str(saved)).get_vocab() != tokenizer.get_vocab():
        raise RuntimeError(
            f"the tiny tokenizer rebuilt from the recipe differs from the run's ({saved}); "
            "was the recipe's task or model.tiny changed?"
        )


def _append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)


def strip_timing(row: dict[str, Any]) -> dict[str, Any]:
    """A metrics row without its wall-time fields (for comparing runs)."""
    return {k: v for k, v in row.items() if not any(k.startswith(p) for p in TIMING_KEYS)}


class _Trackers:
    """TensorBoard / W&B loggers, each only when asked for and installed (else one warning)."""

    def __init__(self, cfg: TrainConfig, run_dir: Path):
        self.tb = self.wandb = None
        if cfg.run.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:
                warnings.warn(
                    "run.tensorboard is set but tensorboard is not installed", stacklevel=2
                )
        if cfg.run.wandb:
            try:
                import wandb

                from reasonlab.config import config_to_yaml

                self.wandb = wandb.init(
                    project=cfg.run.wandb_project,
                    dir=str(run_dir),
                    config={"recipe": config_to_yaml(cfg)},
                )
            except ImportError:
                warnings.warn("run.wandb is set but wandb is not installed", stacklevel=2)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        numbers = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "step"
        }
        if self.tb is not None:
            for key, value in numbers.items():
                self.tb.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


__all__ = [
    "Callback",
    "RewardTerm",
    "Trainer",
    "TrainingError",
    "build_scorer",
    "lr_lambda",
    "strip_timing",
]
