"""The SFT loop: supervised fine-tuning of a causal LM on prompt/completion, chat or text rows.

    from reasonlab.sft import SFTConfig, SFTTrainer
    summary = SFTTrainer(config).train()

As implemented (TRL's SFTTrainer defaults where it has them):

1. **Data**: rows read and checked (`reasonlab.sft.data`), then audited against the task's
   held-out share (`reasonlab.tasks.split`): a row whose problem key (`key` or `example` field)
   falls in the held-out share, or is one of the evaluated problems, is skipped and counted; rows
   that name no problem are counted as unaudited (or refused, `task.unaudited=refuse`). The run
   folder records the counts (`data.json`) and the evaluated problems with their keys
   (`heldout.jsonl`).
2. **Rows**: each row tokenised with its loss mask, then packed into rows of `max_length` with
   position ids restarting per sample (no cross-sample attention) or padded one sample per row
   (`models.pretrain.RowStream`), in a fresh random order each epoch.
3. **Step** (`models.pretrain.supervised_step`, the step pretraining uses too): the mean loss over
   all loss tokens of `gradient_accumulation_steps` micro-batches, gradient clipping, AdamW
   (weight decay on matrices only), the shared warm-up + decay schedule (`reasonlab.optim`).
   The loss is `training.loss` (`reasonlab.sft.losses`): nll, kd or gkd; for gkd a share `lmbda`
   of the steps (drawn per step from the seed) replaces the batch's completions by the student's
   own samples (on-policy, GKD's Algorithm 1).
4. **Evaluation** every `eval_steps` and at the end (and before training): the loss on
   `data.eval_files`, and the task accuracy on held-out problems (greedy generation + the task's
   verifier, `reasonlab.eval.runner.evaluate`), rows in eval.jsonl.
5. **Run folder**: config.yaml, metrics.jsonl (one row per `logging_steps`), eval.jsonl,
   checkpoints (`reasonlab.rl.checkpoint`: weights, AdamW, scheduler, RNG states and the data
   stream's position; resuming gives the weights of an uninterrupted run bit for bit) and at the
   end `model/`, a standard Hugging Face folder, and summary.json.
6. **Data parallel** (`model.parallel` ddp or fsdp under torchrun, `reasonlab.parallel`; the RL
   trainer's scheme): every rank reads the same row stream and takes its contiguous share of each
   micro-batch of `per_device_train_batch_size * world_size` rows; `supervised_step` divides each
   rank's loss by the *global* loss-token count, and DDP (a summing hook) or FSDP2 (divide factor
   1) sum the gradients once per optimiser step, so W ranks make the one-process step on the
   combined batch. Rank 0 writes the run folder, evaluates (under fsdp on a full copy refreshed
   from the gathered shards) and saves; under fsdp every rank writes its shards of the weights and
   AdamW state into the checkpoint (`torch.distributed.checkpoint`, `sharded/`). A distillation
   teacher stays whole on every rank.

    torchrun --nproc_per_node 2 -m reasonlab sft RECIPE.yaml model.parallel=fsdp
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reasonlab.io import read_run_file, start_run_dir, truncate_run_file
from reasonlab.models.pretrain import RowStream, pack, supervised_step
from reasonlab.optim import adamw, scheduler
from reasonlab.parallel import Dist, full_state_dict, wrap_model
from reasonlab.records import Example
from reasonlab.sft.config import SFTConfig
from reasonlab.sft.data import Row, read_rows, tokenize_rows
from reasonlab.sft.losses import LOSSES, check_same_tokenizer
from reasonlab.threads import set_intra_op_threads

RUN_FILES = ("metrics.jsonl", "eval.jsonl")
"""Per-step run files, cut back to the checkpoint's step on resume."""


class SFTError(RuntimeError):
    """The run cannot go on (bad data for this model, nothing left to train on...)."""


def audit_rows(
    rows: Sequence[Row], task: Any, eval_keys: set[str], fraction: float
) -> tuple[list[Row], dict[str, int]]:
    """The rows that may be trained on, and counts: rows, held_out (skipped: the problem is in the
    held-out share or evaluated), unaudited (no problem named), kept."""
    from reasonlab.tasks.split import share_position

    kept, held_out, unaudited = [], 0, 0
    for row in rows:
        key = row.key(task) if task is not None else None
        if key is None:
            unaudited += 1
        elif key in eval_keys or share_position(key) < fraction:
            held_out += 1
            continue
        kept.append(row)
    counts = {"rows": len(rows), "held_out": held_out, "unaudited": unaudited, "kept": len(kept)}
    return kept, counts


def steps_for(cfg: SFTConfig, rows_per_epoch: int, world_size: int = 1) -> int:
    """Optimiser steps of the run: max_steps, or num_train_epochs over the epoch's rows (a
    micro-batch takes per_device_train_batch_size rows on each of `world_size` ranks)."""
    t = cfg.training
    if t.max_steps > 0:
        return t.max_steps
    batches = rows_per_epoch // (t.per_device_train_batch_size * world_size)  # rest dropped
    return max(1, math.ceil(t.num_train_epochs * batches / t.gradient_accumulation_steps))


def _step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step) % 2**31


class SFTTrainer:
    """Runs `SFTConfig` end to end; `train()` returns a summary.

    Library hooks: `model=`/`tokenizer=` (objects instead of `model.path`), `teacher=`, `task=` (a
    Task object), `dist=` (this process's data-parallel group, `Dist.from_env()` under torchrun).
    `resume=True` continues from the newest checkpoint in `run.out_dir`.
    """

    def __init__(
        self,
        config: SFTConfig,
        *,
        model: Any = None,
        tokenizer: Any = None,
        teacher: Any = None,
        task: Any = None,
        resume: bool = False,
        log: Any = print,
        dist: Dist | None = None,
    ):
        from reasonlab import models
        from reasonlab.rl.checkpoint import latest_checkpoint, remove_partial

        self.config = cfg = config
        self.dist = dist or Dist.single()
        if self.dist.enabled and cfg.model.parallel == "none":
            raise SFTError(
                f"model.parallel is none but {self.dist.world_size} processes were launched "
                "(torchrun): set it to ddp (each rank holds the model) or fsdp (sharded)"
            )
        self.log = log if self.dist.is_main else (lambda *args, **kwargs: None)
        log = self.log
        self.run_dir = Path(cfg.run.out_dir)
        set_intra_op_threads(cfg.run.num_threads)
        random.seed(cfg.training.seed)
        np.random.seed(cfg.training.seed % 2**32)
        torch.manual_seed(cfg.training.seed)

        checkpoint = None
        if resume:
            if self.dist.is_main:
                remove_partial(self.run_dir)
            checkpoint = latest_checkpoint(self.run_dir)
            if checkpoint is None:
                log(f"reasonlab: no checkpoint in {self.run_dir}: starting the run over")
        elif (self.run_dir / "metrics.jsonl").exists():
            raise FileExistsError(
                f"{self.run_dir} already holds a run (metrics.jsonl); resume it with --resume "
                f"{self.run_dir} or choose another run.out_dir"
            )

        # the task's held-out problems, then the rows audited against them
        self.task = task
        if self.task is None and cfg.task.name:
            from reasonlab import tasks

            self.task = tasks.get(cfg.task.name)
        self.eval_examples: list[Example] = []
        if self.task is not None and cfg.task.eval_split is not None and cfg.task.eval_examples:
            self.eval_examples = list(
                self.task.load(cfg.task.eval_split, limit=cfg.task.eval_examples)
            )
        elif self.task is not None and cfg.task.eval_examples:
            from reasonlab.rl.data import has_generator
            from reasonlab.tasks import split

            if not has_generator(self.task):
                raise SFTError(
                    f"task {self.task.name!r} has no generator: set task.eval_split to one of "
                    f"{', '.join(self.task.splits) or 'its data files'}"
                )
            self.eval_examples = split.problems(
                self.task,
                cfg.task.eval_examples,
                seed=cfg.task.eval_seed,
                held_out=True,
                fraction=cfg.task.held_out_fraction,
                **cfg.task.params,
            )
        eval_keys = {self.task.key(ex) for ex in self.eval_examples}
        rows = read_rows(cfg.data.train_files, cfg.data.format, cfg.data.limit)
        rows, self.data_counts = audit_rows(rows, self.task, eval_keys, cfg.task.held_out_fraction)
        if self.task is not None and self.data_counts["unaudited"]:
            message = (
                f"{self.data_counts['unaudited']} of {self.data_counts['rows']} training rows name "
                "no problem (no 'key' or 'example' field), so they cannot be checked against the "
                "held-out problems"
            )
            if cfg.task.unaudited == "refuse":
                raise SFTError(message + " (task.unaudited=refuse)")
            log(f"reasonlab: warning: {message}")
        if not rows:
            raise SFTError(f"no training rows left after the held-out audit: {self.data_counts}")

        # model, tokenizer, samples
        self.device = models.resolve_device(cfg.model.device)
        if model is None:
            model, tokenizer = models.load(cfg.model.path, dtype="float32")
        elif tokenizer is None:
            raise ValueError("pass tokenizer= together with model=")
        self.model, self.tokenizer = model.to(self.device), tokenizer
        if cfg.model.gradient_checkpointing:
            models.enable_gradient_checkpointing(self.model)
        # bfloat16 on CUDA: autocast, or under fsdp FSDP2's mixed precision (no autocast on top)
        half = (
            torch.bfloat16 if self.device.type == "cuda" and cfg.model.dtype == "bfloat16" else None
        )
        self.half = half
        self.sharded = cfg.model.parallel == "fsdp" and self.dist.enabled
        # evaluation (generation, eval loss) runs on rank 0 alone: under fsdp on a full copy of
        # the model, refreshed from the gathered shards at each evaluation
        self.eval_model = self.model
        if self.sharded:
            self.eval_model = (
                copy.deepcopy(self.model).requires_grad_(False) if self.dist.is_main else None
            )
        self.wrapped = wrap_model(
            self.model,
            parallel=cfg.model.parallel,
            param_dtype=half if self.sharded else None,
            cpu_offload=cfg.model.cpu_offload,
        )
        masks = dict(
            completion_only_loss=cfg.data.completion_only_loss,
            assistant_only_loss=cfg.data.assistant_only_loss,
            chat_template=cfg.data.chat_template,
        )
        try:
            samples = tokenize_rows(rows, tokenizer, **masks)
            eval_rows = (
                read_rows(cfg.data.eval_files, cfg.data.format) if cfg.data.eval_files else []
            )
            self.eval_samples = tokenize_rows(eval_rows, tokenizer, **masks)
        except ValueError as err:  # DataError included: it names file:line
            raise SFTError(str(err)) from None
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else tokenizer.eos_token_id
        self.stream = RowStream(
            samples,
            cfg.data.max_length,
            self.pad_id,
            seed=cfg.training.seed,
            packing="samples" if cfg.data.packing else "none",
        )
        t = cfg.training
        if t.per_device_train_batch_size * self.dist.world_size > len(self.stream):
            ranks = f" x {self.dist.world_size} processes" if self.dist.enabled else ""
            raise SFTError(
                f"training.per_device_train_batch_size={t.per_device_train_batch_size}{ranks} but "
                f"the data makes only {len(self.stream)} rows per epoch; lower it"
            )
        self.total_steps = steps_for(cfg, len(self.stream), self.dist.world_size)
        self.cut_samples = sum(len(ids) > cfg.data.max_length for ids, _ in samples)

        # teacher and loss
        self.teacher = None
        if t.loss in ("kd", "gkd"):
            if teacher is None:
                teacher, teacher_tokenizer = models.load(cfg.distill.teacher, dtype="float32")
                try:
                    check_same_tokenizer(tokenizer, teacher_tokenizer)
                except ValueError as err:
                    raise SFTError(str(err)) from None
            self.teacher = teacher.to(self.device).eval().requires_grad_(False)
        d = cfg.distill
        self.loss_fn = LOSSES[t.loss](teacher=self.teacher, temperature=d.temperature, beta=d.beta)

        self.optimizer = adamw(
            self.model,
            lr=t.learning_rate,
            weight_decay=t.weight_decay,
            betas=(t.adam_beta1, t.adam_beta2),
            eps=t.adam_epsilon,
        )
        self.scheduler = scheduler(
            self.optimizer,
            total_steps=self.total_steps,
            warmup_steps=t.warmup_steps,
            schedule=t.lr_scheduler_type,
            min_lr_ratio=t.min_lr_ratio,
        )
        self.step = 0
        self.tokens_seen = 0
        self.window: list[float] = []  # losses of the steps since the last metrics row
        self.eval_step: int | None = None  # the step of the last evaluation (on every rank)
        self.dist.barrier()  # every rank has checked the run folder before rank 0 writes to it
        if checkpoint is not None:
            self._restore(checkpoint)
        elif self.dist.is_main:
            self._start_run_dir()
        self.dist.barrier()

    # -- run folder -------------------------------------------------------------------------

    def _start_run_dir(self) -> None:
        start_run_dir(
            self.run_dir,
            self.config,
            RUN_FILES,
            [{**ex.to_dict(), "key": self.task.key(ex)} for ex in self.eval_examples],
        )
        info = {
            **self.data_counts,
            "samples": len(self.stream.samples),
            "rows_per_epoch": len(self.stream),
            "cut_samples": self.cut_samples,
            "total_steps": self.total_steps,
        }
        (self.run_dir / "data.json").write_text(json.dumps(info, indent=1) + "\n")

    def _restore(self, checkpoint: Path) -> None:
        from reasonlab.rl.checkpoint import load_checkpoint

        state = load_checkpoint(
            checkpoint, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler
        )
        self.step = int(state["step"])
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.window = [float(x) for x in state.get("window", [])]
        self.stream.load_state_dict(state["data"])
        if self.dist.is_main:
            for name in RUN_FILES:
                truncate_run_file(self.run_dir / name, self.step)

    def _save(self) -> None:
        from reasonlab.rl.checkpoint import save_checkpoint

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
                "data": self.stream.state_dict(),
                "tokens_seen": self.tokens_seen,
                "window": self.window,
            },
            keep=self.config.run.save_total_limit,
            dist=self.dist,
        )

    def _append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.run_dir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    # -- one step ---------------------------------------------------------------------------

    def _autocast(self, training: bool = False) -> contextlib.AbstractContextManager:
        if self.half is None or (training and self.sharded):
            return contextlib.nullcontext()  # fsdp training: FSDP2's mixed precision casts
        return torch.autocast("cuda", dtype=self.half)

    def _on_policy(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's prompts (the tokens before each row's first target) with the student's own
        sampled completions as targets, padded one per row (GKD's on-policy data)."""
        from reasonlab.models.pretrain import pad
        from reasonlab.rollout import get_engine
        from reasonlab.rollout.base import SamplingParams

        d = self.config.distill
        prompts = []
        for ids, targets in zip(batch["input_ids"].tolist(), batch["targets"].tolist()):
            start = targets.index(True) if True in targets else len(ids)
            prompts.append(self.tokenizer.decode(ids[:start]))
        engine = get_engine("hf", model=self.model, tokenizer=self.tokenizer)
        params = SamplingParams(
            temperature=d.sample_temperature,
            max_new_tokens=d.max_new_tokens,
            seed=_step_seed(self.config.training.seed, self.step),
        )
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            rollouts = engine.generate(prompts, params)
        self.model.train(was_training)
        samples = [
            (
                r.prompt_ids + r.completion_ids,
                [False] * len(r.prompt_ids) + [True] * len(r.completion_ids),
            )
            for r in rollouts
        ]
        width = max(len(ids) for ids, _ in samples)
        input_ids, positions, targets, attention = pad(
            samples, width, self.pad_id, random.Random(0)
        )
        return {
            "input_ids": input_ids,
            "position_ids": positions,
            "targets": targets,
            "attention_mask": attention,
        }

    def train_step(self) -> dict[str, float]:
        t = self.config.training
        d = self.dist
        micro = [  # this rank's share of each micro-batch of the global batch
            self.stream.take(t.per_device_train_batch_size * d.world_size, d)
            for _ in range(t.gradient_accumulation_steps)
        ]
        on_policy = False
        if t.loss == "gkd":
            draw = random.Random(_step_seed(t.seed, self.step)).random()
            on_policy = draw < self.config.distill.lmbda
            if on_policy:
                micro = [self._on_policy(batch) for batch in micro]
        self.wrapped.module.train()
        with self._autocast(training=True):
            out = supervised_step(
                self.model,
                self.optimizer,
                self.scheduler,
                micro,
                max_grad_norm=t.max_grad_norm,
                loss_fn=self.loss_fn,
                wrapped=self.wrapped,
                dist=d,
            )
        self.step += 1
        self.tokens_seen += out["tokens"]
        if not math.isfinite(out["loss"]):
            raise SFTError(f"step {self.step}: the loss is {out['loss']}")
        return {**out, "on_policy": float(on_policy)}

    # -- evaluation -------------------------------------------------------------------------

    @torch.no_grad()
    def eval_loss(self) -> float | None:
        """Mean loss (training.loss) over every loss token of the eval rows (packed as training
        packs them, in a fixed order)."""
        if not self.eval_samples:
            return None
        cfg = self.config
        input_ids, positions, targets = pack(
            self.eval_samples, cfg.data.max_length, self.pad_id, random.Random(0)
        )
        self.eval_model.eval()
        total, count = 0.0, 0
        size = cfg.training.per_device_train_batch_size
        for start in range(0, len(input_ids), size):
            batch = {
                "input_ids": input_ids[start : start + size].to(self.device),
                "position_ids": positions[start : start + size].to(self.device),
                "targets": targets[start : start + size].to(self.device),
            }
            n = int(batch["targets"][:, 1:].sum())
            if n:
                with self._autocast():
                    loss, _ = self.loss_fn(self.eval_model, batch)
                total += float(loss) * n
                count += n
        return total / max(1, count)

    @torch.no_grad()
    def accuracy(self) -> dict[str, float] | None:
        """Greedy accuracy on the held-out problems (`reasonlab.eval.runner.evaluate`)."""
        if not self.eval_examples:
            return None
        from reasonlab.eval.runner import evaluate
        from reasonlab.rollout import get_engine
        from reasonlab.rollout.base import SamplingParams

        cfg = self.config
        self.eval_model.eval()
        engine = get_engine("hf", model=self.eval_model, tokenizer=self.tokenizer)
        params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.task.max_new_tokens)
        with self._autocast():
            result = evaluate(
                engine,
                self.task,
                self.eval_examples,
                params,
                template=cfg.task.template,
                tokenizer=self.tokenizer,
                batch_size=cfg.run.eval_batch_size,
            )
        m = result.metrics
        return {
            "accuracy": m["avg@1"],
            "format_rate": m.get("format_rate", float("nan")),
            "mean_length": m["mean_length"],
            "truncation_rate": m["truncation_rate"],
        }

    def evaluate(self) -> dict[str, Any]:
        """Eval loss and held-out accuracy now; appended to eval.jsonl. Data parallel: rank 0
        evaluates (under fsdp a full copy gathered from the shards: every rank must call), the
        others get {}."""
        self.eval_step = self.step
        if self.sharded:
            full = full_state_dict(self.model, rank0_only=True)  # a collective
            if self.dist.is_main:
                self.eval_model.load_state_dict(full)
        if not self.dist.is_main:
            self.dist.barrier()
            return {}
        start = time.perf_counter()
        row: dict[str, Any] = {"step": self.step}
        loss = self.eval_loss()
        if loss is not None:
            row["eval_loss"] = loss
        acc = self.accuracy()
        if acc is not None:
            row.update({f"eval/{k}": v for k, v in acc.items()})
        row["time/eval"] = time.perf_counter() - start
        self._append("eval.jsonl", row)
        self.dist.barrier()
        return row

    # -- the loop ---------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train to the last step; returns {steps, run_dir, final (last metrics row), eval (last
        evaluation), before (the evaluation before training), data (audit counts), model}."""
        cfg = self.config
        main = self.dist.is_main
        bar = None
        if cfg.run.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="sft", unit="step")
        before = None
        if self.step == 0:
            before = self.evaluate()
        last_eval: dict[str, Any] | None = None
        final: dict[str, Any] = {}
        tic = time.perf_counter()
        tokens_at = self.tokens_seen
        try:
            while self.step < self.total_steps:
                out = self.train_step()
                self.window.append(out["loss"])
                if self.step % cfg.run.logging_steps == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    final = {
                        "step": self.step,
                        "loss": sum(self.window) / len(self.window),
                        "lr": out["lr"],
                        "grad_norm": out["grad_norm"],
                        "epoch": self.stream.epochs,
                        "tokens": self.tokens_seen,
                        "tokens_per_s": (self.tokens_seen - tokens_at) / max(now - tic, 1e-9),
                    }
                    if cfg.training.loss == "gkd":
                        final["on_policy"] = out["on_policy"]
                    if main:
                        self._append("metrics.jsonl", final)
                    self.window, tic, tokens_at = [], now, self.tokens_seen
                if cfg.run.eval_steps and self.step % cfg.run.eval_steps == 0:
                    last_eval = self.evaluate()
                if cfg.run.save_steps and self.step % cfg.run.save_steps == 0:
                    self._save()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{out['loss']:.4f}")
        finally:
            if bar is not None:
                bar.close()
        if self.eval_step != self.step:
            last_eval = self.evaluate()
        from reasonlab import models

        out_model = self.run_dir / "model"
        full = full_state_dict(self.model, rank0_only=True) if self.sharded else None  # collective
        if not main:
            self.dist.barrier()  # rank 0 writes the model and the summary
            return {"steps": self.step, "run_dir": str(self.run_dir), "final": final}
        models.save(self.model, self.tokenizer, out_model, full)
        if before is None:
            before = next(iter(read_run_file(self.run_dir / "eval.jsonl")), None)
        summary = {
            "steps": self.step,
            "run_dir": str(self.run_dir),
            "final": final,
            "eval": last_eval,
            "before": before,
            "data": self.data_counts,
            "model": str(out_model),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        self.dist.barrier()
        return summary


__all__ = ["SFTError", "SFTTrainer", "audit_rows", "steps_for"]
