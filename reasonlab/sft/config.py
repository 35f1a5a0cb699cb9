"""The SFT trainer's configuration: one dataclass per section, a docstring under every field.

A recipe (`configs/sft_*.yaml`) fills `SFTConfig` through `reasonlab.config.load_config` with
`key.sub=value` overrides; every section's `validate()` runs while loading, so a bad value fails
with its file:line before any model is loaded. Field names are TRL's `SFTConfig` (transformers'
`TrainingArguments`) names where one exists: `num_train_epochs`, `max_steps`, `learning_rate`,
`lr_scheduler_type`, `warmup_steps`, `per_device_train_batch_size`, `gradient_accumulation_steps`,
`max_grad_norm`, `packing`, `max_length`, `completion_only_loss`, `assistant_only_loss`,
`eval_steps`, `save_steps`, `logging_steps`, `save_total_limit`; GKD's `beta`, `lmbda`,
`temperature`, `max_new_tokens` as in TRL's `GKDConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from reasonlab.optim import SCHEDULES


@dataclass
class ModelConfig:
    """The model to train."""

    path: str = ""
    """A local Hugging Face model folder (a `reasonlab pretrain` output, a Qwen2.5 checkout...)."""
    device: str = "auto"
    """cpu, cuda, cuda:1 or auto (cuda when available)."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Compute dtype: float32, or bfloat16 autocast on CUDA (weights and AdamW stay float32)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, more compute)."""
    parallel: str = "none"
    """Data parallelism under torchrun (`reasonlab.parallel`, as RL's `model.parallel`): none (one
    process), ddp (DistributedDataParallel: whole model and AdamW state on every rank) or fsdp
    (FSDP2 `fully_shard` per decoder layer and the root: parameters, gradients and AdamW state
    sharded; with dtype bfloat16 on CUDA, bf16 compute and fp32 master weights and reduction).
    Each rank trains on `per_device_train_batch_size` rows of every micro-batch; W ranks are one
    process on the combined batch (W times the rows)."""
    cpu_offload: bool = False
    """fsdp: keep the parameter shards and AdamW state in CPU memory (FSDP2 CPUOffloadPolicy;
    needs CUDA for the compute)."""

    def validate(self) -> None:
        from reasonlab.parallel import PARALLEL

        if self.parallel not in PARALLEL:
            raise ValueError(
                f"parallel must be one of {', '.join(PARALLEL)}; got {self.parallel!r}"
            )
        if self.cpu_offload and self.parallel != "fsdp":
            raise ValueError(f"cpu_offload needs parallel=fsdp, got {self.parallel!r}")


@dataclass
class DataConfig:
    """Training and evaluation rows (see `reasonlab.sft.data` for the formats)."""

    train_files: list[str] = field(default_factory=list)
    """JSONL or parquet files of training rows (prompt/completion, messages or text)."""
    eval_files: list[str] = field(default_factory=list)
    """Rows whose loss is evaluated every `run.eval_steps` (none: no eval loss)."""
    format: Literal["auto", "prompt_completion", "messages", "text"] = "auto"
    """Row format; auto picks it per row from the fields present."""
    max_length: int = 1024
    """Tokens per training row (packed row length, or the cut of a padded sample)."""
    packing: bool = True
    """Pack samples into rows of max_length (position ids restart per sample, no cross-sample
    attention); false: one sample per row, padded to the longest of its batch."""
    completion_only_loss: bool = True
    """prompt/completion rows: loss on the completion (and EOS) only; false: on all tokens."""
    assistant_only_loss: bool = True
    """messages rows: loss on the assistant turns only; false: on the whole conversation."""
    chat_template: str | None = None
    """Chat template for messages rows: null (the tokenizer's own), plain (Role: content turns,
    for tokenizers without one), a .jinja file, or the template text."""
    limit: int | None = None
    """Read at most this many training rows (null: all)."""

    def validate(self) -> None:
        if self.max_length < 2:
            raise ValueError(f"data.max_length must be >= 2, got {self.max_length}")


@dataclass
class TaskConfig:
    """The task whose held-out problems measure accuracy and must never be trained on."""

    name: str | None = None
    """Task name (`reasonlab tasks`); null: no accuracy evaluation and no held-out audit."""
    params: dict[str, Any] = field(default_factory=dict)
    """Task generator parameters of the held-out problems."""
    template: str = "r1-zero"
    """Prompt template of the accuracy evaluation (the one the training data used)."""
    held_out_fraction: float = 0.2
    """Share of the problem space held out (`reasonlab.tasks.split`): evaluated on, never trained
    on; training rows whose problem falls in it are skipped and counted."""
    eval_examples: int = 64
    """Held-out problems the accuracy is measured on."""
    eval_seed: int = 1
    """Seed that draws the held-out problems (tasks with a generator)."""
    eval_split: str | None = None
    """File-backed tasks (math): the split whose first eval_examples problems are evaluated
    (training rows with their keys are skipped too)."""
    max_new_tokens: int = 256
    """Generation budget of the accuracy evaluation (greedy)."""
    unaudited: Literal["allow", "refuse"] = "allow"
    """Training rows that name no problem (no `key` or `example` field) cannot be audited: allow
    (count them in the summary) or refuse (stop with an error)."""

    def validate(self) -> None:
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"must be in (0, 1), got {self.held_out_fraction}")
        if self.eval_examples < 0 or self.max_new_tokens < 1:
            raise ValueError("eval_examples must be >= 0 and max_new_tokens >= 1")


@dataclass
class TrainingConfig:
    """Optimisation (TRL / transformers names)."""

    num_train_epochs: float = 1.0
    """Epochs over the training rows (used when max_steps is -1)."""
    max_steps: int = -1
    """Optimiser steps; -1: as many as num_train_epochs take."""
    per_device_train_batch_size: int = 8
    """Rows per micro-batch (packed rows when packing) on each data-parallel process."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimiser step; the loss is the mean over all their loss tokens."""
    learning_rate: float = 2e-5
    """Peak learning rate (AdamW)."""
    lr_scheduler_type: str = "cosine"
    """After warm-up: constant, cosine or linear decay towards min_lr_ratio (`reasonlab.optim`)."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    min_lr_ratio: float = 0.0
    """Floor of the decay as a fraction of learning_rate (TRL: lr_scheduler_kwargs.min_lr_rate)."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (on matrices, not embeddings, norms or biases)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.999
    """AdamW beta2."""
    adam_epsilon: float = 1e-8
    """AdamW epsilon."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this (null: no clipping; the norm is still logged)."""
    loss: Literal["nll", "kd", "gkd"] = "nll"
    """nll: cross-entropy on the data; kd: forward KL to a teacher's token distributions on the
    data (supervised KD); gkd: on-policy distillation (GKD), see `distill`."""
    seed: int = 0
    """Seed of the data order, sampling and anything random."""

    def validate(self) -> None:
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError("num_train_epochs must be > 0 when max_steps is -1")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be >= 1, or -1 for epochs; got {self.max_steps}")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("per_device_train_batch_size and gradient_accumulation_steps >= 1")
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(
                f"lr_scheduler_type must be one of {', '.join(SCHEDULES)}; "
                f"got {self.lr_scheduler_type!r}"
            )
        if self.learning_rate <= 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError("learning_rate > 0, warmup_steps >= 0 and weight_decay >= 0")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm must be > 0 or null, got {self.max_grad_norm}")


@dataclass
class DistillConfig:
    """Token-level distillation from a teacher sharing the student's tokenizer (loss kd or gkd)."""

    teacher: str | None = None
    """The teacher's model folder (needed by loss kd and gkd)."""
    temperature: float = 1.0
    """Softmax temperature of both distributions (Hinton et al. 2015; TRL GKD's temperature)."""
    beta: float = 0.5
    """gkd: generalised Jensen-Shannon coefficient: 0 forward KL(teacher || student), 1 reverse
    KL(student || teacher), in between JSD(beta) (Agarwal et al. 2024; TRL GKD's beta)."""
    lmbda: float = 0.5
    """gkd: share of steps on student-generated completions (on-policy); the rest use the data's
    completions (TRL GKD's lmbda)."""
    max_new_tokens: int = 128
    """gkd: length of the student's sampled completions."""
    sample_temperature: float = 1.0
    """gkd: sampling temperature of the student's completions."""

    def validate(self) -> None:
        if self.temperature <= 0 or self.sample_temperature <= 0:
            raise ValueError("temperature and sample_temperature must be > 0")
        if not 0 <= self.beta <= 1 or not 0 <= self.lmbda <= 1:
            raise ValueError(f"beta and lmbda must be in [0, 1], got {self.beta}, {self.lmbda}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")


@dataclass
class RunConfig:
    """Run folder, logging, evaluation and checkpoints."""

    out_dir: str = "runs/sft"
    """Run folder: config.yaml, metrics.jsonl, eval.jsonl, checkpoints/, model/ (the result)."""
    logging_steps: int = 10
    """Write a metrics.jsonl row every this many steps (and at the last)."""
    eval_steps: int = 0
    """Evaluate (eval loss, held-out accuracy) every this many steps and at the end (0: only at
    the end); the accuracy before training is measured too."""
    save_steps: int = 0
    """Save a checkpoint every this many steps (0: none); resume with --resume RUN_DIR."""
    save_total_limit: int = 2
    """Checkpoints kept (the newest)."""
    eval_batch_size: int = 16
    """Prompts per generation batch of the accuracy evaluation."""
    num_threads: int | None = None
    """torch intra-op threads (null: torch's default)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        for name in ("logging_steps", "save_total_limit", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_steps < 0 or self.save_steps < 0:
            raise ValueError("eval_steps and save_steps must be >= 0")


@dataclass
class SFTConfig:
    """A supervised fine-tuning run (`reasonlab sft RECIPE.yaml`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The model to train."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training and evaluation rows."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """Held-out accuracy and audit."""
    training: TrainingConfig = field(default_factory=TrainingConfig)
    """Optimisation."""
    distill: DistillConfig = field(default_factory=DistillConfig)
    """Token-level distillation."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run folder, logging, checkpoints."""

    def validate(self) -> None:
        # here, not in the sections: a section left out of the recipe is not validated
        if not self.model.path:
            raise ValueError(
                "model.path is required: a model folder (e.g. from reasonlab pretrain)"
            )
        if not self.data.train_files:
            raise ValueError("data.train_files is required: one or more JSONL or parquet files")
        if self.training.loss in ("kd", "gkd") and not self.distill.teacher:
            raise ValueError(f"training.loss={self.training.loss} needs distill.teacher")
        if self.training.loss == "gkd" and self.model.parallel == "fsdp":
            raise ValueError(
                "training.loss=gkd samples from the student, which is not implemented for a "
                "sharded model: set model.parallel=ddp (or none)"
            )
        if self.training.loss == "gkd" and self.data.packing:
            raise ValueError(
                "training.loss=gkd samples a completion per prompt: set data.packing=false"
            )


__all__ = [
    "DataConfig",
    "DistillConfig",
    "ModelConfig",
    "RunConfig",
    "SFTConfig",
    "TaskConfig",
    "TrainingConfig",
]
