"""The RL trainer's configuration: one dataclass per stage, a docstring under every field.

A recipe (`configs/*.yaml`) fills `TrainConfig` through `reasonlab.config.load_config`, with
`key.sub=value` overrides from the command line; `validate(config)` then checks the values that
depend on each other (batch sizes that must divide, an estimator that needs a value head, ...)
before any model is loaded. Field names follow veRL / TRL where one exists (`clip_low`/`clip_high`
are veRL's `clip_ratio_low`/`clip_ratio_high`, `kl_coef` is TRL's `beta`, `n` is vLLM's and veRL's
`rollout.n`, TRL's `num_generations`).

Batch sizes count *responses* (prompt x sample rows), as TRL does, except `prompts_per_step`:
one step samples `prompts_per_step` prompts and `rollout.n` responses for each.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reasonlab.config import ConfigError
from reasonlab.parallel import LoraConfig


@dataclass
class TinyModelConfig:
    """A tiny causal LM built in-process (for CPU tests and demos); used when `model.path=tiny`."""

    arch: str = "llama"
    """Architecture of the tiny model: llama (compact tokenizer, short prompts) or qwen2 (its
    tokenizer then splits words as Qwen2's does, so that the saved folder loads back the same; see
    `reasonlab.models.tiny`)."""
    hidden_size: int = 64
    """Width of the residual stream."""
    num_hidden_layers: int = 2
    """Number of transformer blocks."""
    num_attention_heads: int = 4
    """Attention heads per block."""
    intermediate_size: int = 128
    """Width of the MLP."""
    vocab_size: int = 512
    """Tokenizer size (byte-level BPE trained on the task's text: 256 bytes + merges)."""
    max_position_embeddings: int = 1024
    """Longest prompt + response the model is built for."""
    corpus_examples: int = 200
    """Task examples (rendered prompt + gold answer) whose text builds the tokenizer's vocabulary."""
    seed: int = 0
    """Seed of the weight initialisation and of the corpus examples."""


@dataclass
class ModelConfig:
    """The policy model."""

    path: str = "tiny"
    """A local Hugging Face model folder (e.g. /path/to/Qwen2.5-3B), or `tiny` to build a tiny model
    in-process from `model.tiny`."""
    dtype: str = "float32"
    """Compute dtype: float32, or bfloat16 / float16 (autocast on CUDA; weights and AdamW states
    stay float32), or auto (bfloat16 on CUDA, float32 on CPU)."""
    device: str = "auto"
    """cpu, cuda, cuda:1, ... or auto (cuda when available, else cpu)."""
    gradient_checkpointing: bool = False
    """Recompute each decoder layer's activations in the backward pass (transformers, non-reentrant;
    the update runs in training mode with dropout disabled): less memory on long responses, for
    about one more forward pass. Prompt sharing (batching.share_prompts) still applies."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """The tiny model's shape (only read when `path` is `tiny`)."""
    parallel: str = "none"
    """Data parallelism under torchrun (`reasonlab.parallel`): none (one process), ddp
    (DistributedDataParallel: whole model and AdamW state on every rank) or fsdp (FSDP2
    `fully_shard` per decoder layer and the root: parameters, gradients and AdamW state sharded;
    the reference model sharded too; with dtype bfloat16 on CUDA, bf16 compute and fp32 master
    weights and reduction). Either is the 1-process computation on the combined batch."""
    cpu_offload: bool = False
    """fsdp: keep the parameter shards and AdamW state in CPU memory (FSDP2 CPUOffloadPolicy;
    needs CUDA for the compute)."""
    lora: LoraConfig | None = None
    """LoRA adapters {r, alpha, dropout, target_modules} (peft; `pip install reasonlab[lora]`):
    only the adapters train; the KL reference is the model with its adapters disabled (no second
    copy); checkpoints hold the adapters, and the run ends with the merged model in `merged/`.
    None: full fine-tuning. With model.parallel none or ddp."""


@dataclass
class TaskConfig:
    """Where prompts come from, and the held-out evaluation set."""

    name: str = "countdown"
    """A task name from `reasonlab tasks` (countdown, arithmetic, knights_knaves, math, ...)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Generator parameters of the task (see `reasonlab tasks`), e.g. {preset: tinyzero}."""
    split: str | None = None
    """File-backed tasks: the shipped split (or a JSONL path) to train on; generators: unused."""
    where: dict[str, Any] = field(default_factory=dict)
    """File-backed tasks: train only on examples whose meta[key] equals the value (or is in the
    list), e.g. {level: [3, 4, 5]} for SimpleRL's MATH levels 3-5."""
    template: str = "r1-zero"
    """Prompt template: r1-zero, qwen-instruct or boxed."""
    seed: int = 0
    """Seed of the training data stream (generated examples and shuffling order)."""
    eval_split: str | None = None
    """File-backed tasks: the split to evaluate on (None: hold out `eval_size` examples of `split`)."""
    eval_size: int = 64
    """Held-out evaluation examples (never trained on)."""
    eval_seed: int = 1_000_003
    """Seed of the held-out examples; must differ from `seed` unless a held-out share is set."""
    held_out_fraction: float = 0.0
    """Share of the problem space (a stable hash of each problem's `task.key`) reserved for
    evaluation: the held-out examples are drawn from it and the training stream never draws from
    it. 0: only the evaluated problems themselves are excluded from training (by key)."""


@dataclass
class RewardTermConfig:
    """One weighted reward term."""

    name: str = "format"
    """A reward name from `reasonlab.rewards` (format, cosine_length, repetition_penalty, ...)."""
    weight: float = 1.0
    """Its weight in the total reward."""
    params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the reward (e.g. {ngram_size: 3, max_penalty: -1.0})."""


@dataclass
class RewardsConfig:
    """The reward: the task's verifier through an accuracy scheme, plus weighted extra terms."""

    scheme: str | None = "r1"
    """Accuracy scheme, reading the task's verdicts: r1 (1 correct / 0 wrong), tinyzero, logic_rl,
    simplerl; None for no accuracy term (then `terms` must be non-empty)."""
    scheme_weight: float = 1.0
    """Weight of the scheme's term in the total."""
    terms: list[RewardTermConfig] = field(default_factory=list)
    """Extra terms, each {name, weight, params}."""


@dataclass
class RolloutConfig:
    """Sampling of training responses (names as vLLM's SamplingParams)."""

    engine: str = "hf"
    """Generation backend: hf (the policy model itself) or vllm (GPUs)."""
    n: int = 8
    """Responses per prompt: the group size of GRPO / RLOO (TRL's num_generations)."""
    temperature: float = 1.0
    """Sampling temperature (> 0: RL needs the sampling distribution's logprobs)."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0: off)."""
    top_k: int = 0
    """Top-k filtering (0: off)."""
    logprobs_mode: str = "raw"
    """Logprobs the engine records (vLLM's logprobs_mode): raw (the model's, before top-k/top-p;
    what the trainer recomputes) or processed (the truncated sampler's, the true behaviour policy:
    with top_k/top_p, algorithm.rollout_is / rollout_rs then correct the mismatch)."""
    max_new_tokens: int = 256
    """Maximum response length in tokens; longer responses are truncated (finish reason 'length')."""
    stop: list[str] = field(default_factory=list)
    """Stop strings (kept in the response), e.g. ['</answer>']."""
    batch_size: int | None = None
    """Prompts per generate call of the engine (None: all at once)."""


@dataclass
class AlgorithmConfig:
    """Advantage estimator, policy loss and regularisers."""

    advantage: str = "grpo"
    """Advantage estimator: grpo, dr_grpo, grpo_passk (pass@k: only the best of each group learns),
    rloo, reinforce_pp, reinforce_pp_baseline, gae (PPO)."""
    loss_agg: str = "token-mean"
    """Loss aggregation: token-mean (DAPO), seq-mean-token-mean (GRPO paper),
    seq-mean-token-sum, seq-mean-token-sum-norm (Dr. GRPO; normalises by rollout.max_new_tokens)."""
    policy_loss: str = "ppo"
    """Policy loss (`reasonlab.rl.losses.POLICY_LOSSES`; veRL policy_loss.loss_mode, TRL loss_type):
    ppo (clipped surrogate, GRPO's), gspo, gspo_token (sequence ratio, Qwen3), cispo (clipped IS
    weight, MiniMax-M1), sapo (soft gate), gmpo (geometric mean), clip_cov, kl_cov (Cui et al.)."""
    clip_low: float = 0.2
    """Clip below: ratio >= 1 - clip_low (veRL clip_ratio_low; ppo, gspo*, cispo, clip_cov). GSPO:
    ~3e-4; GMPO: in log space (0.4); CISPO: 1 means no lower cap."""
    clip_high: float = 0.2
    """Clip above: ratio <= 1 + clip_high (DAPO clip-higher uses 0.28; GSPO 4e-4; GMPO 0.4 in log
    space)."""
    dual_clip: float | None = None
    """ppo: dual clip bound c > 1 for negative advantages (None: off; veRL clip_ratio_c uses 3)."""
    delta: float | None = None
    """ppo: two-sided clipping (INTELLECT-2, TRL delta): cap the unclipped term's ratio at delta >
    1 + clip_high, which bounds negative-advantage tokens (None: off). Equal to dual_clip=delta;
    set one of the two."""
    tau_pos: float = 1.0
    """sapo: gate temperature for positive advantages (TRL sapo_temperature_pos)."""
    tau_neg: float = 1.05
    """sapo: gate temperature for negative advantages (TRL sapo_temperature_neg)."""
    clip_cov_ratio: float = 2e-4
    """clip_cov: share of valid tokens whose gradient is detached (veRL clip_cov_ratio)."""
    clip_cov_lb: float = 1.0
    """clip_cov: lower bound of the covariance of the tokens it may detach (veRL)."""
    clip_cov_ub: float = 5.0
    """clip_cov: upper bound of that covariance (veRL)."""
    kl_cov_ratio: float = 2e-4
    """kl_cov: share of valid tokens (largest covariance) that get the KL penalty (veRL)."""
    kl_cov_coef: float = 1.0
    """kl_cov: weight of |log ratio| on those tokens (veRL ppo_kl_coef)."""
    top_entropy_quantile: float = 1.0
    """Train the policy loss only on the tokens whose entropy is in this top share of each
    micro-batch's tokens (Wang et al. 2025 "Beyond the 80/20 rule": 0.2; TRL; 1.0: all)."""
    rollout_is: str | None = None
    """Rollout correction, truncated importance sampling: token or sequence weights
    min(pi_old / pi_rollout, rollout_is_threshold) on the loss (veRL rollout_is; None: off). Needs
    the engine's logprobs and old_logprobs=recompute (costs one no-grad pass per step)."""
    rollout_is_threshold: float = 2.0
    """Cap C of the rollout IS weights (veRL rollout_is_threshold, TRL
    vllm_importance_sampling_cap)."""
    rollout_rs: str | None = None
    """Rollout correction, rejection: drop tokens (token) or responses (sequence: product of
    ratios; geometric: their geometric mean) whose pi_old / pi_rollout leaves [lower, upper]
    (veRL rollout_rs; None: off)."""
    rollout_rs_threshold: float | None = None
    """Upper bound of rollout_rs (None: rollout_is_threshold)."""
    rollout_rs_threshold_lower: float | None = None
    """Lower bound of rollout_rs (None: 1 / upper)."""
    kl_coef: float = 0.0
    """Weight of the KL to the reference model (0: no reference model is kept)."""
    kl_estimator: str = "k3"
    """KL estimator: k1, k2 or k3 (GRPO's, veRL low_var_kl). In the loss, k2's gradient is that of
    KL(policy || ref), k3's that of KL(ref || policy); k1 (zero expected gradient) only in the
    reward."""
    kl_in: str = "loss"
    """Where the KL goes: loss (GRPO, veRL use_kl_loss) or reward (PPO-RLHF, veRL use_kl_in_reward)."""
    ref_refresh_every: int = 0
    """Copy the policy into the reference model every K steps (R1: 400); 0: never."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (veRL entropy_coeff); with entropy_target, its starting value."""
    entropy_target: float | None = None
    """Adaptive entropy control (Skywork-OR1, He et al. 2025, arXiv:2505.22312): hold the policy's
    mean token entropy near this value by moving the coefficient by entropy_coef_delta after each
    step (up below the target, down above, never below 0) and applying the bonus only while the
    entropy is at or below the target (None: entropy_coef fixed)."""
    entropy_coef_delta: float = 0.005
    """Adaptive entropy control: the coefficient's change per step."""
    gamma: float = 1.0
    """Discount per token (reinforce_pp, gae)."""
    lam: float = 1.0
    """GAE lambda."""
    vf_coef: float = 0.5
    """Weight of the value loss (gae only)."""
    value_clip: float | None = 0.2
    """Clip range of the value loss (gae only; None: unclipped)."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards are all equal and refill with new prompts."""
    max_refill_rounds: int = 3
    """Dynamic sampling: extra sampling rounds at most per step (then train on what was kept)."""
    overlong_filter: bool = False
    """DAPO overlong filtering: truncated responses (finish reason 'length') get no loss."""
    old_logprobs: str = "recompute"
    """pi_old for the ratio: recompute (a no-grad pass of the policy before the update) or rollout
    (the engine's sampling logprobs). With one epoch and one minibatch the detached current logprobs
    are pi_old exactly, and no extra pass is made."""


@dataclass
class OptimConfig:
    """AdamW and the learning-rate schedule (stepped once per RL step)."""

    lr: float = 1e-6
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay."""
    warmup_steps: int = 0
    """Linear warm-up from 0 over this many RL steps."""
    schedule: str = "constant"
    """After warm-up: constant, cosine or linear decay towards `min_lr_ratio * lr`, reached after
    the last step (`reasonlab.optim.lr_factor`, the schedule pretraining and SFT use too)."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of `lr` (cosine, linear)."""
    grad_clip: float | None = 1.0
    """Clip the global gradient norm to this (None: no clipping; the norm is still logged)."""


@dataclass
class BatchingConfig:
    """How a step's responses are cut into optimiser updates."""

    prompts_per_step: int = 8
    """Prompts sampled per RL step (veRL data.train_batch_size); responses = prompts x rollout.n."""
    minibatch_size: int | None = None
    """Responses per optimiser update (None: the whole step's batch, one update per epoch)."""
    micro_batch_size: int | None = None
    """Responses per forward/backward pass; gradients accumulate over the minibatch (None: the
    minibatch)."""
    ppo_epochs: int = 1
    """Passes over the step's batch (veRL ppo_epochs, TRL num_iterations)."""
    shuffle: bool = True
    """Shuffle responses before cutting minibatches (each epoch, seeded by run.seed and step)."""
    share_prompts: bool = True
    """Run each distinct prompt through the model once per micro-batch and share its KV cache
    among its responses (the same numbers as full passes, much less compute for long prompts).
    With gradient checkpointing it needs transformers >= 5 (else full passes are used)."""
    forward_batch_size: int | None = None
    """Responses per no-grad pass (old, reference logprobs; None: micro_batch_size)."""
    group_by_length: bool = False
    """Cut each minibatch (and the no-grad passes) into micro-batches of responses of similar
    length, longest first, instead of in shuffled order: a pass pads its responses to its longest
    only, so less padding is computed when lengths vary (transformers' `group_by_length`; veRL's
    `use_dynamic_bsz` balances by tokens). The loss is the same sum over the same responses (its
    normaliser is the minibatch's), so only float rounding changes; it takes effect when
    micro_batch_size (forward_batch_size) is below the minibatch (the step's batch)."""


@dataclass
class RunConfig:
    """Length, logging and checkpoints of a run."""

    steps: int = 100
    """RL steps (each: sample, score, update)."""
    seed: int = 0
    """Seed of sampling, shuffling and initialisation."""
    out_dir: str = "runs/train"
    """Run folder: config.yaml, metrics.jsonl, rollouts.jsonl, eval.jsonl, checkpoints/."""
    eval_every: int = 0
    """Evaluate on the held-out set every K steps and after the last (0: never)."""
    eval_before_train: bool = False
    """Also evaluate before the first step (step 0 in eval.jsonl; veRL's val_before_train)."""
    eval_temperature: float = 0.0
    """Sampling temperature of evaluation (0: greedy, one response per example)."""
    eval_max_new_tokens: int | None = None
    """Response budget of evaluation (None: rollout.max_new_tokens)."""
    save_every: int = 0
    """Write a checkpoint every K steps and after the last (0: only after the last)."""
    keep_checkpoints: int = 2
    """Checkpoints kept on disk (oldest deleted first); at least 1."""
    log_rollouts_per_step: int = 4
    """Responses per step written to rollouts.jsonl (0: none; -1: all)."""
    max_bad_steps: int = 3
    """Stop after this many consecutive steps whose loss or gradient was NaN/inf (each skipped)."""
    deterministic: bool = True
    """torch.use_deterministic_algorithms (exact resume on CPU; may be slower on GPUs)."""
    num_threads: int | None = None
    """torch intra-op threads (None: torch's default)."""
    progress: bool = True
    """Show a tqdm progress bar with reward and accuracy."""
    tensorboard: bool = False
    """Also log metrics to TensorBoard (run folder tb/), if tensorboard is installed."""
    wandb: bool = False
    """Also log metrics to Weights & Biases, if wandb is installed (project: wandb_project)."""
    wandb_project: str = "reasonlab"
    """W&B project name."""


@dataclass
class TrainConfig:
    """A whole RL run (`reasonlab train RECIPE.yaml`)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    task: TaskConfig = field(default_factory=TaskConfig)
    """Prompts and held-out evaluation."""
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    """Reward terms."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """Advantages and losses."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser and schedule."""
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    """Minibatches, micro-batches and epochs."""
    run: RunConfig = field(default_factory=RunConfig)
    """Length, logging, checkpoints."""

    @property
    def batch_size(self) -> int:
        """Responses per RL step."""
        return self.batching.prompts_per_step * self.rollout.n

    @property
    def minibatch_size(self) -> int:
        return self.batching.minibatch_size or self.batch_size

    @property
    def micro_batch_size(self) -> int:
        # a micro-batch larger than the minibatch is the minibatch (one pass), so a recipe's
        # micro_batch_size stays valid when prompts_per_step is overridden smaller
        return min(self.batching.micro_batch_size or self.minibatch_size, self.minibatch_size)


GROUP_ESTIMATORS = ("grpo", "dr_grpo", "grpo_passk", "rloo", "reinforce_pp_baseline")
"""Estimators that compare the responses of one prompt: they need rollout.n >= 2."""


def locate(field: str, source: str | None = None, overrides: Sequence[str] = ()) -> str:
    """Where `field` (dotted, `rewards.terms[0].name`) was set: the last override that set it,
    else FILE:LINE of its key in the YAML recipe (or of its closest enclosing section), else the
    file, else '<config>' (a default)."""
    for text in reversed(list(overrides)):
        key = text.partition("=")[0].strip()
        if field == key or field.startswith(key + ".") or field.startswith(key + "["):
            return f"override {text!r}"
    if source is None:
        return "<config>"
    try:
        node = yaml.compose(Path(source).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return str(source)
    line = None
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", field):
        if isinstance(node, yaml.MappingNode):
            match = [(k, v) for k, v in node.value if k.value == part]
            if not match:
                break
            line, node = match[0][0].start_mark.line + 1, match[0][1]
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            index = int(part[1:-1])
            if index >= len(node.value):
                break
            node = node.value[index]
            line = node.start_mark.line + 1
        else:
            break
    return f"{source}:{line}" if line else str(source)


MODEL_PATH_HINT = (
    "give a local Hugging Face model folder (with config.json, as written by save_pretrained or "
    "`reasonlab pretrain --out DIR`) or `tiny`"
)


def validate(
    config: TrainConfig,
    world_size: int = 1,
    *,
    source: str | None = None,
    overrides: Sequence[str] = (),
    extra_rewards: int = 0,
) -> TrainConfig:
    """Check the values that depend on each other; raise ConfigError naming the field, where it
    was set (`source` FILE:LINE or the override) and the fix.

    `extra_rewards`: reward functions a library user passes to the Trainer (so the config may name
    none). Run before any model is loaded. Names (tasks, rewards, estimators, aggregations) are checked
    against their registries so a typo fails here, with the valid names, not mid-run.
    """
    from reasonlab.rl.advantages import ADVANTAGES
    from reasonlab.rl.losses import (
        AGGREGATIONS,
        KL_ESTIMATORS,
        POLICY_LOSSES,
        policy_loss_params,
        policy_loss_problems,
    )

    def fail(key: str, message: str) -> None:
        raise ConfigError(message, where=locate(key, source, overrides), field=key)

    def one_of(key: str, value: Any, valid: list[str] | tuple[str, ...]) -> None:
        if value not in valid:
            close = difflib.get_close_matches(str(value), list(valid), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(key, f"{value!r} is not one of: {', '.join(valid)}{hint}")

    def positive(key: str, value: float | int | None, allow_none: bool = False) -> None:
        if value is None and allow_none:
            return
        if value is None or value <= 0:
            fail(key, f"must be > 0, got {value!r}")

    c = config
    # model
    one_of("model.dtype", c.model.dtype, ("float32", "bfloat16", "float16", "auto"))
    from reasonlab.parallel import PARALLEL

    one_of("model.parallel", c.model.parallel, PARALLEL)
    if world_size > 1 and c.model.parallel == "none":
        fail(
            "model.parallel",
            f"is none but {world_size} processes were launched (torchrun): set it to ddp (each "
            "rank holds the model) or fsdp (sharded)",
        )
    if c.model.cpu_offload and c.model.parallel != "fsdp":
        fail("model.cpu_offload", f"needs model.parallel=fsdp, got {c.model.parallel!r}")
    lora = c.model.lora
    if lora is not None:
        positive("model.lora.r", lora.r)
        positive("model.lora.alpha", lora.alpha)
        if not 0 <= lora.dropout < 1:
            fail("model.lora.dropout", f"must be in [0, 1), got {lora.dropout}")
        if not lora.target_modules:
            fail("model.lora.target_modules", "is empty: name the linear layers to adapt")
        if c.model.parallel == "fsdp":
            fail("model.lora", "is not supported with model.parallel=fsdp yet: use ddp or none")
        if c.algorithm.ref_refresh_every:
            fail(
                "algorithm.ref_refresh_every",
                "is set with model.lora: the reference is the model without its adapters",
            )
    if c.model.path != "tiny":
        folder = Path(c.model.path).expanduser()
        if not folder.is_dir():
            fail("model.path", f"{c.model.path!r} is not a folder; {MODEL_PATH_HINT}")
        if not (folder / "config.json").is_file():
            fail("model.path", f"{c.model.path!r} has no config.json; {MODEL_PATH_HINT}")
    if c.model.path == "tiny":
        one_of("model.tiny.arch", c.model.tiny.arch, ("qwen2", "llama"))
        for name in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
        ):
            positive(f"model.tiny.{name}", getattr(c.model.tiny, name))
        if c.model.tiny.hidden_size % c.model.tiny.num_attention_heads:
            fail(
                "model.tiny.hidden_size",
                f"{c.model.tiny.hidden_size} is not divisible by num_attention_heads "
                f"{c.model.tiny.num_attention_heads}",
            )
    # task
    from reasonlab import tasks
    from reasonlab.tasks.base import Task

    one_of("task.name", c.task.name, tasks.names())
    task = tasks.get(c.task.name)
    try:
        task.resolve_params(dict(c.task.params))
    except ValueError as err:
        fail("task.params", str(err))
    if c.task.split is None and type(task).generate is Task.generate:
        fail(
            "task.split",
            f"task {c.task.name!r} has no generator: set task.split to one of "
            f"{', '.join(task.splits) or 'its data files'}",
        )
    from reasonlab.tasks.templates import TEMPLATES

    one_of("task.template", c.task.template, TEMPLATES.names())
    if c.run.eval_every:
        positive("task.eval_size", c.task.eval_size)
    if c.task.where and c.task.split is None:
        fail("task.where", "filters a file-backed split: set task.split too")
    if not 0.0 <= c.task.held_out_fraction < 1.0:
        fail("task.held_out_fraction", f"must be in [0, 1), got {c.task.held_out_fraction}")
    if (
        c.task.eval_seed == c.task.seed
        and c.task.eval_split is None
        and not c.task.held_out_fraction
    ):
        fail("task.eval_seed", f"must differ from task.seed ({c.task.seed}): eval must be held out")
    # rewards
    if c.rewards.scheme is None and not c.rewards.terms and not extra_rewards:
        fail("rewards", "no reward: set rewards.scheme (e.g. r1) or give rewards.terms")
    from reasonlab import rewards as rewards_module

    reward_names = rewards_module.names()
    for i, term in enumerate(c.rewards.terms):
        one_of(f"rewards.terms[{i}].name", term.name, reward_names)
    if c.rewards.scheme is not None and hasattr(rewards_module, "SCHEMES"):
        one_of("rewards.scheme", c.rewards.scheme, sorted(rewards_module.SCHEMES))
    # rollout
    one_of("rollout.engine", c.rollout.engine, ("hf", "vllm"))
    positive("rollout.n", c.rollout.n)
    positive("rollout.max_new_tokens", c.rollout.max_new_tokens)
    if c.rollout.temperature <= 0:
        fail(
            "rollout.temperature",
            f"must be > 0 for RL (the loss needs the sampling distribution's logprobs), got "
            f"{c.rollout.temperature}",
        )
    if not 0 < c.rollout.top_p <= 1:
        fail("rollout.top_p", f"must be in (0, 1], got {c.rollout.top_p}")
    one_of("rollout.logprobs_mode", c.rollout.logprobs_mode, ("raw", "processed"))
    positive("rollout.batch_size", c.rollout.batch_size, allow_none=True)
    # algorithm
    a = c.algorithm
    one_of("algorithm.advantage", a.advantage, ADVANTAGES.names())
    one_of("algorithm.loss_agg", a.loss_agg, AGGREGATIONS.names())
    one_of("algorithm.kl_estimator", a.kl_estimator, KL_ESTIMATORS.names())
    one_of("algorithm.kl_in", a.kl_in, ("loss", "reward"))
    if a.kl_coef > 0 and a.kl_in == "loss" and a.kl_estimator == "k1":
        fail(
            "algorithm.kl_estimator",
            "k1 as a loss (kl_in=loss) has zero expected gradient: its gradient is grad log pi, "
            "whose mean over samples from the policy is 0, so it pulls nothing towards the "
            "reference; use k2 (the gradient of KL(policy || ref)) or k3 (that of KL(ref || "
            "policy), GRPO's), or keep k1 with kl_in=reward",
        )
    one_of("algorithm.old_logprobs", a.old_logprobs, ("recompute", "rollout"))
    if a.advantage in GROUP_ESTIMATORS and c.rollout.n < 2:
        fail(
            "rollout.n",
            f"{a.advantage} compares the responses of one prompt and needs rollout.n >= 2, "
            f"got {c.rollout.n}",
        )
    if a.dynamic_sampling and c.rollout.n < 2:
        fail("algorithm.dynamic_sampling", "needs rollout.n >= 2 (groups of responses to compare)")
    one_of("algorithm.policy_loss", a.policy_loss, POLICY_LOSSES.names())
    takes = [k for k in policy_loss_params(a.policy_loss) if k != "generator"]
    for key, message in policy_loss_problems(a.policy_loss, {k: getattr(a, k) for k in takes}):
        fail(f"algorithm.{key}", message)
    defaults = AlgorithmConfig()
    for name in POLICY_LOSSES.names():
        for key in policy_loss_params(name):
            if key in takes or key == "generator":
                continue
            if getattr(a, key) != getattr(defaults, key):
                fail(
                    f"algorithm.{key}",
                    f"is set ({getattr(a, key)!r}) but policy_loss {a.policy_loss!r} does not use "
                    f"it; it takes: {', '.join(takes)}",
                )
    if a.entropy_target is not None and a.entropy_target < 0:
        fail("algorithm.entropy_target", f"must be >= 0 (nats) or null, got {a.entropy_target}")
    if a.entropy_coef_delta < 0:
        fail("algorithm.entropy_coef_delta", f"must be >= 0, got {a.entropy_coef_delta}")
    if not 0 < a.top_entropy_quantile <= 1:
        fail("algorithm.top_entropy_quantile", f"must be in (0, 1], got {a.top_entropy_quantile}")
    _validate_rollout_correction(a, fail)
    for key in ("kl_coef", "entropy_coef", "vf_coef", "max_refill_rounds", "ref_refresh_every"):
        if getattr(a, key) < 0:
            fail(f"algorithm.{key}", f"must be >= 0, got {getattr(a, key)}")
    if a.ref_refresh_every and a.kl_coef == 0:
        fail("algorithm.ref_refresh_every", "is set but kl_coef is 0: there is no reference model")
    if not 0 <= a.gamma <= 1 or not 0 <= a.lam <= 1:
        fail("algorithm.gamma", f"gamma and lam must be in [0, 1], got {a.gamma}, {a.lam}")
    # optim
    o = c.optim
    positive("optim.lr", o.lr)
    one_of("optim.schedule", o.schedule, ("constant", "cosine", "linear"))
    if len(o.betas) != 2 or not all(0 <= b < 1 for b in o.betas):
        fail("optim.betas", f"must be two numbers in [0, 1), got {o.betas}")
    if o.warmup_steps < 0 or o.weight_decay < 0:
        fail("optim.warmup_steps", "warmup_steps and weight_decay must be >= 0")
    if not 0 <= o.min_lr_ratio <= 1:
        fail("optim.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    positive("optim.grad_clip", o.grad_clip, allow_none=True)
    # batching
    b = c.batching
    positive("batching.prompts_per_step", b.prompts_per_step)
    positive("batching.ppo_epochs", b.ppo_epochs)
    positive("batching.minibatch_size", b.minibatch_size, allow_none=True)
    positive("batching.micro_batch_size", b.micro_batch_size, allow_none=True)
    positive("batching.forward_batch_size", b.forward_batch_size, allow_none=True)
    if b.prompts_per_step % world_size:
        fail(
            "batching.prompts_per_step",
            f"{b.prompts_per_step} is not divisible by the {world_size} data-parallel processes "
            "(each takes whole groups of responses)",
        )
    if c.batch_size % c.minibatch_size:
        fail(
            "batching.minibatch_size",
            f"{c.minibatch_size} does not divide the step's batch of {c.batch_size} responses "
            f"(prompts_per_step {b.prompts_per_step} x rollout.n {c.rollout.n})",
        )
    if c.minibatch_size % c.micro_batch_size:  # (micro_batch_size is at most the minibatch)
        fail(
            "batching.micro_batch_size",
            f"{c.micro_batch_size} does not divide minibatch_size {c.minibatch_size}",
        )
    if world_size > 1 and (c.minibatch_size % world_size or c.micro_batch_size > c.minibatch_size):
        fail(
            "batching.minibatch_size",
            f"{c.minibatch_size} is not divisible by the {world_size} data-parallel processes",
        )
    # run
    r = c.run
    positive("run.steps", r.steps)
    positive("run.keep_checkpoints", r.keep_checkpoints)
    positive("run.max_bad_steps", r.max_bad_steps)
    for key in ("eval_every", "save_every"):
        if getattr(r, key) < 0:
            fail(f"run.{key}", f"must be >= 0, got {getattr(r, key)}")
    if r.eval_temperature < 0:
        fail("run.eval_temperature", f"must be >= 0, got {r.eval_temperature}")
    positive("run.eval_max_new_tokens", r.eval_max_new_tokens, allow_none=True)
    positive("run.num_threads", r.num_threads, allow_none=True)
    if r.log_rollouts_per_step < -1:
        fail(
            "run.log_rollouts_per_step",
            f"must be -1 (all), 0 or more, got {r.log_rollouts_per_step}",
        )
    # model-dependent pieces that need no model
    if a.advantage == "gae" and a.vf_coef == 0:
        fail(
            "algorithm.vf_coef",
            "gae learns a value head from the value loss; vf_coef 0 leaves it untrained",
        )
    return config


def _validate_rollout_correction(a: AlgorithmConfig, fail: Any) -> None:
    from reasonlab.rl.losses import ROLLOUT_LEVELS, ROLLOUT_RS_LEVELS

    for key, value, valid in (
        ("rollout_is", a.rollout_is, ROLLOUT_LEVELS),
        ("rollout_rs", a.rollout_rs, ROLLOUT_RS_LEVELS),
    ):
        if value is not None and value not in valid:
            fail(f"algorithm.{key}", f"{value!r} is not one of: {', '.join(valid)} (or null: off)")
    if a.rollout_is_threshold <= 0:
        fail("algorithm.rollout_is_threshold", f"must be > 0, got {a.rollout_is_threshold}")
    upper = a.rollout_rs_threshold if a.rollout_rs_threshold is not None else a.rollout_is_threshold
    if a.rollout_rs_threshold is not None and a.rollout_rs_threshold <= 0:
        fail("algorithm.rollout_rs_threshold", f"must be > 0, got {a.rollout_rs_threshold}")
    lower = a.rollout_rs_threshold_lower
    if lower is not None and not 0 <= lower < upper:
        fail(
            "algorithm.rollout_rs_threshold_lower",
            f"must be in [0, upper = {upper}), got {lower}",
        )
    if (a.rollout_is or a.rollout_rs) and a.old_logprobs == "rollout":
        fail(
            "algorithm.old_logprobs",
            "is 'rollout': the PPO ratio is then pi / pi_rollout already; rollout_is / rollout_rs "
            "correct pi_old (recomputed) against pi_rollout and need old_logprobs=recompute",
        )


__all__ = [
    "AlgorithmConfig",
    "BatchingConfig",
    "ModelConfig",
    "OptimConfig",
    "RewardTermConfig",
    "RewardsConfig",
    "RolloutConfig",
    "RunConfig",
    "TaskConfig",
    "TinyModelConfig",
    "TrainConfig",
    "locate",
    "validate",
]
